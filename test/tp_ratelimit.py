#!/usr/bin/env python3
"""tp_ratelimit: with coding_fdw in shared_preload_libraries, the client-side
rate limit (server option rate_limit) is shared by every backend that talks
to the same team, so concurrent sessions together stay under it.

Run in a cluster started with shared_preload_libraries=coding_fdw:

    pg_virtualenv -v 15 -o shared_preload_libraries=coding_fdw python3 test/tp_ratelimit.py

The server has rate_limit '8' and max_retries '0' (a request Coding rejects
would fail the query); the simulated Coding server limits each Action to 10
requests in any sliding second.  Each session runs
SELECT code, epic FROM issues WHERE code <= 40: one list call and one
DescribeIssue per row (epic is a detail column), 41 calls.

* Control: one session alone gets close to 8 requests/s.
* Four sessions at once: in the simulated server's request log, no sliding
  one-second window holds more than 8 + 1 requests (one of tolerance for
  clock edges), the run spans at least (calls - 8) / 8 seconds, and Coding
  never answered RequestLimitExceeded.
"""
import subprocess
import time

from pgtest import Results, psql, scenario, setup_db

DB = "tp_ratelimit"
PROJECT = "rl"
RATE = 8
SIM_RATE = 10
SESSIONS = 4
ROWS = 40
QUERY = "SELECT code, epic FROM coding.issues WHERE code <= %d" % ROWS
CALLS_PER_SESSION = 1 + ROWS          # the list, then one DescribeIssue per row


def max_in_window(stamps, width=1.0):
    """The largest number of stamps in any half-open window [t, t + width)."""
    stamps = sorted(stamps)
    best, j = 0, 0
    for i in range(len(stamps)):
        while j < len(stamps) and stamps[j] < stamps[i] + width:
            j += 1
        best = max(best, j - i)
    return best


