#!/usr/bin/env python3
"""tp_faults: the fault matrix (issue #7 item 1), in the preloaded cluster.

Every fault the simulated server can inject, against every path that calls
Coding: a foreign scan (DescribeIssueListWithPage), detail columns
(DescribeIssue), a full sync and a delta poll (the worker, listing), and a
webhook's enrichment (the worker, DescribeIssue).  Each fault is injected
once (the retry must succeed where the class is retryable) and for good
(the documented error, by SQLSTATE in a scan, by last_error in
sync_status or the inbox for the worker).  No cell may hang past its
timeout.  Then each fast fault is repeated 1,000 times in one backend
(caught in a PL/pgSQL loop, so every abort path runs): the backend's open
files and memory must not grow.  MATRIX_REPS sets the repetitions.

MATRIX_CELLS selects a part of the matrix, for test/memcheck.sh, which runs
it under valgrind: words (spaces or commas) naming a path (scan, detail,
sync, poll, webhook, repeated: every fault on it) or one cell, path:fault.
Under valgrind (MEMCHECK set) the resident size is not compared, since
valgrind holds freed blocks back on purpose; its leak check stands in.
"""
import json
import os
import subprocess
import time
import urllib.request

from pgtest import Results, Sim, psql, scaled, wait_until

DB = "postgres"
LIST = "DescribeIssueListWithPage"
DETAIL = "DescribeIssue"

# fault -> (outcome when injected once, SQLSTATE when it persists)
# "ok": retried and succeeded.  A malformed answer is not retried: it is
# not a transient condition, and retrying would hide a broken endpoint.
FAULTS = {
    "http_500": ("ok", "HV000"),
    "http_502": ("ok", "HV000"),
    "http_429": ("ok", "53400"),
    "rate_limited": ("ok", "53400"),
    "auth_failure": ("28000", "28000"),
    "delay": ("ok", "HV00N"),
    "stall_mid_body": ("ok", "HV00N"),
    "truncated_json": ("HV00M", "HV00M"),
    "invalid_json": ("HV00M", "HV00M"),
    "wrong_types": ("HV00M", "HV00M"),
    "huge_body": ("HV00M", "HV00M"),
    "drop_connection": ("ok", "HV00N"),
}
# wrong_types: in a list, only what is read is checked: a timestamptz column
# given "abc" fails in its input function (22007, naming column, field and
# issue).  DescribeIssue must answer for the Code asked for, else HV00M.
PATH_FAULTS = {("scan", "wrong_types"): ("22007", "22007")}
# A cell's length is set by the request timeout (a delayed or stalled answer
# outlasts it, three times when the fault persists): short on a plain
# server, longer under valgrind, where a healthy answer takes a while too.
REQUEST_TIMEOUT_MS = 1500 if os.environ.get("MEMCHECK") else 600
STALL_S = 2 * REQUEST_TIMEOUT_MS / 1000.0
FAULT_ARGS = {"delay": {"seconds": STALL_S}, "stall_mid_body": {"seconds": STALL_S},
              "huge_body": {"mb": 100}}
PATHS = ("scan", "detail", "sync", "poll", "webhook", "repeated")
# repeated in one backend: the fast faults 1,000 times, the slow ones 20
REPEATED_FAST = ("http_500", "auth_failure", "truncated_json", "invalid_json", "wrong_types",
                 "drop_connection", "rate_limited")
REPEATED_SLOW = ("huge_body", "stall_mid_body", "delay")


def selected_cells():
    """{path: [faults]} from MATRIX_CELLS (the whole matrix when unset); an
    unknown path or fault stops the test, so a typo cannot skip cells."""
    words = os.environ.get("MATRIX_CELLS", "").replace(",", " ").split() or list(PATHS)
    cells = {}
    for word in words:
        path, _, fault = word.partition(":")
        known = REPEATED_FAST + REPEATED_SLOW if path == "repeated" else tuple(FAULTS)
        if path not in PATHS or (fault and fault not in known):
            raise SystemExit("MATRIX_CELLS: unknown cell %r (paths: %s; faults: %s)"
                             % (word, ", ".join(PATHS), ", ".join(FAULTS)))
        chosen = cells.setdefault(path, [])
        chosen.extend(f for f in ([fault] if fault else known) if f not in chosen)
    return cells


def q(sql, check=True, timeout=120):
    return psql(sql, db=DB, check=check, timeout=timeout)


