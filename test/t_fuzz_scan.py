#!/usr/bin/env python3
"""t_fuzz_scan: generated API responses through the scan path (issue #7,
fuzzing).  Real DescribeIssueListWithPage and DescribeIssue answers are
mutated (random bytes, truncation, values of every JSON type put in random
places, keys removed, huge and deeply nested values, \\u0000 and lone
surrogates) and served by the simulated server's raw_body fault; one
backend scans them in a PL/pgSQL loop that records each outcome.  Every
scan must succeed or fail with a documented class (HV*** FDW errors, 22***
values that do not fit, 54*** limits); the backend must never crash.

Each of FUZZ_DIFF_COUNT (default 300) more list answers is scanned twice,
with simdjson (coding_fdw.fast_json on) and with cJSON alone: the rows or
the error must be the same, for every column (whole rows are built), for a
few columns (simdjson builds only the keys they read) and for count(*).

FUZZ_SCAN_COUNT (default 3000), FUZZ_DIFF_COUNT and FUZZ_SEED reproduce a run.
"""
import base64
import json
import os
import random
import re
import urllib.request

from pgtest import Results, psql, scenario, setup_db

DB = "t_fuzz_scan"
LIST_COLUMNS = ("team, project, code, type, parent_type, name, description, issue_status_id, "
                "issue_status_name, issue_status_type, priority, assignee_id, assignees, "
                "creator_id, iteration_id, iteration_code, start_date, due_date, created_at, "
                "updated_at, completed_at, working_hours, story_point, issue_type_id, "
                "issue_type_detail, labels, custom_fields, parent_code")


def api(sim, action, **body):
    body = dict(body, Action=action)
    req = urllib.request.Request(sim.url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": "token secret-token"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def random_value(rng, depth=0):
    kind = rng.randrange(12)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2 ** 31, 2 ** 53 + 1, 10 ** 300, -28800000, 1.5e308, 1e-320, 3.25])
    if kind == 3:
        return rng.choice(["", "abc", "2024-01-01", "\u0000", "\ud800", "x" * rng.randint(1000, 200000),
                           "'; DROP TABLE t; --", "ü中文", "1e999"])
    if kind == 4 and depth < 3:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == 5 and depth < 3:
        return {rng.choice(["Id", "Code", "Name", "x"]): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if kind == 6:
        # deep nesting, spliced into the text by mutate() (Python's own
        # recursion limit would stop json.dumps)
        return "__DEEP_%d__" % rng.randint(50, 5000)
    return rng.randint(-10 ** 6, 10 ** 6)


def paths(obj, depth=0):
    """Every (container, key) place in a JSON tree (not below depth 20)."""
    out = []
    if depth > 20:
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((obj, k))
            out += paths(v, depth + 1)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append((obj, i))
            out += paths(v, depth + 1)
    return out


def mutate(rng, raw):
    """One hostile body (bytes) made from a real answer."""
    kind = rng.randrange(10)
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 400)))
    if kind == 1:
        return raw[:rng.randrange(len(raw))]
    doc = json.loads(raw)
    for _ in range(rng.randint(1, 4)):
        places = paths(doc)
        if not places:
            break
        container, key = rng.choice(places)
        if kind == 2 and isinstance(container, dict):
            del container[key]
        else:
            container[key] = random_value(rng)
    text = json.dumps(doc, ensure_ascii=rng.random() < 0.5)
    text = re.sub(r'"__DEEP_(\d+)__"', lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)), text)
    return text.encode("utf-8", "surrogatepass")


