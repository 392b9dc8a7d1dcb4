#!/usr/bin/env python3
"""memory.py: backend peak memory of a full scan (benchmark 3, bench/README.md).

Two projects in one simulator (seed 5, --prerender): 1,000 and 100,000
issues (1,000 and 10,000 with --quick).  Each scan runs in a FRESH backend
(its own psql session) that converts every list column of every row plus
raw (as test/t_memory.py does: sum(length(row::text)) over a subquery),
then reads its own peak resident set size, VmHWM, from /proc/self/status
with pg_read_file in the same session.  The same again without raw, where
the scan reads its rows in place from its own parser's document (row
views, bench/README.md benchmark 2).  A fresh backend that only ran
SELECT 1 gives the baseline.  Each measurement is repeated 3 times and the
median reported.  A streaming scan keeps one page: the ratio large/small
should stay near 1 (target <= 2); buffering the table would need hundreds
of MB.
"""
import sys

from benchlib import (Sim, drop_db, header, median, progress, psql, scale_arg, setup_db,
                      table)

DB = "bench_memory"
SEED = 5
RUNS = 3
COLUMNS = ("team, project, code, type, parent_type, name, description, issue_status_id, "
           "issue_status_name, issue_status_type, priority, assignee_id, assignees, creator_id, "
           "iteration_id, iteration_code, start_date, due_date, created_at, updated_at, "
           "completed_at, working_hours, story_point, issue_type_id, issue_type_detail, labels, "
           "custom_fields, parent_code")
HWM = "SELECT substring(pg_read_file('/proc/self/status') from 'VmHWM:\\s+(\\d+)');"


def peak(scan_sql):
    """(rows or None, VmHWM kB) of a fresh backend after scan_sql."""
    out = psql((scan_sql + ";\n" if scan_sql else "") + HWM, db=DB).split()
    if scan_sql:
        count, _, hwm = out[0].split("|") + [out[1]]
        return int(count), int(hwm)
    return None, int(out[0])


def main():
    args = scale_arg().parse_args()
    small, large = (1000, 10000) if args.quick else (1000, 100000)
    header("Benchmark 3: backend peak memory (VmHWM) of a full scan, %d vs %d issues"
           % (small, large), args.quick)
    sim = Sim([("small", small), ("large", large)], SEED, "--prerender")
    try:
        setup_db(DB, sim, "small", ", rate_limit '100000'")
        psql("CREATE SCHEMA large; IMPORT FOREIGN SCHEMA large LIMIT TO (issues) "
             "FROM SERVER coding INTO large", db=DB)
        scans = {}
        variants = (("", ", raw", "every list column + raw"),
                    ("views ", "", "every list column (rows read in place)"))
        for prefix, extra, _ in variants:
            for name, tab, n in (("small", "coding.issues", small),
                                 ("large", "large.issues", large)):
                scans[prefix + name] = (
                    "SELECT count(*), sum(length(t::text)) FROM (SELECT %s%s FROM %s) t"
                    % (COLUMNS, extra, tab), n)
                progress("warm-up scan of %d issues%s" % (n, extra))
                psql(scans[prefix + name][0], db=DB)
        res = {"baseline": []}
        res.update({k: [] for k in scans})
        for r in range(RUNS):
            res["baseline"].append(peak(None)[1])
            for key, (sql, n) in scans.items():
                count, hwm = peak(sql)
                if count != n:
                    raise RuntimeError("%s scan returned %d rows, expected %d" % (key, count, n))
                res[key].append(hwm)
            progress("run %d/%d: baseline %d kB, %s" % (
                r + 1, RUNS, res["baseline"][-1],
                ", ".join("%s %d kB" % (k, v[-1]) for k, v in res.items() if k != "baseline")))
        med = {k: median(v) for k, v in res.items()}
        rows = [["fresh backend, SELECT 1 (baseline)", " / ".join(map(str, res["baseline"])),
                 "%d" % med["baseline"], "", ""]]
        for prefix, _, label in variants:
            for name, n in (("small", small), ("large", large)):
                key = prefix + name
                rows.append(["scan of %d issues, %s" % (n, label),
                             " / ".join(map(str, res[key])), "%d" % med[key],
                             "%+d" % (med[key] - med["baseline"]),
                             "%.3f" % (med[key] / med[prefix + "small"])])
        print(table(["backend", "VmHWM runs (kB)", "median (kB)", "over baseline (kB)",
                     "ratio to %d" % small], rows, ["<", "<", ">", ">", ">"]))
        print()
        for prefix, _, label in variants:
            lo, hi = med[prefix + "small"], med[prefix + "large"]
            print("%s: ratio %d/%d issues = %d kB / %d kB = %.3f (target <= 2: %s); growth %+d kB "
                  "for %dx the rows" % (label, large, small, hi, lo, hi / lo,
                                        "met" if hi / lo <= 2 else "NOT met", hi - lo,
                                        large // small))
        print()
    finally:
        sim.stop()
        drop_db(DB)


if __name__ == "__main__":
    sys.exit(main())
