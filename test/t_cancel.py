#!/usr/bin/env python3
"""t_cancel: Ctrl-C (pg_cancel_backend, what psql sends on Ctrl-C) and
pg_terminate_backend end a scan promptly while Coding stalls mid-body,
and the cancelled backend's next scan works.

The stall lasts 60 s and the request timeout is 120 s, so only a working
interrupt path ends the query within the 5 s deadline; the measured
latency is printed (bench/README.md records it).
"""
import subprocess
import time

from pgtest import Results, psql, scenario, setup_db, wait_until

DB = "t_cancel"


def start_scan(sim):
    """Start a scan in a background psql; return (process, backend pid)."""
    sim.fault(type="stall_mid_body", action="DescribeIssueListWithPage", seconds=60)
    proc = subprocess.Popen(
        ["psql", "-X", "-A", "-t", "-d", DB, "-c",
         "SELECT 'scan-under-test', count(*) FROM coding.issues"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def waiting_pid():
        # the backend is inside our WaitEventSet (wait_event_type Extension)
        out = psql("SELECT pid FROM pg_stat_activity WHERE query LIKE '%%scan-under-test%%' "
                   "AND query NOT LIKE '%%pg_stat_activity%%' AND wait_event_type = 'Extension'",
                   db=DB)
        return out or None
    pid = wait_until(waiting_pid, 30, "the scan to wait on Coding")
    # the stalled response has started: the sim logged the request
    return proc, pid


def interrupt(sim, fn, expected_error):
    proc, pid = start_scan(sim)
    t0 = time.monotonic()
    psql("SELECT %s(%s)" % (fn, pid), db=DB)
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("%s did not end the scan within 5 s" % fn)
    latency = time.monotonic() - t0
    assert expected_error in err, err
    print("     %s ended the stalled scan in %.0f ms" % (fn, latency * 1000))


def main():
    res = Results()
    with scenario(DB, "--team", "acme", "--project", "backend:2000", "--token", "secret-token",
                  "--seed", "3") as sim:
        setup_db(DB, sim, "backend", ", request_timeout_ms '120000'")
        res.check("Ctrl-C (pg_cancel_backend) mid-body",
                  lambda: interrupt(sim, "pg_cancel_backend",
                                    "canceling statement due to user request"))

        def next_scan_works():
            sim.call("DELETE", "/_sim/faults")
            count = psql("SELECT count(*) FROM coding.issues", db=DB)
            assert count == "2000", count
        res.check("the next scan after a cancel works", next_scan_works)
        res.check("pg_terminate_backend mid-body",
                  lambda: interrupt(sim, "pg_terminate_backend",
                                    "terminating connection due to administrator command"))
        res.check("no backend is left waiting on Coding",
                  lambda: wait_until(lambda: psql(
                      "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%scan-under-test%%' "
                      "AND query NOT LIKE '%%pg_stat_activity%%'", db=DB) == "0",
                      10, "the terminated backend to exit"))

        def cancelled_waits_give_back():
            # rate_limit 0.5: one send every 2.04 s.  Five queries that time
            # out while waiting for their send time must give it back: the
            # next query is sent 2.04 s after the first, not after 12 s
            # (each cancelled wait used to keep its time, pushing the
            # schedule out for every backend and the worker)
            psql("ALTER SERVER coding OPTIONS (SET rate_limit '0.5')", db=DB)
            try:
                sim.call("DELETE", "/_sim/log")
                out = subprocess.run(
                    ["psql", "-X", "-A", "-t", "-q", "-d", DB],
                    input="SELECT count(*) > 0 FROM coding.iterations;\n"
                          "SET statement_timeout = '150ms';\n"
                          + "SELECT count(*) FROM coding.iterations;\n" * 5
                          + "RESET statement_timeout;\nSELECT count(*) > 0 FROM coding.iterations;\n",
                    capture_output=True, text=True, timeout=60)
                assert out.stdout.split() == ["t", "t"], (out.stdout, out.stderr)
                assert out.stderr.count("canceling statement due to statement timeout") == 5, out.stderr
                sent = [e["ts"] for e in sim.call("GET", "/_sim/log?action=DescribeIterationList")["requests"]]
                assert len(sent) == 2, sent
                gap = sent[1] - sent[0]
                print("     the query after five cancelled waits was sent %.2f s after the first" % gap)
                assert gap < 4.0, "sent %.1f s after the first: the cancelled waits kept their times" % gap
            finally:
                psql("ALTER SERVER coding OPTIONS (SET rate_limit '100000')", db=DB)
        res.check("queries cancelled while waiting for the rate limit give their send times back",
                  cancelled_waits_give_back)
    res.finish()


if __name__ == "__main__":
    main()
