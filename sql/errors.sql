--
-- errors: each error class has its own SQLSTATE, an errmsg naming team,
-- project and Action, Coding's Code/Message/RequestId in errdetail and a
-- hint.  Retries recover from transient faults; faults come from the
-- simulated server's fault injection.
--
\getenv sim_url CODING_SIM_URL
\getenv dead_url CODING_DEAD_URL
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE SERVER coding FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'sim_url', rate_limit '1000',
           max_retries '2', request_timeout_ms '2000');
CREATE USER MAPPING FOR CURRENT_USER SERVER coding OPTIONS (token 'secret-token');
CREATE FOREIGN TABLE issues (code int, name text) SERVER coding OPTIONS (resource 'issues');
CREATE FOREIGN TABLE iterations (code int) SERVER coding OPTIONS (resource 'iterations');
CREATE FOREIGN TABLE members (id bigint) SERVER coding OPTIONS (resource 'project_members');

-- the error a statement raises: SQLSTATE, message, detail, hint, context; with
-- norm, runs of digits in the detail (timings, ports) read N
CREATE FUNCTION err(q text, norm boolean DEFAULT false)
RETURNS TABLE (state text, message text, detail text, hint text, context text)
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  state := 'no error';
  RETURN NEXT;
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                          detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT,
                          context = PG_EXCEPTION_CONTEXT;
  -- our own context line only, not the PL/pgSQL lines after it
  context := nullif(split_part(context, E'\n', 1), '');
  IF context LIKE 'PL/pgSQL%' THEN context := NULL; END IF;
  IF norm THEN
    detail := regexp_replace(detail, '\d+', 'N', 'g');
  END IF;
  RETURN NEXT;
END $$;
\x on

-- token rejected: 28000
CREATE SERVER badtoken FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'sim_url', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER badtoken OPTIONS (token 'wrong-token');
CREATE FOREIGN TABLE bt_issues (code int) SERVER badtoken OPTIONS (resource 'issues');
SELECT * FROM err('SELECT * FROM bt_issues');
-- an OAuth token sent with the personal-token scheme is rejected, as Bearer accepted
ALTER USER MAPPING FOR CURRENT_USER SERVER badtoken OPTIONS (SET token 'oauth-token');
SELECT * FROM err('SELECT count(*) FROM bt_issues');
ALTER USER MAPPING FOR CURRENT_USER SERVER badtoken OPTIONS (ADD token_type 'bearer');
SELECT count(*) > 0 AS ok FROM bt_issues;

-- project not found: HV00Q
ALTER FOREIGN TABLE issues OPTIONS (ADD project 'nosuch');
SELECT * FROM err('SELECT * FROM issues');
-- project_members looks the project up first
ALTER FOREIGN TABLE members OPTIONS (ADD project 'nosuch');
SELECT * FROM err('SELECT * FROM members');
ALTER FOREIGN TABLE issues OPTIONS (DROP project);
ALTER FOREIGN TABLE members OPTIONS (DROP project);

-- permission missing: 42501 (the limited token may read issues only)
CREATE SERVER limited FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'sim_url', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER limited OPTIONS (token 'limited-token');
CREATE FOREIGN TABLE lim_iterations (code int) SERVER limited OPTIONS (resource 'iterations');
CREATE FOREIGN TABLE lim_issues (code int) SERVER limited OPTIONS (resource 'issues');
SELECT count(*) > 0 AS ok FROM lim_issues;
SELECT * FROM err('SELECT * FROM lim_iterations');

-- rate limited after retries: 53400; fewer faults than retries recover
\! $SIMCTL fault '{"type":"rate_limited","action":"DescribeIssueListWithPage","count":3}'
SELECT * FROM err('SELECT count(*) FROM issues');
\! $SIMCTL fault '{"type":"rate_limited","action":"DescribeIssueListWithPage","count":2}'
SELECT count(*) > 0 AS recovered FROM issues;
-- HTTP 429 with Retry-After is honoured and retried
\! $SIMCTL fault '{"type":"http_429","retry_after":1,"count":1}'
SELECT count(*) > 0 AS recovered FROM issues;
\! $SIMCTL fault '{"type":"http_429","count":3}'
SELECT * FROM err('SELECT count(*) FROM issues');

-- Coding-side failure: HV000 after retries, recovered when it passes
\! $SIMCTL fault '{"type":"http_500","count":3}'
SELECT * FROM err('SELECT count(*) FROM issues');
\! $SIMCTL fault '{"type":"http_502","count":2}'
SELECT count(*) > 0 AS recovered FROM issues;
\! $SIMCTL fault '{"type":"error","code":"InternalError","message":"boom","request_id":"00000000-0000-0000-0000-000000000500","count":3}'
SELECT * FROM err('SELECT count(*) FROM issues');

