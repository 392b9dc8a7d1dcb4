#!/usr/bin/env python3
"""calls.py: Coding API calls per query (benchmark 1, bench/README.md).

A project of 10,000 generated issues (seed 11; 2,000 with --quick).  Each
query of the catalogue below runs in a fresh backend (its own psql) after
the simulator's request log is cleared; the log then gives the calls the
query made, per Action.  Each query is compared with

* the minimum the query needs, reasoned out per query (the `why` text, also
  in bench/README.md) and computed from the project's data, which the
  harness reads from the simulator (/_sim/dump), not through coding_fdw;
* the N+1 approach of the reference connector: list every page, then one
  DescribeIssue per listed issue (ceil(N/500) + N for any issues query; for
  iterations and members just their pages, plus DescribeProjectByName for
  members since DescribeProjectMembers needs the project id).

The rows each query returns are also checked against the data, so a call
count is never "good" because rows went missing.
"""
import collections
import sys

from benchlib import (Sim, drop_db, header, pages, progress, psql, scale_arg,
                      setup_db, table)

DB = "bench_calls"
SEED = 11
PROJECT = "backend"
DAY_MS = 86400000
ANCHOR_MS = 1793462400000          # 2026-11-01 00:00 +08:00, the simulator's default anchor
KEYWORD = "登录"


