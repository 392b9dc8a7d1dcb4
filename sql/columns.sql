--
-- columns: each table's columns and conversions.  Millisecond epochs become
-- timestamptz, Coding's "not set" values become NULL, objects and arrays
-- jsonb, detail-only columns come from DescribeIssue, and a column of any
-- type reads any field through that type's input function.
--
\getenv sim_url CODING_SIM_URL
\getenv simctl SIMCTL
SET timezone = 'Asia/Shanghai';
SET datestyle = ISO;
CREATE SERVER coding FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'sim_url', rate_limit '1000');
CREATE USER MAPPING FOR CURRENT_USER SERVER coding OPTIONS (token 'secret-token');
CREATE SCHEMA coding;
IMPORT FOREIGN SCHEMA backend FROM SERVER coding INTO coding;

-- list columns
SELECT team, project, code, type, parent_type, name, issue_status_id, issue_status_name,
       issue_status_type, priority, assignee_id, creator_id, iteration_id, iteration_code
  FROM coding.issues ORDER BY code LIMIT 12;
SELECT code, start_date, due_date, created_at, updated_at, completed_at, working_hours,
       story_point, issue_type_id, parent_code
  FROM coding.issues ORDER BY code LIMIT 12;
SELECT code, assignees, issue_type_detail, labels, custom_fields
  FROM coding.issues ORDER BY code LIMIT 6;

-- every issue type is there, sub-tasks included
SELECT type, count(*) FROM coding.issues GROUP BY type ORDER BY type;
-- "not set" is NULL, never 0, '' or 1970
SELECT count(*) FILTER (WHERE assignee_id = 0 OR iteration_id = 0 OR iteration_code = 0
                          OR parent_code = 0 OR creator_id = 0) AS zero_ids,
       count(*) FILTER (WHERE start_date < '2000-01-01' OR due_date < '2000-01-01'
                          OR completed_at < '2000-01-01') AS epoch_dates,
       count(*) FILTER (WHERE story_point = '' OR parent_type = '' OR issue_status_type = '') AS empty_enums,
       count(*) FILTER (WHERE iteration_id IS NULL) = count(*) FILTER (WHERE iteration_code IS NULL)
         AS iteration_null_agrees,
       count(*) FILTER (WHERE completed_at IS NOT NULL) = count(*) FILTER (WHERE issue_status_type = 'COMPLETED')
         AS completed_agrees,
       count(*) FILTER (WHERE type = 'SUB_TASK' AND parent_code IS NULL) AS orphan_sub_tasks
  FROM coding.issues;
-- raw is the whole list object
SELECT count(*) FILTER (WHERE raw->>'Name' IS DISTINCT FROM name) AS name_mismatch,
       count(*) FILTER (WHERE (raw->>'Code')::int IS DISTINCT FROM code) AS code_mismatch,
       count(*) FILTER (WHERE raw ? 'Watchers') AS raw_has_detail_fields
  FROM coding.issues;

-- detail-only columns come from DescribeIssue, only when referenced
\! $SIMCTL clear-log
SELECT count(*) FROM coding.issues WHERE name IS NOT NULL;
SELECT count(*) FROM coding.issues;
\! $SIMCTL count --action DescribeIssue
\! $SIMCTL clear-log
SELECT code, assignee->>'Name' AS assignee, creator->>'Name' AS creator,
       jsonb_array_length(watchers) AS watchers, epic->>'Code' AS epic,
       parent->>'Code' AS parent, jsonb_array_length(sub_tasks) AS sub_tasks,
       project_module, requirement_type, defect_type, files, third_links
  FROM coding.issues WHERE code <= 8 ORDER BY code;
-- only the 8 rows that pass the list-column filter cost a DescribeIssue
\! $SIMCTL count --action DescribeIssue
-- a clause on a detail column is left to the executor; the others still
-- filter early
\! $SIMCTL clear-log
SELECT count(*) FROM coding.issues WHERE code <= 8 AND (epic IS NULL OR epic IS NOT NULL);
\! $SIMCTL count --action DescribeIssue
-- a volatile clause is never evaluated twice, so every row is described
\! $SIMCTL clear-log
SELECT count(*) FROM coding.issues WHERE (code <= 8 OR random() < 0) AND epic IS NULL;
\! $SIMCTL count --action DescribeIssue
-- raw stays the list object when detail columns are read too
SELECT count(*) FILTER (WHERE raw ? 'Watchers') AS raw_has_detail_fields,
       count(*) FILTER (WHERE watchers IS NOT NULL) AS rows_with_watchers
  FROM coding.issues;
