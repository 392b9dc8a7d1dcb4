#!/usr/bin/env python3
"""t_jsonb_build: the jsonb columns equal what PostgreSQL's own jsonb input
makes of the same JSON text.

convert.c builds jsonb values straight from the parsed tree (its own key
sort and duplicate-key rule, no pushJsonbValue) and remembers the recent
values of each jsonb column to reuse their jsonb.  Both are checked here
against jsonb_in, which is the definition of the right answer:

- pages of generated issues whose Labels, CustomFields, Assignees and
  IssueTypeDetail hold objects with duplicate keys, keys that sort
  differently by length and by bytes, non-ASCII keys and strings, escapes,
  floats, nesting; drawn so that values repeat (the cache hits), nearly
  repeat (same keys, one value different: the cache must not hit), and
  vary enough that the cache recycles its memory during the scan;
- rows with a duplicated key at the top level (raw keeps the last), and
  one value that is a map of 20,000 keys with duplicates;
- each page is served as text by the simulator's raw_body fault, and the
  same text goes to jsonb_in in SQL; every row's raw and jsonb columns must
  be equal (jsonb equality: numbers by value) with the fast parser
  (simdjson) and with cJSON alone.
"""
import base64
import json
import os
import random
import subprocess

from pgtest import Results, psql, scaled, scenario, setup_db

DB = "t_jsonb_build"
PAGE = 500
PAGES = 6
# The parser's interned-key lookup compares a key's length and its first
# and last 8 bytes, and the middle only past 16 bytes: keys that share both
# ends and differ only in the middle, and keys at the lengths where that
# changes (7/8, 16/17, 64/65: longer keys are not interned), must stay
# distinct keys.
EDGE_KEYS = ["abcdefg", "abcdefgh", "abcdefghstuvwxyz", "abcdefgh1stuvwxyz",
             "abcdefgh2stuvwxyz", "abcdefgh12stuvwxyz", "abcdefgh21stuvwxyz",
             "abcdefgh" + "m" * 47 + "1stuvwxyz", "abcdefgh" + "m" * 47 + "2stuvwxyz",
             "abcdefgh" + "m" * 48 + "1stuvwxyz", "abcdefgh" + "m" * 48 + "2stuvwxyz"]
KEYS = ["a", "b", "Id", "id", "Name", "ab", "ba", "Zz", "zZ", "\u00fc", "\u4e2d\u6587", "",
        "x" * 10, "Description", "IsSystem"] + EDGE_KEYS
STRINGS = ["", "a", "\u7f3a\u9677", "line\nbreak", "quote \" and \\ backslash", "\u00e9t\u00e9",
           "\U0001f680 emoji", "tab\tend", "2024-01-01", "x" * 300]
NUMBERS = [0, 1, -1, 2 ** 31, -(2 ** 53) + 1, 2 ** 53 - 1, 0.1, 3.25, -0.0, 1e-07, 123456.789,
           1.5e300]