def main():
    res = Results()
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(10 ** 9)))
    count = int(os.environ.get("FUZZ_SCAN_COUNT", "3000"))
    print("seed %d, %d generated answers" % (seed, count))
    rng = random.Random(seed)
    with scenario(DB, "--team", "acme", "--project", "backend:8", "--token", "secret-token",
                  "--seed", "6") as sim:
        setup_db(DB, sim, "backend", ", max_retries '0'")
        page = api(sim, "DescribeIssueListWithPage", ProjectName="backend", PageNumber=1, PageSize=500)
        codes = [i["Code"] for i in json.loads(page)["Response"]["Data"]["List"]]
        rows_before = psql("SELECT count(*) FROM coding.issues", db=DB)
        detail = api(sim, "DescribeIssue", ProjectName="backend", IssueCode=codes[0])

        def run(action, raw, sql, n):
            sim.call("DELETE", "/_sim/faults")
            try:
                for _ in range(n):
                    sim.fault(type="raw_body", action=action,
                              body_b64=base64.b64encode(mutate(rng, raw)).decode())
            except Exception:
                sim.call("DELETE", "/_sim/faults")
                raise
            out = psql("""
                CREATE TEMP TABLE outcome (state text);
                DO $$ BEGIN FOR i IN 1..%d LOOP
                  BEGIN PERFORM %s; INSERT INTO outcome VALUES ('ok');
                  EXCEPTION WHEN OTHERS THEN INSERT INTO outcome VALUES (SQLSTATE); END;
                END LOOP; END $$;
                SELECT state || ' ' || count(*) FROM outcome GROUP BY state ORDER BY state;""" % (n, sql),
                       db=DB, check=False, timeout=900)
            sim.call("DELETE", "/_sim/faults")
            assert out.returncode == 0, "the backend did not survive: %s" % out.stderr[-500:]
            states = dict(line.split() for line in out.stdout.split("\n") if line.strip())
            print("   ", action, states)
            bad = {s: c for s, c in states.items() if s != "ok" and s[:2] not in ("HV", "22", "54")}
            assert not bad, "undocumented outcomes: %s" % bad
            assert sum(int(c) for c in states.values()) == n

        lists = count * 2 // 3
        res.check("%d generated list answers: each scan succeeds or fails with a documented class" % lists,
                  lambda: run("DescribeIssueListWithPage", page,
                              "(SELECT count(*) FROM coding.issues t WHERE t::text IS NOT NULL)", lists))
        res.check("%d generated DescribeIssue answers through key lookups and detail columns" % (count - lists),
                  lambda: run("DescribeIssue", detail,
                              "(SELECT count(*) FROM coding.issues t WHERE code = %d AND t::text IS NOT NULL)"
                              % codes[0], count - lists))

        diff_count = int(os.environ.get("FUZZ_DIFF_COUNT", "300"))

        def same_with_both_parsers(n=diff_count):
            # each generated list answer is served eight times: scanned with
            # simdjson (fast_json on, cJSON for what it refuses) and with
            # cJSON alone, for every column, every list column without raw
            # (simdjson's rows read in place), a few columns and count(*);
            # the rows, or the error, must be the same
            sim.call("DELETE", "/_sim/faults")
            try:
                for _ in range(n):
                    body = base64.b64encode(mutate(rng, page)).decode()
                    for _ in range(8):
                        sim.fault(type="raw_body", action="DescribeIssueListWithPage", body_b64=body)
            except Exception:
                sim.call("DELETE", "/_sim/faults")
                raise
            out = psql("""
                CREATE TEMP TABLE differ (i int, fast text, plain text);
                CREATE FUNCTION pg_temp.outcome(fast bool, mode int) RETURNS text LANGUAGE plpgsql AS $f$
                DECLARE r text;
                BEGIN
                  PERFORM set_config('coding_fdw.fast_json', fast::text, false);
                  IF mode = 0 THEN
                    SELECT 'rows ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))
                      INTO r FROM coding.issues t;
                  ELSIF mode = 1 THEN
                    -- a few columns: simdjson builds only the keys they read
                    SELECT 'few ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))
                      INTO r FROM (SELECT code, name, assignee_id, iteration_code, labels
                                     FROM coding.issues) t;
                  ELSIF mode = 2 THEN
                    SELECT 'count ' || count(*) INTO r FROM coding.issues;
                  ELSE
                    -- every list column but raw: rows read in place; the
                    -- texts' byte lengths too (text output stops at a NUL)
                    SELECT 'list ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))
                           || ' ' || coalesce(sum(coalesce(octet_length(name), 0)
                                      + coalesce(octet_length(description), 0)
                                      + coalesce(octet_length(type), 0)
                                      + coalesce(octet_length(issue_status_name), 0)
                                      + coalesce(octet_length(story_point), 0)), 0)
                      INTO r FROM (SELECT %s FROM coding.issues) t;
                  END IF;
                  RETURN r;
                EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ' ' || SQLERRM;
                END $f$;
                DO $$ DECLARE a text; b text; BEGIN FOR i IN 1..%d LOOP
                  FOR m IN 0..3 LOOP
                    a := pg_temp.outcome(true, m); b := pg_temp.outcome(false, m);
                    IF a IS DISTINCT FROM b THEN INSERT INTO differ VALUES (i, a, b); END IF;
                  END LOOP;
                END LOOP; END $$;
                SELECT count(*) FROM differ;
                SELECT i || ': simdjson ' || fast || ' / cJSON ' || plain FROM differ ORDER BY i LIMIT 5;
                RESET coding_fdw.fast_json;""" % (LIST_COLUMNS, n), db=DB, check=False,
                       timeout=900)
            sim.call("DELETE", "/_sim/faults")
            assert out.returncode == 0, "the backend did not survive: %s" % out.stderr[-500:]
            lines = [l for l in out.stdout.split("\n") if l.strip()]
            assert lines[0] == "0", "%s of %d answers differ: %s" % (lines[0], n, lines[1:])
        res.check("%d generated list answers: simdjson and cJSON give the same rows or the same error"
                  % diff_count,
                  same_with_both_parsers)

        def still_serving():
            got = psql("SELECT count(*) FROM coding.issues", db=DB)
            assert got == rows_before, (got, rows_before)
        res.check("the same database then scans normally", still_serving)
    res.finish()


if __name__ == "__main__":
    main()
