#!/usr/bin/env python3
"""tp_secrets: the secrets audit (issue #7 item 5), in the preloaded
cluster.  With log_min_messages = debug5 and log_statement = all, every
error class of the foreign tables, EXPLAIN, test_connection, a sync with an
outage, webhook deliveries with good and bad signatures: the token and the
webhook secret must appear nowhere (server log, errors, EXPLAIN,
pg_stat_activity, sync_status, the webhook views) except in the text of the
user's own statements that contain them, which PostgreSQL logs under
log_statement (documented in the README, as for postgres_fdw passwords).
An unprivileged role cannot read another role's user mapping, and the
listener binds loopback by default.
"""
import hashlib
import hmac
import json
import os
import subprocess
import urllib.error
import urllib.request

from pgtest import Results, Sim, psql, server_log, wait_until

DB = "postgres"
TOKEN = "tok-AUDIT-7f3a9c2e"
SECRET = "sec-AUDIT-51b2e8d4"


def q(sql, check=True):
    return psql(sql, db=DB, check=check)


def main():
    res = Results()
    sim = Sim("--team", "acme", "--project", "backend:30", "--token", TOKEN,
              "--limited-token", "limited-%s:issues" % TOKEN, "--seed", "4")
    outputs = []           # everything a user saw: stdout and stderr of each statement

    def run(sql):
        r = q(sql, check=False)
        outputs.append(r.stdout + r.stderr)
        return r
    try:
        q("DROP EXTENSION IF EXISTS coding_fdw CASCADE")
        q("DROP SCHEMA IF EXISTS audit, coding CASCADE")
        q("ALTER SYSTEM SET log_min_messages = debug5")
        q("ALTER SYSTEM SET log_statement = 'all'")
        q("ALTER SYSTEM SET log_min_error_statement = debug5")
        q("SELECT pg_reload_conf()")
        log_start = len(server_log())
        q("CREATE EXTENSION coding_fdw")
        q("CREATE SERVER coding FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', project 'backend', "
          "api_url '%s', rate_limit '100000', max_retries '1')" % sim.url)
        q("CREATE SERVER bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', project 'backend', "
          "api_url 'http://127.0.0.1:9/open-api', max_retries '0', connect_timeout_ms '500')")
        q("CREATE USER MAPPING FOR CURRENT_USER SERVER coding OPTIONS (token '%s')" % TOKEN)
        q("CREATE USER MAPPING FOR CURRENT_USER SERVER bad OPTIONS (token '%s')" % TOKEN)
        q("CREATE SCHEMA coding; IMPORT FOREIGN SCHEMA backend FROM SERVER coding INTO coding")
        q("CREATE FOREIGN TABLE public.bad_issues (code int) SERVER bad OPTIONS (resource 'issues')")

        def exercise():
            run("SELECT count(*) FROM coding.issues")
            run("EXPLAIN (VERBOSE, ANALYZE) SELECT code, watchers FROM coding.issues WHERE code IN (1, 2)")
            run("SELECT * FROM coding_fdw.test_connection('coding')")
            run("SELECT * FROM coding_fdw.test_connection('bad')")
            run("SELECT * FROM public.bad_issues")                       # network
            for fault in ("auth_failure", "http_500", "rate_limited", "invalid_json", "truncated_json",
                          "wrong_types"):
                sim.fault(type=fault, count=3)
                run("SELECT count(*) FROM coding.issues")
                sim.call("DELETE", "/_sim/faults")
            run("SELECT * FROM coding.issues WHERE code = 999999")       # not found
            q("ALTER USER MAPPING FOR CURRENT_USER SERVER coding OPTIONS (SET token 'limited-%s')" % TOKEN)
            run("SELECT * FROM coding.iterations")                       # permission
            run("SELECT * FROM coding_fdw.test_connection('coding')")
            q("ALTER USER MAPPING FOR CURRENT_USER SERVER coding OPTIONS (SET token '%s')" % TOKEN)
            # sync with a webhook secret, an outage, good and bad signatures
            run("SELECT coding_fdw.sync_start('coding', 'audit', 'both', poll_interval => '1 s', "
                "webhook_secret => '%s')" % SECRET)
            assert q("SELECT coding_fdw.wait_for_sync('coding')") == "t"
            url = q("SELECT coding_fdw.webhook_url('coding')")
            body = json.dumps({"event": "ITERATION_UPDATED", "iteration": {"code": 1, "title": "audited"}}).encode()
            for sig in (None, "sha1=" + "0" * 40,
                        "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()):
                req = urllib.request.Request(url, data=body, method="POST",
                                             headers=dict({"Content-Type": "application/json"},
                                                          **({"X-Coding-Signature": sig} if sig else {})))
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        outputs.append(r.read().decode())
                except urllib.error.HTTPError as e:
                    outputs.append(e.read().decode())
            sim.fault(type="auth_failure", count=0)
            wait_until(lambda: q("SELECT state FROM coding_fdw.sync_status WHERE table_name = 'issues'") == "error",
                       30, "the outage in sync_status")
            outputs.append(q("SELECT row_to_json(s) FROM coding_fdw.sync_status s"))
            outputs.append(q("SELECT coalesce(json_agg(i), '[]') FROM coding_fdw.webhook_inbox i"))
            outputs.append(q("SELECT coalesce(json_agg(d), '[]') FROM coding_fdw.webhook_dead_letter d"))
            outputs.append(q("SELECT coalesce(json_agg(a), '[]') FROM pg_stat_activity a"))
            sim.call("DELETE", "/_sim/faults")
            assert q("SELECT coding_fdw.wait_for_sync('coding')") == "t"
            run("SELECT coding_fdw.sync_stop('coding', true)")
        res.check("every error path exercised with debug5 logging", exercise)

        def nothing_leaked():
            for secret in (TOKEN, SECRET):
                seen = [o for o in outputs if secret in o]
                assert not seen, "%s shown to the user: %s" % (secret[:8], seen[0][:300])
            log = server_log()[log_start:]
            assert "DEBUG" in log and "statement: " in log, "debug5 / log_statement not in effect"
            bad = []
            own_lines = 0
            for line in log.splitlines():
                if TOKEN in line or SECRET in line:
                    # only the user's own statement text, which log_statement logs
                    own = ("CREATE USER MAPPING", "ALTER USER MAPPING", "SELECT coding_fdw.sync_start")
                    if not any(p + o in line for p in ("statement: ", "STATEMENT:  ") for o in own):
                        bad.append(line)
                    else:
                        own_lines += 1
            # the search itself works: the user's own statements are there
            assert own_lines >= 3, "the log does not show the statements that carry the secrets"
            assert not bad, "%d log lines with a secret, e.g. %s" % (len(bad), bad[0][:300])
        res.check("token and webhook secret nowhere but the user's own logged statements", nothing_leaked)

        def other_roles():
            q("DROP ROLE IF EXISTS auditee; CREATE ROLE auditee LOGIN PASSWORD 'auditee-pw'")
            q("GRANT USAGE ON FOREIGN SERVER coding TO auditee")
            env = dict(os.environ, PGUSER="auditee", PGPASSWORD="auditee-pw")
            r = subprocess.run(["psql", "-X", "-A", "-t", "-d", DB, "-c",
                                "SELECT coalesce(umoptions::text, 'hidden') FROM pg_user_mappings"],
                               capture_output=True, text=True, env=env)
            assert TOKEN not in r.stdout and "hidden" in r.stdout, (r.stdout, r.stderr)
            r = subprocess.run(["psql", "-X", "-A", "-t", "-d", DB, "-c", "SELECT * FROM pg_user_mapping"],
                               capture_output=True, text=True, env=env)
            assert "permission denied" in r.stderr, r.stderr
            q("DROP OWNED BY auditee; DROP ROLE auditee")
        res.check("another role cannot read the user mapping's token", other_roles)

        def loopback_default():
            assert q("SELECT boot_val FROM pg_settings WHERE name = 'coding_fdw.webhook_listen_address'") == "127.0.0.1"
        res.check("the listener binds loopback by default", loopback_default)
    finally:
        sim.stop()
        for g in ("log_min_messages", "log_statement", "log_min_error_statement"):
            q("ALTER SYSTEM RESET %s" % g, check=False)
        q("SELECT pg_reload_conf()", check=False)
        q("DROP EXTENSION IF EXISTS coding_fdw CASCADE", check=False)
        q("DROP SCHEMA IF EXISTS audit, coding CASCADE", check=False)
        q("DROP SERVER IF EXISTS bad CASCADE", check=False)
    res.finish()


if __name__ == "__main__":
    main()
