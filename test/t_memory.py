#!/usr/bin/env python3
"""t_memory: a scan streams page by page, so a backend's peak memory does
not grow with the table.

Each scan runs in a fresh backend that converts every list column of every
row (raw included) and then reads its own peak resident size (VmHWM) from
/proc/self/status.  A scan of 100,000 issues must peak within 16 MB of a
scan of 2,000; buffering the table would need well over 100 MB.  The
figures themselves are benchmarked in bench/ (issue #4).
"""
import subprocess

from pgtest import Results, psql, scenario, setup_db

DB = "t_memory"
LIMIT_KB = 16 * 1024


def peak_after_scan(table):
    # every list column, raw included (detail columns would add a
    # DescribeIssue per row and measure the same page-bounded path)
    out = psql("SELECT count(*), sum(length(t::text)) FROM (SELECT team, project, code, "
               "type, parent_type, name, description, issue_status_id, issue_status_name, "
               "issue_status_type, priority, assignee_id, assignees, creator_id, iteration_id, "
               "iteration_code, start_date, due_date, created_at, updated_at, completed_at, "
               "working_hours, story_point, issue_type_id, issue_type_detail, labels, "
               "custom_fields, parent_code, raw FROM %s) t; "
               "SELECT substring(pg_read_file('/proc/self/status') from 'VmHWM:\\s+(\\d+)')"
               % table, db=DB)
    count, _, hwm = out.replace("|", "\n").split("\n")
    return int(count), int(hwm)


def main():
    res = Results()
    with scenario(DB, "--team", "acme", "--project", "small:2000", "--project", "large:100000",
                  "--token", "secret-token", "--seed", "5", "--prerender") as sim:
        setup_db(DB, sim, "small")
        psql("CREATE SCHEMA large; IMPORT FOREIGN SCHEMA large LIMIT TO (issues) "
             "FROM SERVER coding INTO large", db=DB)

        def bounded():
            n_small, hwm_small = peak_after_scan("coding.issues")
            n_large, hwm_large = peak_after_scan("large.issues")
            assert (n_small, n_large) == (2000, 100000), (n_small, n_large)
            print("     peak RSS: 2,000 issues %d kB, 100,000 issues %d kB (+%d kB)"
                  % (hwm_small, hwm_large, hwm_large - hwm_small))
            assert hwm_large - hwm_small < LIMIT_KB, "memory grew with the table"
        res.check("peak memory of a 100,000-issue scan stays within 16 MB of a 2,000-issue scan",
                  bounded)

        def servers_come_and_go():
            # a session that scans through servers created and dropped (a
            # pooled session serving many teams): what it keeps per server
            # is bounded (it grew by ~230 bytes per server, for good)
            one = ("CREATE SERVER s_tmp FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', "
                   "project 'small', api_url '%s', rate_limit '100000'); "
                   "CREATE USER MAPPING FOR CURRENT_USER SERVER s_tmp OPTIONS (token 'secret-token'); "
                   "CREATE FOREIGN TABLE ft_tmp (code int) SERVER s_tmp OPTIONS (resource 'iterations'); "
                   "SELECT count(*) FROM ft_tmp; DROP SERVER s_tmp CASCADE;\n" % sim.url)
            top = ("SELECT 'top', used_bytes FROM pg_backend_memory_contexts "
                   "WHERE name = 'TopMemoryContext';\n")
            out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", DB],
                                 input=one * 100 + top + one * 150 + top, text=True,
                                 capture_output=True, check=True, timeout=300).stdout
            used = [int(line.split("|")[1]) for line in out.splitlines() if line.startswith("top|")]
            print("     TopMemoryContext after 100 servers: %d bytes, after 250: %d" % tuple(used))
            assert used[1] - used[0] < 4096, "grew by %d bytes over 150 servers" % (used[1] - used[0])
        res.check("a session scanning 250 servers created and dropped keeps bounded memory",
                  servers_come_and_go)
    res.finish()


if __name__ == "__main__":
    main()
