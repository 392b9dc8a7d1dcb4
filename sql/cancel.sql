--
-- cancel: statement_timeout (and so query cancel, which takes the same
-- path) ends a scan promptly while Coding is slow to answer, stalled in the
-- middle of a body, or while we wait to retry or for the rate limit.
-- Modelled on postgres_fdw's query_cancel.sql.  Each stall below lasts far
-- longer than the statement timeout and the request timeout is longer
-- still, so only a working cancel produces the expected error.
--
\getenv sim_url CODING_SIM_URL
CREATE SERVER coding FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'sim_url', rate_limit '1000',
           request_timeout_ms '120000');
CREATE USER MAPPING FOR CURRENT_USER SERVER coding OPTIONS (token 'secret-token');
CREATE FOREIGN TABLE issues (code int, name text) SERVER coding OPTIONS (resource 'issues');

-- stalled in the middle of the body
\! $SIMCTL fault '{"type":"stall_mid_body","action":"DescribeIssueListWithPage","seconds":60}'
SET statement_timeout = '500ms';
SELECT count(*) FROM issues;
RESET statement_timeout;
-- the interrupted transfer was cleaned up: the next scan works
SELECT count(*) > 0 AS ok FROM issues;

-- no answer at all yet
\! $SIMCTL fault '{"type":"delay","action":"DescribeIssueListWithPage","seconds":60}'
SET statement_timeout = '500ms';
SELECT count(*) FROM issues;
RESET statement_timeout;
SELECT count(*) > 0 AS ok FROM issues;

-- waiting to retry (Retry-After: 60 s)
\! $SIMCTL fault '{"type":"http_429","retry_after":60,"count":1}'
SET statement_timeout = '500ms';
SELECT count(*) FROM issues;
RESET statement_timeout;
\! $SIMCTL clear-faults

-- waiting for the client-side rate limit (one request per 100 s)
ALTER SERVER coding OPTIONS (SET rate_limit '0.01', ADD page_size '10');
SET statement_timeout = '500ms';
SELECT count(*) FROM issues;
RESET statement_timeout;

DROP SERVER coding CASCADE;
