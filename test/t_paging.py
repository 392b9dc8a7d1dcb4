#!/usr/bin/env python3
"""t_paging: an issues scan reads every page exactly once and no more.

* Page boundaries: projects of 499, 500, 501 and 1000 issues are read in
  ceil(N/500) DescribeIssueListWithPage calls (the last page is known from
  TotalPage, not from an extra empty page), each code exactly once; with
  page_size 7, 499 issues take ceil(499/7) calls.
* LIMIT stops paging when Coding applies everything before it (no clause,
  or an ORDER BY pushed as SortKey/SortValue), and does not when a clause
  must be checked locally and no row passes it.
* Retries inside a scan: a page that fails (HTTP 500, RequestLimitExceeded)
  is retried within max_retries, the scan still returns every row once,
  and EXPLAIN ANALYZE counts the retries; past max_retries the statement
  fails with the class's SQLSTATE (HV000, 53400).
* Retry-After on an HTTP 429 is honoured.
* Reading ahead: a query that reads every page asks for page n+1 while
  page n is converted (seen when the first row fails: page 2 was already
  asked for); a LIMIT, a cursor, EXISTS, a join or detail columns never
  make a call nobody needed.

Every count comes from the simulated server's request log.
"""
import math
import subprocess
import time

from pgtest import Results, psql, scenario, setup_db, wait_until

DB = "t_paging"
LIST = "DescribeIssueListWithPage"
SIZES = (499, 500, 501, 1000)


