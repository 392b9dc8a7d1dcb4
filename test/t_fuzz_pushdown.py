#!/usr/bin/env python3
"""t_fuzz_pushdown: generated queries give the same rows with pushdown on,
with pushdown off, and on a local heap copy of the same data (seeded).

Pushdown may only narrow what Coding is asked for: every clause is checked
locally again, so a query must return exactly what it returns with
coding_fdw.enable_pushdown = off, and what PostgreSQL returns from an
ordinary table holding the same rows.  A wrong result here is the worst
bug an FDW can have (oracle_fdw's and Steampipe's LIMIT/ORDER BY bugs).

The simulated project has 700 to 1,150 generated issues plus a few dozen
made for the edge cases (names with ß/ẞ/İ/ı/the Kelvin sign/%/_/\\,
Chinese and emoji; dates exactly at China-time and UTC midnights, around
2000-01-01; tied UpdatedAt; an issue with Assignees but no AssigneeId;
sub-tasks).  Three foreign tables read it: coding.issues (page_size 500),
coding7.issues (page_size 7, so LIMIT and key lookups cross many pages)
and codingd.issues (issue_type DEFECT); the iterations likewise.  The
local copies (local_issues, local_iterations, the view local_defects) are
made with pushdown off.

Each generated query is run three times: (1) on the foreign tables with
pushdown on, (2) with SET coding_fdw.enable_pushdown = off, (3) on the
local copies; results are compared as multisets, in order where the ORDER
BY is total (code is in it), by their ORDER BY keys where it is not, and
for a LIMIT/OFFSET without a total order by count, keys and membership in
the unlimited result.  Queries combine (AND/OR/NOT, nested) predicates on
the pushable columns and others: =, <>, IN and NOT IN lists (NULLs,
duplicates, empty arrays), = ANY/<> ALL, IS [NOT] NULL, IS DISTINCT FROM,
ranges and BETWEEN on the dates (values from the data, at day boundaries,
written with offsets, as timestamp and date under a random TimeZone,
infinity, NULL, now() - interval), LIKE/ILIKE/NOT LIKE with escapes,
ESCAPE and collations ("C", ICU, Turkish, a non-deterministic one), casts
(code::text = '5', code = 5.0, 5::bigint), labels @>, init-plan values
((SELECT ...)), parameters of prepared statements (generic and custom
plans, several EXECUTEs of one plan), ORDER BY on sortable and other
columns (ASC/DESC, NULLS FIRST/LAST, COLLATE "C"), LIMIT/OFFSET/FETCH
WITH TIES (also as parameters), aggregates, DISTINCT, EXISTS, joins on
issues.code with small local tables (parameterized paths; nested loops
forced at random), iteration joins, LATERAL subqueries with ORDER BY and
LIMIT, correlated subqueries (rescans with new values) and cursors.

About a third of the single-table queries are "focused": one clause on
one pushable column, its value taken from the data (dates exactly a row's
value, LIKE/ILIKE patterns cut from real names with their case changed),
so that a filter Coding applied too narrowly loses a row the local table
has.  (Checked by mutation: simulators whose KEYWORD is case-sensitive,
whose date ranges or iteration EndDate drop their last day, or which
ignore SortKey UPDATED_AT each fail this test with 400 queries.)  A fixed
check also reads every issue by key lookup (DescribeIssue) and compares
it with its listed row.  The Coding calls made are summarised (Conditions
keys, sorts, DescribeIssue, iteration filters) to show what was pushed.

FUZZ_SEED (default: random) and FUZZ_COUNT (default 900 queries, about
25 s on 2 CPUs) reproduce a run; FUZZ_ONLY=17,42 runs only those queries
of the seed (the data and the queries are the same whatever FUZZ_COUNT
is); FUZZ_DUMP=FILE writes the psql script that was run.  A mismatch
prints the seed, the statements that reproduce it (with the SETs they
need), and the rows that differ (truncated).
"""
import collections
import csv
import datetime
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time

from pgtest import Results, psql, scaled, scenario, setup_db

DB = "t_fuzz_pushdown"
PROJECT = "fz"
SEED = int(os.environ["FUZZ_SEED"]) if os.environ.get("FUZZ_SEED") else random.SystemRandom().randrange(1, 2 ** 31)
COUNT = int(os.environ.get("FUZZ_COUNT", "900"))
ONLY = {int(x) for x in os.environ.get("FUZZ_ONLY", "").split(",") if x.strip()}
BATCH = 30                      # queries per psql session
NULLMARK = "<NULL>"
MS_DAY = 86400000
CST = 8 * 3600 * 1000
US = 1000                       # microseconds per millisecond

LIST_COLUMNS = ["code", "type", "parent_type", "name", "description", "issue_status_id",
                "issue_status_name", "issue_status_type", "priority", "assignee_id", "assignees",
                "creator_id", "iteration_id", "iteration_code", "start_date", "due_date",
                "created_at", "updated_at", "completed_at", "working_hours", "story_point",
                "issue_type_id", "issue_type_detail", "labels", "custom_fields", "parent_code"]
DETAIL_COLUMNS = ["epic", "parent", "sub_tasks", "watchers", "project_module", "defect_type",
                  "requirement_type"]
ITER_COLUMNS = ["code", "name", "goal", "status", "start_at", "end_at", "created_at", "updated_at",
                "assignee_id", "creator_id", "starter_id", "completer_id", "deleter_id",
                "wait_process_count", "processing_count", "completed_count", "completed_percent"]

# (foreign issues, foreign iterations, local issues, local iterations, weight)
TABLES = [("coding.issues", "coding.iterations", "local_issues", "local_iterations", 60),
          ("coding7.issues", "coding7.iterations", "local_issues", "local_iterations", 25),
          ("codingd.issues", "coding.iterations", "local_defects", "local_iterations", 15)]
ZONES = ["Asia/Shanghai", "Asia/Shanghai", "UTC", "America/New_York", "Etc/GMT+12", "Etc/GMT-14",
         "Asia/Kolkata", "Australia/Lord_Howe", "Europe/Berlin"]
OFFSETS = ["+08", "+08", "+00", "-05", "+05:30", "-12", "+14", "+08:00"]

SPECIAL_NAMES = [
    "Straße 修复", "STRASSE check", "groß ẞ capital", "İstanbul build", "istanbul lower",
    "ıi dotless", "Kelvin \u212a scale", "kelvin k", "KELVIN", "100% done", "under_score name",
    "back\\slash", "  padded  ", "Fix dark mode", "fix DARK MODE", "ﬁx ligature",
    "ΟΔΟΣ σίσυφος", "emoji 😀 name", "登录页面报错", "mixed 登录 Login", "a,b comma",
    "quote ' and \"", "tab\there", "ǅungla titlecase", "Ångström \u212b", "x", "X", "%", "_",
    "\\", "İ", "i\u0307", "ß", "SS", "k", "\u212a", "", "Ｆｕｌｌ width", "café Café CAFÉ",
    "dz ǆ Ǆ", "long " + "登录" * 40]
SPECIAL_PATTERNS = [
    "", "%", "_", "%%", "%\\%%", "%\\_%", "%\\\\%", "%ß%", "%SS%", "%ss%", "%ẞ%", "%İ%",
    "%i\u0307%", "%ı%", "%I%", "%\u212a%", "%k%", "%K%", "%登录%", "%😀%", "%ﬁ%", "%FI%",
    "%σ%", "%Σ%", "%ς%", "Fix%", "fix%", "%mode", "%MODE", "%Straße%", "%STRASSE%",
    "%straße%", "%ǅ%", "%ǆ%", "%Å%", "%å%", "%\u212b%", "  padded  ", "%  %", "% %", "%\t%",
    "%,%", "%'%", "_%_", "%a%b%c%", "x", "X", "%Ｆ%", "%ｆ%", "%CAFÉ%", "%café%", "%É%",
    "%【史诗】%", "%修复%", "%#%", "%\\#%", "__", "%登录登录%", "%\\\\slash%"]
COLLATIONS_ANY = ['"C"', '"default"', '"und-x-icu"', '"tr-x-icu"', '"lt-x-icu"', '"en-x-icu"',
                  '"POSIX"']


def q(s):
    """A SQL string literal (standard_conforming_strings)."""
    return "'" + s.replace("'", "''") + "'"


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