-- Coding rejected a parameter: 22023, with Coding's RequestId
\! $SIMCTL fault '{"type":"error","code":"InvalidParameterValue","message":"PageSize is invalid","request_id":"00000000-0000-0000-0000-000000000022"}'
SELECT * FROM err('SELECT count(*) FROM issues');

-- network: HV00N (unreachable, dropped connection, timeout)
CREATE SERVER dead FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'dead_url', max_retries '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER dead OPTIONS (token 'secret-token');
CREATE FOREIGN TABLE dead_issues (code int) SERVER dead OPTIONS (resource 'issues');
SELECT * FROM err('SELECT * FROM dead_issues', true);
-- (curl itself retries a request once when a reused connection drops)
\! $SIMCTL fault '{"type":"drop_connection","count":10}'
SELECT * FROM err('SELECT * FROM issues', true);
\! $SIMCTL clear-faults
\! $SIMCTL fault '{"type":"drop_connection","count":1}'
SELECT count(*) > 0 AS recovered FROM issues;
ALTER SERVER coding OPTIONS (SET request_timeout_ms '300', SET max_retries '0');
\! $SIMCTL fault '{"type":"delay","seconds":3}'
SELECT * FROM err('SELECT * FROM issues', true);
\! $SIMCTL fault '{"type":"stall_mid_body","seconds":3}'
SELECT * FROM err('SELECT * FROM issues', true);
ALTER SERVER coding OPTIONS (SET request_timeout_ms '2000', SET max_retries '2');
-- an unknown team host does not resolve, and is not retried
CREATE SERVER nohost FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'no-such-team-coding-fdw', project 'backend', max_retries '3');
CREATE USER MAPPING FOR CURRENT_USER SERVER nohost OPTIONS (token 'secret-token');
CREATE FOREIGN TABLE nohost_issues (code int) SERVER nohost OPTIONS (resource 'issues');
SELECT * FROM err('SELECT * FROM nohost_issues');

-- malformed response: HV00M
\! $SIMCTL fault '{"type":"invalid_json"}'
SELECT * FROM err('SELECT count(*) FROM issues');
\! $SIMCTL fault '{"type":"truncated_json"}'
SELECT * FROM err('SELECT count(*) FROM issues');
SET coding_fdw.max_response_size = '1MB';
\! $SIMCTL fault '{"type":"huge_body","mb":3}'
SELECT * FROM err('SELECT count(*) FROM issues');
RESET coding_fdw.max_response_size;
-- a gateway answering 401/403 without Coding's envelope: the token's and
-- the permission's errors, not "malformed"
\! $SIMCTL fault '{"type":"raw_body","status":401,"body":"<html>401 Unauthorized</html>"}'
SELECT * FROM err('SELECT count(*) FROM issues');
\! $SIMCTL fault '{"type":"raw_body","status":403,"body":"Forbidden"}'
SELECT * FROM err('SELECT count(*) FROM issues');
-- an "Error" without a text Code (or with a Message that is not text) is
-- no answer we can classify: malformed, not "internal error"
\! $SIMCTL fault '{"type":"raw_body","body":"{\"Response\":{\"Error\":{},\"RequestId\":\"r-1\"}}"}'
SELECT * FROM err('SELECT count(*) FROM issues');
\! $SIMCTL fault '{"type":"raw_body","body":"{\"Response\":{\"Error\":{\"Code\":\"InvalidParameterValue\",\"Message\":[\"x\"]}}}"}'
SELECT * FROM err('SELECT count(*) FROM issues');
-- an endpoint that echoes the token in its message: never shown
\! $SIMCTL fault '{"type":"error","code":"InvalidParameter","message":"header Authorization: token secret-token is not valid here (secret-token)","request_id":"rid-secret-token-1"}'
SELECT * FROM err('SELECT count(*) FROM issues');
-- a Project that is not an object is malformed, not "project not found"
\! $SIMCTL fault '{"type":"raw_body","action":"DescribeProjectByName","body":"{\"Response\":{\"Project\":[]}}"}'
CREATE FOREIGN TABLE members_badproject (id bigint) SERVER coding OPTIONS (resource 'project_members');
SELECT * FROM err('SELECT count(*) FROM members_badproject');
DROP FOREIGN TABLE members_badproject;
-- wrong types in fields: the column's input function reports it (only
-- for columns the query reads: count(*) converts none)
\! $SIMCTL fault '{"type":"wrong_types"}'
SELECT * FROM err('SELECT sum(code) FROM issues');
-- a millisecond count beyond timestamptz's range: 22008 naming the column
-- (1e300 used to overflow into 1970-01-01, -9.3e15 into year 291818)
\! $SIMCTL fault '{"type":"raw_body","action":"DescribeIssueListWithPage","count":1,"body":"{\"Response\":{\"Data\":{\"PageNumber\":1,\"PageSize\":500,\"TotalPage\":1,\"TotalCount\":1,\"List\":[{\"Code\":1,\"CreatedAt\":1e300}]}}}"}'
CREATE FOREIGN TABLE stamps (code int, created_at timestamptz, updated_at timestamptz)
  SERVER coding OPTIONS (resource 'issues');
