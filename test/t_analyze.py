#!/usr/bin/env python3
"""t_analyze: ANALYZE of coding_fdw's foreign tables.

* ANALYZE samples whole pages of the listing: every page of a table of up
  to the sample size (each once), and otherwise page 1 plus pages drawn
  at random, as many as the sample needs; pg_class.reltuples is the
  listing's TotalCount and pg_stats has the columns' statistics.
* A session that has not scanned a table plans with that count (before
  ANALYZE: the default estimate of 10,000 issues).
* iterations and project_members are analyzed the same way; detail-only
  columns are NULL in the sample (describing each issue would cost a call
  per row).
* A refused token fails ANALYZE with 28000 and no token in the message.
* Ctrl-C (pg_cancel_backend) ends an ANALYZE whose page stalls mid-body.

Every call counted comes from the simulated server's request log.
"""
import re
import subprocess
import time

from pgtest import Results, psql, scaled, scenario, setup_db, wait_until

DB = "t_analyze"
LIST = "DescribeIssueListWithPage"


def analyze_verbose(sql):
    """Run ANALYZE VERBOSE; return coding_fdw's INFO line about the sample."""
    r = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB,
                        "-c", sql], capture_output=True, text=True, timeout=scaled(300))
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stderr.splitlines() if "rows sampled" in l]
    assert len(lines) == 1, r.stderr
    return lines[0].split("INFO:  ", 1)[1]


