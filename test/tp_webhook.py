#!/usr/bin/env python3
"""tp_webhook: the webhook listener and the apply of its events, in a
cluster with shared_preload_libraries = coding_fdw (test/run_tests.sh
passes a free coding_fdw.webhook_port).

Checks (issue #6): every HTTP answer of interface.md §6 (200 ping, 404,
405, 413, 400, form bodies); signatures good, bad and missing; each event
type applied end to end from real-shaped deliveries of the simulated
server, the tables then equal to Coding's data; duplicates applied once;
reordered deliveries (a delete before the older update) never resurrect a
row; an event that cannot be applied stays in the inbox with its error, is
retried, becomes a dead letter, and replay() brings it back; a burst of
10,000 events from 8 concurrent senders all applied; kill -9 of the
listener and of the events worker during a burst loses no acknowledged
event; in mode "both" a dropped webhook is repaired by polling.  Every
wait is wait_for_sync or a polled condition with a deadline.
"""
import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from pgtest import Results, Sim, open_transaction, psql, server_log, wait_until

DB = "postgres"


def q(sql):
    return psql(sql, db=DB)


def q_retry(sql, timeout=60):
    """A query that may meet a restarting cluster: retried until it works."""
    def attempt():
        r = psql(sql, db=DB, check=False)
        return r if r.returncode == 0 else None
    return wait_until(attempt, timeout, "the cluster to answer %r" % sql[:60], interval=0.2).stdout.strip()


def wait_for_sync(server, timeout="60 s"):
    return q("SELECT coding_fdw.wait_for_sync('%s', '%s')" % (server, timeout)) == "t"