SELECT * FROM err('SELECT max(created_at) FROM stamps');
\! $SIMCTL fault '{"type":"raw_body","action":"DescribeIssueListWithPage","count":1,"body":"{\"Response\":{\"Data\":{\"PageNumber\":1,\"PageSize\":500,\"TotalPage\":1,\"TotalCount\":1,\"List\":[{\"Code\":2,\"UpdatedAt\":-9.3e15}]}}}"}'
SELECT * FROM err('SELECT max(updated_at) FROM stamps');
DROP FOREIGN TABLE stamps;
-- integers of 2^53 and more lose precision as doubles (README), but are
-- still integers: they used to be spelled 9.007199254740992e+15, which
-- bigint refuses
\! $SIMCTL fault '{"type":"raw_body","action":"DescribeIssueListWithPage","count":1,"body":"{\"Response\":{\"Data\":{\"PageNumber\":1,\"PageSize\":500,\"TotalPage\":1,\"TotalCount\":1,\"List\":[{\"Code\":7,\"IssueStatusId\":9007199254740993,\"WorkingHours\":1e20}]}}}"}'
CREATE FOREIGN TABLE big_numbers (code int, issue_status_id bigint, working_hours numeric)
  SERVER coding OPTIONS (resource 'issues');
SELECT * FROM big_numbers;
DROP FOREIGN TABLE big_numbers;
-- a string holding \u0000 (text and jsonb cannot hold a NUL): it becomes
-- U+FFFD and the string goes on (it used to be cut there silently); one
-- such issue must not make the project unreadable.  An escaped backslash
-- before "u0000" is text like any other.
\! $SIMCTL fault '{"type":"raw_body","action":"DescribeIssueListWithPage","count":1,"body":"{\"Response\":{\"Data\":{\"PageNumber\":1,\"PageSize\":500,\"TotalPage\":1,\"TotalCount\":1,\"List\":[{\"Code\":3,\"Name\":\"a\\u0000x\"}]}}}"}'
SELECT name, name = 'a' || chr(65533) || 'x' AS replaced FROM issues;
\! $SIMCTL fault '{"type":"raw_body","action":"DescribeIssueListWithPage","count":1,"body":"{\"Response\":{\"Data\":{\"PageNumber\":1,\"PageSize\":500,\"TotalPage\":1,\"TotalCount\":1,\"List\":[{\"Code\":4,\"Labels\":[{\"Name\":\"\\u0000\"}]}]}}}"}'
CREATE FOREIGN TABLE nul_issues (code int, labels jsonb, raw jsonb) SERVER coding OPTIONS (resource 'issues');
SELECT labels FROM nul_issues;
\! $SIMCTL fault '{"type":"raw_body","action":"DescribeIssueListWithPage","count":1,"body":"{\"Response\":{\"Data\":{\"PageNumber\":1,\"PageSize\":500,\"TotalPage\":1,\"TotalCount\":1,\"List\":[{\"Code\":5,\"Description\":\"\\u0000\"}]}}}"}'
SELECT raw FROM nul_issues;
\! $SIMCTL fault '{"type":"raw_body","action":"DescribeIssueListWithPage","count":1,"body":"{\"Response\":{\"Data\":{\"PageNumber\":1,\"PageSize\":500,\"TotalPage\":1,\"TotalCount\":1,\"List\":[{\"Code\":6,\"Description\":\"C: \\\\u0000 \\\\\\\\\\u0041\"}]}}}"}'
SELECT raw->>'Description' AS description FROM nul_issues;
DROP FOREIGN TABLE nul_issues;

-- after all that, the same backend still works
SELECT count(*) > 0 AS ok FROM issues;
\! $SIMCTL clear-faults

DROP SERVER coding, badtoken, limited, dead, nohost CASCADE;
