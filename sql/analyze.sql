--
-- analyze: ANALYZE samples the listing's pages and records Coding's
-- TotalCount (test/t_analyze.py checks which pages a large table samples;
-- here it also runs under the memory check).
--
\getenv sim_url CODING_SIM_URL
\getenv simctl SIMCTL
CREATE SERVER coding FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'sim_url', rate_limit '1000',
           page_size '7');
CREATE USER MAPPING FOR CURRENT_USER SERVER coding OPTIONS (token 'secret-token');
CREATE SCHEMA coding;
IMPORT FOREIGN SCHEMA backend FROM SERVER coding INTO coding;
SELECT reltuples FROM pg_class WHERE oid = 'coding.issues'::regclass;
-- a small table is sampled whole: every page once
\! $SIMCTL clear-log
ANALYZE VERBOSE coding.issues;
\! $SIMCTL count --action DescribeIssueListWithPage
SELECT reltuples FROM pg_class WHERE oid = 'coding.issues'::regclass;
-- list columns have statistics; detail-only columns are NULL in the sample
SELECT attname, null_frac, n_distinct FROM pg_stats
 WHERE schemaname = 'coding' AND tablename = 'issues' AND attname IN ('code', 'type', 'epic')
 ORDER BY attname;
ANALYZE coding.iterations, coding.project_members;
SELECT relname, reltuples FROM pg_class
 WHERE relnamespace = 'coding'::regnamespace AND relkind = 'f' ORDER BY relname;
-- a project Coding does not know fails ANALYZE as it fails a scan
CREATE FOREIGN TABLE coding.ghost (code integer)
  SERVER coding OPTIONS (resource 'issues', project 'nosuch');
ANALYZE coding.ghost;
DROP SCHEMA coding CASCADE;
DROP SERVER coding CASCADE;