class Data:
    """The project as the simulator holds it, with the parameters the queries use."""

    def __init__(self, dump):
        self.issues = dump["issues"]
        self.iterations = dump["iterations"]
        self.members = dump["members"]
        self.n = len(self.issues)
        member_ids = {m["Id"] for m in self.members}
        self.member_ids = member_ids
        open_defects = [i for i in self.issues if self.is_open_defect(i)]
        per = collections.Counter(i["AssigneeId"] for i in open_defects if i["AssigneeId"])
        # the assignee with the most open defects (ties: smallest id)
        self.assignee = min(per, key=lambda a: (-per[a], a))
        processing = sorted(it["Code"] for it in self.iterations if it["Status"] == "PROCESSING")
        self.processing = processing
        self.iteration = processing[0]
        with_epic = [i["Code"] for i in self.issues if i["Epic"]["Code"] and i["Code"] > self.n // 2]
        self.epic_issue = with_epic[0]
        n = self.n
        self.codes3 = [7, n // 2 + 3, n - 11]
        self.codes5 = [3, n // 5 + 1, n // 3 + 7, (2 * n) // 3 + 5, n - 2]

    @staticmethod
    def is_open_defect(i):
        return i["Type"] == "DEFECT" and i["IssueStatusType"] != "COMPLETED"

    def count(self, pred):
        return sum(1 for i in self.issues if pred(i))


def catalogue(d):
    """(title, sql, expected rows, minimum calls, why the minimum, N+1 calls)."""
    n_plus_1 = pages(d.n) + d.n
    iter_pages = pages(len(d.iterations))
    member_calls = 1 + pages(len(d.members))
    a = d.assignee
    lo, hi = ANCHOR_MS - 7 * DAY_MS, ANCHOR_MS

    def mine(i):
        return d.is_open_defect(i) and i["AssigneeId"] == a

    def mine_api(i):       # Coding's ASSIGNEE also matches co-assignees
        return d.is_open_defect(i) and (i["AssigneeId"] == a or a in i["Assignees"])

    k_mine = d.count(mine)
    k_mine_api = d.count(mine_api)
    in_iter = [i for i in d.issues if i["Iteration"]["Code"] == d.iteration]
    in_processing = [i for i in d.issues if i["Iteration"]["Code"] in d.processing]
    it_name = {it["Code"]: it["Name"] for it in d.iterations}
    k_recent = d.count(lambda i: lo <= i["UpdatedAt"] < hi)
    k_bug = d.count(lambda i: any(lab["Name"] == "bug" for lab in i["Labels"]))
    k_kw = d.count(lambda i: KEYWORD in i["Name"])
    k_kw_api = d.count(lambda i: KEYWORD.casefold() in i["Name"].casefold())
    k_open_defects = d.count(d.is_open_defect)
    k_req = d.count(lambda i: i["Type"] == "REQUIREMENT" and i["Priority"] in ("2", "3")
                    and i["IssueStatusType"] == "TODO")
    return [
        ("open defects of one assignee",
         "SELECT code, name, issue_status_name FROM coding.issues WHERE type = 'DEFECT' "
         "AND issue_status_type <> 'COMPLETED' AND assignee_id = %d" % a,
         k_mine, pages(k_mine_api),
         "one filtered list: IssueType=DEFECT, ASSIGNEE=a, STATUS_TYPE=TODO,PROCESSING "
         "(%d rows; ASSIGNEE also matches co-assignees)" % k_mine_api,
         n_plus_1),
        ("issues updated in the last 7 days",
         "SELECT code, name, updated_at FROM coding.issues "
         "WHERE updated_at >= '2026-10-25 00:00+08' AND updated_at < '2026-11-01 00:00+08'",
         k_recent, pages(k_recent),
         "one filtered list: UPDATED_AT 2026-10-25_2026-10-31 (day-aligned, so exact)",
         n_plus_1),
        ("10 most recently updated",
         "SELECT code, name, updated_at FROM coding.issues ORDER BY updated_at DESC LIMIT 10",
         10, 1, "one page sorted by UPDATED_AT DESC", n_plus_1),
        ("one iteration's issues by status",
         "SELECT issue_status_name, count(*) FROM coding.issues WHERE iteration_code = %d "
         "GROUP BY 1 ORDER BY 1" % d.iteration,
         len({i["IssueStatusName"] for i in in_iter}), pages(len(in_iter)),
         "one filtered list: ITERATION=%d (%d issues)" % (d.iteration, len(in_iter)),
         n_plus_1),
        ("one issue by code, with its epic",
         "SELECT code, name, epic->>'Name' AS epic FROM coding.issues WHERE code = %d"
         % d.epic_issue,
         1, 1, "one DescribeIssue (it has list and detail fields)", n_plus_1),
        ("3 issues by code list",
         "SELECT code, name, issue_status_name FROM coding.issues WHERE code IN (%s)"
         % ", ".join(map(str, d.codes3)),
         3, min(3, pages(d.n)),
         "one DescribeIssue per code (the list has no code filter), or the whole list "
         "(%d pages) if that is fewer" % pages(d.n), n_plus_1),
        ("join of a 5-row local table on code",
         "SELECT p.note, i.code, i.name FROM picks p JOIN coding.issues i ON i.code = p.code",
         5, min(5, pages(d.n)),
         "one DescribeIssue per local row, or the whole list (%d pages) if that is fewer"
         % pages(d.n), n_plus_1),
        ("count of issues per type",
         "SELECT type, count(*) FROM coding.issues GROUP BY type ORDER BY type",
         len({i["Type"] for i in d.issues}), pages(d.n),
         "every page: the aggregate is computed by PostgreSQL over all %d issues" % d.n,
         n_plus_1),
        ("issues labelled 'bug'",
         "SELECT code, name FROM coding.issues WHERE labels @> '[{\"Name\": \"bug\"}]'",
         k_bug, pages(k_bug), "one filtered list: LABEL=bug (%d rows)" % k_bug, n_plus_1),
        ("name contains a keyword (LIKE)",
         "SELECT code, name FROM coding.issues WHERE name LIKE '%%%s%%'" % KEYWORD,
         k_kw, pages(k_kw_api), "one filtered list: KEYWORD=%s (%d rows)" % (KEYWORD, k_kw_api),
         n_plus_1),
        ("iterations in progress",
         "SELECT code, name, start_at, end_at FROM coding.iterations WHERE status = 'PROCESSING'",
         len(d.processing), 1, "one DescribeIterationList with Status=[PROCESSING]", iter_pages),
        ("project members",
         "SELECT id, name, email FROM coding.project_members",
         len(d.members), member_calls,
         "DescribeProjectByName for the id, then %d page(s) of members" % pages(len(d.members)),
         member_calls),
        ("open defects of one assignee, with watchers (detail)",
         "SELECT code, name, watchers FROM coding.issues WHERE type = 'DEFECT' "
         "AND issue_status_type <> 'COMPLETED' AND assignee_id = %d" % a,
         k_mine, pages(k_mine_api) + k_mine,
         "the filtered list (%d page), then one DescribeIssue per matching row (%d)"
         % (pages(k_mine_api), k_mine),
         n_plus_1),
        ("any 5 issues (LIMIT without ORDER BY)",
         "SELECT code, name FROM coding.issues LIMIT 5",
         5, 1, "the first page", n_plus_1),
        ("open defects per assignee name (join members)",
         "SELECT m.name, count(*) AS open_defects FROM coding.issues i "
         "JOIN coding.project_members m ON m.id = i.assignee_id "
         "WHERE i.type = 'DEFECT' AND i.issue_status_type <> 'COMPLETED' "
         "GROUP BY m.name ORDER BY 2 DESC, 1",
         len({i["AssigneeId"] for i in d.issues
              if d.is_open_defect(i) and i["AssigneeId"] in d.member_ids}),
         member_calls + pages(k_open_defects),
         "members (%d) + one filtered list: IssueType=DEFECT, STATUS_TYPE=TODO,PROCESSING "
         "(%d rows)" % (member_calls, k_open_defects),
         member_calls + n_plus_1),
        ("issue counts of the iterations in progress (join)",
         "SELECT it.name, i.issue_status_type, count(*) FROM coding.iterations it "
         "JOIN coding.issues i ON i.iteration_code = it.code WHERE it.status = 'PROCESSING' "
         "GROUP BY 1, 2 ORDER BY 1, 2",
         len({(it_name[i["Iteration"]["Code"]], i["IssueStatusType"]) for i in in_processing}),
         # a nested loop hands the inner scan one outer row at a time, so an
         # FDW cannot merge the outer values into one ITERATION=a,b request:
         # its minimum is one filtered listing per iteration in progress
         1 + sum(pages(sum(1 for i in in_processing if i["Iteration"]["Code"] == c))
                 for c in d.processing),
         "the iterations (1), then one list per iteration in progress with "
         "ITERATION=<its code> (%d iterations, %d issues in all): the executor hands "
         "the inner scan one outer row at a time, so one request for all of them "
         "is beyond an FDW" % (len(d.processing), len(in_processing)),
         iter_pages + n_plus_1),
        ("newest 20 high-priority open requirements",
         "SELECT code, name, created_at FROM coding.issues WHERE type = 'REQUIREMENT' "
         "AND priority >= 2 AND issue_status_type = 'TODO' ORDER BY created_at DESC LIMIT 20",
         min(20, k_req), 1,
         "one page: IssueType=REQUIREMENT, PRIORITY=2,3, STATUS_TYPE=TODO, "
         "sorted by CREATED_AT DESC", n_plus_1),
    ]


def main():
    ap = scale_arg()
    args = ap.parse_args()
    n = 2000 if args.quick else 10000
    header("Benchmark 1: Coding API calls per query, %d issues" % n, args.quick)
    sim = Sim([(PROJECT, n)], SEED, "--prerender")
    try:
        progress("reading the project's data from the simulator")
        d = Data(sim.dump(PROJECT))
        setup_db(DB, sim, PROJECT, ", rate_limit '100000'")
        psql("CREATE TABLE picks (code int PRIMARY KEY, note text); "
             "INSERT INTO picks SELECT c, 'pick ' || c FROM unnest(ARRAY[%s]) c; ANALYZE picks"
             % ",".join(map(str, d.codes5)), db=DB)
        rows = []
        bad = []
        for k, (title, sql, exp_rows, minimum, why, nplus1) in enumerate(catalogue(d), 1):
            sim.clear_log()
            out = psql(sql, db=DB)
            got_rows = len([line for line in out.split("\n") if line != ""])
            log = sim.log()
            per = collections.Counter(e["action"] for e in log)
            ours = len(log)
            ok = ours == minimum
            verdict = "yes" if ok else ("NO" if ours > minimum else "BELOW (check the minimum)")
            row_ok = got_rows == exp_rows
            if not row_ok:
                bad.append("Q%d %s: %d rows, expected %d" % (k, title, got_rows, exp_rows))
            breakdown = ", ".join("%s %d" % (act.replace("Describe", "").replace("WithPage", ""), c)
                                  for act, c in sorted(per.items()))
            rows.append(["Q%d" % k, title, "%d%s" % (got_rows, "" if row_ok else " (!%d)" % exp_rows),
                         ours, minimum, nplus1, verdict,
                         "%.4f" % (ours / nplus1), breakdown])
            progress("Q%-2d %-52s ours %5d  min %5d  N+1 %6d  %s"
                     % (k, title, ours, minimum, nplus1, "" if ok else "<- not minimal"))
        print(table(["#", "query", "rows", "ours", "minimum", "N+1", "ours = min",
                     "ours / N+1", "ours by Action"],
                    rows, ["<", "<", ">", ">", ">", ">", "<", ">", "<"]))
        print()
        print("Why each minimum:")
        for k, (title, sql, _, minimum, why, _) in enumerate(catalogue(d), 1):
            print("  Q%d %s = %d: %s" % (k, title, minimum, why))
            print("     %s" % sql)
        print()
        at_min = sum(1 for r in rows if r[6] == "yes")
        print("%d of %d queries at the minimum; total calls ours %d, minimum %d, N+1 %d"
              % (at_min, len(rows), sum(r[3] for r in rows), sum(r[4] for r in rows),
                 sum(r[5] for r in rows)))
        if bad:
            print("ROW COUNT MISMATCHES: " + "; ".join(bad))
        print()
    finally:
        sim.stop()
        drop_db(DB)


if __name__ == "__main__":
    sys.exit(main())