def dump(v):
    """JSON text of a generated value; ("obj", pairs) keeps duplicate keys."""
    if isinstance(v, tuple):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + dump(x)
                              for k, x in v[1]) + "}"
    if isinstance(v, list):
        return "[" + ",".join(dump(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)


def scalar(rng):
    kind = rng.randrange(5)
    if kind == 0:
        return rng.choice(STRINGS)
    if kind == 1:
        return rng.choice(NUMBERS)
    if kind == 2:
        return rng.choice([True, False])
    if kind == 3:
        return None
    return rng.randint(-10 ** 6, 10 ** 6)


def value(rng, depth=0):
    kind = rng.randrange(4) if depth < 3 else 0
    if kind == 1:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == 2:
        return obj(rng, depth + 1)
    return scalar(rng)


def obj(rng, depth=0):
    """An object whose keys repeat often (a small key pool, drawn with
    replacement); it always holds a non-zero number, so that it is never
    Coding's all-zero "not set" object (which becomes NULL)."""
    pairs = [(rng.choice(KEYS), value(rng, depth)) for _ in range(rng.randint(0, 6))]
    pairs.insert(rng.randint(0, len(pairs)), (rng.choice(KEYS), rng.randint(1, 10 ** 6)))
    # a later duplicate of a key wins in jsonb_in
    if rng.random() < 0.3:
        pairs.append((pairs[0][0], scalar(rng)))
    return ("obj", pairs)


def near_copy(rng, v):
    """The same object with one scalar changed: same shape, other jsonb."""
    pairs = list(v[1])
    i = rng.randrange(len(pairs))
    k, old = pairs[i]
    new = old
    while dump(new) == dump(old):
        new = rng.randint(1, 10 ** 6)
    pairs[i] = (k, new)
    return ("obj", pairs)


def pool(rng, make, hot, cold):
    """hot values drawn half of the time, so that values repeat; each hot
    value also has a near copy among the cold ones."""
    hot_values = [make(rng) for _ in range(hot)]
    cold_values = [make(rng) for _ in range(cold)]
    cold_values += [near_copy(rng, v) if isinstance(v, tuple) else v for v in hot_values]
    return lambda: rng.choice(hot_values if rng.random() < 0.5 else cold_values)


def main():
    res = Results()
    seed = int(os.environ.get("JSONB_SEED", random.randrange(10 ** 9)))
    print("seed %d" % seed)
    rng = random.Random(seed)
    with scenario(DB, "--team", "acme", "--project", "backend:3", "--token", "secret-token",
                  "--seed", "6") as sim:
        setup_db(DB, sim, "backend", ", max_retries '0', page_size '%d'" % PAGE)
        labels = pool(rng, lambda r: [obj(r) for _ in range(r.randint(1, 3))], 8, 64)
        custom = pool(rng, lambda r: [obj(r)], 8, 64)
        assignees = pool(rng, lambda r: [r.randint(1, 40) for _ in range(r.randint(1, 3))], 6, 30)
        detail = pool(rng, obj, 5, 64)

        # one value is a map of 20,000 keys (with duplicates): sorted in
        # n log n, not quadratic time, and more distinct keys than the
        # parser interns
        big_map = [("obj", [("k%d" % rng.randrange(15000), i) for i in range(20000)])]

        def row(code):
            # assignee_id reads AssigneeId, or Assignee.Id when it is absent
            who = [("AssigneeId", rng.randint(1, 99))] if code % 2 else \
                [("Assignee", ("obj", [("Id", rng.randint(100, 199))]))]
            pairs = who + [("Code", code), ("Type", "DEFECT"), ("Name", "issue %d" % code),
                     ("Iteration", ("obj", [("Code", rng.randint(1, 9)), ("Name", "it")])),
                     ("Labels", labels()), ("CustomFields", big_map if code == 7 else custom()),
                     ("Assignees", assignees()), ("IssueTypeDetail", detail()),
                     ("ParentId", 0)]
            if rng.random() < 0.1:
                pairs.append(("ParentId", rng.randint(1, 99)))   # raw keeps the last
                pairs.append(("Type", "MISSION"))   # a column reads the first
            return dump(("obj", pairs))

        bodies = []
        for p in range(PAGES):
            rows = ",".join(row(p * PAGE + i + 1) for i in range(PAGE))
            bodies.append('{"Response":{"Data":{"PageNumber":%d,"PageSize":%d,"TotalPage":%d,'
                          '"TotalCount":%d,"List":[%s]},"RequestId":"t-jsonb-%d"}}'
                          % (p + 1, PAGE, PAGES, PAGES * PAGE, rows, p))

        # the expected values: jsonb_in of the very same text
        load = ["CREATE TABLE expected (code int, raw jsonb, labels jsonb, custom_fields jsonb,"
                " assignees jsonb, issue_type_detail jsonb, assignee_id bigint,"
                " iteration_code int);"]
        for b in bodies:
            tag = "$body%d$" % rng.randrange(10 ** 9)
            assert tag not in b
            load.append("INSERT INTO expected SELECT (e->>'Code')::int, e, e->'Labels',"
                        " e->'CustomFields', e->'Assignees', e->'IssueTypeDetail',"
                        " coalesce(e->>'AssigneeId', e->'Assignee'->>'Id')::bigint,"
                        " (e->'Iteration'->>'Code')::int"
                        " FROM jsonb_array_elements(%s%s%s::jsonb #> '{Response,Data,List}') e;"
                        % (tag, b, tag))
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB],
                           input="\n".join(load), capture_output=True, text=True,
                           timeout=scaled(300))
        assert r.returncode == 0, r.stderr[-500:]

        def serve_pages():
            sim.call("DELETE", "/_sim/faults")
            for b in bodies:
                sim.fault(type="raw_body", action="DescribeIssueListWithPage",
                          body_b64=base64.b64encode(b.encode("utf-8")).decode())

        def compare(fast, with_raw=True):
            # without raw, simdjson's rows are read in place (row views)
            serve_pages()
            out = psql("""
                SET coding_fdw.fast_json = %(fast)s;
                CREATE TEMP TABLE got AS SELECT code, %(raw)s AS raw, labels, custom_fields,
                  assignees, issue_type_detail FROM coding.issues;
                SELECT count(*) FROM got;
                SELECT count(*) FROM expected e JOIN got g USING (code)
                 WHERE %(same_raw)s AND e.labels = g.labels AND e.custom_fields = g.custom_fields
                   AND e.assignees = g.assignees AND e.issue_type_detail = g.issue_type_detail;
                SELECT g.code || ': ' || left(g.issue_type_detail::text, 120) || ' / expected '
                       || left(e.issue_type_detail::text, 120)
                  FROM expected e JOIN got g USING (code)
                 WHERE NOT (%(same_raw)s AND e.labels = g.labels AND e.custom_fields = g.custom_fields
                   AND e.assignees = g.assignees AND e.issue_type_detail = g.issue_type_detail)
                 ORDER BY g.code LIMIT 3;""" % {
                "fast": "on" if fast else "off", "raw": "raw" if with_raw else "NULL::jsonb",
                "same_raw": "e.raw = g.raw" if with_raw else "true"}, db=DB)
            left = sim.call("GET", "/_sim/faults")
            lines = out.split("\n")
            n = PAGES * PAGE
            assert lines[0] == str(n), "scanned %s rows, expected %d" % (lines[0], n)
            assert lines[1] == str(n), "%s of %d rows equal jsonb_in's values: %s" \
                % (lines[1], n, lines[2:])
            assert not left.get("faults"), "pages left unread: %d" % len(left["faults"])

        res.check("%d generated issues (duplicate keys, repeated and nearly repeated values): "
                  "raw and the jsonb columns equal jsonb_in's, simdjson" % (PAGES * PAGE),
                  lambda: compare(True))
        res.check("the same with cJSON alone (coding_fdw.fast_json = off)",
                  lambda: compare(False))
        res.check("the jsonb columns without raw (simdjson's rows read in place, no tree "
                  "built for them) equal jsonb_in's", lambda: compare(True, with_raw=False))

        def cache_hits(fast):
            # Every row has the same IssueTypeDetail (but for the sign of a
            # zero, which compares equal) and one of two Labels arrays: after
            # the first sight of each, every value comes from the column's
            # cache.  A cache that stopped hitting would only make scans
            # slower, so the DEBUG1 report is what shows it.
            detail = '{"Id":7,"Name":"需求 \\"A\\"","IsSystem":true,"Tags":[1,%s,"x"],"Z":null}'
            label_sets = ('[{"Id":1,"Name":"bug","Color":"#ff0000"}]',
                          '[{"Id":2,"Name":"ui","Color":"#00ff00"},{"Id":0,"Name":"","Color":""}]')
            rows = ",".join('{"Code":%d,"Type":"DEFECT","IssueTypeDetail":%s,"Labels":%s}'
                            % (i + 1, detail % ("-0.0" if i % 3 else "0"), label_sets[i % 2])
                            for i in range(PAGE))
            sim.call("DELETE", "/_sim/faults")
            body = ('{"Response":{"Data":{"PageNumber":1,"PageSize":%d,"TotalPage":1,'
                    '"TotalCount":%d,"List":[%s]},"RequestId":"t-jsonb-cache"}}'
                    % (PAGE, PAGE, rows))
            sim.fault(type="raw_body", action="DescribeIssueListWithPage",
                      body_b64=base64.b64encode(body.encode("utf-8")).decode())
            r = subprocess.run(
                ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB, "-c",
                 "SET coding_fdw.fast_json = %s; SET client_min_messages = debug1; "
                 "SELECT count(DISTINCT issue_type_detail), count(DISTINCT labels) "
                 "FROM coding.issues" % ("on" if fast else "off")],
                capture_output=True, text=True, timeout=scaled(120))
            assert r.returncode == 0, r.stderr
            assert r.stdout.strip() == "1|2", r.stdout
            report = sorted(l.split("DEBUG:  ")[1] for l in r.stderr.splitlines()
                            if "values from the cache" in l)
            assert report == [
                'coding_fdw: jsonb column "issue_type_detail": %d of %d values from the cache'
                % (PAGE - 1, PAGE),
                'coding_fdw: jsonb column "labels": %d of %d values from the cache'
                % (PAGE - 2, PAGE)], report

        res.check("the jsonb cache: %d rows repeating one IssueTypeDetail and two Labels "
                  "values hit it %d and %d times (DEBUG1 report), simdjson"
                  % (PAGE, PAGE - 1, PAGE - 2), lambda: cache_hits(True))
        res.check("the same with cJSON alone", lambda: cache_hits(False))

        def nul_in_strings(fast):
            # cJSON ends a string at an escaped NUL and simdjson keeps the
            # rest; both used to return the cut text.  PostgreSQL's text and
            # jsonb cannot hold a NUL: it becomes U+FFFD (3 bytes), alike for
            # both, and the rest of the string stays
            rows = ",".join('{"Code":%d,"Type":"DEFECT","Name":"a\\u0000bc","Description":'
                            '"\\u0000x","IssueStatusName":"ok","Labels":["l\\u0000m"]}' % (i + 1)
                            for i in range(3))
            sim.call("DELETE", "/_sim/faults")
            body = ('{"Response":{"Data":{"PageNumber":1,"PageSize":%d,"TotalPage":1,'
                    '"TotalCount":3,"List":[%s]},"RequestId":"t-jsonb-nul"}}' % (PAGE, rows))
            sim.fault(type="raw_body", action="DescribeIssueListWithPage",
                      body_b64=base64.b64encode(body.encode("utf-8")).decode())
            out = psql("SET coding_fdw.fast_json = %s; SELECT octet_length(name), "
                       "octet_length(description), octet_length(issue_status_name), "
                       "labels::text = '[\"l' || chr(65533) || 'm\"]' FROM coding.issues"
                       % ("on" if fast else "off"), db=DB)
            assert out.split("\n") == ["6|4|2|t"] * 3, out

        res.check("an escaped NUL becomes U+FFFD and the string goes on, simdjson",
                  lambda: nul_in_strings(True))
        res.check("the same with cJSON alone", lambda: nul_in_strings(False))

        def few_columns():
            # without raw, simdjson builds only the row keys the scan reads:
            # a fallback path (Assignee.Id) and a nested one (Iteration.Code)
            # must still find their values
            serve_pages()
            out = psql("""
                CREATE TEMP TABLE got AS
                  SELECT code, assignee_id, iteration_code, type FROM coding.issues;
                SELECT count(*) FROM got;
                SELECT count(*) FROM expected e JOIN got g USING (code)
                 WHERE e.assignee_id = g.assignee_id AND e.iteration_code = g.iteration_code;
                SELECT count(*) FROM got WHERE code % 2 = 0 AND assignee_id >= 100;
                SELECT count(*) FROM got WHERE type = 'DEFECT';
                SELECT count(*) FROM expected WHERE raw->>'Type' = 'MISSION';""", db=DB)
            n = PAGES * PAGE
            lines = out.split("\n")
            assert lines[:4] == [str(n), str(n), str(n // 2), str(n)], out
            assert int(lines[4]) > n // 20, "rows with a second Type: %s" % lines[4]
        res.check("%d issues, 4 columns (read in place): assignee_id from AssigneeId or "
                  "from the fallback Assignee.Id, iteration_code from Iteration.Code, type "
                  "from the first of two Type keys" % (PAGES * PAGE),
                  few_columns)
    res.finish()


if __name__ == "__main__":
    main()
