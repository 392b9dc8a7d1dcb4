#!/usr/bin/env python3
"""details.py: detail columns under a server rate limit (benchmark 4, bench/README.md).

A project of 10,000 generated issues (seed 11; 400 with --quick).  The
simulator enforces Coding's limit, 20 requests per second per Action
(--rate-limit 20, answering RequestLimitExceeded), and the server is told
the same (rate_limit '20').  SELECT code, epic, watchers FROM coding.issues
needs the list pages plus one DescribeIssue per issue; in a fresh backend,
timed by psql's \\timing.

floor = calls the query needed (accepted by the simulator: list pages +
DescribeIssue) / 20 per second: no client sending at most 20 requests per
second can be faster.  The report gives the time, the floor, their ratio
(target <= 1.15) and the RequestLimitExceeded answers (the log's
error_code): the client limiter should make them rare, and each one costs a
retry.  The full scale takes about 8-9 minutes.
"""
import argparse
import collections
import sys
import threading
import time

from benchlib import Sim, drop_db, header, progress, setup_db, table, timed_psql

DB = "bench_details"
SEED = 11
PROJECT = "backend"
RATE = 20
SQL = "SELECT code, epic, watchers FROM coding.issues"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="400 issues instead of 10,000")
    ap.add_argument("--issues", type=int, help="override the project size")
    ap.add_argument("--max-retries", type=int, default=3,
                    help="server option max_retries (default 3, coding_fdw's default)")
    args = ap.parse_args()
    n = args.issues or (400 if args.quick else 10000)
    header("Benchmark 4: detail columns of %d issues under a %d/s rate limit" % (n, RATE),
           args.quick)
    sim = Sim([(PROJECT, n)], SEED, "--prerender", "--rate-limit", str(RATE))
    try:
        setup_db(DB, sim, PROJECT, ", rate_limit '%d', max_retries '%d'"
                 % (RATE, args.max_retries))
        expected_calls = -(-n // 500) + n
        progress("running %s: about %d calls, floor %.0f s" % (SQL, expected_calls,
                                                              expected_calls / RATE))
        time.sleep(1.5)                    # let the simulator's one-second window empty
        sim.clear_log()
        done = threading.Event()

        def report():
            t0 = time.monotonic()
            while not done.wait(15):
                c = sim.count()
                progress("  %d calls after %.0f s (%.1f/s)"
                         % (c, time.monotonic() - t0, c / (time.monotonic() - t0)))
        watcher = threading.Thread(target=report, daemon=True)
        watcher.start()
        try:
            out, (ms,) = timed_psql([SQL], DB)
        finally:
            done.set()
        rows = len([line for line in out.split("\n") if line and not line.startswith("Time:")])
        log = sim.log()
        per = collections.Counter(e["action"] for e in log)
        rejected = collections.Counter(e["action"] for e in log
                                       if e["error_code"] == "RequestLimitExceeded")
        errors = collections.Counter(e["error_code"] for e in log
                                     if e["error_code"] not in (None, "RequestLimitExceeded"))
        accepted = len(log) - sum(rejected.values()) - sum(errors.values())
        floor_s = accepted / RATE
        secs = ms / 1000.0
        span = log[-1]["ts"] - log[0]["ts"] if log else 0
        if rows != n:
            print("ROW COUNT MISMATCH: %d rows, expected %d" % (rows, n))
        print(table(["rows", "calls sent", "accepted", "list pages", "DescribeIssue",
                     "RequestLimitExceeded", "time (s)", "floor (s)", "time / floor"],
                    [[rows, len(log), accepted, per["DescribeIssueListWithPage"],
                      per["DescribeIssue"], sum(rejected.values()), "%.1f" % secs,
                      "%.1f" % floor_s, "%.3f" % (secs / floor_s)]],
                    [">"] * 9))
        print()
        print("time / floor = %.1f s / %.1f s = %.3f (target <= 1.15: %s); "
              "RequestLimitExceeded answers: %d (%s); first to last request: %.1f s; "
              "achieved rate %.2f accepted calls/s"
              % (secs, floor_s, secs / floor_s, "met" if secs / floor_s <= 1.15 else "NOT met",
                 sum(rejected.values()),
                 ", ".join("%s %d" % kv for kv in sorted(rejected.items())) or "none",
                 span, accepted / secs))
        if errors:
            print("other errors: %s" % dict(errors))
        print()
    finally:
        sim.stop()
        drop_db(DB)


if __name__ == "__main__":
    sys.exit(main())