def main():
    res = Results()
    with scenario(DB, "--team", "acme", "--token", "secret-token", "--seed", "8",
                  "--project", "small:1234", "--project", "big:5000") as sim:
        setup_db(DB, sim, "small", ", page_size '100'")
        psql("CREATE SCHEMA big; IMPORT FOREIGN SCHEMA big LIMIT TO (issues) "
             "FROM SERVER coding INTO big", db=DB)

        def clear():
            sim.call("DELETE", "/_sim/log")
            sim.call("DELETE", "/_sim/faults")

        def pages_asked():
            return [e["body"].get("PageNumber")
                    for e in sim.call("GET", "/_sim/log?action=" + LIST)["requests"]]

        def estimate(table):
            plan = psql("EXPLAIN SELECT * FROM %s" % table, db=DB)
            return int(re.search(r"rows=(\d+)", plan).group(1))

        def default_estimate():
            # a fresh session, no scan, no ANALYZE yet: the default
            assert estimate("coding.issues") == 10000
            assert psql("SELECT reltuples FROM pg_class WHERE oid = 'coding.issues'::regclass",
                        db=DB) == "-1"
        res.check("before ANALYZE a fresh session estimates 10,000 issues", default_estimate)

        def small_table():
            clear()
            info = analyze_verbose("ANALYZE VERBOSE coding.issues")
            assert info == ('"issues": 1234 rows sampled of 1234, from 13 of 13 pages of 100 '
                            '(13 Coding calls)'), info
            assert pages_asked() == list(range(1, 14)), pages_asked()
            assert psql("SELECT reltuples FROM pg_class WHERE oid = 'coding.issues'::regclass",
                        db=DB) == "1234"
            stats = psql("SELECT n_distinct > 0, most_common_vals IS NOT NULL FROM pg_stats "
                         "WHERE schemaname = 'coding' AND tablename = 'issues' "
                         "AND attname = 'issue_status_type'", db=DB)
            assert stats == "t|t", stats
            # the whole table was sampled: its few status types and its
            # NULLs account for every row, as counted by a scan
            share = psql("SELECT round((sum(f) + max(null_frac))::numeric, 2) FROM pg_stats, "
                         "unnest(most_common_freqs) f WHERE schemaname = 'coding' "
                         "AND tablename = 'issues' AND attname = 'issue_status_type'", db=DB)
            assert share == "1.00", share
            todo = psql("SELECT round(f::numeric, 3) FROM pg_stats, unnest(most_common_vals::text::text[], "
                        "most_common_freqs) AS m(v, f) WHERE schemaname = 'coding' AND "
                        "tablename = 'issues' AND attname = 'issue_status_type' AND v = 'TODO'",
                        db=DB)
            counted = psql("SELECT round(count(*) FILTER (WHERE issue_status_type = 'TODO')"
                           "::numeric / count(*), 3) FROM coding.issues", db=DB)
            assert todo == counted, "pg_stats %s, counted %s" % (todo, counted)
        res.check("ANALYZE of 1,234 issues in pages of 100: pages 1 to 13 once each, "
                  "reltuples 1234, column statistics", small_table)

        def fresh_session_plans():
            assert estimate("coding.issues") == 1234, estimate("coding.issues")
        res.check("a fresh session then estimates 1,234 issues (pg_class.reltuples)",
                  fresh_session_plans)

        def detail_only_null():
            out = psql("SELECT null_frac FROM pg_stats WHERE schemaname = 'coding' AND "
                       "tablename = 'issues' AND attname IN ('epic', 'watchers')", db=DB)
            assert out.split("\n") == ["1", "1"], out
            assert psql("SELECT null_frac < 1 FROM pg_stats WHERE schemaname = 'coding' AND "
                        "tablename = 'issues' AND attname = 'name'", db=DB) == "t"
        res.check("detail-only columns are NULL in the sample, list columns are not",
                  detail_only_null)

        def big_table():
            clear()
            # statistics target 10: 3,000 rows wanted, 30 pages of 100 of 50
            info = analyze_verbose("SET default_statistics_target = 10; "
                                   "ANALYZE VERBOSE big.issues")
            assert info == ('"issues": 3000 rows sampled of 5000, from 30 of 50 pages of 100 '
                            '(30 Coding calls)'), info
            pages = pages_asked()
            assert len(pages) == 30 and len(set(pages)) == 30, pages
            assert pages[0] == 1 and pages == sorted(pages) and pages[-1] <= 50, pages
            # drawn, not the first 30
            assert pages != list(range(1, 31)), pages
            assert psql("SELECT reltuples FROM pg_class WHERE oid = 'big.issues'::regclass",
                        db=DB) == "5000"
        res.check("ANALYZE of 5,000 issues for 3,000 rows: page 1 and 29 random pages of "
                  "the 50, each once; reltuples 5000", big_table)

        def other_tables():
            for table in ("iterations", "project_members"):
                clear()
                count = psql("SELECT count(*) FROM coding.%s" % table, db=DB)
                psql("ANALYZE coding.%s" % table, db=DB)
                got = psql("SELECT reltuples::bigint FROM pg_class "
                           "WHERE oid = 'coding.%s'::regclass" % table, db=DB)
                assert got == count, "%s: reltuples %s, count %s" % (table, got, count)
                assert int(count) > 0, count
        res.check("iterations and project_members: reltuples equals the rows scanned",
                  other_tables)

        def refused_token():
            psql("ALTER USER MAPPING FOR CURRENT_USER SERVER coding "
                 "OPTIONS (SET token 'not-the-token-xyz')", db=DB)
            try:
                r = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "VERBOSITY=verbose",
                                    "-d", DB, "-c", "ANALYZE coding.issues"],
                                   capture_output=True, text=True, timeout=scaled(60))
            finally:
                psql("ALTER USER MAPPING FOR CURRENT_USER SERVER coding "
                     "OPTIONS (SET token 'secret-token')", db=DB)
            assert r.returncode != 0, r.stdout
            assert "ERROR:  28000:" in r.stderr, r.stderr
            assert "not-the-token-xyz" not in r.stderr, r.stderr
            # and the statistics from before stay
            assert psql("SELECT reltuples FROM pg_class WHERE oid = 'coding.issues'::regclass",
                        db=DB) == "1234"
        res.check("a refused token fails ANALYZE with 28000, without the token, and keeps "
                  "the statistics", refused_token)

        def cancelled():
            clear()
            sim.fault(type="stall_mid_body", action=LIST, seconds=60)
            proc = subprocess.Popen(["psql", "-X", "-A", "-t", "-d", DB, "-c",
                                     "ANALYZE /* analyze-under-test */ big.issues"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                pid = wait_until(lambda: psql(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE '%%analyze-under-test%%' "
                    "AND query NOT LIKE '%%pg_stat_activity%%' AND wait_event_type = 'Extension'",
                    db=DB) or None, 30, "ANALYZE to wait on Coding")
                t0 = time.monotonic()
                psql("SELECT pg_cancel_backend(%s)" % pid, db=DB)
                _, err = proc.communicate(timeout=5)
            finally:
                if proc.poll() is None:
                    proc.kill()
                sim.call("DELETE", "/_sim/faults")
            assert "canceling statement due to user request" in err, err
            print("     pg_cancel_backend ended the stalled ANALYZE in %.0f ms"
                  % ((time.monotonic() - t0) * 1000))
            assert psql("SELECT reltuples FROM pg_class WHERE oid = 'big.issues'::regclass",
                        db=DB) == "5000"
        res.check("Ctrl-C ends an ANALYZE stalled mid-body; the statistics stay", cancelled)
    res.finish()


if __name__ == "__main__":
    main()