def run_sessions(n, timeout):
    """Start n psql sessions running QUERY together; wait for all (with a
    deadline).  Returns (wall seconds, [(returncode, stdout, stderr)])."""
    t0 = time.monotonic()
    procs = [subprocess.Popen(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                               "-d", DB, "-c", QUERY],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    deadline = t0 + timeout
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                if q.poll() is None:
                    q.kill()
            for q in procs:
                q.communicate()
            raise AssertionError("%d sessions did not finish within %ss" % (n, timeout))
        results.append((p.returncode, out, err))
    return time.monotonic() - t0, results


def check_session_output(results):
    for i, (rc, out, err) in enumerate(results):
        assert rc == 0, "session %d failed: %s" % (i + 1, err.strip())
        codes = sorted(int(line.split("|", 1)[0]) for line in out.strip().split("\n") if line)
        assert codes == list(range(1, ROWS + 1)), \
            "session %d returned codes %s" % (i + 1, codes)


def main():
    res = Results()
    with scenario(DB, "--team", "acme", "--project", "%s:200" % PROJECT,
                  "--token", "secret-token", "--seed", "13",
                  "--rate-limit", str(SIM_RATE)) as sim:

        def preloaded():
            libs = psql("SHOW shared_preload_libraries")
            assert "coding_fdw" in [x.strip() for x in libs.split(",")], \
                "run in a cluster with shared_preload_libraries=coding_fdw (have %r)" % libs
        res.check("coding_fdw is in shared_preload_libraries", preloaded)

        setup_db(DB, sim, PROJECT)
        psql("ALTER SERVER coding OPTIONS (SET rate_limit '%d', ADD max_retries '0')" % RATE,
             db=DB)

        def log():
            return sim.call("GET", "/_sim/log")["requests"]

        def no_rejections(entries):
            rejected = [e for e in entries if e["error_code"] == "RequestLimitExceeded"]
            assert not rejected, "%d of %d requests got RequestLimitExceeded, first: %s" % (
                len(rejected), len(entries), rejected[0])

        def counts_ok(entries, sessions):
            actions = [e["action"] for e in entries]
            got = (actions.count("DescribeIssueListWithPage"), actions.count("DescribeIssue"),
                   len(actions))
            want = (sessions, sessions * ROWS, sessions * CALLS_PER_SESSION)
            assert got == want, "(list, DescribeIssue, all) calls %s, want %s" % (got, want)

        # ---- control: one session alone -----------------------------------

        def fresh_start():
            """Empty log; the simulated server forgets its rate windows, so one
            run's last second does not count against the next."""
            sim.call("POST", "/_sim/rate_limit", {"per_second": SIM_RATE})
            sim.call("DELETE", "/_sim/log")

        fresh_start()
        single = {}

        def one_session():
            wall, results = run_sessions(1, 12)
            single["wall"] = wall
            check_session_output(results)
            entries = log()
            single["entries"] = entries
            counts_ok(entries, 1)
            no_rejections(entries)
            n = len(entries)
            bound = 1.3 * n / RATE + 1
            print("     1 session: %d calls in %.2f s (%.1f req/s; bound %.2f s)"
                  % (n, wall, n / wall, bound))
            assert wall <= bound, "%d calls took %.2f s > %.2f s" % (n, wall, bound)
        res.check("one session alone: %d calls at close to %d req/s, none rejected"
                  % (CALLS_PER_SESSION, RATE), one_session)

        def single_window():
            stamps = [e["ts"] for e in single.get("entries") or log()]
            m = max_in_window(stamps)
            assert m <= RATE + 1, "%d requests within one second" % m
        res.check("one session: at most %d + 1 requests in any second" % RATE, single_window)

        # ---- four sessions at once ------------------------------------------

        fresh_start()
        together = {}

        def four_sessions():
            wall, results = run_sessions(SESSIONS, 35)
            together["wall"] = wall
            entries = log()
            together["entries"] = entries
            stamps = sorted(e["ts"] for e in entries)
            span = stamps[-1] - stamps[0] if stamps else 0.0
            print("     %d sessions: %d calls in %.2f s (log span %.2f s, %.1f req/s)"
                  % (SESSIONS, len(entries), wall, span, len(entries) / max(span, 1e-3)))
            check_session_output(results)
            counts_ok(entries, SESSIONS)
        res.check("%d concurrent sessions each return their %d rows with %d calls"
                  % (SESSIONS, ROWS, CALLS_PER_SESSION), four_sessions)

        def shared_window():
            stamps = [e["ts"] for e in together.get("entries") or log()]
            assert stamps, "no requests logged"
            m = max_in_window(stamps)
            print("     busiest second: %d requests" % m)
            assert m <= RATE + 1, "%d requests within one second (limit %d + 1)" % (m, RATE)
        res.check("%d sessions together: at most %d + 1 requests in any second"
                  % (SESSIONS, RATE), shared_window)

        def shared_span():
            stamps = sorted(e["ts"] for e in together.get("entries") or log())
            assert stamps, "no requests logged"
            n = len(stamps)
            need = (n - RATE) / RATE
            span = stamps[-1] - stamps[0]
            assert span >= need, "%d calls in %.2f s, need at least %.2f s" % (n, span, need)
        res.check("%d sessions together: the run spans at least (calls - %d) / %d s"
                  % (SESSIONS, RATE, RATE), shared_span)

        def shared_no_rejections():
            entries = together.get("entries") or log()
            assert entries, "no requests logged"
            no_rejections(entries)
        res.check("%d sessions together: Coding (limit %d/s per Action) never answered "
                  "RequestLimitExceeded" % (SESSIONS, SIM_RATE), shared_no_rejections)

        # ---- nobody can freeze a team's schedule ---------------------------

        def other_server(name, rate):
            psql("DROP SERVER IF EXISTS %s CASCADE; CREATE SERVER %s FOREIGN DATA WRAPPER coding_fdw "
                 "OPTIONS (team 'acme', project '%s', api_url '%s', rate_limit '%s'); "
                 "CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (token 'secret-token'); "
                 "CREATE FOREIGN TABLE %s_it (code int) SERVER %s OPTIONS (resource 'iterations')"
                 % (name, name, PROJECT, sim.url, rate, name, name, name), db=DB)

        def slow_server():
            # any role may create a server of a team with rate_limit 0.001
            # (one call per 17 minutes): it used to move the team's next send
            # 17 minutes out for every backend and the worker
            fresh_start()
            other_server("slow", "0.001")
            psql("SELECT count(*) FROM slow_it", db=DB)
            out = psql("SET statement_timeout = '5s'; SELECT count(*) > 0 FROM coding.iterations", db=DB)
            assert out.split()[-1] == "t", out
        res.check("a server of the same team with rate_limit 0.001 does not slow the others", slow_server)

        def cancelled_waits():
            # two sessions that keep timing out while they wait at rate 2:
            # each cancelled wait used to keep its reserved time, so the
            # schedule ran away (20 s after 8 s of it); now no time is held
            # more than 1 s ahead
            fresh_start()
            other_server("two", "2")
            script = "SET statement_timeout = '300ms';\n" + "SELECT count(*) FROM two_it;\n" * 12
            procs = [subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-d", DB], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(2)]
            for p in procs:
                p.stdin.write(script)
                p.stdin.close()
            for p in procs:
                p.wait(timeout=120)
            t0 = time.time()
            assert psql("SELECT count(*) > 0 FROM two_it", db=DB) == "t"
            last = max(e["ts"] for e in sim.call("GET", "/_sim/log?action=DescribeIterationList")["requests"])
            print("     after 24 cancelled waits the next call was sent %.2f s after it was asked for"
                  % (last - t0))
            assert last - t0 < 2.5, "sent %.1f s after it was asked for" % (last - t0)
        res.check("two sessions cancelled while they wait do not push the schedule out", cancelled_waits)

        def many_schedules():
            # one session that has used 150 (team, rate) schedules, more than
            # there are slots (64 shared, then 64 of its own): the limit still
            # holds (it used to switch itself off for good)
            fresh_start()
            other_server("many", "1000")
            # each call reserves a send time in its schedule before it
            # connects: against a port nobody listens on, 150 schedules cost
            # no request to the simulator (whose own limit is 10/s)
            script = ("ALTER SERVER many OPTIONS (SET api_url 'http://127.0.0.1:9/open-api', "
                      "ADD max_retries '0');\n")
            script += "".join("ALTER SERVER many OPTIONS (SET rate_limit '%d'); "
                              "DO $$ BEGIN PERFORM count(*) FROM many_it; "
                              "EXCEPTION WHEN fdw_unable_to_establish_connection THEN NULL; END $$;\n"
                              % (1000 + k) for k in range(150))
            script += "ALTER SERVER many OPTIONS (SET rate_limit '2', SET api_url '%s');\n" % sim.url
            sim.call("DELETE", "/_sim/log")
            script += "SELECT count(*) FROM many_it;\n" * 4
            r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", DB], input=script,
                               text=True, capture_output=True, timeout=120)
            assert r.returncode == 0, r.stderr
            stamps = sorted(e["ts"] for e in sim.call("GET", "/_sim/log?action=DescribeIterationList")["requests"])
            assert len(stamps) == 4, stamps
            gaps = [b - a for a, b in zip(stamps, stamps[1:])]
            print("     at rate_limit 2 after 150 schedules: gaps %s s" % ", ".join("%.2f" % g for g in gaps))
            # 0.51 s apart at 2/s; 10 ms of slack for the log's clock
            assert min(gaps) >= 0.5, gaps
        res.check("a session that used more schedules than there are slots is still limited", many_schedules)
    res.finish()


if __name__ == "__main__":
    main()
