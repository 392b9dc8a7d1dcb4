#!/usr/bin/env python3
"""Benchmark 5: the sync engine.

- Full sync of 100,000 issues with list columns only (sync_start(...,
  details => false)) under a 20 requests/second limit (the simulator's
  per-Action limit and the server option rate_limit '20'), next to the
  floor: the calls it needs (pages of issues, iterations, members) / 20.
- Full sync of 10,000 issues with the detail columns (one DescribeIssue
  per issue) under the same limit, next to its floor.
- Time from a change on the server to visible locally after sync_now
  (median of 5), with a synced project of 10,000 issues.
- Webhooks on the 100,000-issue subscription: the calls one ISSUE_UPDATED
  costs (the list of the issues updated since its day, not the project's
  200 pages) and the time from the change to the row updated (median of 5).

Runs in the database postgres of a cluster with shared_preload_libraries =
coding_fdw (bench/run_bench.sh makes it), where the worker lives.
"""
import sys
import time

from benchlib import Sim, header, median, progress, psql, scale_arg, table

DB = "postgres"
SEED = 13
RATE = 20


def q(sql):
    return psql(sql, db=DB).strip()


def full_sync(sim, project, n, details, mode):
    """Time sync_start .. wait_for_sync; return (seconds, calls accepted, rejected)."""
    server = "s_" + project
    q("CREATE SERVER %s FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', project '%s', "
      "api_url '%s', rate_limit '%d')" % (server, project, sim.url, RATE))
    q("CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (token 'secret-token')" % server)
    sim.clear_log()
    t0 = time.monotonic()
    q("SELECT coding_fdw.sync_start('%s', 'm_%s', '%s', details => %s)" % (server, project, mode, details))
    ok = q("SELECT coding_fdw.wait_for_sync('%s', '3 hours')" % server)
    assert ok == "t", (ok, q("SELECT state, last_error FROM coding_fdw.sync_status WHERE server = '%s'" % server))
    elapsed = time.monotonic() - t0
    rows = int(q("SELECT count(*) FROM m_%s.issues" % project))
    assert rows == n, (rows, n)
    log = sim.log()
    rejected = sum(1 for r in log if r.get("error_code") == "RequestLimitExceeded")
    return elapsed, len(log) - rejected, rejected


def main():
    args = scale_arg().parse_args()
    big, detailed = (5000, 400) if args.quick else (100000, 10000)
    header("Benchmark 5: sync engine, full syncs under a %d/s limit and change-to-visible time"
           % RATE, args.quick)
    sim = Sim([("big", big), ("detailed", detailed)], SEED, "--rate-limit", str(RATE))
    try:
        q("DROP EXTENSION IF EXISTS coding_fdw CASCADE")
        q("CREATE EXTENSION coding_fdw")
        rows = []
        # big in mode webhook: no poll (only the hourly reconciliation) runs
        # while its webhooks are measured below
        for project, n, details, mode in (("big", big, "false", "webhook"), ("detailed", detailed, "true", "polling")):
            progress("full sync of %d issues, details %s" % (n, details))
            secs, calls, rejected = full_sync(sim, project, n, details, mode)
            floor = calls / RATE
            rows.append([project, n, details, calls, rejected, "%.1f" % secs, "%.1f" % floor,
                         "%.3f" % (secs / floor)])
            progress("  %.1f s for %d calls (floor %.1f s)" % (secs, calls, floor))
        print(table(["project", "issues", "details", "calls", "RequestLimitExceeded",
                     "time (s)", "floor (s)", "time / floor"], rows))
        print()

        # change to visible, on the detailed subscription
        samples = []
        for i in range(5):
            name = "latency probe %d" % i
            t0 = time.monotonic()
            sim.call("PATCH", "/_sim/projects/detailed/issues/%d" % (i + 1), {"Name": name})
            q("SELECT coding_fdw.sync_now('s_detailed')")
            assert q("SELECT coding_fdw.wait_for_sync('s_detailed', '5 min')") == "t"
            assert q("SELECT name FROM m_detailed.issues WHERE code = %d" % (i + 1)) == name
            samples.append(time.monotonic() - t0)
        print("change on the server -> visible locally after sync_now: median %.2f s "
              "(runs: %s); a poll of a synced project reads the changed day's issues "
              "(with their details), the iterations and the members, at %d requests/s"
              % (median(samples), " / ".join("%.2f" % s for s in samples), RATE))
        print()

        # webhooks on big: what one ISSUE_UPDATED costs, and how soon it shows
        sim.call("POST", "/_sim/webhook", {"url": q("SELECT coding_fdw.webhook_url('s_big')")})
        samples, calls = [], []
        for i in range(5):
            code, name = 1000 + 17 * i, "hook probe %d" % i
            sim.clear_log()
            t0 = time.monotonic()
            sim.call("PATCH", "/_sim/projects/big/issues/%d" % code, {"Name": name})
            while q("SELECT name FROM m_big.issues WHERE code = %d" % code) != name:
                assert time.monotonic() - t0 < 120, "the webhook was not applied in 120 s"
                time.sleep(0.01)
            samples.append(time.monotonic() - t0)
            log = sim.log()
            calls.append(len(log))
            progress("  webhook %d: %.2f s, %d calls (%s)" % (i, samples[-1], len(log), ", ".join(
                sorted({r["action"] for r in log}))))
        pages = (big + 499) // 500
        print("ISSUE_UPDATED webhook on the %d-issue subscription (list columns): %s calls per "
              "event (the whole project would be %d pages); change on the server -> row updated: "
              "median %.2f s (runs: %s)" % (big, " / ".join(str(c) for c in calls), pages,
                                              median(samples), " / ".join("%.2f" % s for s in samples)))
        print()
    finally:
        sim.stop()
        psql("DROP EXTENSION IF EXISTS coding_fdw CASCADE", db=DB, check=False)
        psql("DROP SCHEMA IF EXISTS m_big, m_detailed CASCADE", db=DB, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