def sqlstate(sql):
    """Run sql; return 'ok' or the SQLSTATE of its error."""
    r = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "VERBOSITY=verbose", "-d", DB, "-c", sql],
                       capture_output=True, text=True, timeout=scaled(120))
    if r.returncode == 0:
        return "ok"
    for line in r.stderr.splitlines():
        if line.startswith("ERROR:  "):
            return line.split()[1].rstrip(":")
    return "?" + r.stderr[:200]


def main():
    res = Results()
    reps = int(os.environ.get("MATRIX_REPS", "1000"))
    cells = selected_cells()
    memcheck = bool(os.environ.get("MEMCHECK"))
    sim = Sim("--team", "acme", "--project", "backend:12", "--token", "secret-token", "--seed", "8")
    try:
        q("DROP EXTENSION IF EXISTS coding_fdw CASCADE")
        q("DROP SCHEMA IF EXISTS fm, coding CASCADE")
        q("CREATE EXTENSION coding_fdw")
        # short timeouts so a cell ends fast; 2 retries
        q("""CREATE SERVER coding FOREIGN DATA WRAPPER coding_fdw
               OPTIONS (team 'acme', project 'backend', api_url '%s', rate_limit '100000',
                        request_timeout_ms '%d', max_retries '2');
             CREATE USER MAPPING FOR CURRENT_USER SERVER coding OPTIONS (token 'secret-token');
             CREATE SCHEMA coding; IMPORT FOREIGN SCHEMA backend FROM SERVER coding INTO coding;"""
          % (sim.url, REQUEST_TIMEOUT_MS))
        # the huge body is 100 MB: cut at 8 MB for every session and the worker
        q("ALTER SYSTEM SET coding_fdw.max_response_size = '8MB'")
        q("SELECT pg_reload_conf()")
        # mode webhook: no periodic poll takes a fault meant for a cell, and a
        # failed sync is retried after poll_interval (1 s, the least allowed)
        q("SELECT coding_fdw.sync_start('coding', 'fm', 'webhook', poll_interval => '1 s')")
        assert q("SELECT coding_fdw.wait_for_sync('coding')") == "t"
        url = q("SELECT coding_fdw.webhook_url('coding')")

        def inject(fault, action, count):
            sim.call("DELETE", "/_sim/faults")
            spec = dict({"type": fault, "action": action, "count": count}, **FAULT_ARGS.get(fault, {}))
            sim.call("POST", "/_sim/fault", spec)

        def scan_cell(path, fault, action, sql):
            got = []
            once, always = PATH_FAULTS.get((path, fault), FAULTS[fault])
            for count, want in ((1, once), (0, always)):
                inject(fault, action, count)
                t0 = time.monotonic()
                st = sqlstate(sql)
                took = time.monotonic() - t0
                sim.call("DELETE", "/_sim/faults")
                got.append(st)
                assert st == want, "%s x%s on %s: %s, documented %s" % (fault, count or "inf", action, st, want)
                assert took < scaled(30), "%s took %.1fs" % (fault, took)
            return got

        def worker_cell(fault, action, trigger, check_error):
            for count, want in ((1, FAULTS[fault][0]), (0, FAULTS[fault][1])):
                inject(fault, action, count)
                trigger()
                if want == "ok":
                    assert q("SELECT coding_fdw.wait_for_sync('coding', '%d s')" % scaled(60)) == "t", \
                        "%s once: not applied" % fault
                    wait_until(lambda: q("SELECT state FROM coding_fdw.sync_status WHERE table_name = 'issues'")
                               == "idle", 30, "state idle")
                else:
                    wait_until(check_error, 60, "%s: the documented error recorded" % fault)
                sim.call("DELETE", "/_sim/faults")
                assert q("SELECT coding_fdw.wait_for_sync('coding', '%d s')" % scaled(90)) == "t", \
                    "%s: did not heal" % fault

        for fault in cells.get("scan", ()):
            res.check("scan × %s: once %s, persistent %s" % ((fault,) + PATH_FAULTS.get(("scan", fault), FAULTS[fault])),
                      lambda f=fault: scan_cell("scan", f, LIST, "SELECT count(*), max(created_at) FROM coding.issues"))
        for fault in cells.get("detail", ()):
            res.check("detail fetch × %s" % fault,
                      lambda f=fault: scan_cell("detail", f, DETAIL, "SELECT count(watchers) FROM coding.issues"))

        def last_error_now():
            e = q("SELECT coalesce(last_error, '') FROM coding_fdw.sync_status WHERE table_name = 'issues' "
                  "AND state = 'error'")
            return e

        for fault in cells.get("sync", ()):
            res.check("full sync × %s" % fault,
                      lambda f=fault: worker_cell(f, LIST, lambda: q("SELECT coding_fdw.sync_now('coding', true)"),
                                                  last_error_now))
        for fault in cells.get("poll", ()):
            res.check("delta poll × %s" % fault,
                      lambda f=fault: worker_cell(f, LIST, lambda: q("SELECT coding_fdw.sync_now('coding')"),
                                                  last_error_now))

        def post_event():
            code = int(q("SELECT min(code) FROM fm.issues"))
            body = json.dumps({"event": "ISSUE_UPDATED", "issue": {"code": code}}).encode()
            req = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=scaled(10)) as r:
                assert r.status == 200

        def inbox_error():
            return q("SELECT coalesce(string_agg(last_error, ''), '') FROM coding_fdw.webhook_inbox")

        for fault in cells.get("webhook", ()):
            res.check("webhook enrichment × %s" % fault,
                      lambda f=fault: worker_cell(f, DETAIL, post_event, inbox_error))

        def repeated(fault, action, sql, n):
            """n failing runs in one backend: open files and memory flat."""
            inject(fault, action, 0)
            out = q("""
                SET coding_fdw.max_response_size = '8MB';
                CREATE TEMP TABLE m (k text, v bigint);
                CREATE FUNCTION pg_temp.rss() RETURNS bigint LANGUAGE sql AS
                  $$ SELECT (regexp_match(pg_read_file('/proc/self/status'), 'VmRSS:\\s+(\\d+)'))[1]::bigint $$;
                CREATE FUNCTION pg_temp.fds() RETURNS bigint LANGUAGE sql AS
                  $$ SELECT count(*) FROM pg_ls_dir('/proc/self/fd') $$;
                DO $$ BEGIN FOR i IN 1..%d LOOP
                  BEGIN PERFORM %s; EXCEPTION WHEN OTHERS THEN NULL; END;
                END LOOP; END $$;
                INSERT INTO m VALUES ('rss0', pg_temp.rss()), ('fd0', pg_temp.fds()),
                  ('ctx0', (SELECT sum(total_bytes) FROM pg_backend_memory_contexts));
                DO $$ BEGIN FOR i IN 1..%d LOOP
                  BEGIN PERFORM %s; EXCEPTION WHEN OTHERS THEN NULL; END;
                END LOOP; END $$;
                INSERT INTO m VALUES ('rss1', pg_temp.rss()), ('fd1', pg_temp.fds()),
                  ('ctx1', (SELECT sum(total_bytes) FROM pg_backend_memory_contexts));
                SELECT json_object_agg(k, v) FROM m;""" % (max(n // 10, 5), sql, n, sql), timeout=900)
            sim.call("DELETE", "/_sim/faults")
            m = json.loads(out.splitlines()[-1])
            # libcurl keeps a small cache of idle connections (one per
            # concurrent transfer at most): a few fds may come and go, a
            # leak of one per run would show as hundreds
            assert m["fd1"] - m["fd0"] <= 8, "open files grew: %s" % m
            assert memcheck or m["rss1"] - m["rss0"] < 4096, "RSS grew by %d kB: %s" % (m["rss1"] - m["rss0"], m)
            assert m["ctx1"] - m["ctx0"] < 1024 * 1024, "memory contexts grew: %s" % m
            return m

        scan_sql = "count(*) FROM coding.issues"
        detail_sql = "count(watchers) FROM coding.issues"
        q("ALTER SERVER coding OPTIONS (SET max_retries '0', SET request_timeout_ms '300')")
        repeated_faults = cells.get("repeated", ())
        for fault in [f for f in REPEATED_FAST if f in repeated_faults]:
            res.check("%d × %s in one backend (scan and details): no fd or memory growth" % (reps, fault),
                      lambda f=fault: (repeated(f, LIST, scan_sql, reps), repeated(f, DETAIL, detail_sql, reps)))
        for fault in [f for f in REPEATED_SLOW if f in repeated_faults]:
            n = max(reps // 50, 10)
            res.check("%d × %s in one backend: no fd or memory growth" % (n, fault),
                      lambda f=fault, n=n: repeated(f, LIST, scan_sql, n))
    finally:
        sim.stop()
        q("ALTER SYSTEM RESET coding_fdw.max_response_size", check=False)
        q("SELECT pg_reload_conf()", check=False)
        q("DROP EXTENSION IF EXISTS coding_fdw CASCADE", check=False)
        q("DROP SCHEMA IF EXISTS fm, coding CASCADE", check=False)
    res.finish()


if __name__ == "__main__":
    main()
