--
-- options: every invalid option name and value fails with its exact error,
-- valid ones are accepted, and a server-level token draws a WARNING.
--
\set VERBOSITY default
SET client_min_messages = notice;

-- the wrapper takes no options
CREATE FOREIGN DATA WRAPPER coding_fdw2 HANDLER coding_fdw.coding_fdw_handler
  VALIDATOR coding_fdw.coding_fdw_validator OPTIONS (team 'acme');

-- server
CREATE SERVER s_noteam FOREIGN DATA WRAPPER coding_fdw;
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', tema 'x');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme.coding.net');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team '');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team '-acme');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', project '');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', project E'back\nend');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', api_url 'ftp://x/open-api');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', api_url 'https://');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', api_url 'https://u:pw@acme.coding.net/open-api');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', api_url 'https://acme.coding.net/open api');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', page_size '0');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', page_size '501');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', page_size 'ten');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', request_timeout_ms '-1');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', connect_timeout_ms '1.5');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', max_retries '101');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', rate_limit '0');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', rate_limit '1e-300');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', rate_limit 'fast');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', token_type 'basic');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', resource 'issues');
-- a bad token value is reported without echoing it
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', token 'token abc-SECRET-1');
CREATE SERVER s_bad FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', token '');

CREATE SERVER s_ok FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url 'http://127.0.0.1:1/open-api',
           page_size '100', request_timeout_ms '5000', connect_timeout_ms '1000',
           max_retries '0', rate_limit '2.5', token_type 'bearer');
-- a token on the server is accepted with a warning that does not show it
ALTER SERVER s_ok OPTIONS (ADD token 'abc-SECRET-2');
ALTER SERVER s_ok OPTIONS (DROP token);
ALTER SERVER s_ok OPTIONS (SET page_size '600');
ALTER SERVER s_ok OPTIONS (DROP team);
ALTER SERVER s_ok OPTIONS (ADD colour 'red');

-- user mapping
CREATE USER MAPPING FOR CURRENT_USER SERVER s_ok OPTIONS (team 'acme');
CREATE USER MAPPING FOR CURRENT_USER SERVER s_ok OPTIONS (token_type 'oauth');
CREATE USER MAPPING FOR CURRENT_USER SERVER s_ok OPTIONS (token 'has space');
CREATE USER MAPPING FOR CURRENT_USER SERVER s_ok OPTIONS (token 'abc-SECRET-3', token_type 'token');

-- foreign table
CREATE FOREIGN TABLE ft_nores (code int) SERVER s_ok;
CREATE FOREIGN TABLE ft_bad (code int) SERVER s_ok OPTIONS (resource 'epics');
CREATE FOREIGN TABLE ft_bad (code int) SERVER s_ok OPTIONS (resource 'issues', issue_type 'defect');
CREATE FOREIGN TABLE ft_bad (code int) SERVER s_ok OPTIONS (resource 'iterations', issue_type 'DEFECT');
CREATE FOREIGN TABLE ft_bad (code int) SERVER s_ok OPTIONS (resource 'issues', page_size '1000');
CREATE FOREIGN TABLE ft_bad (code int) SERVER s_ok OPTIONS (resource 'issues', team 'other');
CREATE FOREIGN TABLE ft_bad (code int) SERVER s_ok OPTIONS (resource 'issues', project '');
CREATE FOREIGN TABLE ft_bad (code int OPTIONS (colname 'Code')) SERVER s_ok OPTIONS (resource 'issues');
CREATE FOREIGN TABLE ft_bad (code int OPTIONS (field '')) SERVER s_ok OPTIONS (resource 'issues');
CREATE FOREIGN TABLE ft_bad (code int OPTIONS (field E'Co\tde')) SERVER s_ok OPTIONS (resource 'issues');
CREATE FOREIGN TABLE ft_bad (code int OPTIONS (field '.')) SERVER s_ok OPTIONS (resource 'issues');
CREATE FOREIGN TABLE ft_bad (code int OPTIONS (field 'Iteration..Code')) SERVER s_ok OPTIONS (resource 'issues');
CREATE FOREIGN TABLE ft_bad (code int OPTIONS (field 'Iteration.')) SERVER s_ok OPTIONS (resource 'issues');
CREATE FOREIGN TABLE ft_ok (code int OPTIONS (field 'Code'), it int OPTIONS (field 'Iteration.Code'))
  SERVER s_ok OPTIONS (resource 'issues', issue_type 'DEFECT', project 'mobile', page_size '10');
ALTER FOREIGN TABLE ft_ok OPTIONS (DROP resource);
ALTER FOREIGN TABLE ft_ok OPTIONS (SET issue_type 'STORY');
ALTER FOREIGN TABLE ft_ok OPTIONS (SET resource 'project_members');

-- the options as stored
SELECT srvname, srvoptions FROM pg_foreign_server WHERE srvname = 's_ok';
SELECT ftoptions FROM pg_foreign_table WHERE ftrelid = 'ft_ok'::regclass;
SELECT attname, attfdwoptions FROM pg_attribute
 WHERE attrelid = 'ft_ok'::regclass AND attnum > 0 ORDER BY attnum;

-- a scan without a project is refused at plan time
CREATE SERVER s_noproject FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme');
CREATE FOREIGN TABLE ft_noproject (code int) SERVER s_noproject OPTIONS (resource 'issues');
SELECT * FROM ft_noproject;
-- and a scan without any token at run time (EXPLAIN alone is fine)
CREATE FOREIGN TABLE ft_notoken (code int) SERVER s_noproject OPTIONS (resource 'issues', project 'p');
EXPLAIN (COSTS OFF) SELECT * FROM ft_notoken;
SELECT * FROM ft_notoken;

DROP SERVER s_ok, s_noproject CASCADE;