def post(url, body, headers=None, method="POST", raw=None):
    """One HTTP request; returns (status, body text, headers)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def iteration_event(code, title="Burst", event="ITERATION_CREATED", updated=1700000000000, project="backend"):
    """A real-shaped ITERATION_* body (coding-api.md S9)."""
    return {"event": event, "eventName": "创建迭代",
            "iteration": {"title": title, "goal": "g", "code": code, "status": "WAIT_PROCESS",
                          "creator": {"id": 8613060, "login": "cxRf", "name": "Gavin"},
                          "plan_issue_number": 0, "start_at": 1668009600000, "end_at": 1668268799000,
                          "created_at": 1665309831747, "updated_at": updated},
            "project": {"id": 1, "name": project}, "team": {"id": 1, "domain": "acme"}}


def flood_sql(prefix, code, n=6000):
    """SQL that puts n ISSUE_UPDATED events of one issue of 'coding' straight
    into the inbox (deliveries prefix-1..n): floods for the worker's turns,
    without the listener."""
    return """INSERT INTO coding_fdw.webhook_event (server_oid, delivery, event, payload)
              SELECT s.server_oid, '%s-' || i, 'ISSUE_UPDATED',
                     jsonb_build_object('event', 'ISSUE_UPDATED', 'issue', jsonb_build_object('code', %s),
                                        'project', jsonb_build_object('name', 'backend'),
                                        'team', jsonb_build_object('domain', 'acme'))
                FROM coding_fdw.subscription s, generate_series(1, %d) i WHERE s.server_name = 'coding'""" % (
        prefix, code, n)


def quiet_polls():
    """No poll due for an hour and none running: the simulator's delay
    faults, counted per Action across all callers, stay for the events."""
    q("UPDATE coding_fdw.subscription SET next_poll = now() + interval '1 hour', "
      "applied = greatest(applied, requested)")
    wait_until(lambda: q("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                         "AND query LIKE 'coding_fdw: syncing server %'") == "0", 60, "the sync worker idle")


def status_row(server, table):
    return json.loads(q("SELECT row_to_json(s) FROM coding_fdw.sync_status s "
                        "WHERE server = '%s' AND table_name = '%s'" % (server, table)))


def diff(schema, table, src, cols):
    """Rows differing between a local table and its foreign source on cols."""
    c = ", ".join(cols)
    return int(q("SELECT (SELECT count(*) FROM (SELECT %s FROM %s.%s EXCEPT SELECT %s FROM %s.%s) a) "
                 "+ (SELECT count(*) FROM (SELECT %s FROM %s.%s EXCEPT SELECT %s FROM %s.%s) b)"
                 % (c, schema, table, c, src, table, c, src, table, c, schema, table)))


ISSUE_COLS = None   # every column but synced_*, filled in main()
ITERATION_COLS = ["code", "name", "goal", "status", "start_at", "end_at", "created_at",
                  "updated_at", "assignee_id", "creator_id"]
MEMBER_COLS = ["id", "name", "name_pinyin", "avatar", "global_key"]


class Burst:
    """N senders POSTing events concurrently over keep-alive connections;
    each event is retried until acknowledged (200) or the deadline, so a
    listener restart costs time, not events.  Records what was acked."""

    def __init__(self, url, bodies, senders=8, deadline=180):
        self.url = urllib.parse.urlsplit(url)
        self.bodies = bodies
        self.senders = senders
        self.deadline = time.monotonic() + deadline
        self.acked = set()
        self.statuses = {}
        self.lock = threading.Lock()
        self.next = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(senders)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def join(self):
        for t in self.threads:
            t.join()
        return self

    def _take(self):
        with self.lock:
            if self.next >= len(self.bodies):
                return None
            self.next += 1
            return self.next - 1

    def _run(self):
        conn = None
        while True:
            i = self._take()
            if i is None:
                break
            delivery, body = self.bodies[i]
            data = json.dumps(body).encode()
            while time.monotonic() < self.deadline:
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=10)
                    conn.request("POST", self.url.path, data,
                                 {"Content-Type": "application/json", "X-Coding-Delivery": delivery,
                                  "X-Coding-Service-Hook-Event": body["event"]})
                    r = conn.getresponse()
                    r.read()
                    with self.lock:
                        self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
                    if r.status == 200:
                        with self.lock:
                            self.acked.add(delivery)
                        break
                except (OSError, http.client.HTTPException):
                    if conn is not None:
                        conn.close()
                    conn = None
                time.sleep(0.05)     # client retry pacing, not synchronisation


def event_outcome(delivery):
    """Wait (with a deadline) until a stored event is applied or dead; its
    state, and its last error if any."""
    wait_until(lambda: q("SELECT state FROM coding_fdw.webhook_event WHERE delivery = '%s'" % delivery)
               in ("applied", "dead"), 30, "event %s to be applied or dead" % delivery)
    return q("SELECT state || ' ' || coalesce(last_error, '') FROM coding_fdw.webhook_event "
             "WHERE delivery = '%s'" % delivery)


def leaf_issues(schema):
    """Issues whose changes show in no other issue (no parent, no children,
    not an epic): the simulated server, like Coding, sends no webhook for
    the copies of an issue inside other issues."""
    return [int(x) for x in q(
        "SELECT string_agg(code::text, ',' ORDER BY code) FROM %s.issues i WHERE parent_code IS NULL "
        "AND type <> 'EPIC' AND NOT EXISTS (SELECT 1 FROM %s.issues c WHERE c.parent_code = i.code)"
        % (schema, schema)).split(",")]


def backend_pid(kind):
    out = q_retry("SELECT pid FROM pg_stat_activity WHERE backend_type = 'coding_fdw %s'" % kind)
    return int(out) if out else None


def main():
    global ISSUE_COLS
    res = Results()
    sim = Sim("--team", "acme", "--project", "backend:80", "--project", "mobile:30",
              "--token", "secret-token", "--seed", "11")
    sim_url = sim.url
    suite_log_start = len(server_log())
    try:
        q("DROP EXTENSION IF EXISTS coding_fdw CASCADE")
        q("DROP SCHEMA IF EXISTS mirror, mirror2, signed CASCADE")
        q("CREATE EXTENSION coding_fdw")
        q("""CREATE SERVER coding FOREIGN DATA WRAPPER coding_fdw
               OPTIONS (team 'acme', project 'backend', api_url '%s', rate_limit '100000');
             CREATE USER MAPPING FOR CURRENT_USER SERVER coding OPTIONS (token 'secret-token');
             CREATE SERVER signed FOREIGN DATA WRAPPER coding_fdw
               OPTIONS (team 'acme', project 'mobile', api_url '%s', rate_limit '100000');
             CREATE USER MAPPING FOR CURRENT_USER SERVER signed OPTIONS (token 'secret-token');
             CREATE SERVER hybrid FOREIGN DATA WRAPPER coding_fdw
               OPTIONS (team 'acme', project 'mobile', api_url '%s', rate_limit '100000');
             CREATE USER MAPPING FOR CURRENT_USER SERVER hybrid OPTIONS (token 'secret-token');""" %
          (sim_url, sim_url, sim_url))
        q("SELECT coding_fdw.sync_start('coding', 'mirror', 'webhook')")
        q("SELECT coding_fdw.sync_start('signed', 'signed', 'webhook', webhook_secret => 's3cr3t')")
        assert wait_for_sync("coding") and wait_for_sync("signed")
        src = q("SELECT source_schema FROM coding_fdw.subscription WHERE server_name = 'coding'")
        ISSUE_COLS = q("SELECT string_agg(quote_ident(attname), ',' ORDER BY attnum) FROM pg_attribute "
                       "WHERE attrelid = 'mirror.issues'::regclass AND attnum > 0 AND NOT attisdropped "
                       "AND attname NOT IN ('synced_at', 'synced_by')").split(",")
        url = q("SELECT coding_fdw.webhook_url('coding')")
        signed_url = q("SELECT coding_fdw.webhook_url('signed')")
        port = q("SHOW coding_fdw.webhook_port")
        base = "http://127.0.0.1:%s" % port

        def listener_running():
            assert backend_pid("webhook listener"), "no listener in pg_stat_activity"
            assert backend_pid("sync worker"), "no sync worker in pg_stat_activity"
            assert backend_pid("events worker"), "no events worker in pg_stat_activity"
            key = url.rsplit("/", 1)[1]
            assert url == "%s/coding_fdw/webhook/%s" % (base, key), url
            assert len(key) == 64 and all(c in "0123456789abcdef" for c in key), key
            assert signed_url.rsplit("/", 1)[1] != key
            q("ALTER SYSTEM SET coding_fdw.webhook_public_url = 'https://pg.example.com:8808/'")
            q("SELECT pg_reload_conf()")
            wait_until(lambda: q("SELECT coding_fdw.webhook_url('coding')").startswith("https://pg.example.com:8808/coding_fdw/webhook/"),
                       10, "webhook_url to use webhook_public_url")
            q("ALTER SYSTEM RESET coding_fdw.webhook_public_url")
            q("SELECT pg_reload_conf()")
            wait_until(lambda: q("SELECT coding_fdw.webhook_url('coding')") == url, 10, "the default base again")
            # a base Coding could not use is refused where it is set
            r = psql("ALTER SYSTEM SET coding_fdw.webhook_public_url = 'pg.example.com'", db=DB, check=False)
            assert ('ERROR:  invalid value for parameter "coding_fdw.webhook_public_url": "pg.example.com"\n'
                    "DETAIL:  The URL must start with http:// or https://, as https://pg.example.com:8808.") \
                in r.stderr, r.stderr
            for bad in ("https://pg.example.com/hooks?token=1", "http://", "https://h/x#frag"):
                r = psql("ALTER SYSTEM SET coding_fdw.webhook_public_url = '%s'" % bad, db=DB, check=False)
                assert ("DETAIL:  The URL needs a host, and no query (?) or fragment (#): webhook_url() "
                        "appends /coding_fdw/webhook/KEY to it.") in r.stderr, (bad, r.stderr)
            # an IPv6 listen address is bracketed; a wildcard one gives
            # localhost, and says that Coding cannot reach it
            port = urllib.parse.urlsplit(url).port
            for address, host, notice in (("::1", "[::1]", False), ("0.0.0.0", "localhost", True)):
                q("ALTER SYSTEM SET coding_fdw.webhook_listen_address = '%s'" % address)
                q("SELECT pg_reload_conf()")
                wait_until(lambda: q("SHOW coding_fdw.webhook_listen_address") == address, 10, "the new address")
                r = psql("SELECT coding_fdw.webhook_url('coding')", db=DB, check=False)
                assert r.stdout.strip() == "http://%s:%d/coding_fdw/webhook/%s" % (host, port, key), r.stdout
                assert ("NOTICE:  the Service URL names localhost, which Coding cannot reach" in r.stderr) == notice, \
                    r.stderr
            q("ALTER SYSTEM RESET coding_fdw.webhook_listen_address")
            q("SELECT pg_reload_conf()")
            wait_until(lambda: q("SELECT coding_fdw.webhook_url('coding')") == url, 10, "the default address again")

            def answers():
                try:
                    return post(url, None, method="GET")[0] == 200
                except OSError:
                    return False
            wait_until(answers, 20, "the listener on its default address again")
        res.check("listener runs; webhook_url is {public_url}/coding_fdw/webhook/{random key}", listener_running)

        def idle_workers_sleep():
            # nothing due for an hour (webhook mode) and no event pending:
            # both workers sleep on their latches (the sync worker used to
            # look for due subscriptions a thousand times a second)
            pids = {kind: backend_pid(kind) for kind in ("sync worker", "events worker")}

            def cpu_ticks(pid):
                with open("/proc/%s/stat" % pid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                return int(fields[11]) + int(fields[12])      # utime + stime
            start, t0 = {k: cpu_ticks(p) for k, p in pids.items()}, time.monotonic()
            time.sleep(3)        # a measuring window, not synchronisation
            for kind, pid in pids.items():
                used = (cpu_ticks(pid) - start[kind]) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0)
                assert used < 0.1, "the idle %s used %.0f%% of a CPU" % (kind, used * 100)
        res.check("idle sync and events workers sleep (under 10% of a CPU each)", idle_workers_sleep)

        def http_answers():
            st, body, _ = post(url, None, method="GET")
            assert st == 200, (st, body)
            st, body, _ = post(base + "/coding_fdw/webhook/" + "0" * 64, iteration_event(1))
            assert st == 404 and "ok\":false" in body and url.rsplit("/", 1)[1] not in body, (st, body)
            st, body, _ = post(base + "/coding_fdw/webhook/" + "0" * 64, None, method="GET")
            assert st == 404, st
            st, _, _ = post(base + "/other/path", iteration_event(1))
            assert st == 404, st
            st, _, h = post(url, iteration_event(1), method="PUT")
            assert st == 405 and h.get("Allow") == "GET, POST", (st, h)
            st, _, _ = post(url, None, method="DELETE")
            assert st == 405, st
            st, body, _ = post(url, None, raw=b"x" * (1024 * 1024 + 1))
            assert st == 413, (st, body)
            for raw, why in ((b"{not json", "not a JSON object"), (b"[1,2]", "not a JSON object"),
                             (b"", "empty body"), (b'{"no":"event"}', "no event name"),
                             (b'{"event":"ISSUE_UPDATED","x":"\x00"}', "not valid UTF-8 JSON"),
                             (b'{"event":"ISSUE_UPDATED","x":"\xff"}', "not valid UTF-8 JSON")):
                st, body, _ = post(url, None, raw=raw)
                assert st == 400 and why in body, (raw, st, body)
            # a \u0000 (jsonb cannot hold it) is stored and applied as U+FFFD
            st, body, _ = post(url, iteration_event(900004, "a\u0000b"), headers={"X-Coding-Delivery": "nul-1"})
            assert st == 200, (st, body)
            assert wait_for_sync("coding")
            assert q("SELECT name = 'a' || chr(65533) || 'b' FROM mirror.iterations WHERE code = 900004") == "t"
            q("DELETE FROM mirror.iterations WHERE code = 900004")
            st, body, _ = post(url, None, raw=b'{"token":"123","zen":"Coding!"}', headers={"X-Coding-Event": "ping"})
            assert st == 200, (st, body)
            # a form body with the JSON in field "payload"
            form = urllib.parse.urlencode({"payload": json.dumps(iteration_event(900001, "Form"))}).encode()
            st, body, _ = post(url, None, raw=form, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                              "X-Coding-Delivery": "form-1"})
            assert st == 200, (st, body)
            assert wait_for_sync("coding")
            assert q("SELECT name FROM mirror.iterations WHERE code = 900001") == "Form"
            assert int(status_row("coding", "issues")["webhook_rejected"]) == 6
            q("DELETE FROM mirror.iterations WHERE code = 900001")
        res.check("HTTP answers: GET 200, 404 unknown key/path, 405, 413, 400 malformed, ping, form body", http_answers)

        def signatures():
            import hashlib
            import hmac
            body = json.dumps(iteration_event(900002, "Signed", project="mobile")).encode()
            good = "sha1=" + hmac.new(b"s3cr3t", body, hashlib.sha1).hexdigest()
            st, text, _ = post(signed_url, None, raw=body)
            assert st == 401 and "signature required" in text, (st, text)
            st, text, _ = post(signed_url, None, raw=body, headers={"X-Coding-Signature": "sha1=" + "0" * 40})
            assert st == 401 and "signature mismatch" in text, (st, text)
            st, text, _ = post(signed_url, None, raw=body + b" ", headers={"X-Coding-Signature": good})
            assert st == 401, (st, text)
            st, text, _ = post(signed_url, None, raw=body, headers={"X-Coding-Signature": good.upper().replace("SHA1=", "sha1="),
                                                                    "X-Coding-Delivery": "signed-1"})
            assert st == 200, (st, text)
            assert wait_for_sync("signed")
            assert q("SELECT name FROM signed.iterations WHERE code = 900002") == "Signed"
            assert int(status_row("signed", "issues")["webhook_rejected"]) == 3
            # the simulated server signs with the same secret: applied
            sim.call("POST", "/_sim/webhook", {"url": signed_url, "secret": "s3cr3t"})
            sim.call("PATCH", "/_sim/projects/mobile/iterations/1", {"Name": "signed by sim"})
            wait_until(lambda: [d for d in sim.call("GET", "/_sim/webhook/deliveries")["deliveries"]
                                if d["status"] == 200], 20, "the signed delivery")
            assert wait_for_sync("signed")
            assert q("SELECT name FROM signed.iterations WHERE code = 1") == "signed by sim"
            q("DELETE FROM signed.iterations WHERE code = 900002")
        res.check("signatures: missing 401, wrong 401, changed body 401, good (any case) 200 and applied", signatures)

        def other_roles():
            q("DROP ROLE IF EXISTS intruder; CREATE ROLE intruder LOGIN PASSWORD 'intruder-pw'")
            st, _, _ = post(url, {"event": "ITERATION_UPDATED", "iteration": {"title": "x"}},
                            headers={"X-Coding-Delivery": "private-1"})
            assert st == 200
            def as_intruder(sql):
                """sql in a session of its own as intruder (not SET ROLE: the
                functions check the session user, as SET ROLE can always be reset)."""
                env = dict(os.environ, PGUSER="intruder", PGPASSWORD="intruder-pw")
                return subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB, "-c", sql],
                                      capture_output=True, text=True, env=env, timeout=60)
            for sql in ("SELECT count(*) FROM coding_fdw.webhook_inbox", "SELECT count(*) FROM coding_fdw.webhook_dead_letter",
                        "SELECT count(*) FROM coding_fdw.sync_status"):
                r = as_intruder(sql)
                assert r.returncode == 0 and r.stdout.strip() == "0", (sql, r.stdout, r.stderr)
            for table in ("webhook_event", "subscription", "tombstone", "webhook_counts"):
                r = as_intruder("SELECT * FROM coding_fdw.%s" % table)
                assert "permission denied for table %s" % table in r.stderr, r.stderr
            r = as_intruder("SELECT coding_fdw.webhook_url('coding')")
            assert 'permission denied for the subscription of server "coding"' in r.stderr, r.stderr
            # the internal SECURITY DEFINER functions check the caller too
            srv = q("SELECT oid FROM pg_foreign_server WHERE srvname = 'coding'")
            me = q("SELECT oid FROM pg_roles WHERE rolname = 'intruder'")
            su = q("SELECT oid FROM pg_roles WHERE rolname = current_user")
            r = as_intruder("SELECT * FROM coding_fdw._get(%s)" % srv)
            assert "permission denied for the subscription of server %s" % srv in r.stderr, r.stderr
            q("CREATE SCHEMA victim; CREATE TABLE victim.precious (x int)")
            for owner in (me, su):
                r = as_intruder("SELECT coding_fdw._register(424242, 'evil', 'whatever', 'victim', 'polling', "
                                "'1 hour', NULL, '1 hour', %s)" % owner)
                assert "permission denied for foreign server evil" in r.stderr, r.stderr
            r = as_intruder("SELECT coding_fdw._register(%s, 'coding', 'whatever', 'victim', 'polling', "
                            "'1 hour', NULL, '1 hour', %s)" % (srv, su))
            assert "permission denied for foreign server coding" in r.stderr, r.stderr
            before = q("SELECT applied || ' ' || state FROM coding_fdw.subscription WHERE server_oid = %s" % srv)
            for sql in ("SELECT coding_fdw._finish(%s, 1000000, true, true, 'infinity')" % srv,
                        "SELECT coding_fdw._failed(%s, 'intruder was here', 'HV00N')" % srv):
                r = as_intruder(sql)
                assert r.returncode == 0, r.stderr
            assert q("SELECT applied || ' ' || state FROM coding_fdw.subscription WHERE server_oid = %s" % srv) \
                == before
            r = as_intruder("SELECT coding_fdw.sync_stop('coding')")
            assert 'permission denied for the subscription of server "coding"' in r.stderr, r.stderr
            assert q("SELECT count(*) FROM victim.precious") == "0"
            q("DROP SCHEMA victim CASCADE")
            # a NULL argument is named before it reaches the private table
            # (whose failing-row DETAIL would show the webhook secret)
            secret = q("SELECT webhook_secret FROM coding_fdw.subscription WHERE server_name = 'signed'")
            for sql, msg in (("SELECT coding_fdw.sync_now('signed', NULL)", 'argument "full" must not be NULL'),
                             ("SELECT coding_fdw.wait_for_sync(NULL)", "the server name must not be NULL"),
                             ("SELECT coding_fdw.wait_for_sync('signed', NULL)", 'argument "timeout" must not be NULL'),
                             ("SELECT coding_fdw.sync_start('signed', 'x', mode => NULL)", 'argument "mode" must not be NULL')):
                r = psql(sql, db=DB, check=False)
                assert "ERROR:  %s" % msg in r.stderr and secret not in r.stderr, (sql, r.stderr)
            r = as_intruder("SELECT * FROM coding_fdw._tombstones((SELECT oid FROM pg_foreign_server WHERE srvname = 'coding'), 'issues')")
            assert "permission denied for the subscription" in r.stderr, r.stderr
            wait_until(lambda: q("SELECT count(*) FROM coding_fdw.webhook_dead_letter WHERE delivery = 'private-1'") == "1"
                       or q("SELECT count(*) FROM coding_fdw.webhook_inbox WHERE delivery = 'private-1'") == "1",
                       20, "the event stored")
            q("ALTER SYSTEM SET coding_fdw.webhook_max_attempts = 1")
            q("SELECT pg_reload_conf()")
            wait_until(lambda: q("SELECT count(*) FROM coding_fdw.webhook_dead_letter WHERE delivery = 'private-1'") == "1",
                       30, "the dead letter")
            q("ALTER SYSTEM RESET coding_fdw.webhook_max_attempts")
            q("SELECT pg_reload_conf()")
            for fn in ("replay", "discard"):
                r = as_intruder("SELECT coding_fdw.%s('private-1')" % fn)
                assert 'no dead letter with delivery "private-1"' in r.stderr, r.stderr
            assert q("SELECT count(*) FROM coding_fdw.webhook_dead_letter WHERE delivery = 'private-1'") == "1"
            # the payload is data: SQL-looking content is stored as is
            evil = "x'); DROP TABLE mirror.issues; --"
            st, _, _ = post(url, iteration_event(900003, evil), headers={"X-Coding-Delivery": "evil-1"})
            assert st == 200 and wait_for_sync("coding")
            assert q("SELECT name FROM mirror.iterations WHERE code = 900003") == evil
            q("DELETE FROM mirror.iterations WHERE code = 900003")
            q("DROP ROLE intruder")
        res.check("other roles see no inbox, dead letter, status, key or tombstone; payloads stay data", other_roles)

        def bad_config():
            import socket
            pid = backend_pid("webhook listener")
            busy = socket.socket()
            # SO_REUSEPORT on our side: were the listener to set it too, the
            # kernel would let both bind and split the connections
            busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            busy_port = busy.getsockname()[1]
            log_start = len(server_log())
            address = q("SHOW coding_fdw.webhook_listen_address")

            def logged(pattern, what):
                wait_until(lambda: re.search(pattern, server_log()[log_start:], re.M), 20, what)
            try:
                q("ALTER SYSTEM SET coding_fdw.webhook_port = %d" % busy_port)
                q("SELECT pg_reload_conf()")
                # the reason, from libmicrohttpd, and what to do, in the log
                logged(r"LOG:  coding_fdw webhook listener: could not listen on %s:%d: .+\n"
                       r".*HINT:  Free the port or change coding_fdw.webhook_port, then reload; "
                       r"retrying every \d+ s\.$" % (re.escape(address), busy_port),
                       "the log line saying the port is in use")

                def old_port_closed():
                    try:
                        post(url, None, method="GET")
                        return False
                    except urllib.error.URLError:
                        return True
                    except (OSError, http.client.HTTPException):
                        return False    # accepted, then closed as the daemon stopped
                wait_until(old_port_closed, 10, "the listener to leave the old port")
                q("SELECT pg_sleep(0)")
                for _ in range(10):
                    try:
                        c = http.client.HTTPConnection("127.0.0.1", busy_port, timeout=0.3)
                        c.request("GET", urllib.parse.urlsplit(url).path)
                        assert c.getresponse().status != 200, "the listener shares a port in use"
                    except (OSError, http.client.HTTPException):
                        pass
                q("ALTER SYSTEM SET coding_fdw.webhook_listen_address = 'no.such.host.invalid'")
                q("SELECT pg_reload_conf()")
                logged(r"LOG:  coding_fdw webhook listener: invalid coding_fdw.webhook_listen_address "
                       r"\"no\.such\.host\.invalid\": .+\n"
                       r".*HINT:  Set it to an IP address or host name of this machine and reload\.$",
                       "the log line saying the address is invalid")
                assert backend_pid("webhook listener") == pid, "the listener restarted"
            finally:
                busy.close()
                q("ALTER SYSTEM RESET coding_fdw.webhook_listen_address")
                q("ALTER SYSTEM RESET coding_fdw.webhook_port")
                q("SELECT pg_reload_conf()")

            def serving():
                try:
                    return post(url, None, method="GET")[0] == 200
                except (OSError, http.client.HTTPException):
                    return False
            wait_until(serving, 20, "the listener back on its port")
            assert backend_pid("webhook listener") == pid, "the listener restarted"
            port = int(urllib.parse.urlsplit(url).port)
            logged(r"LOG:  coding_fdw webhook listener listening on %s:%d$" % (re.escape(address), port),
                   "the log line saying where it listens again")
            # an empty address turns the listener off; webhook_url says so
            log_start = len(server_log())
            try:
                q("ALTER SYSTEM SET coding_fdw.webhook_listen_address = ''")
                q("SELECT pg_reload_conf()")
                logged(r"LOG:  coding_fdw webhook listener stopped listening on %s:%d$" % (re.escape(address), port),
                       "the log line saying the listener stopped")
                wait_until(lambda: not serving(), 10, "the port closed")
                r = psql("SELECT coding_fdw.webhook_url('coding')", db=DB, check=False)
                assert r.returncode == 0, r.stderr
                assert r.stdout.strip() == "http://localhost:%d%s" % (port, urllib.parse.urlsplit(url).path), \
                    (r.stdout, url)
                assert ("WARNING:  the webhook listener is disabled\n"
                        "HINT:  Set coding_fdw.webhook_listen_address in postgresql.conf and reload.") in r.stderr, r.stderr
                assert backend_pid("webhook listener") == pid, "the listener restarted"
            finally:
                q("ALTER SYSTEM RESET coding_fdw.webhook_listen_address")
                q("SELECT pg_reload_conf()")
            wait_until(serving, 20, "the listener back after being turned off")
        res.check("port in use, a bad address, turned off: the log says why, the listener keeps running, "
                  "serves once fixed", bad_config)

        def connection_limit():
            # More clients than the connection limit, then all gone: the
            # listener must accept again.  libmicrohttpd takes its listening
            # socket out of its epoll set at the limit and only puts it back
            # at the start of a later run; the run that closed the last
            # connections left nothing to wake the loop, and the listener
            # never answered again.  The listener's open-files limit is set
            # to 300 so the limit (172) is reached with few sockets.
            import resource
            import socket
            import pwd
            pid = backend_pid("webhook listener")

            def prlimit(*args, check=True):
                """prlimit on the listener, as the server's OS user when we are
                root (root without CAP_SYS_RESOURCE may not, the owner may)."""
                cmd = ["prlimit", "--pid", str(pid)] + list(args)
                owner = os.stat("/proc/%d" % pid).st_uid
                if os.getuid() == 0 and owner != 0:
                    cmd = ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--"] + cmd
                return subprocess.run(cmd, capture_output=True, text=True, check=check)
            old_limit = prlimit("--nofile", "--raw", "--noheadings", "--output=SOFT,HARD").stdout.split()
            port = int(urllib.parse.urlsplit(url).port)
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            low_port = probe.getsockname()[1]
            probe.close()
            log_start = len(server_log())
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
            socks = []
            try:
                prlimit("--nofile=300:300")
                q("ALTER SYSTEM SET coding_fdw.webhook_port = %d" % low_port)
                q("SELECT pg_reload_conf()")
                wait_until(lambda: re.search(
                    r"LOG:  coding_fdw webhook listener: at most 172 connections at once \(open files limit 300\)\n"
                    r".*HINT:  Raise the server's open files limit \(ulimit -n\) for more\.\n"
                    r".*LOG:  coding_fdw webhook listener listening on [^ ]+:%d$" % low_port,
                    server_log()[log_start:], re.M), 20, "the listener on the new port with 172 connections at most")
                for _ in range(400):
                    c = socket.create_connection(("127.0.0.1", low_port), timeout=5)
                    c.sendall(b"POST /coding_fdw/webhook/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{")
                    socks.append(c)
                for c in socks:
                    c.close()
                socks = []
                # the clients that closed while waiting in the backlog are
                # held until the 30 s connection timeout; then it answers
                t0 = time.monotonic()

                def answers():
                    try:
                        c = http.client.HTTPConnection("127.0.0.1", low_port, timeout=2)
                        c.request("GET", "/coding_fdw/webhook/x")
                        return c.getresponse().status == 404
                    except (OSError, http.client.HTTPException):
                        return False
                wait_until(answers, 60, "an answer after the clients left", interval=0.5)
                print("    answered %.1f s after 400 clients left" % (time.monotonic() - t0))
                assert backend_pid("webhook listener") == pid, "the listener restarted"
            finally:
                for c in socks:
                    c.close()
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
                prlimit("--nofile=%s:%s" % tuple(old_limit), check=False)
                q("ALTER SYSTEM RESET coding_fdw.webhook_port")
                q("SELECT pg_reload_conf()")
            wait_until(lambda: re.search(r"listening on [^ ]+:%d$" % port, server_log()[log_start:], re.M),
                       20, "the listener back on its port")
        res.check("more clients than the connection limit, all gone: the listener accepts again",
                  connection_limit)

        def reload_under_load():
            # Moving the port stops the daemon; libmicrohttpd aborts the
            # process if a request is suspended (waiting for the database)
            # at that moment.  Four senders keep requests in flight while
            # the port moves away and back five times.
            import socket
            import threading
            pid = backend_pid("webhook listener")
            stop = threading.Event()
            seen = {}      # statuses since the last reload
            total = {}
            lock = threading.Lock()

            def sender():
                while not stop.is_set():
                    try:
                        status = str(post(url, None, method="GET")[0])
                    except (OSError, http.client.HTTPException):
                        status = "no connection"
                    with lock:
                        seen[status] = seen.get(status, 0) + 1
                        total[status] = total.get(status, 0) + 1
            threads = [threading.Thread(target=sender) for _ in range(4)]
            for t in threads:
                t.start()
            try:
                for _ in range(5):
                    free = socket.socket()
                    free.bind(("127.0.0.1", 0))
                    other_port = free.getsockname()[1]
                    free.close()
                    q("ALTER SYSTEM SET coding_fdw.webhook_port = %d" % other_port)
                    with lock:
                        seen.clear()
                    q("SELECT pg_reload_conf()")
                    wait_until(lambda: seen.get("no connection", 0) > 0, 20,
                               "the listener to leave its port")
                    q("ALTER SYSTEM RESET coding_fdw.webhook_port")
                    with lock:
                        seen.clear()
                    q("SELECT pg_reload_conf()")
                    wait_until(lambda: seen.get("200", 0) > 0, 20,
                               "the listener back on its port")
            finally:
                stop.set()
                for t in threads:
                    t.join(60)
                q("ALTER SYSTEM RESET coding_fdw.webhook_port")
                q("SELECT pg_reload_conf()")
            assert backend_pid("webhook listener") == pid, "the listener restarted"
            print("     answers while the port moved: %s" % total)
            assert set(total) <= {"200", "503", "no connection"}, total
        res.check("the port moved five times while four senders keep requests in flight: "
                  "the listener never restarts", reload_under_load)

        def deliveries_done(n):
            def done():
                d = sim.call("GET", "/_sim/webhook/deliveries")["deliveries"]
                return len(d) >= n and d
            return wait_until(done, 30, "%d deliveries" % n)

        def each_event_type():
            sim.call("DELETE", "/_sim/webhook/deliveries")
            sim.call("POST", "/_sim/webhook", {"url": url})
            before = {t: status_row("coding", t) for t in ("issues", "iterations", "project_members")}
            leaves = leaf_issues("mirror")
            P = "/_sim/projects/backend"
            new = sim.call("POST", P + "/issues", {"Name": "made in Coding", "Type": "DEFECT"})
            code = new["Code"]
            sim.call("PATCH", P + "/issues/%d" % code, {"Name": "renamed"})
            for ev, change in (("ISSUE_STATUS_UPDATED", {"Priority": "3"}),
                               ("ISSUE_ASSIGNEE_CHANGED", {"Description": "assignee"}),
                               ("ISSUE_ITERATION_CHANGED", {"IterationCode": 1}),
                               ("ISSUE_RELATIONSHIP_CHANGED", {"Description": "rel"}),
                               ("ISSUE_COMMENT_CREATED", {"Description": "comment"}),
                               ("ISSUE_HOUR_RECORD_UPDATED", {"WorkingHours": 2.5}),
                               ("ITERATION_PLANNED", {"IterationCode": 2})):
                sim.call("PATCH", P + "/issues/%d?event=%s" % (code, ev), change)
            sim.call("DELETE", P + "/issues/%d" % leaves[0])
            # iteration events of one batch are coalesced per iteration (net
            # change); one at a time, each is counted
            it = sim.call("POST", P + "/iterations", {"Name": "hook sprint"})
            deliveries_done(11)
            assert wait_for_sync("coding")
            sim.call("PATCH", P + "/iterations/%d" % it["Code"], {"Goal": "ship it"})
            deliveries_done(12)
            assert wait_for_sync("coding")
            m = sim.call("POST", P + "/members", {})
            sim.call("PATCH", P + "/members/%d" % m["Id"], {"Name": "Renamed member"})
            sim.call("DELETE", P + "/members/%d" % m["Id"])
            deliveries_done(15)
            assert wait_for_sync("coding")
            # last: ITERATION_DELETED brings a poll forward (for the issues
            # Coding takes out of the iteration), which would otherwise
            # apply the member changes before their events
            sim.call("DELETE", P + "/iterations/%d" % it["Code"])
            deliveries_done(16)
            st, _, _ = post(url, {"event": "GIT_PUSHED", "ref": "refs/heads/main"},
                            headers={"X-Coding-Delivery": "git-1"})
            assert st == 200
            assert wait_for_sync("coding")
            assert diff("mirror", "issues", src, ISSUE_COLS) == 0, "issues differ"
            assert diff("mirror", "iterations", src, ITERATION_COLS) == 0, "iterations differ"
            assert diff("mirror", "project_members", src, MEMBER_COLS) == 0, "members differ"
            assert q("SELECT synced_by FROM mirror.issues WHERE code = %d" % code) == "webhook"
            after = {t: status_row("coding", t) for t in before}
            d = lambda t, k: int(after[t][k]) - int(before[t][k])
            # the issue's 9 events are coalesced or applied one by one,
            # depending on batching: one insert, updates, one delete
            assert d("issues", "webhook_inserted") == 1 and d("issues", "webhook_deleted") == 1, after["issues"]
            assert (d("iterations", "webhook_inserted"), d("iterations", "webhook_updated"),
                    d("iterations", "webhook_deleted")) == (1, 1, 1), after["iterations"]
            assert (d("project_members", "webhook_inserted"), d("project_members", "webhook_updated"),
                    d("project_members", "webhook_deleted")) == (1, 1, 1), after["project_members"]
            assert d("issues", "webhook_received") == 17
            assert q("SELECT state FROM coding_fdw.webhook_event WHERE delivery = 'git-1'") == "ignored"
            assert q("SELECT count(*) FROM coding_fdw.webhook_inbox") == "0"
        res.check("each event type applied end to end; tables equal Coding's; counts exact; GIT_PUSHED ignored",
                  each_event_type)

        def project_option_changed():
            # the server's project option changed after sync_start: the
            # subscription still reads (and accepts the events of) the
            # project its tables were imported from, as its polls do
            leaf = leaf_issues("mirror")[4]
            q("ALTER SERVER coding OPTIONS (SET project 'elsewhere')")
            try:
                st, _, _ = post(url, {"event": "ISSUE_UPDATED", "issue": {"code": leaf},
                                      "project": {"id": 1, "name": "backend"}, "team": {"id": 1, "domain": "acme"}},
                                headers={"X-Coding-Delivery": "proj-1"})
                assert st == 200
                got = event_outcome("proj-1")
                assert got == "applied", got
            finally:
                q("ALTER SERVER coding OPTIONS (SET project 'backend')")
        res.check("after ALTER SERVER ... SET project, events of the synced project still apply",
                  project_option_changed)

        def unset_assignee():
            # Coding leaves an unset assignee out of the iteration it sends:
            # the row's assignee goes, instead of staying until a poll
            sim.call("DELETE", "/_sim/webhook/deliveries")
            sim.call("POST", "/_sim/webhook", {"url": url})
            code = q("SELECT min(code) FROM mirror.iterations WHERE assignee_id IS NOT NULL")
            assert code, "no iteration with an assignee"
            # (not its name: the issues' raw holds that, and only a full
            # sync follows it there)
            sim.call("PATCH", "/_sim/projects/backend/iterations/%s" % code, {"Assignee": 0, "Goal": "unassigned"})
            deliveries_done(1)
            assert wait_for_sync("coding")
            got = q("SELECT goal || ' ' || coalesce(assignee_id::text, 'none') || ' ' || synced_by || ' ' || "
                    "(raw->'Assignee')::text FROM mirror.iterations WHERE code = %s" % code)
            assert got == "unassigned none webhook 0", got
            assert diff("mirror", "iterations", src, [c for c in ITERATION_COLS if c != "raw"]) == 0
        res.check("an iteration event without an assignee unsets the row's assignee", unset_assignee)

        def iteration_renamed():
            # the issues' raw holds their iteration's name: a rename reaches
            # it with one list of that iteration's issues
            sim.call("DELETE", "/_sim/webhook/deliveries")
            sim.call("POST", "/_sim/webhook", {"url": url})
            code = q("SELECT min(iteration_code) FROM mirror.issues")
            sim.call("DELETE", "/_sim/log")
            sim.call("PATCH", "/_sim/projects/backend/iterations/%s" % code, {"Name": "renamed by hook"})
            deliveries_done(1)
            assert wait_for_sync("coding")
            assert q("SELECT count(*) FILTER (WHERE raw->'Iteration'->>'Name' = 'renamed by hook') = count(*) "
                     "FROM mirror.issues WHERE iteration_code = %s" % code) == "t"
            assert diff("mirror", "issues", src, ISSUE_COLS) == 0, "issues differ"
            # (other requests in the log are this subscription's polls)
            lists = [e["body"].get("Conditions") for e in
                     sim.call("GET", "/_sim/log?action=DescribeIssueListWithPage")["requests"]]
            assert [{"Key": "ITERATION", "Value": code}] in lists, lists
        res.check("an iteration renamed by webhook: its issues' raw follows (one list of its issues)",
                  iteration_renamed)

        def copies_follow():
            # a sub-task renamed, an epic renamed, a sub-task deleted: the
            # copies in the parent's sub_tasks, the sub-tasks' parent and the
            # epic's issues follow, though those rows' UpdatedAt did not move
            sim.call("DELETE", "/_sim/webhook/deliveries")
            sim.call("POST", "/_sim/webhook", {"url": url})
            P = "/_sim/projects/backend"
            child, parent = q("SELECT code || ' ' || parent_code FROM mirror.issues i WHERE parent_code IS NOT NULL "
                              "AND NOT EXISTS (SELECT 1 FROM mirror.issues c WHERE c.parent_code = i.code) "
                              "ORDER BY code LIMIT 1").split()
            epic = q("SELECT min((epic->>'Code')::int) FROM mirror.issues WHERE epic IS NOT NULL")
            assert epic, "no issue with an epic"
            sim.call("DELETE", "/_sim/log")
            sim.call("PATCH", P + "/issues/%s" % child, {"Name": "sub-task renamed on Coding"})
            sim.call("PATCH", P + "/issues/%s" % parent, {"Description": "the parent's own change"})
            sim.call("PATCH", P + "/issues/%s" % epic, {"Name": "epic renamed on Coding"})
            deliveries_done(3)
            assert wait_for_sync("coding")
            # interface.md 5: events are enriched with DescribeIssue; the
            # list read for the changed issues' list columns is of the
            # issues updated since the events' day, never the whole project
            lists = sim.call("GET", "/_sim/log?action=DescribeIssueListWithPage")["requests"]
            assert lists and all(any(c.get("Key") == "UPDATED_AT" for c in e["body"].get("Conditions", []))
                                 for e in lists), [e["body"] for e in lists]
            described = {e["body"]["IssueCode"] for e in
                         sim.call("GET", "/_sim/log?action=DescribeIssue")["requests"]}
            assert {int(child), int(parent), epic and int(epic)} <= described, described
            cols = [c for c in ISSUE_COLS if c != "raw"]   # raw also holds the iteration's name
            assert diff("mirror", "issues", src, cols) == 0, "issues differ"
            assert q("SELECT count(*) FROM mirror.issues WHERE sub_tasks @> '[{\"Name\": \"sub-task renamed on Coding\"}]'") != "0"
            assert q("SELECT count(*) FROM mirror.issues WHERE epic->>'Name' = 'epic renamed on Coding'") != "0"
            sim.call("DELETE", P + "/issues/%s" % child)
            deliveries_done(4)
            assert wait_for_sync("coding")
            assert diff("mirror", "issues", src, cols) == 0, "issues differ after the delete"
            assert q("SELECT count(*) FROM mirror.issues WHERE sub_tasks @> '[{\"Code\": %s}]'" % child) == "0"
        res.check("copies of other issues (sub_tasks, parent, epic) follow their changes by webhook",
                  copies_follow)

        def duplicates():
            sim.call("DELETE", "/_sim/webhook/deliveries")
            sim.call("POST", "/_sim/webhook", {"url": url, "duplicate": 1})
            before = status_row("coding", "iterations")
            sim.call("PATCH", "/_sim/projects/backend/iterations/1", {"Goal": "dup goal"})
            sim.call("PATCH", "/_sim/projects/backend/iterations/3", {"Goal": "dup goal 3"})
            d = deliveries_done(4)
            assert len({x["delivery"] for x in d}) == 2 and all(x["status"] == 200 for x in d), d
            assert wait_for_sync("coding")
            after = status_row("coding", "iterations")
            assert int(after["webhook_updated"]) - int(before["webhook_updated"]) == 2
            assert int(after["webhook_received"]) - int(before["webhook_received"]) == 4
            assert int(q("SELECT count(*) FROM coding_fdw.webhook_event WHERE delivery IN (%s)" %
                         ",".join("'%s'" % x["delivery"] for x in d))) == 2
            assert int(q("SELECT duplicates FROM coding_fdw.webhook_counts WHERE who = 'listener' "
                         "AND server_oid = (SELECT oid FROM pg_foreign_server WHERE srvname = 'coding')")) >= 2
        res.check("duplicate deliveries: stored once, applied once, counted as duplicates", duplicates)

        def out_of_order():
            P = "/_sim/projects/backend"
            sim.call("DELETE", "/_sim/webhook/deliveries")
            it = sim.call("POST", P + "/iterations", {"Name": "short-lived"})["Code"]
            deliveries_done(1)
            assert wait_for_sync("coding")
            leaf = leaf_issues("mirror")[1]
            sim.call("DELETE", "/_sim/webhook/deliveries")
            sim.call("POST", "/_sim/webhook", {"url": url, "reorder": True})
            sim.call("PATCH", P + "/iterations/%d" % it, {"Name": "about to go"})
            sim.call("DELETE", P + "/iterations/%d" % it)
            sim.call("PATCH", P + "/issues/%d" % leaf, {"Name": "about to go"})
            sim.call("DELETE", P + "/issues/%d" % leaf)
            d = deliveries_done(4)
            order = [x["event"] for x in sorted(d, key=lambda x: x["id"])]
            assert order == ["ITERATION_DELETED", "ITERATION_UPDATED", "ISSUE_DELETED", "ISSUE_UPDATED"], order
            assert wait_for_sync("coding")
            assert q("SELECT count(*) FROM mirror.iterations WHERE code = %d" % it) == "0"
            assert q("SELECT count(*) FROM mirror.issues WHERE code = %d" % leaf) == "0"
            assert diff("mirror", "issues", src, ISSUE_COLS) == 0
            assert diff("mirror", "iterations", src, ITERATION_COLS) == 0
            # an older ITERATION_UPDATED than the row is ignored too
            newer = int(q("SELECT (extract(epoch FROM updated_at) * 1000)::bigint FROM mirror.iterations WHERE code = 1"))
            st, _, _ = post(url, iteration_event(1, "stale title", "ITERATION_UPDATED", newer - 1000),
                            headers={"X-Coding-Delivery": "stale-1"})
            assert st == 200 and wait_for_sync("coding")
            assert q("SELECT name FROM mirror.iterations WHERE code = 1") != "stale title"
            # members: payloads carry no time, so a pair delivered swapped is
            # decided by a poll; an update never brings back a member deleted
            # before it arrived, and an add delivered after its removal does
            # not stay
            sim.call("POST", "/_sim/webhook", {"url": url})
            sim.call("DELETE", "/_sim/webhook/deliveries")
            gone = sim.call("POST", P + "/members", {})["Id"]
            deliveries_done(1)
            assert wait_for_sync("coding")
            assert q("SELECT count(*) FROM mirror.project_members WHERE id = %d" % gone) == "1"
            sim.call("DELETE", "/_sim/webhook/deliveries")
            sim.call("POST", "/_sim/webhook", {"url": url, "reorder": True})
            sim.call("PATCH", P + "/members/%d" % gone, {"Name": "about to go"})
            sim.call("DELETE", P + "/members/%d" % gone)
            brief = sim.call("POST", P + "/members", {})["Id"]
            sim.call("DELETE", P + "/members/%d" % brief)
            d = deliveries_done(4)
            order = [x["event"] for x in sorted(d, key=lambda x: x["id"])]
            assert order == ["MEMBER_DELETED", "MEMBER_ROLE_UPDATED", "MEMBER_DELETED", "MEMBER_CREATED"], order
            sent = ",".join("'%s'" % x["delivery"] for x in d)
            # applied, not failed (a dead letter would bring a poll too)
            wait_until(lambda: q("SELECT count(*) FROM coding_fdw.webhook_event WHERE delivery IN (%s) "
                                 "AND state = 'applied'" % sent) == "4"
                       and q("SELECT count(*) FROM mirror.project_members WHERE id IN (%d, %d)"
                             % (gone, brief)) == "0",
                       30, "the reordered member events applied and checked by a poll")
            assert diff("mirror", "project_members", src, MEMBER_COLS) == 0
            sim.call("POST", "/_sim/webhook", {"url": url})
        res.check("reordered deliveries: a delete before its older update stays deleted; older events ignored; "
                  "swapped member events decided by a poll",
                  out_of_order)

        def tombstones():
            # a delete event for an issue Coding still shows unchanged (as a
            # stale list would): polls must not bring it back, a newer
            # change or an explicit full sync must.  The newest leaf, so the
            # poll's delta (a day of overlap) does read it.
            leaf = int(q("SELECT code FROM mirror.issues WHERE code IN (%s) ORDER BY updated_at DESC LIMIT 1"
                         % ",".join(map(str, leaf_issues("mirror")))))
            stamp = int(q("SELECT (extract(epoch FROM updated_at) * 1000)::bigint FROM mirror.issues WHERE code = %d" % leaf))
            st, _, _ = post(url, {"event": "ISSUE_DELETED", "issue": {"code": leaf, "updated_at": stamp}},
                            headers={"X-Coding-Delivery": "tomb-1"})
            assert st == 200, st
            assert wait_for_sync("coding"), q("SELECT row_to_json(e) FROM coding_fdw.webhook_event e WHERE delivery = 'tomb-1'")
            assert q("SELECT count(*) FROM mirror.issues WHERE code = %d" % leaf) == "0", "not deleted"
            before = int(q("SELECT count(*) FROM coding_fdw._tombstones((SELECT oid FROM pg_foreign_server "
                           "WHERE srvname = 'coding'), 'issues')"))
            assert before >= 1, before
            q("SELECT coding_fdw.sync_now('coding')")
            assert wait_for_sync("coding")
            assert q("SELECT count(*) FROM mirror.issues WHERE code = %d" % leaf) == "0", "a stale read resurrected it"
            try:
                sim.call("DELETE", "/_sim/webhook")
                sim.call("PATCH", "/_sim/projects/backend/issues/%d" % leaf, {"Name": "changed after the delete"})
                q("SELECT coding_fdw.sync_now('coding')")
                assert wait_for_sync("coding")
                got = q("SELECT name || '/' || synced_by FROM mirror.issues WHERE code = %d" % leaf)
                assert got == "changed after the delete/poll", got
            finally:
                sim.call("POST", "/_sim/webhook", {"url": url})
            leaf2 = leaf_issues("mirror")[4]
            stamp = int(q("SELECT (extract(epoch FROM updated_at) * 1000)::bigint FROM mirror.issues WHERE code = %d" % leaf2))
            post(url, {"event": "ISSUE_DELETED", "issue": {"code": leaf2, "updated_at": stamp}},
                 headers={"X-Coding-Delivery": "tomb-2"})
            assert wait_for_sync("coding")
            assert q("SELECT count(*) FROM mirror.issues WHERE code = %d" % leaf2) == "0", "not deleted"
            q("SELECT coding_fdw.sync_now('coding', true)")
            assert wait_for_sync("coding")
            got = q("SELECT synced_by FROM mirror.issues WHERE code = %d" % leaf2)
            assert got == "full", got
            assert diff("mirror", "issues", src, ISSUE_COLS) == 0, "issues differ"
        res.check("tombstones: a poll does not resurrect a deleted row; a newer change or a full sync does",
                  tombstones)

        def dead_letters():
            q("ALTER SYSTEM SET coding_fdw.webhook_max_attempts = 2")
            q("SELECT pg_reload_conf()")
            bad = {"event": "ITERATION_UPDATED", "iteration": {"title": "no code"}}
            victim = leaf_issues("mirror")[3]
            member = int(q("SELECT min(id) FROM mirror.project_members"))
            st, _, _ = post(url, bad, headers={"X-Coding-Delivery": "bad-1"})
            assert st == 200
            # every kind of malformed payload, each with its own error
            malformed = {
                "bad-2": ({"event": "ITERATION_CREATED", "iteration": "Burst"},
                          'the payload has no "iteration" object'),
                "bad-3": ({"event": "MEMBER_CREATED", "team": {"id": 1}},
                          'the payload has no "member" object'),
                "bad-4": ({"event": "MEMBER_ROLE_UPDATED", "member": {"id": "x1", "name": "n"}},
                          'the payload\'s member has no valid "id"'),
                "bad-5": ({"event": "ISSUE_UPDATED", "issue": {"code": 0, "name": "n"}},
                          "the payload names no issue code"),
                "bad-6": ({"event": "ISSUE_CREATED", "defect": {"name": "no code"}},
                          "the payload names no issue code"),
                # the Service URL pasted into another project's hook: its
                # events must not touch this project's rows
                "bad-7": ({"event": "ISSUE_DELETED", "issue": {"code": victim, "updated_at": 4102444800000},
                           "project": {"id": 2, "name": "mobile"}, "team": {"id": 1, "domain": "acme"}},
                          'the event is for project "mobile" of team "acme", this subscription follows project '
                          '"backend" of team "acme": the Service URL is pasted into another project\'s Service Hook'),
                "bad-8": ({"event": "MEMBER_DELETED", "member": {"id": member},
                           "project": {"id": 1, "name": "Backend"}, "team": {"id": 9, "domain": "other"}},
                          'the event is for project "Backend" of team "other", this subscription follows project '
                          '"backend" of team "acme": the Service URL is pasted into another project\'s Service Hook'),
            }
            for delivery, (body, _) in malformed.items():
                st, _, _ = post(url, body, headers={"X-Coding-Delivery": delivery})
                assert st == 200, (delivery, st)
            wait_until(lambda: q("SELECT last_error FROM coding_fdw.webhook_inbox WHERE delivery = 'bad-1'"),
                       20, "the first failed attempt in the inbox")
            wait_until(lambda: q("SELECT error FROM coding_fdw.webhook_dead_letter WHERE delivery = 'bad-1'")
                       == "the payload's iteration has no valid \"code\"", 30, "the dead letter")
            assert q("SELECT attempts FROM coding_fdw.webhook_dead_letter WHERE delivery = 'bad-1'") == "2"
            wait_until(lambda: q("SELECT count(*) FROM coding_fdw.webhook_dead_letter "
                                 "WHERE delivery LIKE 'bad-_' AND delivery <> 'bad-1'") == str(len(malformed)),
                       30, "every malformed payload dead-lettered")
            for delivery, (_, error) in malformed.items():
                got = q("SELECT error FROM coding_fdw.webhook_dead_letter WHERE delivery = '%s'" % delivery)
                assert got == error, (delivery, got, error)
            assert q("SELECT attempts FROM coding_fdw.webhook_dead_letter WHERE delivery = 'bad-7'") == "0"
            assert q("SELECT count(*) FROM mirror.issues WHERE code = %d" % victim) == "1"
            assert q("SELECT count(*) FROM coding_fdw.tombstone WHERE table_name = 'issues' AND key = %d" % victim) == "0"
            assert q("SELECT count(*) FROM mirror.project_members WHERE id = %d" % member) == "1"
            # a delete that fails for good: the poll its dead letter brings
            # forward also reconciles the keys (a poll alone cannot see
            # deletes), so an issue Coding deleted without an event goes
            gone = leaf_issues("mirror")[5]
            sim.call("DELETE", "/_sim/webhook")
            try:
                sim.call("DELETE", "/_sim/projects/backend/issues/%d" % gone)
            finally:
                sim.call("POST", "/_sim/webhook", {"url": url})
            st, _, _ = post(url, {"event": "ISSUE_DELETED", "issue": {"code": 0}}, headers={"X-Coding-Delivery": "bad-9"})
            assert st == 200
            wait_until(lambda: q("SELECT count(*) FROM mirror.issues WHERE code = %d" % gone) == "0", 60,
                       "the reconciliation a dead ISSUE_DELETED brings forward")
            assert q("SELECT error FROM coding_fdw.webhook_dead_letter WHERE delivery = 'bad-9'") \
                == "the payload names no issue code"
            # an updated_at beyond timestamptz's range only loses its stamp:
            # computed for the whole batch, it used to fail every event in it
            leaf = leaf_issues("mirror")[0]
            st, _, _ = post(url, {"event": "ISSUE_UPDATED", "issue": {"code": leaf, "updated_at": 1e20}},
                            headers={"X-Coding-Delivery": "huge-stamp"})
            assert st == 200
            got = event_outcome("huge-stamp")
            assert got == "applied", got
            # the same delivery id dead in a second subscription: replay
            # must be told which one
            import hashlib
            import hmac
            body = json.dumps(bad).encode()
            sig = "sha1=" + hmac.new(b"s3cr3t", body, hashlib.sha1).hexdigest()
            st, _, _ = post(signed_url, None, raw=body, headers={"X-Coding-Signature": sig,
                                                                 "X-Coding-Delivery": "bad-1"})
            assert st == 200
            wait_until(lambda: q("SELECT count(*) FROM coding_fdw.webhook_dead_letter WHERE delivery = 'bad-1'")
                       == "2", 30, "the second subscription's dead letter")
            r = subprocess.run(["psql", "-X", "-v", "VERBOSITY=verbose", "-d", DB, "-c",
                                "SELECT coding_fdw.replay('bad-1')"], capture_output=True, text=True, timeout=60)
            assert ('ERROR:  42P08: delivery "bad-1" is a dead letter of more than one subscription\n'
                    "HINT:  Name the server: coding_fdw.replay(delivery, server).") in r.stderr, r.stderr
            r = psql("SELECT coding_fdw.discard('bad-1')", db=DB, check=False)
            assert "HINT:  Name the server: coding_fdw.discard(delivery, server)." in r.stderr, r.stderr
            q("SELECT coding_fdw.replay('bad-1', 'coding')")
            assert q("SELECT string_agg(server, ',') FROM coding_fdw.webhook_dead_letter WHERE delivery = 'bad-1'") \
                == "signed"
            # the owner forgets a dead letter she has dealt with: it leaves
            # the dead letters and sync_status.last_error
            shown = "SELECT string_agg(DISTINCT coalesce(last_error, ''), ',') FROM coding_fdw.sync_status " \
                    "WHERE server = 'signed'"
            err = q("SELECT error FROM coding_fdw.webhook_dead_letter WHERE delivery = 'bad-1' AND server = 'signed'")
            assert err and q(shown) == err, (q(shown), err)
            q("SELECT coding_fdw.discard('bad-1', 'signed')")
            assert q("SELECT count(*) FROM coding_fdw.webhook_event WHERE delivery = 'bad-1' "
                     "AND server_oid = (SELECT oid FROM pg_foreign_server WHERE srvname = 'signed')") == "0"
            assert q(shown) != err, q(shown)
            wait_until(lambda: q("SELECT attempts FROM coding_fdw.webhook_dead_letter WHERE delivery = 'bad-1'") == "2",
                       30, "the replayed event to fail again")
            for fn in ("replay", "discard"):
                r = psql("SELECT coding_fdw.%s('no-such-delivery')" % fn, db=DB, check=False)
                assert 'no dead letter with delivery "no-such-delivery"' in r.stderr, r.stderr
            # Coding down: an issue event waits in the inbox with the error,
            # however long the outage (with webhook_max_attempts 2 still in
            # force: an outage is not the event's fault, and it used to turn
            # acknowledged events into dead letters after ~15 s), and
            # sync_status shows the error; then it heals
            sim.fault(type="http_500", action="DescribeIssue", count=0)
            leaf = leaf_issues("mirror")[2]
            sim.call("PATCH", "/_sim/projects/backend/issues/%d" % leaf, {"Name": "while down"})
            # each wait twice the last (1 s, 2 s, 4 s), counted from when
            # the attempt ended: an attempt takes longer than a second here
            # (the call's own retries), and waits counted from its start
            # never grew, so Coding was called back to back
            wait_until(lambda: q("SELECT count(*) FROM coding_fdw.webhook_event "
                                 "WHERE state = 'pending' AND retry_delay >= interval '4 s'") == "1",
                       60, "the event to fail three times, its retry backing off")
            assert q("SELECT next_attempt - done_at BETWEEN retry_delay - interval '50 ms' AND retry_delay + interval '50 ms' "
                     "FROM coding_fdw.webhook_event WHERE state = 'pending' AND last_error IS NOT NULL") == "t"
            assert q("SELECT count(*) FROM coding_fdw.webhook_dead_letter WHERE error LIKE '%HTTP status 500%'") \
                == "0"
            assert q("SELECT attempts FROM coding_fdw.webhook_inbox WHERE last_error IS NOT NULL") == "0"
            # with the error's detail, as sync_status shows it
            err = q("SELECT string_agg(last_error, ';') FROM coding_fdw.webhook_inbox")
            assert "DescribeIssue" in err and "(HTTP status 500" in err, err
            st = status_row("coding", "issues")
            assert st["last_error"] == err and st["last_error_at"] is not None, st
            sim.call("DELETE", "/_sim/faults")
            wait_until(lambda: q("SELECT name FROM mirror.issues WHERE code = %d" % leaf) == "while down", 60,
                       "the event applied after the outage")
            q("ALTER SYSTEM RESET coding_fdw.webhook_max_attempts")
            q("SELECT pg_reload_conf()")
        res.check("failed events stay in the inbox with the error, retry, dead-letter; replay; outage heals",
                  dead_letters)

        def retry_outcome():
            # "retry" (Coding unreachable): no attempt counted, the wait
            # doubles; once the event is a day old it counts like any failure
            # (an error that only looks transient still ends as a dead letter)
            srv = q("SELECT oid FROM pg_foreign_server WHERE srvname = 'coding'")
            done = ("SELECT coding_fdw._events_done(%s, array_agg(id ORDER BY id), '{retry,retry}', '{down,down}') "
                    "FROM coding_fdw.webhook_event WHERE delivery IN ('young-1', 'old-1');\n" % srv)
            out = q("BEGIN;\n"
                    "INSERT INTO coding_fdw.webhook_event (server_oid, delivery, event, payload, received_at) VALUES "
                    "(%s, 'young-1', 'ISSUE_UPDATED', '{}', clock_timestamp()), "
                    "(%s, 'old-1', 'ISSUE_UPDATED', '{}', clock_timestamp() - interval '2 days');\n" % (srv, srv)
                    + done + done +
                    "SELECT delivery, state, attempts, coalesce(retry_delay::text, '-') "
                    "FROM coding_fdw.webhook_event WHERE delivery IN ('young-1', 'old-1') ORDER BY delivery;\n"
                    "ROLLBACK;")
            rows = [line for line in out.splitlines() if "|" in line]
            # (dead already if an earlier check left webhook_max_attempts at 2)
            old_state = "dead" if int(q("SHOW coding_fdw.webhook_max_attempts")) <= 2 else "pending"
            assert rows == ["old-1|%s|2|-" % old_state, "young-1|pending|0|00:00:02"], rows
        res.check("a transient failure is not counted, its wait doubles; a day-old event's is", retry_outcome)

        def poll_soon_keeps_backoff():
            # dead letters, ITERATION_DELETED and member events ask for a poll
            # soon, but not while the last sync failed: that retry waits on
            # its back-off (a revoked token must not cost a poll per event)
            srv = q("SELECT oid FROM pg_foreign_server WHERE srvname = 'coding'")
            out = q("BEGIN;\n"
                    "UPDATE coding_fdw.subscription SET state = 'error', next_poll = now() + interval '1 hour' "
                    "WHERE server_oid = %s;\n"
                    "SELECT coding_fdw._poll_soon(%s);\n"
                    "SELECT 'failing:' || (next_poll > now() + interval '59 minutes') FROM coding_fdw.subscription "
                    "WHERE server_oid = %s;\n"
                    "UPDATE coding_fdw.subscription SET state = 'idle' WHERE server_oid = %s;\n"
                    "SELECT coding_fdw._poll_soon(%s);\n"
                    "SELECT 'idle:' || (next_poll <= now()) FROM coding_fdw.subscription WHERE server_oid = %s;\n"
                    "ROLLBACK;" % ((srv,) * 6))
            assert [x for x in out.splitlines() if ":" in x] == ["failing:true", "idle:true"], out
        res.check("asking for a poll soon keeps a failing sync's back-off", poll_soon_keeps_backoff)

        def value_does_not_fit():
            # a value that does not fit its column fails its own event only
            # (the batch falls back to one event at a time), and an
            # ITERATION_PLANNED without an issue applies its iteration
            stamp = int(q("SELECT (extract(epoch FROM updated_at) * 1000)::bigint FROM mirror.iterations WHERE code = 1"))
            bad = {"event": "ITERATION_UPDATED", "iteration": {"code": 1, "wait_process_count": "abc",
                                                               "updated_at": stamp + 1}}
            good = {"event": "ITERATION_PLANNED", "iteration": {"code": 1, "title": "planned", "updated_at": stamp + 2}}
            for delivery, body in (("fit-1", bad), ("fit-2", good)):
                st, _, _ = post(url, body, headers={"X-Coding-Delivery": delivery})
                assert st == 200
            wait_until(lambda: q("SELECT state FROM coding_fdw.webhook_event WHERE delivery = 'fit-2'") == "applied",
                       20, "the good event applied")
            assert q("SELECT name FROM mirror.iterations WHERE code = 1") == "planned"
            err = wait_until(lambda: q("SELECT last_error FROM coding_fdw.webhook_event WHERE delivery = 'fit-1'"),
                             20, "the bad event's error")
            assert 'invalid input syntax for type integer: "abc"' in err, err
            q("DELETE FROM coding_fdw.webhook_event WHERE delivery = 'fit-1'")   # no retries to wait for
        res.check("a value that does not fit fails its own event only; ITERATION_PLANNED without an issue",
                  value_does_not_fit)

        def burst():
            bodies = [("burst-%d" % i, iteration_event(100000 + i, "B%d" % i)) for i in range(10000)]
            b = Burst(url, bodies, senders=8).start().join()
            assert len(b.acked) == 10000, (len(b.acked), b.statuses)
            assert wait_for_sync("coding", "120 s")
            assert q("SELECT count(*) FROM mirror.iterations WHERE code BETWEEN 100000 AND 109999") == "10000"
            assert q("SELECT count(*) FROM coding_fdw.webhook_event WHERE delivery LIKE 'burst-%' AND state = 'applied'") == "10000"
        res.check("a burst of 10,000 events from 8 concurrent senders: all acknowledged and applied", burst)

        def kill_during_burst(kind, first_code):
            def run():
                bodies = [("kill-%s-%d" % (kind[:4], i), iteration_event(first_code + i, "K%d" % i))
                          for i in range(4000)]
                b = Burst(url, bodies, senders=8).start()
                wait_until(lambda: len(b.acked) >= 1000, 60, "a quarter of the burst acknowledged")
                pid = backend_pid(kind)
                acked_before = set(b.acked)
                os.kill(pid, signal.SIGKILL)
                b.join()
                wait_until(lambda: backend_pid(kind) not in (None, pid), 60, "the %s to come back" % kind)
                assert len(b.acked) == 4000, (len(b.acked), b.statuses)
                wait_until(lambda: q_retry("SELECT coding_fdw.wait_for_sync('coding', '30 s')") == "t", 180,
                           "every event applied")
                got = set(q_retry("SELECT coalesce(string_agg(delivery, ','), '') FROM coding_fdw.webhook_event "
                                  "WHERE delivery LIKE 'kill-%s-%%' AND state = 'applied'" % kind[:4]).split(","))
                missing = acked_before - got
                assert not missing, "acknowledged before the kill but not applied: %d" % len(missing)
                assert b.acked <= got, "acknowledged but not applied: %d" % len(b.acked - got)
                assert q_retry("SELECT count(*) FROM mirror.iterations WHERE code BETWEEN %d AND %d"
                               % (first_code, first_code + 3999)) == "4000"
            return run
        res.check("kill -9 of the listener during a burst: every acknowledged event applied",
                  kill_during_burst("webhook listener", 200000))
        res.check("kill -9 of the events worker during a burst: every acknowledged event applied",
                  kill_during_burst("events worker", 300000))

        def events_turn():
            # a flood of events for one subscription gets 10 s turns: another
            # subscription's event, due behind it, is applied between them.
            # The events go straight into the inbox (the listener is not
            # what this checks), the other's a moment later so that the
            # events worker takes the flood first; each batch of 1,000 costs
            # one list call, held 3 s by the simulator, so the 6 batches
            # take about 18 s
            sim.call("DELETE", "/_sim/faults")
            quiet_polls()
            leaf = leaf_issues("mirror")[0]
            q("""BEGIN;
                 %s;
                 INSERT INTO coding_fdw.webhook_event (server_oid, delivery, event, payload, next_attempt)
                 SELECT s.server_oid, 'turn-other', 'ITERATION_CREATED', '%s', now()
                   FROM coding_fdw.subscription s WHERE s.server_name = 'signed';
                 SELECT coding_fdw.wake_worker();
                 COMMIT""" % (flood_sql("turn", leaf), json.dumps(iteration_event(777001, "turn", project="mobile"))))
            sim.fault(type="delay", action="DescribeIssueListWithPage", seconds=3, count=6)
            try:
                wait_until(lambda: q("SELECT count(*) FROM coding_fdw.webhook_event WHERE delivery LIKE 'turn-%' "
                                     "AND state = 'pending'") == "0", 90, "the flood applied")
                assert q("SELECT state FROM coding_fdw.webhook_event WHERE delivery = 'turn-other'") == "applied"
                order = q("SELECT (SELECT done_at FROM coding_fdw.webhook_event WHERE delivery = 'turn-other') "
                          "< (SELECT max(done_at) FROM coding_fdw.webhook_event WHERE delivery LIKE 'turn-%' "
                          "AND delivery <> 'turn-other')")
                assert order == "t", "the other subscription's event waited for the whole flood"
            finally:
                sim.call("DELETE", "/_sim/faults")
                q("DELETE FROM coding_fdw.webhook_event WHERE delivery LIKE 'turn-%'; "
                  "DELETE FROM signed.iterations WHERE code = 777001")
        res.check("a flood of events for one subscription yields to another's events after 10 s", events_turn)

        def poll_during_flood():
            # between its 10 s turns the events worker leaves a subscription
            # to the sync worker that asked for it: a sync_now during a
            # flood of the same subscription's events runs before the flood
            # ends (the events worker used to take it straight back)
            sim.call("DELETE", "/_sim/faults")
            quiet_polls()
            leaf = leaf_issues("mirror")[0]
            sim.fault(type="delay", action="DescribeIssueListWithPage", seconds=3, count=8)
            q("BEGIN; %s; SELECT coding_fdw.wake_worker(); COMMIT" % flood_sql("flood", leaf))
            try:
                wait_until(lambda: q("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query "
                                     "LIKE 'coding_fdw: applying webhook events of server coding%'") == "1",
                           20, "the events worker to take the flood")
                q("SELECT coding_fdw.sync_now('coding')")
                wait_until(lambda: q("SELECT count(*) FROM coding_fdw.webhook_event WHERE delivery LIKE 'flood-%' "
                                     "AND state = 'pending'") == "0", 120, "the flood applied")
                assert wait_for_sync("coding", "120 s")
                order = q("SELECT (SELECT last_poll FROM coding_fdw.subscription WHERE server_name = 'coding') "
                          "< (SELECT max(done_at) FROM coding_fdw.webhook_event WHERE delivery LIKE 'flood-%')")
                assert order == "t", "the poll waited for the whole flood"
            finally:
                sim.call("DELETE", "/_sim/faults")
                q("DELETE FROM coding_fdw.webhook_event WHERE delivery LIKE 'flood-%'")
        res.check("a flood of a subscription's events does not starve its own poll", poll_during_flood)

        def user_lock_on_events():
            # a user's lock on one subscription's table: its batch of events
            # fails once after the worker's lock_timeout (10 s) and waits for
            # its retry, uncounted; the per-event fallback used to wait 10 s
            # for each event, holding up every other subscription's events
            with open_transaction("LOCK TABLE mirror.iterations IN EXCLUSIVE MODE", DB):
                for i in range(4):
                    st, _, _ = post(url, iteration_event(777100 + i, "locked %d" % i),
                                    headers={"X-Coding-Delivery": "locked-%d" % i})
                    assert st == 200
                wait_until(lambda: q("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                     "AND query LIKE 'coding_fdw: applying webhook events of server coding%'")
                           == "1", 20, "the events worker to wait for the user's lock")
                import hashlib
                import hmac
                body = json.dumps(iteration_event(777200, "other", project="mobile")).encode()
                st, _, _ = post(signed_url, None, raw=body, headers={
                    "X-Coding-Delivery": "locked-other",
                    "X-Coding-Signature": "sha1=" + hmac.new(b"s3cr3t", body, hashlib.sha1).hexdigest()})
                assert st == 200
                wait_until(lambda: q("SELECT state FROM coding_fdw.webhook_event WHERE delivery = 'locked-other'")
                           == "applied", 25, "the other subscription's event (one lock_timeout, not four)")
                got = q("SELECT string_agg(DISTINCT state || ' ' || attempts || ' ' || coalesce(last_error, ''), '|') "
                        "FROM coding_fdw.webhook_event WHERE delivery LIKE 'locked-_'")
                assert got == "pending 0 canceling statement due to lock timeout", got
            wait_until(lambda: q("SELECT count(*) FROM coding_fdw.webhook_event WHERE delivery LIKE 'locked-_' "
                                 "AND state = 'applied'") == "4", 90, "the events applied once the lock is gone")
            q("DELETE FROM mirror.iterations WHERE code BETWEEN 777100 AND 777103; "
              "DELETE FROM signed.iterations WHERE code = 777200")
        res.check("a user's lock on one subscription's table costs its events one lock_timeout, "
                  "not one per event, and the others go on", user_lock_on_events)

        def events_during_full_sync():
            # a full sync of one subscription (held 10 s by the simulator)
            # does not hold up another's webhook events: the events worker
            # applies them while the sync worker waits on Coding
            sim.call("DELETE", "/_sim/faults")
            sim.call("DELETE", "/_sim/log")
            sim.fault(type="delay", action="DescribeIterationList", seconds=10)
            q("SELECT coding_fdw.sync_now('signed', full => true)")
            try:
                sim.wait_held("DescribeIterationList", "the full sync to be held by the simulator")
                st, _, _ = post(url, iteration_event(777002, "during"), headers={"X-Coding-Delivery": "during-1"})
                assert st == 200
                wait_until(lambda: q("SELECT state FROM coding_fdw.webhook_event WHERE delivery = 'during-1'")
                           == "applied", 20, "the event applied")
                assert q("SELECT string_agg(DISTINCT syncing::text, ',') FROM coding_fdw.sync_status "
                         "WHERE server = 'signed'") == "true", "the event waited for the full sync"
                assert q("SELECT name FROM mirror.iterations WHERE code = 777002") == "during"
                assert wait_for_sync("signed")
            finally:
                sim.call("DELETE", "/_sim/faults")
                q("DELETE FROM mirror.iterations WHERE code = 777002")
        res.check("a full sync of one subscription does not hold up another's webhook events",
                  events_during_full_sync)

        def iteration_deleted():
            # Coding takes the issues out of a deleted iteration and sends
            # no issue event for them: ITERATION_DELETED asks for a poll,
            # which reads them (they kept the old iteration for an hour)
            sim.call("DELETE", "/_sim/webhook/deliveries")
            sim.call("POST", "/_sim/webhook", {"url": url})
            code, n = q("SELECT iteration_code, count(*) FROM mirror.issues WHERE iteration_code IS NOT NULL "
                        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1").split("|")
            assert int(n) > 0
            sim.call("DELETE", "/_sim/projects/backend/iterations/%s" % code)
            wait_until(lambda: q("SELECT count(*) FROM mirror.issues WHERE iteration_code = %s" % code) == "0",
                       30, "the %s issues of the deleted iteration to leave it" % n)
            assert q("SELECT count(*) FROM mirror.iterations WHERE code = %s" % code) == "0"
            assert diff("mirror", "issues", src, ISSUE_COLS) == 0
        res.check("ITERATION_DELETED: the issues Coding took out of it follow at once (a poll)",
                  iteration_deleted)

        def stop_while_storing():
            # sync_stop, not yet committed, while an event comes in for its
            # key: 503, then 404 once it commits (it answered 200 and left
            # the event behind for no subscription, which a later
            # sync_start of the server adopted); the worker goes on
            q("SELECT coding_fdw.sync_start('hybrid', 'stopme', 'webhook')")
            assert wait_for_sync("hybrid")
            stop_url = q("SELECT coding_fdw.webhook_url('hybrid')")
            stopper = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", DB],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
            stopper.stdin.write("BEGIN;\nSELECT coding_fdw.sync_stop('hybrid', drop_tables => true);\n"
                                "SELECT 'stopped';\n")
            stopper.stdin.flush()
            for _ in range(3):          # sync_stop's (empty) row, then ours
                if stopper.stdout.readline().strip() == "stopped":
                    break
            else:
                raise AssertionError("sync_stop did not run: %s" % stopper.stderr.read())
            # the listener does not wait for that transaction: 503 at once
            # (stored now, the event could outlive the subscription), and
            # other subscriptions are served meanwhile
            st, body, hdrs = post(stop_url, iteration_event(90001, project="mobile"),
                                  headers={"X-Coding-Delivery": "late-1"})
            assert (st, hdrs.get("Retry-After")) == (503, "1"), (st, body, hdrs)
            assert "subscription being changed, try again" in body, body
            assert post(url, None, method="GET")[:2] == (200, '{"ok":true,"note":"pong"}\n')
            stopper.stdin.write("COMMIT;\n")
            stopper.stdin.close()
            assert stopper.wait(timeout=60) == 0, stopper.stderr.read()
            # committed: the key is unknown
            st, body, _ = post(stop_url, iteration_event(90001, project="mobile"),
                               headers={"X-Coding-Delivery": "late-1"})
            assert st == 404, (st, body)
            assert q("SELECT count(*) FROM coding_fdw.webhook_event WHERE delivery = 'late-1'") == "0"
            assert backend_pid("events worker") and wait_for_sync("coding")
        res.check("an event for a subscription being stopped: 503 at once, 404 once the stop commits, nothing left behind",
                  stop_while_storing)

        def both_mode():
            q_retry("SELECT coding_fdw.sync_stop('signed', drop_tables => true)")
            q("SELECT coding_fdw.sync_start('hybrid', 'mirror2', 'both', poll_interval => '2 s')")
            assert wait_for_sync("hybrid")
            both_url = q("SELECT coding_fdw.webhook_url('hybrid')")
            sim.call("DELETE", "/_sim/webhook/deliveries")
            sim.call("POST", "/_sim/webhook", {"url": both_url, "drop": 1})
            sim.call("PATCH", "/_sim/projects/mobile/issues/4", {"Name": "webhook dropped"})
            sim.call("PATCH", "/_sim/projects/mobile/issues/6", {"Name": "webhook delivered"})
            d = deliveries_done(2)
            assert sorted(x["dropped"] for x in d) == [False, True], d
            wait_until(lambda: q("SELECT name || '/' || synced_by FROM mirror2.issues WHERE code = 4")
                       == "webhook dropped/poll", 30, "the poll to repair the dropped event")
            assert q("SELECT name FROM mirror2.issues WHERE code = 6") == "webhook delivered"
        res.check("mode both: a dropped webhook is repaired by the next poll", both_mode)

        def worker_loop_clean():
            # the worker's own loop (looking for what is due) must never
            # fail: a step's failure is caught and recorded, but an error
            # there repeats every few seconds and applies nothing (it did:
            # "cannot subtract infinite timestamps" for every new event)
            log = server_log()[suite_log_start:]
            bad = re.findall(r'^.*ERROR:.*\n.*CONTEXT:  SQL statement "SELECT server_oid, owner_oid,', log, re.M)
            assert not bad, bad[:3]
        res.check("the worker's search for due subscriptions raised no error in the whole suite",
                  worker_loop_clean)
    finally:
        sim.stop()
        psql("DROP EXTENSION IF EXISTS coding_fdw CASCADE", db=DB, check=False)
        psql("DROP SCHEMA IF EXISTS mirror, mirror2, signed CASCADE", db=DB, check=False)
    res.finish()


if __name__ == "__main__":
    main()