def main():
    res = Results()
    sim_args = ["--team", "acme", "--token", "secret-token", "--seed", "11"]
    for n in SIZES:
        sim_args += ["--project", "p%d:%d" % (n, n)]
    with scenario(DB, *sim_args) as sim:
        setup_db(DB, sim, "p499")
        for n in SIZES:
            psql("CREATE SCHEMA p{0}; IMPORT FOREIGN SCHEMA p{0} LIMIT TO (issues) "
                 "FROM SERVER coding INTO p{0}".format(n), db=DB)
        # a function that runs a statement and returns its SQLSTATE and message
        psql("""CREATE FUNCTION sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
                BEGIN
                  EXECUTE q;
                  RETURN 'no error';
                EXCEPTION WHEN OTHERS THEN
                  RETURN SQLSTATE || ' ' || SQLERRM;
                END $$""", db=DB)

        def clear():
            sim.call("DELETE", "/_sim/log")
            sim.call("DELETE", "/_sim/faults")

        def list_calls():
            return sim.call("GET", "/_sim/log/count?action=" + LIST)["count"]

        def list_log():
            return sim.call("GET", "/_sim/log?action=" + LIST)["requests"]

        def server_option(name, value):
            """Set (value) or drop (None) a server option."""
            have = psql("SELECT count(*) FROM pg_foreign_server, unnest(srvoptions) o "
                        "WHERE srvname = 'coding' AND o LIKE '%s=%%'" % name, db=DB) == "1"
            if value is None:
                if have:
                    psql("ALTER SERVER coding OPTIONS (DROP %s)" % name, db=DB)
            else:
                psql("ALTER SERVER coding OPTIONS (%s %s '%s')"
                     % ("SET" if have else "ADD", name, value), db=DB)

        # ---- page boundaries ------------------------------------------------

        def boundaries(n, page_size=500):
            def run():
                clear()
                out = psql("SELECT count(*), count(DISTINCT code), min(code), max(code) "
                           "FROM p%d.issues" % n, db=DB)
                assert out == "%d|%d|1|%d" % (n, n, n), out
                want = math.ceil(n / page_size)
                got = list_calls()
                assert got == want, "%d %s calls, want %d" % (got, LIST, want)
                pages = [e["body"].get("PageNumber") for e in list_log()]
                sizes = {e["body"].get("PageSize") for e in list_log()}
                assert pages == list(range(1, want + 1)), "pages requested: %s" % pages
                assert sizes == {page_size}, "PageSize sent: %s" % sizes
            return run

        for n in SIZES:
            res.check("%d issues: every code once, %d list call(s)" % (n, math.ceil(n / 500)),
                      boundaries(n))

        def small_pages():
            server_option("page_size", "7")
            try:
                boundaries(499, 7)()
            finally:
                server_option("page_size", None)
        res.check("499 issues with page_size 7: every code once, %d list calls"
                  % math.ceil(499 / 7), small_pages)

        # ---- LIMIT stops paging -------------------------------------------

        server_option("page_size", "100")

        def limit_plain():
            clear()
            out = psql("SELECT code FROM p1000.issues LIMIT 5", db=DB)
            assert out.split("\n") == ["1", "2", "3", "4", "5"], out
            assert list_calls() == 1, "%d list calls" % list_calls()
        res.check("LIMIT 5 without ORDER BY: 1 list call", limit_plain)

        def limit_sorted():
            q = "SELECT code, updated_at FROM p1000.issues ORDER BY updated_at DESC LIMIT %d"
            # the data must not have a tie across the 5th/6th row, or "the
            # same rows" would not be defined
            six = psql("SET coding_fdw.enable_pushdown = off; " + q % 6, db=DB).split("\n")
            assert six[4].split("|")[1] != six[5].split("|")[1], "tie at the LIMIT: %s" % six
            clear()
            pushed = psql(q % 5, db=DB).split("\n")
            log = list_log()
            assert len(log) == 1, "%d list calls with pushdown" % len(log)
            body = log[0]["body"]
            assert (body.get("SortKey"), body.get("SortValue")) == ("UPDATED_AT", "DESC"), body
            assert body.get("PageNumber") == 1, body
            clear()
            local = psql("SET coding_fdw.enable_pushdown = off; " + q % 5, db=DB).split("\n")
            assert list_calls() == 10, "%d list calls without pushdown" % list_calls()
            assert len(pushed) == 5, pushed
            # ties inside the first five may come in either order locally
            assert sorted(pushed) == sorted(local), "pushed %s, local %s" % (pushed, local)
            assert [r.split("|")[1] for r in pushed] == [r.split("|")[1] for r in local]
        res.check("ORDER BY updated_at DESC LIMIT 5: 1 call with SortKey, same rows as "
                  "without pushdown (10 calls)", limit_sorted)

        def limit_local_filter():
            clear()
            out = psql("SELECT code FROM p1000.issues WHERE description LIKE '%zzz-no-such%' "
                       "LIMIT 5", db=DB)
            assert out == "", out
            assert list_calls() == 10, "%d list calls" % list_calls()
            pages = [e["body"].get("PageNumber") for e in list_log()]
            assert pages == list(range(1, 11)), pages
        res.check("LIMIT 5 with a local-only filter matching nothing: all 10 pages", limit_local_filter)

        def limit_details():
            # the scan is not told about a LIMIT or a cursor's FETCH: the
            # page's rows are described in batches of 8, 16, 32, ... as they
            # are reached, so 3 rows cost 1 list call and 8 DescribeIssue,
            # not the page's 100 (all 100 for a full read, as before)
            def described():
                return sim.call("GET", "/_sim/log/count?action=DescribeIssue")["count"]
            clear()
            out = psql("SELECT code, watchers IS NOT NULL FROM p1000.issues LIMIT 3", db=DB)
            assert out.split("\n") == ["1|t", "2|t", "3|t"], out
            assert (list_calls(), described()) == (1, 8), (list_calls(), described())
            clear()
            out = psql("BEGIN; DECLARE c CURSOR FOR SELECT code, watchers FROM p1000.issues; "
                       "FETCH 10 FROM c; COMMIT", db=DB)
            assert len(out.split("\n")) == 10, out
            assert (list_calls(), described()) == (1, 24), (list_calls(), described())
            clear()
            assert psql("SELECT count(watchers) FROM p1000.issues WHERE code <= 150", db=DB) == "150"
            assert described() == 150, described()
        res.check("LIMIT 3 / FETCH 10 with a detail column: 8 / 24 DescribeIssue, not the page's 100",
                  limit_details)

        def capped_pages():
            # a server that caps its pages says so in Data.PageSize: pages of
            # 2 when 100 were asked for are not "short", the third (1) is
            clear()
            for page, codes in ((1, (1, 2)), (2, (3, 4)), (3, (5,))):
                rows = ",".join('{"Code":%d,"Name":"n%d"}' % (c, c) for c in codes)
                sim.fault(type="raw_body", action=LIST, count=1,
                          body='{"Response":{"Data":{"PageNumber":%d,"PageSize":2,"TotalPage":3,'
                               '"TotalCount":5,"List":[%s]},"RequestId":"capped"}}' % (page, rows))
            out = psql("SELECT string_agg(code::text, ',' ORDER BY code) FROM p1000.issues", db=DB)
            assert out == "1,2,3,4,5", out
            assert list_calls() == 3, "%d list calls" % list_calls()
            sim.call("DELETE", "/_sim/faults")
        res.check("pages capped by the server (Data.PageSize 2 < 100 asked): 2+2+1 rows, all read",
                  capped_pages)

        # ---- reading ahead: only when every page will be read ------------------

        def list_pages():
            return [e["body"].get("PageNumber") for e in list_log()]

        def read_ahead_seen():
            clear()
            out = psql("SELECT code / (code - code) FROM p1000.issues", db=DB, check=False)
            assert "division by zero" in out.stderr, out.stderr
            # page 2 was sent before row 1 failed; the server logs it when
            # it reads it, so wait for that with a deadline
            wait_until(lambda: len(list_log()) >= 2, 10, "the request for page 2")
            assert list_pages() == [1, 2], list_pages()
        res.check("a full scan asks for page 2 while page 1 is converted (page 2 is already "
                  "asked for when row 1 fails)", read_ahead_seen)

        def no_wasted_call(sql, want):
            def run():
                clear()
                if "pg_temp.calls_coding" in sql:
                    sql_run = ("CREATE FUNCTION pg_temp.calls_coding(c int) RETURNS boolean VOLATILE "
                               "LANGUAGE sql AS 'SELECT count(*) >= 0 FROM p1000.issues WHERE code = 1'; " + sql)
                else:
                    sql_run = sql
                psql(sql_run, db=DB)
                # two scans of a join may interleave: compare as multisets
                assert sorted(list_pages()) == sorted(want), "pages requested %s, want %s" % (
                    list_pages(), want)
            return run
        for what, sql, want in (
                ("a cursor that fetches 3 rows", "BEGIN; DECLARE c CURSOR FOR SELECT code FROM p1000.issues; "
                 "FETCH 3 FROM c; CLOSE c; COMMIT", [1]),
                ("EXISTS", "SELECT EXISTS (SELECT 1 FROM p1000.issues WHERE code % 2 = 1)", [1]),
                ("LIMIT 150 (2 pages)", "SELECT count(*) FROM (SELECT code FROM p1000.issues LIMIT 150) x",
                 [1, 2]),
                ("a join (every page of both, once)",
                 "SELECT count(*) FROM p1000.issues a JOIN p1000.issues b ON a.name = b.name",
                 list(range(1, 11)) * 2),
                ("detail columns", "SELECT count(epic) FROM (SELECT epic FROM p1000.issues LIMIT 3) x", [1]),
                # a subquery that calls Coding between rows would abandon the
                # page asked for ahead (page 2 was asked for twice)
                ("a volatile function calling Coding between rows, in WHERE",
                 "SELECT count(*) FROM p1000.issues WHERE pg_temp.calls_coding(code)", list(range(1, 11))),
                ("a subquery calling Coding between rows",
                 "SELECT count(x) FROM (SELECT code + (SELECT count(*) FROM p1000.issues WHERE code = 1) AS x "
                 "FROM p1000.issues) s", list(range(1, 11)))):
            res.check("no call nobody needed: %s asks for pages %s" % (what, want),
                      no_wasted_call(sql, want))

        def idle_between_fetches():
            # page 2 is asked for ahead while page 1 is read; the client then
            # idles past request_timeout_ms before fetching on: that page
            # is sent again (as the same attempt), not reported timed out
            clear()
            # page 2 answers 0.1 s late, so it is still in flight when the
            # client goes idle (and its answer arrives unread)
            sim.fault(type="delay", seconds=0.1, skip=1, count=1)
            server_option("request_timeout_ms", "300")
            server_option("max_retries", "0")
            try:
                out = psql("SET cursor_tuple_fraction = 1; BEGIN; "
                           "DECLARE c CURSOR FOR SELECT code FROM p1000.issues; "
                           "FETCH 50 FROM c; SELECT pg_sleep(0.6); FETCH ALL FROM c; COMMIT",
                           db=DB, check=False)
            finally:
                server_option("request_timeout_ms", None)
                server_option("max_retries", None)
            assert out.returncode == 0, out.stderr
            codes = [int(x) for x in out.stdout.split()]
            assert sorted(codes) == list(range(1, 1001)), "%d rows" % len(codes)
            assert list_pages() == [1, 2, 2] + list(range(3, 11)), list_pages()
        res.check("a page asked for ahead outlives a client idle past request_timeout_ms: "
                  "sent again, no error", idle_between_fetches)

        # ---- retries inside a scan --------------------------------------------

        server_option("max_retries", "3")
        explain = ("EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
                   "SELECT code FROM p1000.issues")

        def retried(ftype, error_code):
            def run():
                clear()
                sim.fault(type=ftype, action=LIST, skip=2, count=2)
                out = psql("SELECT count(*), count(DISTINCT code), min(code), max(code) "
                           "FROM p1000.issues", db=DB)
                assert out == "1000|1000|1|1000", out
                log = list_log()
                pages = [e["body"]["PageNumber"] for e in log]
                assert pages == [1, 2, 3, 3, 3] + list(range(4, 11)), pages
                faults = [(e["body"]["PageNumber"], e["fault"], e["error_code"])
                          for e in log if e["fault"]]
                assert faults == [(3, ftype, error_code)] * 2, faults
                assert sim.call("GET", "/_sim/faults")["faults"] == []

                clear()
                sim.fault(type=ftype, action=LIST, skip=2, count=2)
                plan = psql(explain, db=DB).split("\n")
                lines = [l.strip() for l in plan]
                assert "Coding retries: 2" in lines, plan
                assert "Coding calls: 12" in lines, plan
                assert "Coding pages: 10" in lines, plan
                assert any(l.startswith("Foreign Scan on p1000.issues (actual rows=1000 loops=1)")
                           for l in lines), plan
                assert list_calls() == 12, "%d list calls" % list_calls()
            return run

        res.check("http_500 twice on page 3: 1000 rows, retries 2, calls 12",
                  retried("http_500", None))
        res.check("RequestLimitExceeded twice on page 3: 1000 rows, retries 2, calls 12",
                  retried("rate_limited", "RequestLimitExceeded"))

        def chunked_pages():
            # no Content-Length: the receive buffer grows as chunks arrive
            digest = ("SELECT count(*), md5(string_agg(i::text, '|' ORDER BY code)) "
                      "FROM p1000.issues i")
            clear()
            plain = psql(digest, db=DB)
            clear()
            sim.fault(type="chunked", action=LIST, count=0, chunk=4093)
            got = psql(digest, db=DB)
            faults = [e["fault"] for e in list_log()]
            sim.call("DELETE", "/_sim/faults")
            assert plain.startswith("1000|"), plain
            assert got == plain, "chunked %s, plain %s" % (got, plain)
            assert faults == ["chunked"] * 10, faults
        res.check("every page chunked, no Content-Length: the same 1000 rows, every column",
                  chunked_pages)

        def interleaved_scans():
            # A scan's rows are read from its page's parsed document until
            # the next page (row views): two scans whose pages interleave
            # must each keep their own.  The outer scan returns a row, the
            # inner one is rescanned (five pages), then the outer one goes
            # on through the rest of its page.
            q = ("SELECT count(*), md5(string_agg(concat_ws(':', a.code, a.name, a.updated_at, "
                 "a.labels, b.code, b.name, b.updated_at, b.labels), '|' "
                 "ORDER BY a.code, b.code)) "
                 "FROM p1000.issues a JOIN p499.issues b ON b.code % 100 = a.code % 100 "
                 "WHERE a.code % 50 = 0")
            nested = ("SET enable_hashjoin = off; SET enable_mergejoin = off; "
                      "SET enable_material = off; SET coding_fdw.fast_json = %s; ")
            plan = psql(nested % "on" + "EXPLAIN (COSTS OFF) " + q, db=DB)
            assert "Nested Loop" in plan and "Materialize" not in plan, plan
            clear()
            got = psql(nested % "on" + q, db=DB)
            # outer: 10 pages of 100; inner: 5 pages for each of 20 outer rows
            assert list_calls() == 10 + 20 * 5, "%d list calls" % list_calls()
            want = psql(nested % "off" + q, db=DB)
            assert want.startswith("90|"), want
            assert got == want, "parsed with simdjson %s, with cJSON %s" % (got, want)
        res.check("nested loop of two scans, inner rescanned mid-page: each scan reads its "
                  "own page (same rows as with cJSON)", interleaved_scans)

        def exhausted(ftype, sqlstate, message):
            def run():
                clear()
                sim.fault(type=ftype, action=LIST, skip=2, count=5)
                out = psql("SELECT sqlstate_of('SELECT count(*) FROM p1000.issues')", db=DB)
                assert out.startswith(sqlstate + " " + message), out
                assert 'team "acme", project "p1000", Action %s' % LIST in out, out
                pages = [e["body"]["PageNumber"] for e in list_log()]
                # 1 + max_retries attempts at page 3, then nothing more
                assert pages == [1, 2, 3, 3, 3, 3], pages
                left = sim.call("GET", "/_sim/faults")["faults"]
                assert [f["count"] for f in left] == [1], left
                # psql's own error output carries the same SQLSTATE
                clear()
                sim.fault(type=ftype, action=LIST, skip=2, count=5)
                r = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "VERBOSITY=verbose",
                                    "-d", DB, "-c", "SELECT count(*) FROM p1000.issues"],
                                   capture_output=True, text=True, timeout=60)
                assert r.returncode != 0, r.stdout
                assert ("ERROR:  %s: %s" % (sqlstate, message)) in r.stderr, r.stderr
                assert list_calls() == 6, "%d list calls" % list_calls()
                if ftype == "http_500":
                    assert "(after 4 attempts)" in r.stderr, r.stderr
                clear()
            return run

        res.check("http_500 five times > max_retries 3: SQLSTATE HV000 after 4 attempts",
                  exhausted("http_500", "HV000", "Coding request failed"))
        res.check("RequestLimitExceeded five times > max_retries 3: SQLSTATE 53400",
                  exhausted("rate_limited", "53400", "Coding rate limit exceeded after 4 attempts"))

        def retry_after():
            clear()
            sim.fault(type="http_429", retry_after=1, count=1)
            t0 = time.monotonic()
            out = psql("SELECT count(*), count(DISTINCT code) FROM p499.issues", db=DB)
            elapsed = time.monotonic() - t0
            assert out == "499|499", out
            log = list_log()
            # p499 in pages of 100: page 1 twice, then pages 2 to 5
            assert [(e["body"]["PageNumber"], e["fault"]) for e in log] == \
                [(1, "http_429"), (1, None), (2, None), (3, None), (4, None), (5, None)], log
            wait = log[1]["ts"] - log[0]["ts"]
            print("     Retry-After 1: query %.2f s, retry sent %.2f s after the 429"
                  % (elapsed, wait))
            # (the log's wall-clock stamps get 10 ms for clock granularity)
            assert wait >= 0.99, "retried %.3f s after the 429" % wait
            assert elapsed >= 1.0, "query took %.3f s" % elapsed
            assert elapsed < 5.0, "query took %.3f s" % elapsed
        res.check("HTTP 429 with Retry-After: 1 is waited for, then the scan succeeds",
                  retry_after)
    res.finish()


if __name__ == "__main__":
    main()