-- detail and list agree on the shared ids
SELECT count(*) FILTER (WHERE (assignee->>'Id')::bigint IS DISTINCT FROM assignee_id) AS assignee_mismatch,
       count(*) FILTER (WHERE (parent->>'Code')::int IS DISTINCT FROM parent_code) AS parent_mismatch,
       count(*) FILTER (WHERE type = 'EPIC' AND epic IS NOT NULL) AS epic_of_epic
  FROM coding.issues;

-- iterations: -28800000 dates are NULL
SELECT code, name, goal, status, start_at, end_at, assignee_id, creator_id, starter_id,
       completer_id, deleter_id, wait_process_count, processing_count, completed_count,
       completed_percent
  FROM coding.iterations ORDER BY code;
-- the counts agree with the issues
SELECT i.code, i.wait_process_count + i.processing_count + i.completed_count AS counted,
       (SELECT count(*) FROM coding.issues s WHERE s.iteration_code = i.code) AS issues
  FROM coding.iterations i ORDER BY i.code;

-- project members, including the blocked one (status -1)
SELECT id, team_id, name, name_pinyin, email, phone, email_validation, phone_validation,
       global_key, status, roles
  FROM coding.project_members ORDER BY id;

-- columns of other types, dotted fields and renamed columns
CREATE FOREIGN TABLE typed (
  code text,
  created_ms bigint OPTIONS (field 'CreatedAt'),
  created_day date OPTIONS (field 'CreatedAt'),
  created_local timestamp OPTIONS (field 'CreatedAt'),
  created_sec timestamptz(0) OPTIONS (field 'CreatedAt'),
  priority int,
  hours float8 OPTIONS (field 'WorkingHours'),
  iteration_name text OPTIONS (field 'Iteration.Name'),
  type_is_system boolean OPTIONS (field 'IssueTypeDetail.IsSystem'),
  labels text,
  nothing text OPTIONS (field 'NoSuchField'),
  deep text OPTIONS (field 'Iteration.Code.Deeper'),
  team varchar(10),
  project name
) SERVER coding OPTIONS (resource 'issues');
SELECT * FROM typed ORDER BY code::int LIMIT 5;

-- a value that does not fit its column names the column, field and issue
CREATE FOREIGN TABLE misfit (code int, name int) SERVER coding OPTIONS (resource 'issues');
SELECT * FROM misfit;
CREATE FOREIGN TABLE misfit2 (code int, created smallint OPTIONS (field 'CreatedAt'))
  SERVER coding OPTIONS (resource 'issues');
SELECT * FROM misfit2;

-- rescans: the inner side of a nested loop reads the pages again (without
-- pushdown, which would give it a parameterized path: see pushdown.sql)
SET enable_hashjoin = off; SET enable_mergejoin = off; SET enable_material = off;
SET coding_fdw.enable_pushdown = off;
EXPLAIN (COSTS OFF)
SELECT i.code, m.name FROM coding.project_members m JOIN coding.issues i ON i.assignee_id = m.id
 WHERE i.code <= 5;
SELECT i.code, m.name FROM coding.project_members m JOIN coding.issues i ON i.assignee_id = m.id
 WHERE i.code <= 5 ORDER BY i.code;
RESET enable_hashjoin; RESET enable_mergejoin; RESET enable_material;
RESET coding_fdw.enable_pushdown;

-- a small page size pages correctly (60 issues in pages of 7)
ALTER SERVER coding OPTIONS (ADD page_size '7');
\! $SIMCTL clear-log
SELECT count(*), count(DISTINCT code), min(code), max(code) FROM coding.issues;
\! $SIMCTL count --action DescribeIssueListWithPage
SELECT count(*) FROM coding.project_members;
SELECT count(*) FROM coding.iterations;

DROP SCHEMA coding CASCADE;
DROP SERVER coding CASCADE;