def cst_midnight(ms):
    return ((ms + CST) // MS_DAY) * MS_DAY - CST


def add_special_data(sim, rng):
    """Issues and iterations for the edge cases; existing issues patched
    to dates at day boundaries and tied UpdatedAt."""
    dump = sim.call("GET", "/_sim/dump?project=" + PROJECT)["projects"][PROJECT]
    members = [m["Id"] for m in dump["members"]]
    labels = [lab["Name"] for lab in dump["labels"]]
    iters = [it["Code"] for it in dump["iterations"]]
    issues = dump["issues"]
    parents = [i["Code"] for i in issues if i["Type"] in ("REQUIREMENT", "MISSION")]
    created = [i["CreatedAt"] for i in issues]

    def boundary():
        base = rng.choice(created)
        return rng.choice([base, cst_midnight(base), cst_midnight(base) - 1, cst_midnight(base) + MS_DAY - 1,
                           cst_midnight(base) - 1000, (base // MS_DAY) * MS_DAY, (base // MS_DAY) * MS_DAY - 1,
                           cst_midnight(base) + 1, 946656000000, 946656000000 - 1000, base + 1])

    def body(name):
        t = rng.choice(["DEFECT", "DEFECT", "REQUIREMENT", "MISSION", "EPIC", "SUB_TASK"])
        b = {"Name": name, "Type": t, "Priority": rng.choice(["", "0", "1", "2", "3"]),
             "IssueStatusType": rng.choice(["TODO", "PROCESSING", "COMPLETED"])}
        if t == "SUB_TASK":
            b["ParentCode"] = rng.choice(parents)
        c = boundary()
        if c < 1500000000000:
            c = rng.choice(created)
        b["CreatedAt"] = c
        b["UpdatedAt"] = c + rng.choice([0, 0, 1, 999, 1000, MS_DAY, MS_DAY - 1, 3 * MS_DAY])
        r = rng.random()
        if r < 0.15:
            b["AssigneeId"] = 0
            b["Assignees"] = [rng.choice(members)]          # assignees, no AssigneeId
        elif r < 0.3:
            b["AssigneeId"] = 0
        elif r < 0.4:
            b["Assignees"] = rng.sample(members, 2)
        else:
            b["AssigneeId"] = rng.choice(members)
        if rng.random() < 0.6:
            b["StartDate"] = boundary()
        if rng.random() < 0.6:
            b["DueDate"] = boundary()
        if rng.random() < 0.6:
            b["Labels"] = rng.sample(labels, rng.randint(1, 2))
        if rng.random() < 0.6:
            b["IterationCode"] = rng.choice(iters)
        return b

    for name in SPECIAL_NAMES:
        sim.call("POST", "/_sim/projects/%s/issues" % PROJECT, body(name))
    # existing issues: dates at boundaries, ties
    for code in rng.sample([i["Code"] for i in issues], 25):
        patch = {"UpdatedAt": rng.choice([rng.choice(issues)["UpdatedAt"], boundary()])}
        if rng.random() < 0.5:
            patch["DueDate"] = boundary()
        if rng.random() < 0.3:
            patch["StartDate"] = boundary()
        if rng.random() < 0.2:
            patch["Priority"] = ""
        sim.call("PATCH", "/_sim/projects/%s/issues/%d" % (PROJECT, code), patch)
    for name in ["Straße sprint", "İterasyon 1", "KELVIN \u212a", "迭代 发布 %", "under_score", "Sprint 1",
                 "sprint 1 ", "ﬁnal"]:
        s = cst_midnight(rng.choice(created))
        b = {"Name": name, "Status": rng.choice(["WAIT_PROCESS", "PROCESSING", "COMPLETED"]),
             "Assignee": rng.choice([0] + members), "CreatedAt": s - 3 * MS_DAY + 1234,
             "UpdatedAt": s - 3 * MS_DAY + rng.choice([1234, 5000, MS_DAY])}
        if rng.random() < 0.8:
            b["StartAt"] = rng.choice([s, s - 1, s + 1000])
        if rng.random() < 0.8:
            b["EndAt"] = rng.choice([s + 14 * MS_DAY - 1000, s + 14 * MS_DAY, s + 14 * MS_DAY - 1])
        sim.call("POST", "/_sim/projects/%s/iterations" % PROJECT, b)


def setup(sim, rng):
    setup_db(DB, sim, PROJECT)
    collations = psql("SELECT string_agg(quote_ident(collname), ' ') FROM pg_collation", db=DB).split()
    psql("""
        CREATE SCHEMA coding7;
        IMPORT FOREIGN SCHEMA {p} LIMIT TO (issues, iterations) FROM SERVER coding INTO coding7;
        ALTER FOREIGN TABLE coding7.issues OPTIONS (ADD page_size '7');
        ALTER FOREIGN TABLE coding7.iterations OPTIONS (ADD page_size '7');
        CREATE SCHEMA codingd;
        IMPORT FOREIGN SCHEMA {p} LIMIT TO (issues) FROM SERVER coding INTO codingd;
        ALTER FOREIGN TABLE codingd.issues OPTIONS (ADD issue_type 'DEFECT');
        SET coding_fdw.enable_pushdown = off;
        CREATE TABLE local_issues AS SELECT {ic}, {dc}, raw FROM coding.issues;
        CREATE TABLE local_iterations AS SELECT {itc} FROM coding.iterations;
        CREATE VIEW local_defects AS SELECT * FROM local_issues WHERE type = 'DEFECT';
    """.format(p=PROJECT, ic=", ".join(LIST_COLUMNS), dc=", ".join(DETAIL_COLUMNS),
           itc=", ".join(ITER_COLUMNS)), db=DB)
    if '"und-x-icu"' in collations or "und-x-icu" in collations:
        psql("CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)", db=DB)
        collations.append("ci")
    pools = json.loads(psql("""
        SELECT json_build_object(
          'code', (SELECT json_agg(code ORDER BY code) FROM local_issues),
          'issue_status_id', (SELECT json_agg(DISTINCT issue_status_id) FROM local_issues),
          'assignee_id', (SELECT json_agg(DISTINCT assignee_id) FROM local_issues),
          'creator_id', (SELECT json_agg(DISTINCT creator_id) FROM local_issues),
          'iteration_code', (SELECT json_agg(DISTINCT iteration_code) FROM local_issues),
          'iteration_id', (SELECT json_agg(DISTINCT iteration_id) FROM local_issues),
          'parent_code', (SELECT json_agg(DISTINCT parent_code) FROM local_issues),
          'issue_type_id', (SELECT json_agg(DISTINCT issue_type_id) FROM local_issues),
          'priority', (SELECT json_agg(DISTINCT priority) FROM local_issues),
          'working_hours', (SELECT json_agg(DISTINCT working_hours) FROM local_issues),
          'type', (SELECT json_agg(DISTINCT type) FROM local_issues),
          'parent_type', (SELECT json_agg(DISTINCT parent_type) FROM local_issues),
          'issue_status_type', (SELECT json_agg(DISTINCT issue_status_type) FROM local_issues),
          'issue_status_name', (SELECT json_agg(DISTINCT issue_status_name) FROM local_issues),
          'story_point', (SELECT json_agg(DISTINCT story_point) FROM local_issues),
          'name', (SELECT json_agg(name ORDER BY code) FROM local_issues),
          'description', (SELECT json_agg(DISTINCT left(description, 60)) FROM local_issues),
          'labels', (SELECT json_agg(DISTINCT jsonb_build_array(l->>'Name', l->'Id'))
                       FROM local_issues, jsonb_array_elements(labels) l),
          'dates', (SELECT json_object_agg(c, v) FROM (
                       SELECT c, json_agg(DISTINCT (extract(epoch FROM t) * 1000000)::bigint) v
                         FROM local_issues, LATERAL (VALUES ('created_at', created_at),
                              ('updated_at', updated_at), ('due_date', due_date),
                              ('start_date', start_date), ('completed_at', completed_at)) x(c, t)
                        WHERE t IS NOT NULL GROUP BY c) s),
          'subtask', (SELECT json_agg(code ORDER BY code) FROM local_issues WHERE type = 'SUB_TASK'),
          'with_subtasks', (SELECT json_agg(code ORDER BY code) FROM local_issues WHERE sub_tasks <> '[]'),
          'epic_code', (SELECT json_agg(DISTINCT (epic->>'Code')::int) FROM local_issues WHERE epic IS NOT NULL),
          'watcher', (SELECT json_agg(DISTINCT (w->>'Id')::bigint) FROM local_issues, jsonb_array_elements(watchers) w),
          'module', (SELECT json_agg(DISTINCT project_module->>'Name') FROM local_issues),
          'it_code', (SELECT json_agg(code ORDER BY code) FROM local_iterations),
          'it_status', (SELECT json_agg(DISTINCT status) FROM local_iterations),
          'it_assignee', (SELECT json_agg(DISTINCT assignee_id) FROM local_iterations),
          'it_name', (SELECT json_agg(name ORDER BY code) FROM local_iterations),
          'it_dates', (SELECT json_object_agg(c, v) FROM (
                       SELECT c, json_agg(DISTINCT (extract(epoch FROM t) * 1000000)::bigint) v
                         FROM local_iterations, LATERAL (VALUES ('start_at', start_at),
                              ('end_at', end_at), ('created_at', created_at), ('updated_at', updated_at)) x(c, t)
                        WHERE t IS NOT NULL GROUP BY c) s))""", db=DB))
    for k, v in list(pools.items()):
        if isinstance(v, list):
            pools[k] = [x for x in v if x is not None] if k not in ("name", "it_name") else v
    pools["collations"] = [c for c in COLLATIONS_ANY if c.strip('"') in [x.strip('"') for x in collations]]
    pools["has_ci"] = "ci" in collations
    # small local tables for joins (parameterized paths)
    codes = pools["code"]
    small = rng.sample(codes, 5)
    small += [small[0], 0, 99999, -3]
    parents = pools["parent_code"] or codes[:3]
    its = pools["it_code"]
    members = pools["assignee_id"]
    psql("""
        CREATE TABLE keys_small (c int); INSERT INTO keys_small VALUES {s}, (NULL);
        CREATE TABLE keys_parent (c int); INSERT INTO keys_parent VALUES {p};
        CREATE TABLE keys_iter (c int); INSERT INTO keys_iter VALUES {i}, (0), (999), (NULL);
        CREATE TABLE keys_members (id bigint); INSERT INTO keys_members VALUES {m}, (1), (NULL);
        CREATE TABLE keys_parent2 AS SELECT c FROM keys_parent UNION ALL SELECT 0;
        CREATE TABLE keys_big (c int); INSERT INTO keys_big VALUES {b};
        ANALYZE local_issues; ANALYZE local_iterations; ANALYZE keys_small; ANALYZE keys_parent;
        ANALYZE keys_iter; ANALYZE keys_members; ANALYZE keys_big; ANALYZE keys_parent2;
    """.format(s=", ".join("(%d)" % c for c in small),
               p=", ".join("(%d)" % c for c in rng.sample(parents, min(4, len(parents)))),
               i=", ".join("(%d)" % c for c in rng.sample(its, min(3, len(its)))),
               m=", ".join("(%d)" % c for c in rng.sample(members, min(3, len(members)))),
               b=", ".join("(%d)" % c for c in rng.sample(codes, min(300, len(codes))))), db=DB)
    pools["keys_small"] = small
    if rng.random() < 0.5:
        # estimates from ANALYZE instead of the session's TotalCount
        psql("ANALYZE coding.issues; ANALYZE coding.iterations", db=DB)
    return pools


# --------------------------------------------------------------------------
# Query generation
# --------------------------------------------------------------------------

class Query:
    def __init__(self, qid, category):
        self.qid = qid
        self.category = category
        self.sets = []
        self.sql = None           # with @@I@@ / @@IT@@ for the tables
        self.sql_full = None      # without LIMIT/OFFSET, for membership
        self.param_types = []
        self.param_sets = []      # list of lists of literal SQL
        self.order_idx = []       # output columns that are the ORDER BY keys
        self.total = False        # the ORDER BY orders rows totally
        self.limited = False      # LIMIT/OFFSET without a total order matter
        self.cursor = None        # list of FETCH statements
        self.tables = TABLES[0]
        self.local_map = {}       # other foreign tables the query names
        self.param_zones = []     # TimeZone set before each EXECUTE
        self.zone = "UTC"


class Gen:
    """Random predicates, literals and queries for one query (own rng)."""

    def __init__(self, rng, pools, qid):
        self.rng = rng
        self.P = pools
        self.qid = qid
        self.param_mode = False
        self.params = []          # (type, generator)
        self.p = ""               # column prefix ("i.")
        self.exact = False        # date values mostly exactly the data's

    # ---- literals -------------------------------------------------------

    def lit(self, gen, typ):
        """A value: its literal, or a $n parameter in a prepared query."""
        if self.param_mode and typ and self.rng.random() < 0.6:
            self.params.append((typ, gen))
            return "$%d" % len(self.params)
        return gen()

    def int_value(self, pool, small=False):
        r = self.rng
        if pool and r.random() < 0.75:
            return r.choice(pool)
        v = r.choice([0, -1, 1, 2, 3, 4, 5, 7, 99999, 2147483647, 3000000000, -2147483648])
        if small and abs(v) > 32767:
            v = 3
        return v

    def int_array(self, pool, typ, small=False):
        r = self.rng
        n = r.choice([0, 1, 2, 3, 5])
        vals = [str(self.int_value(pool, small)) for _ in range(n)]
        if vals and r.random() < 0.3:
            vals.append(vals[0])
        if r.random() < 0.25:
            vals.insert(r.randrange(len(vals) + 1), "NULL")
        if typ in ("int", "smallint"):
            vals = [v if v == "NULL" or abs(int(v)) <= 2147483647 else "5" for v in vals]
        form = r.random()
        if form < 0.5 or not vals:
            return "ARRAY[%s]::%s[]" % (", ".join(vals), typ) if vals else "'{}'::%s[]" % typ
        return "'{%s}'::%s[]" % (",".join(vals), typ)

    def text_array(self, vals):
        r = self.rng
        if r.random() < 0.6:
            return "ARRAY[%s]::text[]" % ", ".join(q(v) if v is not None else "NULL" for v in vals) \
                if vals else "'{}'::text[]"

        def elem(v):
            if v is None:
                return "NULL"
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return q("{" + ",".join(elem(v) for v in vals) + "}") + "::text[]"

    def date_value(self, col, typ=None, pool_key="dates"):
        """A literal of type typ (timestamptz, timestamp, date or None:
        any, untyped included) near the data's values of col."""
        r = self.rng
        dates = self.P[pool_key]
        pool = dates.get(col) or dates.get("created_at") or [1700000000000000]
        if typ is None and r.random() < 0.1:
            return r.choice(["'infinity'::timestamptz", "'-infinity'::timestamptz", "'infinity'",
                             "NULL::timestamptz", "now() - interval '%d days'" % r.randint(0, 800),
                             "current_date - %d" % r.randint(0, 800), "'5874897-12-31'::date",
                             "'294276-12-31 23:59:59'::timestamp", "'epoch'::timestamptz",
                             "'4714-11-24 00:00:00 BC'::timestamp", "'1999-12-31 23:59:59.999999+08'",
                             "'2000-01-01 00:00:00+08'", "date_trunc('day', now())",
                             "'2025-03-01'::date + %d" % r.randint(-400, 600)])
        base = r.choice(pool)
        mode = r.random()
        if self.exact and mode < 0.6:
            t = base
            if r.random() < 0.3:
                t += r.choice([1, -1, 1000, -1000])
            typ = typ or r.choice(["timestamptz", "untyped_tz", "timestamptz"])
            mode = 2.0
        if mode < 0.35:
            t = base
        elif mode < 0.65:
            t = cst_midnight(base // US) * US
        elif mode < 0.8:
            t = (base // (MS_DAY * US)) * MS_DAY * US
        else:
            t = base
        if mode <= 1.0 and r.random() < 0.6:
            t += r.choice([1, -1, 1000, -1000, 1000000, -1000000, 3600 * 10 ** 6, -3600 * 10 ** 6,
                           8 * 3600 * 10 ** 6, -8 * 3600 * 10 ** 6, MS_DAY * US, -MS_DAY * US,
                           16 * 3600 * 10 ** 6, 1800 * 10 ** 6])
        off = r.choice(OFFSETS)
        sign = -1 if off[0] == "-" else 1
        hh, _, mm = off[1:].partition(":")
        delta = datetime.timedelta(hours=int(hh), minutes=int(mm or 0)) * sign
        wall = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=t) + delta
        if wall.microsecond:
            wtext = wall.strftime("%Y-%m-%d %H:%M:%S.%f")
        elif r.random() < 0.5:
            wtext = wall.strftime("%Y-%m-%d %H:%M:%S")
        else:
            wtext = wall.strftime("%Y-%m-%d %H:%M")
        if typ is None:
            typ = r.choice(["timestamptz", "timestamptz", "timestamp", "date", "untyped", "untyped_tz"])
        if typ == "timestamptz":
            return q(wtext + off) + "::timestamptz"
        if typ == "untyped_tz":
            return q(wtext + off)
        if typ == "timestamp":
            return q(wtext) + "::timestamp"
        if typ == "date":
            return q(wall.strftime("%Y-%m-%d")) + "::date"
        return q(wtext)

    # ---- atoms ----------------------------------------------------------

    def c(self, col):
        return self.p + col

    def atom_int(self, col, pool, typ="bigint", small=False):
        r = self.rng
        c = self.c(col)
        ptyp = "int" if typ in ("int", "smallint") else "bigint"

        def v():
            return str(self.int_value(pool, small or ptyp == "int"))

        f = r.randrange(20)
        if f in (0, 1, 2):
            return "%s = %s" % (c, self.lit(v, ptyp))
        if f == 3:
            return "%s = %s" % (self.lit(v, ptyp), c)
        if f == 4:
            vals = [v() for _ in range(r.randint(1, 4))]
            if r.random() < 0.3:
                vals.append(vals[0])
            if r.random() < 0.2:
                vals.append("NULL")
            return "%s IN (%s)" % (c, ", ".join(vals))
        if f == 5:
            vals = [v() for _ in range(r.randint(1, 3))] + (["NULL"] if r.random() < 0.2 else [])
            return "%s NOT IN (%s)" % (c, ", ".join(vals))
        if f in (6, 7):
            return "%s = ANY(%s)" % (c, self.lit(lambda: self.int_array(pool, ptyp, small), ptyp + "[]"))
        if f == 8:
            return "%s <> ALL(%s)" % (c, self.int_array(pool, ptyp, small))
        if f == 9:
            return "%s IS NULL" % c
        if f == 10:
            return "%s IS NOT NULL" % c
        if f == 11:
            return "%s <> %s" % (c, self.lit(v, ptyp))
        if f == 12:
            return "%s %s %s" % (c, r.choice(["<", "<=", ">", ">="]), self.lit(v, ptyp))
        if f == 13:
            a, b = sorted([int(v()), int(v())])
            return "%s BETWEEN %d AND %d" % (c, a, b) if r.random() < 0.7 else \
                "%s NOT BETWEEN %d AND %d" % (c, a, b)
        if f == 14:
            return "%s IS %sDISTINCT FROM %s" % (c, r.choice(["", "NOT "]), v())
        if f == 15:
            x = v()
            forms = ["%s::text = '%s'" % (c, x), "%s = %s.0" % (c, x), "%s = '%s'" % (c, x),
                     "%s = %s::bigint" % (c, x), "%s::numeric = %s" % (c, x), "%s::bigint = %s" % (c, x)]
            if abs(int(x)) <= 2147483647:
                forms += ["%s = %s::int" % (c, x), "%s::int = %s" % (c, x)]
            if abs(int(x)) <= 32767:
                forms.append("%s = %s::smallint" % (c, x))
            return r.choice(forms)
        if f == 16:
            x = v()
            return r.choice(["%s = (SELECT %s)" % (c, x),
                             "%s = (SELECT max(c) FROM keys_small)" % c,
                             "%s IN (SELECT c FROM keys_small)" % c,
                             "%s = ANY(ARRAY(SELECT c FROM keys_small))" % c,
                             "%s IN (SELECT v FROM (VALUES (%s), (%s)) s(v))" % (c, x, v())])
        if f == 17:
            x = v()
            return r.choice(["%s = NULL" % c, "%s = %s + 0" % (c, x), "%s = abs(%s::bigint)" % (c, x),
                             "%s = NULL::%s" % (c, ptyp), "%s = ANY(NULL::%s[])" % (c, ptyp)])
        if f == 18:
            return "coalesce(%s, 0) = %s" % (c, v())
        return "%s = %s" % (c, self.lit(v, ptyp))

    def atom_text(self, col, pool, variants, closed=True):
        r = self.rng
        c = self.c(col)

        def v():
            return q(r.choice(pool) if pool and r.random() < 0.75 else r.choice(variants))

        def raw():
            return r.choice(pool) if pool and r.random() < 0.75 else r.choice(variants)

        f = r.randrange(17)
        if f in (0, 1, 2):
            return "%s = %s" % (c, self.lit(v, "text"))
        if f == 3:
            return "%s = %s" % (v(), c)
        if f == 4:
            vals = [v() for _ in range(r.randint(1, 3))]
            if r.random() < 0.3:
                vals.append(vals[0])
            if r.random() < 0.2:
                vals.append("NULL")
            return "%s IN (%s)" % (c, ", ".join(vals))
        if f == 5:
            vals = [v() for _ in range(r.randint(1, 3))] + (["NULL"] if r.random() < 0.15 else [])
            return "%s NOT IN (%s)" % (c, ", ".join(vals))
        if f == 6:
            vals = [raw() for _ in range(r.randint(0, 3))]
            if r.random() < 0.15:
                vals.append(None)
            return "%s = ANY(%s)" % (c, self.lit(lambda: self.text_array(vals), "text[]"))
        if f == 7:
            vals = [raw() for _ in range(r.randint(0, 3))]
            if r.random() < 0.15:
                vals.append(None)
            return "%s <> ALL(%s)" % (c, self.text_array(vals))
        if f == 8:
            return "%s IS NULL" % c
        if f == 9:
            return "%s IS NOT NULL" % c
        if f == 10:
            return "%s <> %s" % (c, self.lit(v, "text"))
        if f == 11:
            colls = list(self.P["collations"]) + (["ci", "ci"] if self.P["has_ci"] else [])
            if r.random() < 0.3:
                return "%s COLLATE %s %s %s" % (c, r.choice(colls), r.choice(["=", "=", "<>"]), v())
            if r.random() < 0.2 and self.P["has_ci"]:
                vals = [raw().lower() for _ in range(r.randint(1, 3))]
                return "%s COLLATE ci IN (%s)" % (c, ", ".join(q(x) for x in vals))
            return "%s %s %s COLLATE %s" % (c, r.choice(["=", "=", "<>"]), v(), r.choice(colls))
        if f == 12:
            return r.choice(["%s::varchar = %s" % (c, v()), "lower(%s) = lower(%s)" % (c, v()),
                             "%s LIKE %s" % (c, q(raw()[:2] + "%")), "%s > %s" % (c, v()),
                             "%s = (SELECT %s)" % (c, v()), "%s IN (SELECT %s UNION SELECT %s)" % (c, v(), v()),
                             "%s::varchar(20) = %s" % (c, v()), "%s = %s::name" % (c, v())])
        if f == 13:
            return "%s IS %sDISTINCT FROM %s" % (c, r.choice(["", "NOT "]), v())
        return "%s = %s" % (c, self.lit(v, "text"))

    def pattern_tokens(self, ci):
        r = self.rng
        names = [n for n in self.P["name"] if n] or ["x"]
        s = r.choice(names)
        i = r.randrange(len(s))
        j = min(len(s), i + r.randint(0, 8))
        sub = s[i:j]
        if ci and r.random() < 0.6:
            sub = r.choice([sub.upper(), sub.lower(), sub.swapcase(), sub.casefold()])
        elif r.random() < 0.08:
            sub = sub.upper()
        toks = []
        if r.random() < 0.7:
            toks.append(("%",))
        for ch in sub:
            x = r.random()
            if x < 0.07:
                toks.append(("_",))
            elif x < 0.1:
                toks.append(("%",))
                toks.append(("lit", ch))
            else:
                toks.append(("lit", ch))
        if r.random() < 0.7:
            toks.append(("%",))
        return toks

    @staticmethod
    def render_pattern(toks, esc):
        out = []
        for t in toks:
            if t[0] != "lit":
                out.append(t[0])
            elif t[1] in "%_" or (esc and t[1] == esc):
                out.append(esc + t[1])
            else:
                out.append(t[1])
        return "".join(out)

    def atom_like(self, col, names_key="name"):
        r = self.rng
        c = self.c(col)
        op = r.choice(["LIKE", "LIKE", "ILIKE", "ILIKE", "ILIKE", "NOT LIKE", "NOT ILIKE", "~~", "~~*"])
        ci = "ILIKE" in op or op == "~~*"
        x = r.random()
        if x < 0.2:
            pat = r.choice(SPECIAL_PATTERNS)
            toks = None
        else:
            toks = self.pattern_tokens(ci)
            pat = self.render_pattern(toks, "\\")
        tail = ""
        y = r.random()
        if toks is not None and y < 0.1:
            esc = r.choice(["#", "!", "ß"])
            pat = self.render_pattern(toks, esc)
            tail = " ESCAPE %s" % q(esc)
        elif toks is not None and y < 0.13 and all(t[0] != "lit" or t[1] not in "%_" for t in toks):
            # no escape character: a backslash is an ordinary character
            pat = "".join(t[0] if t[0] != "lit" else t[1] for t in toks)
            tail = " ESCAPE ''"
        elif y < 0.35:
            tail = " COLLATE %s" % r.choice(self.P["collations"])
        if op in ("~~", "~~*") and tail.startswith(" ESCAPE"):
            tail = ""
            pat = self.render_pattern(toks, "\\")
        return "%s %s %s%s" % (c, op, self.lit(lambda: q(pat), "text") if not tail else q(pat), tail)

    def atom_name(self, col="name", names_key="name"):
        r = self.rng
        c = self.c(col)
        f = r.random()
        names = self.P[names_key] or ["x"]
        if f < 0.6:
            return self.atom_like(col, names_key)
        if f < 0.72:
            nm = r.choice(names) if r.random() < 0.8 else r.choice(SPECIAL_NAMES)
            return "%s = %s" % (c, self.lit(lambda: q(nm), "text"))
        if f < 0.76:
            return "%s <> %s" % (c, q(r.choice(names)))
        if f < 0.8:
            return "%s IN (%s)" % (c, ", ".join(q(r.choice(names)) for _ in range(r.randint(1, 3))))
        if f < 0.84:
            s = r.choice(names)[:3]
            return r.choice(["%s ~ %s" % (c, q("^" + "".join("\\" + ch if not ch.isalnum() else ch for ch in s))),
                             "%s SIMILAR TO %s" % (c, q("%" + "".join(ch if ch.isalnum() else "_" for ch in s) + "%")),
                             "strpos(%s, %s) > 0" % (c, q(s)), "lower(%s) LIKE %s" % (c, q("%" + s.lower() + "%")),
                             "left(%s, 2) = %s" % (c, q(s[:2]))])
        if f < 0.88:
            return "%s = %s COLLATE %s" % (c, q(r.choice(names)), r.choice(self.P["collations"]))
        if f < 0.91 and self.P["has_ci"]:
            return r.choice(["%s = %s COLLATE ci" % (c, q(r.choice(names).upper())),
                             "%s COLLATE ci = %s" % (c, q(r.choice(names).lower())),
                             "%s COLLATE ci <> %s" % (c, q(r.choice(names).lower()))])
        if f < 0.93:
            toks = self.pattern_tokens(True)
            return "%s COLLATE %s %s %s" % (c, r.choice(self.P["collations"]), r.choice(["ILIKE", "LIKE", "NOT ILIKE"]),
                                           q(self.render_pattern(toks, "\\")))
        if f < 0.95:
            return "%s %s %s" % (c, r.choice(["<", ">", ">="]), q(r.choice(names)))
        return "%s IS %sNULL" % (c, r.choice(["", "NOT "]))

    def atom_date(self, col, pool_key="dates", ops=("<", "<=", ">", ">=", "=")):
        r = self.rng
        c = self.c(col)
        f = r.random()

        def dv(typ=None):
            if self.param_mode and r.random() < 0.6:
                t = r.choice(["timestamptz", "timestamptz", "timestamp", "date"])
                return self.lit(lambda: self.date_value(col, t, pool_key), t)
            return self.date_value(col, typ, pool_key)

        if f < 0.5:
            return "%s %s %s" % (c, r.choice(ops), dv())
        if f < 0.58:
            return "%s %s %s" % (dv(), r.choice(ops), c)
        if f < 0.68:
            a, b = dv(), dv()
            return "%s BETWEEN %s%s AND %s" % (c, r.choice(["", "", "SYMMETRIC "]), a, b)
        if f < 0.76:
            # a range of two clauses on one column
            return "(%s %s %s AND %s %s %s)" % (c, r.choice([">", ">="]), dv(), c, r.choice(["<", "<="]), dv())
        if f < 0.82:
            return "%s IS %sNULL" % (c, r.choice(["", "", "NOT "]))
        if f < 0.86:
            return "%s IN (%s, %s)" % (c, dv("timestamptz"), dv("timestamptz"))
        if f < 0.9:
            return r.choice(["%s::date = %s" % (c, dv("date")),
                             "date_trunc('day', %s) = %s" % (c, dv("timestamptz")),
                             "%s + interval '1 hour' > %s" % (c, dv("timestamptz")),
                             "(%s AT TIME ZONE 'Asia/Shanghai')::date >= %s" % (c, dv("date"))])
        if f < 0.95:
            return "%s %s now() - interval '%d days'" % (c, r.choice([">", ">=", "<"]), r.randint(0, 900))
        return "%s = %s" % (c, dv())

    def atom_labels(self):
        r = self.rng
        c = self.c("labels")
        labs = self.P["labels"] or [["bug", 1]]
        name, lid = r.choice(labs)
        f = r.random()
        if f < 0.45:
            return "%s @> %s" % (c, q(json.dumps([{"Name": name}], ensure_ascii=False)))
        if f < 0.6:
            return "%s @> %s" % (c, q(json.dumps([{"Id": lid}])))
        if f < 0.65:
            return "%s @> %s" % (c, q(json.dumps([{"Name": name, "Id": lid}], ensure_ascii=False)))
        if f < 0.7:
            n2 = r.choice(labs)[0]
            return "%s @> %s" % (c, q(json.dumps([{"Name": name}, {"Name": n2}], ensure_ascii=False)))
        if f < 0.75:
            return "%s @> %s" % (c, q(r.choice(['[]', '[{"Name": "BUG"}]', '[{"Name": " bug"}]',
                                                    '[{"Name": "nosuch"}]', '[{"Id": 1}]', '{"Name": "bug"}',
                                                    '[{"Name": ""}]', '[{"Name": "a,b"}]'])))
        if f < 0.8:
            return "%s @> %s" % (c, self.lit(lambda: q(json.dumps([{"Name": r.choice(labs)[0]}], ensure_ascii=False)), "jsonb"))
        if f < 0.85:
            return "NOT %s @> %s" % (c, q(json.dumps([{"Name": name}], ensure_ascii=False)))
        if f < 0.9:
            return "%s = '[]'" % c
        if f < 0.95:
            return "jsonb_array_length(%s) %s %d" % (c, r.choice([">", "=", "<"]), r.randint(0, 2))
        return "%s @> %s::jsonb" % (c, q(json.dumps([{"Name": name}], ensure_ascii=False)))

    def atom_code(self):
        r = self.rng
        c = self.c("code")
        codes = self.P["code"]

        def v():
            return str(r.choice(codes) if r.random() < 0.8 else r.choice([0, -1, 99999, 3000000000, 2147483647]))
        f = r.random()
        if f < 0.2:
            return "%s = %s" % (c, self.lit(lambda: str(r.choice(codes)), "int"))
        if f < 0.4:
            vals = [v() for _ in range(r.randint(1, 6))]
            if r.random() < 0.3:
                vals.append(vals[0])
            if r.random() < 0.2:
                vals.append("NULL")
            return "%s IN (%s)" % (c, ", ".join(vals))
        if f < 0.55:
            return "%s = ANY(%s)" % (c, self.lit(lambda: self.int_array(codes, "int"), "int[]"))
        if f < 0.6:
            return "%s = ANY(%s)" % (c, self.int_array(codes, "bigint"))
        if f < 0.7:
            x = v()
            forms = ["%s::text = '%s'" % (c, x), "%s = %s.0" % (c, x), "%s = '%s'" % (c, x) if abs(int(x)) < 2 ** 31 else "%s = %s" % (c, x),
                     "%s = %s::bigint" % (c, x), "%s::bigint = %s" % (c, x), "%s = %s::numeric" % (c, x),
                     "%s = (SELECT %s)" % (c, x), "%s = (SELECT max(c) FROM keys_small)" % c,
                     "%s = %s + 0" % (c, x)]
            return r.choice(forms)
        if f < 0.8:
            a, b = sorted([int(v()), int(v())])
            return r.choice(["%s BETWEEN %d AND %d" % (c, a, b), "%s < %d" % (c, b), "%s >= %d" % (c, a),
                             "%s %% 7 = %d" % (c, r.randrange(7))])
        if f < 0.85:
            return r.choice(["%s = ANY('{}')" % c, "%s IN (NULL)" % c, "%s = NULL" % c, "%s <> %s" % (c, v()),
                             "%s NOT IN (%s, %s)" % (c, v(), v())])
        if f < 0.9:
            return r.choice(["%s IN (SELECT c FROM keys_small)" % c,
                             "%s = ANY(ARRAY(SELECT c FROM keys_small))" % c,
                             "%s = ANY(ARRAY(SELECT c FROM keys_big WHERE c %% 5 = %d))" % (c, r.randrange(5)),
                             "%s = ANY((SELECT array_agg(c) FROM keys_parent)::int[])" % c])
        return "%s = %s" % (c, self.lit(v, "bigint"))

    def atom_issue(self):
        r = self.rng
        P = self.P
        cols = [("type", 8), ("issue_status_type", 8), ("issue_status_name", 4), ("issue_status_id", 3),
                ("assignee_id", 5), ("creator_id", 3), ("priority", 6), ("iteration_code", 5),
                ("parent_code", 3), ("issue_type_id", 3), ("labels", 4), ("created_at", 6),
                ("updated_at", 6), ("due_date", 5), ("start_date", 5), ("name", 11), ("code", 7),
                ("description", 2), ("parent_type", 2), ("story_point", 1), ("working_hours", 1),
                ("completed_at", 2), ("iteration_id", 2), ("misc", 2)]
        col = r.choices([x for x, _ in cols], [w for _, w in cols])[0]
        return self.atom_issue_col(col)

    def atom_issue_col(self, col):
        r = self.rng
        P = self.P
        if col == "type":
            return self.atom_text(col, P["type"], ["SUB_TASK", "STORY", "defect", "", " DEFECT",
                                                   "DEFECT ", "DEFECT,EPIC", "EPIC", "MISSION"])
        if col == "issue_status_type":
            return self.atom_text(col, P["issue_status_type"], ["todo", "DONE", "", " TODO",
                                                                "TODO,PROCESSING", "COMPLETED"])
        if col == "issue_status_name":
            ids = [str(x) for x in P["issue_status_id"][:3]]
            return self.atom_text(col, P["issue_status_name"], ["处理中 ", " 处理中", "进行中", "",
                                                                "未开始,已完成", "x"] + ids)
        if col == "priority":
            return self.atom_int(col, P["priority"], "smallint", small=True)
        if col in ("code",):
            return self.atom_code()
        if col in ("iteration_code", "parent_code"):
            return self.atom_int(col, P[col], "int")
        if col in ("issue_status_id", "assignee_id", "creator_id", "issue_type_id", "iteration_id"):
            return self.atom_int(col, P[col], "bigint")
        if col == "labels":
            return self.atom_labels()
        if col in ("created_at", "updated_at", "due_date", "start_date", "completed_at"):
            return self.atom_date(col)
        if col in ("name",):
            return self.atom_name()
        if col == "description":
            d = [x for x in P["description"] if x]
            return r.choice(["%s LIKE %s" % (self.c(col), q("%" + (r.choice(d)[:6] if d else "x") + "%")),
                             "%s IS NULL" % self.c(col), "%s = ''" % self.c(col),
                             "%s ILIKE '%%drop table%%'" % self.c(col)])
        if col in ("parent_type", "story_point"):
            return self.atom_text(col, P[col], ["", "SUB_TASK", "0.5", "3"], closed=False)
        if col == "working_hours":
            return "%s %s %s" % (self.c(col), r.choice(["=", ">", "<", "<>"]), r.choice(["0", "1.5", "6", "2.25", "0.0"]))
        # misc: jsonb columns, whole-row expressions
        return r.choice(["%s->>'Name' = %s" % (self.c("issue_type_detail"), q(r.choice(["缺陷", "需求", "任务", "线上故障"]))),
                         "jsonb_array_length(%s) > 1" % self.c("assignees"),
                         "%s @> %s" % (self.c("assignees"), q(json.dumps([r.choice(P["assignee_id"] or [1])]))),
                         "%s <> '[]'" % self.c("custom_fields"),
                         "(%s->>'IsSystem')::boolean" % self.c("issue_type_detail"),
                         "%s = %s" % (self.c("iteration_code"), self.c("parent_code")),
                         "%s < %s" % (self.c("created_at"), self.c("updated_at")),
                         "%s = %s" % (self.c("created_at"), self.c("updated_at")),
                         "random() >= 0"])

    def atom_detail(self):
        r = self.rng
        P = self.P
        f = r.random()
        if f < 0.15:
            return "%s IS %sNULL" % (self.c(r.choice(["epic", "parent", "defect_type", "requirement_type",
                                                      "project_module"])), r.choice(["", "NOT "]))
        if f < 0.3 and P["epic_code"]:
            return "(%s->>'Code')::int = %d" % (self.c("epic"), r.choice(P["epic_code"]))
        if f < 0.45:
            return "jsonb_array_length(%s) %s %d" % (self.c(r.choice(["sub_tasks", "watchers"])),
                                                     r.choice([">", "=", ">="]), r.randint(0, 2))
        if f < 0.6 and P["watcher"]:
            return "%s @> %s" % (self.c("watchers"), q(json.dumps([{"Id": r.choice(P["watcher"])}])))
        if f < 0.7 and P["module"]:
            return "%s->>'Name' = %s" % (self.c("project_module"), q(r.choice(P["module"])))
        if f < 0.8:
            return "(%s->>'Code')::int %s %d" % (self.c("parent"), r.choice(["=", "<", ">"]),
                                                 r.choice(P["parent_code"] or [1]))
        if f < 0.9:
            return "%s->>'Name' LIKE %s" % (self.c("raw"), q("%" + (r.choice([n for n in P["name"] if n] or ["x"])[:2]) + "%"))
        return "(%s->'Iteration'->>'Code')::int = %d" % (self.c("raw"), r.choice(P["iteration_code"] or [1]))

    def atom_iteration(self):
        r = self.rng
        P = self.P
        col = r.choices(["status", "assignee_id", "name", "start_at", "end_at", "created_at", "code",
                         "goal", "counts"], [8, 5, 8, 6, 6, 3, 3, 1, 1])[0]
        return self.atom_iteration_col(col)

    def atom_iteration_col(self, col):
        r = self.rng
        P = self.P
        c = self.c(col)
        if col == "status":
            return self.atom_text(col, P["it_status"], ["completed", "DONE", "", " PROCESSING",
                                                        "WAIT_PROCESS", "PROCESSING,COMPLETED"])
        if col == "assignee_id":
            return self.atom_int(col, P["it_assignee"], "bigint")
        if col == "name":
            return self.atom_name("name", "it_name")
        if col in ("start_at", "end_at", "created_at"):
            return self.atom_date(col, "it_dates")
        if col == "code":
            return self.atom_int(col, P["it_code"], "int")
        if col == "goal":
            return r.choice(["%s = ''" % c, "%s LIKE '%%🚀%%'" % c, "%s IS NULL" % c])
        return "%s %s %d" % (self.c(r.choice(["completed_count", "processing_count", "wait_process_count"])),
                             r.choice([">", "=", "<"]), r.randint(0, 20))

    def pred(self, atom, depth=0):
        r = self.rng
        x = r.random()
        if depth >= 3 or x < (0.65 if depth <= 1 else 0.5):
            return atom()
        if x < 0.72:
            return "(" + " AND ".join(self.pred(atom, depth + 1) for _ in range(r.randint(2, 3))) + ")"
        if x < 0.92:
            return "(" + " OR ".join(self.pred(atom, depth + 1) for _ in range(r.randint(2, 3))) + ")"
        return "NOT (" + self.pred(atom, depth + 1) + ")"

    def where(self, atom, n=None):
        r = self.rng
        if n is None:
            n = r.choice([0, 1, 1, 1, 1, 2, 2, 2, 3, 4])
        parts = [self.pred(atom, 1) for _ in range(n)]
        return " AND ".join(parts) if parts else "true"


# ---- query templates ------------------------------------------------------

SORTABLE = ["code", "created_at", "updated_at"]
OTHER_KEYS = ["priority", "name", 'name COLLATE "C"', "due_date", "start_date", "type",
              "issue_status_type", "assignee_id", "iteration_code", "completed_at", "parent_code",
              "working_hours"]
SELECT_EXTRA = ["type", "name", "issue_status_type", "issue_status_name", "priority", "assignee_id",
                "creator_id", "iteration_code", "parent_code", "created_at", "updated_at", "due_date",
                "start_date", "completed_at", "issue_type_id", "labels", "story_point", "working_hours",
                "parent_type", "issue_status_id", "iteration_id", "assignees", "custom_fields"]


def order_clause(g, keys_pool, first_single=0.6):
    """ORDER BY keys (as expressions), each with direction/nulls."""
    r = g.rng
    if r.random() < first_single:
        keys = [r.choice(SORTABLE) if r.random() < 0.7 else r.choice(keys_pool)]
    else:
        keys = r.sample(SORTABLE + keys_pool, r.randint(1, 3))
    out = []
    for k in keys:
        d = r.choice(["", "", " ASC", " DESC", " DESC"])
        n = r.choice(["", "", "", " NULLS FIRST", " NULLS LAST"])
        out.append((k, d + n))
    return out


FOCUS_ISSUE = [("type", 3), ("issue_status_type", 3), ("issue_status_name", 2), ("issue_status_id", 1),
               ("assignee_id", 3), ("creator_id", 2), ("priority", 3), ("iteration_code", 3),
               ("parent_code", 2), ("issue_type_id", 1), ("labels", 3), ("created_at", 5),
               ("updated_at", 5), ("due_date", 5), ("start_date", 5), ("name", 10), ("code", 3)]
FOCUS_ITER = [("status", 2), ("assignee_id", 2), ("name", 4), ("start_at", 4), ("end_at", 4)]


def focused_atom(g, iteration=False):
    """One clause on one pushable column, its values from the data."""
    r = g.rng
    g.exact = True
    pool = FOCUS_ITER if iteration else FOCUS_ISSUE
    col = r.choices([c for c, _ in pool], [w for _, w in pool])[0]
    if iteration:
        if col in ("start_at", "end_at"):
            ops = (">=", ">") if col == "start_at" else ("<=", "<")
            if r.random() < 0.7:
                return "%s %s %s" % (g.c(col), r.choice(ops), g.date_value(col, None, "it_dates"))
        if col == "name":
            return g.atom_like(col, "it_name")
        return g.atom_iteration_col(col)
    if col == "name":
        return g.atom_like(col)
    if col in ("created_at", "updated_at", "due_date", "start_date") and r.random() < 0.7:
        return "%s %s %s" % (g.c(col), r.choice(["<", "<=", ">", ">=", "="]), g.date_value(col))
    return g.atom_issue_col(col)


def simple_issue_query(g, qry):
    r = g.rng
    cols = ["code"] + r.sample(SELECT_EXTRA, r.randint(0, 4))
    if r.random() < 0.05:
        cols.append("description")
    if r.random() < 0.35:
        # one clause Coding can apply, maybe beside one it cannot
        where = focused_atom(g)
        if r.random() < 0.3:
            where += " AND " + g.pred(g.atom_issue, 2)
    else:
        where = g.where(g.atom_issue)
    order = order_clause(g, OTHER_KEYS) if r.random() < 0.55 else []
    if order and r.random() < 0.25 and all(k != "code" for k, _ in order):
        order.append(("code", r.choice(["", " DESC"])))
    sel = cols + ["%s AS k%d" % (k, n) for n, (k, _) in enumerate(order)]
    qry.order_idx = list(range(len(cols), len(cols) + len(order)))
    qry.total = any(k == "code" for k, _ in order)
    use_alias = r.random() < 0.3
    ob = ", ".join(("k%d" % n if use_alias else k) + d for n, (k, d) in enumerate(order))
    base = "SELECT %s FROM @@I@@ WHERE %s" % (", ".join(sel), where)
    limit = ""
    x = r.random()
    if x < (0.45 if order else 0.25):
        n = r.choice([0, 1, 2, 3, 5, 7, 8, 13, 20, 100, 499, 500, 501, 600, 5000])
        limit = " LIMIT %s" % (g.lit(lambda: str(n), "bigint") if g.param_mode else n)
        if r.random() < 0.3:
            limit += " OFFSET %d" % r.choice([1, 5, 7, 100, 498, 500, 1000])
        qry.limited = True
    elif x < 0.5 and order:
        limit = " FETCH FIRST %d ROWS WITH TIES" % r.choice([1, 2, 5, 7, 50])
    elif x < 0.53:
        limit = r.choice([" LIMIT ALL", " LIMIT NULL", " OFFSET 0"])
    elif x < 0.56:
        limit = " OFFSET %d" % r.choice([1, 7, 500])
        qry.limited = True
    qry.sql = base + (" ORDER BY " + ob if order else "") + limit
    if qry.limited:
        qry.sql_full = base
    return qry


def detail_query(g, qry):
    """Detail-only columns (DescribeIssue per row that passes the list
    quals) and raw; narrowed, as each row costs a call."""
    r = g.rng
    P = g.P
    narrow = r.choice([
        lambda: "code = ANY(%s)" % g.lit(lambda: g.int_array(P["code"], "int"), "int[]"),
        lambda: "code IN (%s)" % ", ".join(str(x) for x in r.sample(P["with_subtasks"] or P["code"],
                                                                     min(3, len(P["with_subtasks"] or P["code"])))),
        lambda: "iteration_code = %d" % r.choice(P["iteration_code"] or [1]),
        lambda: "type = 'EPIC'",
        lambda: "parent_code = ANY(%s)" % g.int_array(P["parent_code"], "int"),
        lambda: "assignee_id = %d" % r.choice(P["assignee_id"] or [1]),
        lambda: "code = ANY(ARRAY(SELECT c FROM keys_small))"])
    parts = [narrow()] + [g.pred(r.choice([g.atom_issue, g.atom_detail, g.atom_detail]), 1)
                          for _ in range(r.randint(0, 2))]
    r.shuffle(parts)
    dcols = r.sample(DETAIL_COLUMNS + ["raw", "raw->'Iteration'", "assignees"], r.randint(1, 3))
    cols = ["code"] + dcols + r.sample(SELECT_EXTRA, r.randint(0, 2))
    where = " AND ".join(parts)
    base = "SELECT %s FROM @@I@@ WHERE %s" % (", ".join(cols), where)
    order = ""
    if r.random() < 0.4:
        order = " ORDER BY code%s" % r.choice(["", " DESC"])
        qry.order_idx = [0]
        qry.total = True
    limit = ""
    if r.random() < 0.3:
        limit = " LIMIT %d" % r.choice([1, 2, 5, 9, 20])
        qry.limited = True
        qry.sql_full = base
    qry.sql = base + order + limit
    return qry


def union_query(g, qry):
    """UNION ALL of two scans under ORDER BY ... LIMIT: a Merge Append of
    sorted foreign paths."""
    r = g.rng
    key = r.choice(["updated_at", "created_at", "code", "priority"])
    d = r.choice(["", " DESC"])
    other = r.choice(["@@I@@", "coding7.issues"]) if not qry.tables[0].startswith("codingd") else "@@I@@"
    w1 = g.where(g.atom_issue, r.choice([0, 1, 1, 2]))
    w2 = g.where(g.atom_issue, r.choice([0, 1, 1, 2]))
    base = ("SELECT c, %s AS k FROM (SELECT code AS c, %s FROM @@I@@ WHERE %s UNION ALL "
            "SELECT code, %s FROM %s WHERE %s) u" % (key, key, w1, key, other, w2))
    qry.order_idx = [1]
    n = r.choice([1, 3, 7, 20, 600])
    qry.sql = base + " ORDER BY %s%s LIMIT %d" % (key, d, n)
    qry.sql_full = base
    qry.limited = True
    if other == "coding7.issues":
        qry.local_map = {"coding7.issues": "local_issues"}
    return qry


def window_query(g, qry):
    """Window and GROUP BY orders: query_pathkeys that are not ORDER BY's."""
    r = g.rng
    where = g.where(g.atom_issue)
    f = r.random()
    d = r.choice(["", " DESC"])
    if f < 0.3:
        qry.sql = "SELECT code, rank() OVER (ORDER BY updated_at%s) FROM @@I@@ WHERE %s" % (d, where)
    elif f < 0.45:
        qry.sql = "SELECT code, sum(code) OVER (ORDER BY created_at%s) FROM @@I@@ WHERE %s" % (d, where)
    elif f < 0.6:
        qry.sql = "SELECT code, lag(code) OVER (ORDER BY code%s), lead(name) OVER (ORDER BY code%s) FROM @@I@@ WHERE %s" % (d, d, where)
    elif f < 0.8:
        key = r.choice(["created_at", "updated_at", "code"])
        qry.sql = ("SELECT %s, count(*), max(code) FROM @@I@@ WHERE %s GROUP BY %s ORDER BY %s%s LIMIT %d"
                   % (key, where, key, key, d, r.choice([1, 3, 10, 1000])))
        qry.order_idx = [0]
        qry.total = True
    elif f < 0.9:
        qry.sql = "SELECT DISTINCT ON (updated_at) updated_at, count(*) OVER (PARTITION BY updated_at) FROM @@I@@ WHERE %s ORDER BY updated_at%s" % (where, d)
        qry.order_idx = [0]
        qry.total = True
    else:
        qry.sql = "SELECT min(updated_at), max(created_at), min(code), max(code) FROM @@I@@ WHERE %s" % where
    return qry


def aggregate_query(g, qry):
    r = g.rng
    where = g.where(g.atom_issue)
    f = r.random()
    if f < 0.35:
        qry.sql = ("SELECT count(*), count(DISTINCT type), min(created_at), max(updated_at), sum(code), "
                   "count(due_date), max(name COLLATE \"C\") FROM @@I@@ WHERE %s" % where)
    elif f < 0.6:
        k = r.choice(["type", "issue_status_type", "priority", "iteration_code", "created_at::date",
                      "assignee_id"])
        qry.sql = "SELECT %s, count(*), min(code), max(code) FROM @@I@@ WHERE %s GROUP BY 1" % (k, where)
    elif f < 0.75:
        qry.sql = "SELECT DISTINCT %s FROM @@I@@ WHERE %s" % (
            ", ".join(r.sample(["type", "priority", "issue_status_type", "parent_code"], 2)), where)
    elif f < 0.85:
        qry.sql = "SELECT EXISTS (SELECT 1 FROM @@I@@ WHERE %s)" % where
    else:
        qry.sql = "SELECT count(*) FROM (SELECT code FROM @@I@@ WHERE %s LIMIT %d) s" % (
            where, r.choice([1, 3, 7, 50]))
    return qry


def join_query(g, qry):
    r = g.rng
    g.p = "i."
    where = g.where(g.atom_issue, r.choice([0, 1, 1, 2]))
    f = r.random()
    cols = ", ".join(["i.code"] + ["i." + c for c in r.sample(SELECT_EXTRA, r.randint(0, 2))])
    if f < 0.25:
        qry.sql = "SELECT k.c, %s FROM keys_small k JOIN @@I@@ i ON i.code = k.c WHERE %s" % (cols, where)
    elif f < 0.35:
        qry.sql = "SELECT k.c, %s FROM keys_small k LEFT JOIN @@I@@ i ON i.code = k.c AND %s" % (cols, where)
    elif f < 0.45:
        qry.sql = ("SELECT k.c FROM keys_small k WHERE %sEXISTS (SELECT 1 FROM @@I@@ i WHERE i.code = k.c AND %s)"
                   % (r.choice(["", "NOT "]), where))
    elif f < 0.52:
        qry.sql = "SELECT %s FROM @@I@@ i WHERE i.code IN (SELECT c FROM keys_small) AND %s" % (cols, where)
    elif f < 0.6:
        qry.sql = "SELECT k.c, %s FROM keys_big k JOIN @@I@@ i ON i.code = k.c WHERE %s" % (cols, where)
    elif f < 0.7:
        g.p = "it."
        itw = g.where(g.atom_iteration, r.choice([0, 1, 1, 2]))
        qry.sql = ("SELECT it.code, %s FROM @@IT@@ it JOIN @@I@@ i ON i.iteration_code = it.code "
                   "WHERE %s AND %s" % (cols, itw, where))
    elif f < 0.76:
        qry.sql = "SELECT k.c, %s FROM keys_iter k JOIN @@I@@ i ON i.iteration_code = k.c WHERE %s" % (cols, where)
    elif f < 0.82:
        qry.sql = "SELECT m.id, %s FROM keys_members m JOIN @@I@@ i ON i.assignee_id = m.id WHERE %s" % (cols, where)
    elif f < 0.9:
        n = r.choice([1, 2, 3, 7])
        key = r.choice(["i.updated_at DESC, i.code", "i.code DESC", "i.code", "i.created_at, i.code DESC"])
        qry.sql = ("SELECT k.c, x.* FROM keys_iter k, LATERAL (SELECT i.code, i.updated_at FROM @@I@@ i "
                   "WHERE i.iteration_code = k.c AND %s ORDER BY %s LIMIT %d) x" % (where, key, n))
    elif f < 0.95:
        qry.sql = ("SELECT k.c, x.code, x.s FROM keys_small k LEFT JOIN LATERAL "
                   "(SELECT i.code, i.code + k.c AS s FROM @@I@@ i WHERE i.code = k.c AND %s) x ON true" % where)
    elif f < 0.965:
        g.p = "a."
        aw = g.where(g.atom_issue, r.choice([0, 1]))
        g.p = "b."
        bw = g.where(g.atom_issue, r.choice([0, 1]))
        subs = g.P["subtask"] or g.P["code"]
        qry.sql = ("SELECT a.code, b.code, b.name FROM @@I@@ a JOIN @@I@@ b ON b.code = a.parent_code "
                   "WHERE a.code IN (%s) AND %s AND %s" % (", ".join(str(x) for x in r.sample(subs, min(4, len(subs)))),
                                                          aw, bw))
    elif f < 0.975:
        qry.sql = ("SELECT k.c, %s FROM keys_parent2 k JOIN @@I@@ i ON i.parent_code = k.c WHERE %s" % (cols, where))
    elif f < 0.985:
        qry.sql = ("SELECT m.id, %s FROM keys_members m JOIN @@I@@ i ON i.creator_id = m.id WHERE %s" % (cols, where))
    elif f < 0.99:
        qry.sql = ("SELECT k.c, (SELECT i.name FROM @@I@@ i WHERE i.code = k.c AND %s) FROM keys_small k" % where)
    else:
        col = r.choice(["parent_code", "iteration_code"])
        qry.sql = ("SELECT k.c, (SELECT count(*) FROM @@I@@ i WHERE i.%s = k.c AND %s), "
                   "(SELECT max(i.code) FROM @@I@@ i WHERE i.%s = k.c) FROM keys_%s k"
                   % (col, where, col, "parent" if col == "parent_code" else "iter"))
    if r.random() < 0.5:
        qry.sets += ["SET enable_hashjoin = off", "SET enable_mergejoin = off"]
    if r.random() < 0.2:
        qry.sets.append("SET enable_material = off")
    return qry


def iteration_query(g, qry):
    r = g.rng
    cols = ["code"] + r.sample(["name", "status", "start_at", "end_at", "assignee_id", "created_at",
                                "goal", "completed_count"], r.randint(0, 3))
    where = focused_atom(g, True) if r.random() < 0.5 else g.where(g.atom_iteration)
    order = []
    if r.random() < 0.5:
        order = [(r.choice(["code", "name", "start_at", "end_at", "status", "created_at"]),
                  r.choice(["", " DESC", " NULLS FIRST", " DESC NULLS LAST"]))]
        if order[0][0] != "code" and r.random() < 0.5:
            order.append(("code", ""))
    sel = cols + ["%s AS k%d" % (k, n) for n, (k, _) in enumerate(order)]
    qry.order_idx = list(range(len(cols), len(cols) + len(order)))
    qry.total = any(k == "code" for k, _ in order)
    base = "SELECT %s FROM @@IT@@ WHERE %s" % (", ".join(sel), where)
    limit = ""
    if r.random() < 0.3:
        limit = " LIMIT %d" % r.choice([0, 1, 2, 5, 8])
        if r.random() < 0.3:
            limit += " OFFSET %d" % r.choice([1, 3, 7])
        qry.limited = True
        qry.sql_full = base
    qry.sql = base + (" ORDER BY " + ", ".join(k + d for k, d in order) if order else "") + limit
    return qry


def cursor_query(g, qry):
    r = g.rng
    where = g.where(g.atom_issue)
    d = r.choice(["", " DESC"])
    key = r.choice(["code", "created_at, code", "updated_at%s, code" % d])
    qry.sql = "SELECT code, name, updated_at FROM @@I@@ WHERE %s ORDER BY %s%s" % (
        where, key, d if key == "code" else "")
    qry.cursor = ["FETCH %d FROM c" % r.choice([1, 3, 7, 10])] + \
        r.sample(["FETCH 2 FROM c", "FETCH NEXT FROM c", "FETCH 8 FROM c", "FETCH BACKWARD 2 FROM c",
                  "FETCH ABSOLUTE 3 FROM c", "FETCH ALL FROM c"], 2)
    qry.total = True
    return qry


def make_query(qid, pools):
    rng = random.Random("%d/q%d" % (SEED, qid))
    g = Gen(rng, pools, qid)
    kind = rng.choices(["simple", "prepared", "aggregate", "join", "iteration", "cursor", "detail",
                        "union", "window"],
                       [40, 13, 7, 16, 9, 3, 4, 4, 4])[0]
    qry = Query(qid, kind)
    qry.tables = rng.choices(TABLES, [t[4] for t in TABLES])[0]
    qry.zone = rng.choice(ZONES)
    qry.sets.append("SET TimeZone = %s" % q(qry.zone))
    if rng.random() < 0.15:
        qry.sets.append("SET enable_sort = off")
    if rng.random() < 0.1:
        qry.sets.append("SET coding_fdw.fast_json = off")
    if kind == "prepared":
        g.param_mode = True
        sub = rng.choice([simple_issue_query, simple_issue_query, aggregate_query, join_query])
        sub(g, qry)
        qry.sets.append("SET plan_cache_mode = %s" % rng.choice(
            ["force_generic_plan", "force_generic_plan", "force_custom_plan", "auto"]))
        qry.param_types = [t for t, _ in g.params]
        nsets = rng.choice([1, 2, 3])
        qry.param_sets = [[gen() for _, gen in g.params] for _ in range(nsets)]
        # the same plan executed again under another TimeZone (values are
        # converted when the scan starts, not when the plan was made)
        qry.param_zones = [None] + [rng.choice(ZONES) if rng.random() < 0.4 else None for _ in range(nsets - 1)]
    elif kind == "simple":
        simple_issue_query(g, qry)
    elif kind == "aggregate":
        aggregate_query(g, qry)
    elif kind == "join":
        join_query(g, qry)
    elif kind == "iteration":
        iteration_query(g, qry)
    elif kind == "detail":
        detail_query(g, qry)
    elif kind == "union":
        union_query(g, qry)
    elif kind == "window":
        window_query(g, qry)
    else:
        cursor_query(g, qry)
    return qry


# --------------------------------------------------------------------------
# Running and comparing
# --------------------------------------------------------------------------

def for_mode(sql, qry, mode):
    fi, fit, li, lit = qry.tables[:4]
    if mode in ("local", "full"):
        for k, v in qry.local_map.items():
            sql = sql.replace(k, v)
        return sql.replace("@@IT@@", lit).replace("@@I@@", li)
    return sql.replace("@@IT@@", fit).replace("@@I@@", fi)


def mode_statements(qry, mode):
    """[(sub-run id, statement)], plus setup and teardown statements."""
    sql = for_mode(qry.sql_full if mode == "full" else qry.sql, qry, mode)
    name = "p%d_%s" % (qry.qid, mode)
    pre, runs, post = [], [], []
    if mode in ("push", "nopush"):
        pre.append("SET coding_fdw.enable_pushdown = %s" % ("on" if mode == "push" else "off"))
    if any(qry.param_zones):
        pre.append("SET TimeZone = %s" % q(qry.zone))
    if qry.cursor:
        pre.append("BEGIN")
        pre.append("DECLARE c SCROLL CURSOR FOR " + sql)
        runs = [(k, f) for k, f in enumerate(qry.cursor)]
        post.append("COMMIT")
    elif qry.param_sets:
        types = "(%s)" % ", ".join(qry.param_types) if qry.param_types else ""
        pre.append("PREPARE %s%s AS %s" % (name, types, sql))
        runs = [(k, ("SET TimeZone = %s;\n" % q(qry.param_zones[k]) if qry.param_zones[k] else "") +
                 "EXECUTE %s%s" % (name, "(%s)" % ", ".join(ps) if ps else ""))
                for k, ps in enumerate(qry.param_sets)]
        post.append("DEALLOCATE %s" % name)
    else:
        runs = [(0, sql)]
    return pre, runs, post


def modes_of(qry):
    return ["push", "nopush", "local"] + (["full"] if qry.limited and qry.sql_full else [])


def script_for(queries):
    out = ["\\pset format csv", "\\pset tuples_only on", "\\pset null '%s'" % NULLMARK,
           "\\set SHOW_CONTEXT never"]
    for qry in queries:
        out.append("RESET ALL;")
        out.append("SET jit = off;")
        out += [s + ";" for s in qry.sets]
        for mode in modes_of(qry):
            pre, runs, post = mode_statements(qry, mode)
            out += [s + ";" for s in pre]
            for k, stmt in runs:
                out.append("\\echo '@@B %d %s %d'" % (qry.qid, mode, k))
                out.append(stmt + ";")
                out.append("\\echo '@@E' :SQLSTATE")
                out.append("\\echo '@@M' :LAST_ERROR_MESSAGE")
            out += [s + ";" for s in post]
    return "\n".join(out) + "\n"


def run_batch(queries):
    """{(qid, mode, k): (sqlstate, message, rows)}"""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False, encoding="utf-8") as f:
        f.write(script_for(queries))
        path = f.name
    os.chmod(path, 0o644)
    try:
        r = subprocess.run(["psql", "-X", "-q", "-d", DB, "-f", path], capture_output=True,
                           timeout=scaled(900), env=dict(os.environ, PGCLIENTENCODING="UTF8"))
    finally:
        os.unlink(path)
    text = r.stdout.decode("utf-8", errors="replace")
    # marker lines are read as they are (an error message may hold any
    # character); the rows between two markers are CSV (fields may span lines)
    results = {}
    cur = None
    buf = []
    state = None
    for line in text.split("\n"):
        if line.startswith("@@B "):
            _, qid, mode, k = line.split(" ")
            cur = (int(qid), mode, int(k))
            buf = []
            state = None
        elif cur is not None and state is None and line.startswith("@@E "):
            state = line[4:].strip()
        elif cur is not None and state is not None and line.startswith("@@M"):
            rows = [tuple(x) for x in csv.reader(io.StringIO("\n".join(buf), newline=""))]
            results[cur] = (state, line[4:].strip() if state != "00000" else "", rows)
            cur = None
        elif cur is not None and state is None:
            buf.append(line)
    return results, r.stderr.decode("utf-8", errors="replace")


def keyseq(rows, idx):
    return [tuple(r[i] for i in idx) for r in rows]


def compare(qry, got, ref, full):
    """None when got is a right answer given the local ones, else why not."""
    idx = qry.order_idx
    if qry.limited:
        if len(got) != len(ref):
            return "%d rows, the local table gives %d" % (len(got), len(ref))
        if full is not None:
            extra = collections.Counter(got) - collections.Counter(full)
            if extra:
                return "rows the query without LIMIT does not return: %s" % list(extra)[:3]
        if idx:
            a, b = keyseq(got, idx), keyseq(ref, idx)
            if a != b:
                i = next(n for n in range(len(a)) if a[n] != b[n])
                return "ORDER BY keys differ at row %d: %s vs %s" % (i + 1, a[i], b[i])
            if qry.total and got != ref:
                return "rows differ (total order)"
            # which rows of a tie group the LIMIT (last group) or the OFFSET
            # (first group) cuts off is unspecified; the other groups are whole
            edges = {b[0], b[-1]} if b else set()
            ga = collections.Counter(x for x in got if keyseq([x], idx)[0] not in edges)
            gb = collections.Counter(x for x in ref if keyseq([x], idx)[0] not in edges)
            if ga != gb:
                return "rows between the first and the last ORDER BY key differ"
        return None
    if idx or qry.cursor:
        if qry.total:
            if got != ref:
                if collections.Counter(got) == collections.Counter(ref):
                    return "same rows, another order"
                return "rows differ"
            return None
        a, b = keyseq(got, idx), keyseq(ref, idx)
        if a != b:
            if sorted(a) == sorted(b):
                return "ORDER BY keys in another order"
        if collections.Counter(got) != collections.Counter(ref):
            return "rows differ"
        if a != b:
            return "ORDER BY keys in another order"
        return None
    if collections.Counter(got) != collections.Counter(ref):
        return "rows differ"
    return None


def show_rows(rows, limit=6):
    s = "; ".join("(" + ", ".join(x[:40] for x in r) + ")" for r in rows[:limit])
    if len(rows) > limit:
        s += "; ... (%d rows)" % len(rows)
    return s[:1200]


def repro_text(qry, mode):
    pre, runs, post = mode_statements(qry, mode)
    stmts = [s for s in qry.sets] + pre + [stmt for _, stmt in runs] + post
    return ";\n".join(stmts) + ";"


def diff_rows(got, ref):
    a = collections.Counter(got)
    b = collections.Counter(ref)
    return list((a - b).elements())[:4], list((b - a).elements())[:4]


def evaluate(qry, results, problems, notes):
    """Compare each sub-run of a query: push and nopush against local."""
    ks = sorted({k for (qid, m, k) in results if qid == qry.qid} | {0})
    for k in ks:
        rs = {m: results.get((qry.qid, m, k)) for m in modes_of(qry)}
        missing = [m for m, v in rs.items() if v is None]
        if missing:
            problems.append((qry, k, "no result for %s (session ended? backend crash?)" % ",".join(missing), rs))
            continue
        states = {m: v[0] for m, v in rs.items()}
        if any(s != "00000" for s in states.values()):
            if len(set(states.values())) == 1:
                notes.append("query %d: every mode fails the same way (%s %s): a generated query PostgreSQL "
                             "refuses" % (qry.qid, states["local"], rs["local"][1][:100]))
                continue
            problems.append((qry, k, "errors differ: " + ", ".join(
                "%s %s %s" % (m, v[0], v[1][:200]) for m, v in rs.items()), rs))
            continue
        ref = rs["local"][2]
        full = rs["full"][2] if "full" in rs else None
        for m in ("push", "nopush"):
            why = compare(qry, rs[m][2], ref, full)
            if why:
                problems.append((qry, k, "%s vs local: %s" % (m, why), rs))


def report(problem, shown):
    qry, k, why, rs = problem
    print("FAIL | query %d (%s, sub-run %d) seed %d: %s" % (qry.qid, qry.category, k, SEED, why))
    if shown:
        print("FAIL |   rerun: FUZZ_SEED=%d FUZZ_ONLY=%d" % (SEED, qry.qid))
        for line in repro_text(qry, "push").split("\n"):
            print("FAIL |   " + line[:3000])
        if qry.limited and qry.sql_full:
            print("FAIL |   (unlimited: %s)" % for_mode(qry.sql_full, qry, "local")[:1500])
        for m in ("push", "nopush", "local"):
            v = rs.get(m)
            if v is None:
                print("FAIL |   %-6s no result" % m)
            elif v[0] != "00000":
                print("FAIL |   %-6s ERROR %s %s" % (m, v[0], v[1][:300]))
            else:
                print("FAIL |   %-6s %d rows: %s" % (m, len(v[2]), show_rows(v[2])))
        for m in ("push", "nopush"):
            v, ref = rs.get(m), rs.get("local")
            if v and ref and v[0] == "00000" and ref[0] == "00000":
                only_m, only_l = diff_rows(v[2], ref[2])
                if only_m or only_l:
                    print("FAIL |   %s only: %s | local only: %s" % (m, show_rows(only_m, 4), show_rows(only_l, 4)))
    sys.stdout.flush()


def main():
    os.environ["PGCLIENTENCODING"] = "UTF8"
    print("seed %d" % SEED)
    sys.stdout.flush()
    res = Results()
    rng = random.Random("%d/data" % SEED)
    n_issues = rng.randint(700, 1150)
    sim_seed = rng.randint(1, 10 ** 6)
    with scenario(DB, "--team", "acme", "--project", "%s:%d" % (PROJECT, n_issues),
                  "--token", "secret-token", "--seed", str(sim_seed), "--prerender") as sim:
        pools = {}

        def data():
            add_special_data(sim, rng)
            pools.update(setup(sim, rng))
            out = psql("SET coding_fdw.enable_pushdown = off; SELECT count(*), count(DISTINCT code) FROM coding7.issues",
                       db=DB)
            n = len(pools["code"])
            assert out == "%d|%d" % (n, n), "page_size 7 table: %s, local copy %d" % (out, n)
            print("     %d issues (%d generated), %d iterations, sim seed %d" % (
                n, n_issues, len(pools["it_code"]), sim_seed))
        res.check("data: local copies of the simulated project", data)
        if not pools:
            res.finish()

        def lookups():
            # every issue through DescribeIssue (code = ANY) equals its listed row
            cols = [c for c in LIST_COLUMNS + DETAIL_COLUMNS if c != "assignees"]
            for table, local in (("coding.issues", "local_issues"), ("coding7.issues", "local_issues"),
                                 ("codingd.issues", "local_defects")):
                out = psql("""SET TimeZone = 'UTC';
                    SELECT count(*) FROM coding.issues WHERE false;
                    SELECT (SELECT count(*) FROM {t} WHERE code = ANY(ARRAY(SELECT code FROM local_issues))),
                           (SELECT count(*) FROM (
                              (SELECT {c} FROM {t} WHERE code = ANY(ARRAY(SELECT code FROM local_issues))
                               EXCEPT ALL SELECT {c} FROM {l})
                              UNION ALL
                              (SELECT {c} FROM {l} EXCEPT ALL
                               SELECT {c} FROM {t} WHERE code = ANY(ARRAY(SELECT code FROM local_issues)))) d),
                           (SELECT count(*) FROM {l})""".format(t=table, l=local, c=", ".join(cols)), db=DB)
                n, differ, want = out.split("\n")[-1].split("|")
                assert n == want and differ == "0", "%s: %s rows by key lookup, %s listed, %s differ" % (
                    table, n, want, differ)
        res.check("key lookups: every issue by DescribeIssue equals its listed row", lookups)

        queries = [make_query(n, pools) for n in range(1, COUNT + 1)]
        if ONLY:
            queries = [x for x in queries if x.qid in ONLY]
        by_cat = collections.defaultdict(list)
        for x in queries:
            by_cat[x.category].append(x)
        results = {}
        stderr_tail = []
        sim.call("DELETE", "/_sim/log")
        start = time.monotonic()
        for i in range(0, len(queries), BATCH):
            r, err = run_batch(queries[i:i + BATCH])
            results.update(r)
            if "server closed the connection" in err or "connection to server was lost" in err:
                stderr_tail.append(err[-2000:])
        took = time.monotonic() - start
        notes = []
        problems_by_cat = collections.defaultdict(list)
        for x in queries:
            evaluate(x, results, problems_by_cat[x.category], notes)
        for n in notes[:10]:
            print("     note: " + n)
        for s in stderr_tail:
            print("     psql: " + s.replace("\n", "\n     psql: "))
        nrows = [len(v[2]) for v in results.values() if v[0] == "00000"]
        print("     %d queries (%d statements, %d failed in every mode) in %.1fs; %d statements returned "
              "rows, %d rows in all, %d returned more than 100" % (
                  len(queries), len(results), len(notes), took, sum(1 for n in nrows if n),
                  sum(nrows), sum(1 for n in nrows if n > 100)))
        log = sim.call("GET", "/_sim/log")["requests"]
        lists = [e["body"] for e in log if e.get("action") == "DescribeIssueListWithPage" and e.get("body")]
        keys = collections.Counter(c.get("Key") for b in lists for c in (b.get("Conditions") or []))
        print("     Coding calls: %d issue list pages (%d with Conditions, %d with IssueType, %d sorted by "
              "another key than CODE or descending), %d DescribeIssue, %d iteration pages (%d filtered); "
              "condition keys: %s" % (
                  len(lists), sum(1 for b in lists if b.get("Conditions")),
                  sum(1 for b in lists if b.get("IssueType") not in (None, "ALL")),
                  sum(1 for b in lists if b.get("SortKey") != "CODE" or b.get("SortValue") == "DESC"),
                  sum(1 for e in log if e.get("action") == "DescribeIssue"),
                  sum(1 for e in log if e.get("action") == "DescribeIterationList"),
                  sum(1 for e in log if e.get("action") == "DescribeIterationList" and e.get("body") and
                      set(e["body"]) - {"Action", "ProjectName", "Offset", "Limit"}),
                  ", ".join("%s %d" % kv for kv in sorted(keys.items()))))
        if os.environ.get("FUZZ_DUMP"):
            with open(os.environ["FUZZ_DUMP"], "w") as f:
                f.write(script_for(queries))
        shown = [0]

        for cat in ("simple", "prepared", "aggregate", "join", "iteration", "cursor", "detail", "union",
                    "window"):
            qs = by_cat.get(cat, [])

            def check(cat=cat, qs=qs):
                probs = problems_by_cat.get(cat, [])
                for p in probs:
                    report(p, shown[0] < 6)
                    shown[0] += 1
                assert not probs, "%d of %d %s queries give other rows than the local table (seed %d: %s)" % (
                    len({p[0].qid for p in probs}), len(qs), cat, SEED,
                    ",".join(str(x) for x in sorted({p[0].qid for p in probs})[:20]))
            if qs:
                res.check("%s queries: pushdown on = off = local table (%d)" % (cat, len(qs)), check)

        def generated_ok():
            assert len(notes) <= max(3, len(queries) // 10), \
                "%d of %d generated queries fail in every mode" % (len(notes), len(queries))
        res.check("generated queries run (%d fail in every mode)" % len(notes), generated_ok)
    res.finish()


if __name__ == "__main__":
    main()
