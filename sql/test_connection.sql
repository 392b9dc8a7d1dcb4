--
-- test_connection: one row per check (team, token, project, issues,
-- iterations, project_members); a failure says what to fix and a check
-- that cannot run is NULL.
--
\getenv sim_url CODING_SIM_URL
\getenv ctl_url CODING_SIM_CONTROL
\getenv dead_url CODING_DEAD_URL
\set not_coding_url :ctl_url '/_sim/health'
\pset null '(null)'
-- strip what varies between runs: ports and milliseconds
CREATE FUNCTION tc(server name) RETURNS TABLE ("check" text, ok boolean, detail text)
LANGUAGE sql AS $$
  SELECT "check", ok,
         regexp_replace(regexp_replace(detail, '127\.0\.0\.1:\d+', '127.0.0.1:PORT', 'g'),
                        '\d+ ms', 'N ms', 'g')
    FROM coding_fdw.test_connection(server)
$$;

-- all good
CREATE SERVER good FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'sim_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER good OPTIONS (token 'secret-token');
SELECT * FROM tc('good');

-- OAuth token with token_type bearer
CREATE SERVER oauth FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'mobile', api_url :'sim_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER oauth OPTIONS (token 'oauth-token', token_type 'bearer');
SELECT * FROM tc('oauth');

-- unreachable endpoint
CREATE SERVER dead FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'dead_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER dead OPTIONS (token 'secret-token');
SELECT * FROM tc('dead');

-- unknown team host
CREATE SERVER nohost FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'no-such-team-coding-fdw', project 'backend');
CREATE USER MAPPING FOR CURRENT_USER SERVER nohost OPTIONS (token 'secret-token');
SELECT * FROM tc('nohost');

-- something that answers, but is not Coding
CREATE SERVER notcoding FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'not_coding_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER notcoding OPTIONS (token 'secret-token');
SELECT * FROM tc('notcoding');

-- rejected token
CREATE SERVER badtoken FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'sim_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER badtoken OPTIONS (token 'wrong-token');
SELECT * FROM tc('badtoken');

-- no token at all
CREATE SERVER notoken FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'sim_url');
SELECT * FROM tc('notoken');

-- unknown project
CREATE SERVER noproject FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'Backend Service', api_url :'sim_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER noproject OPTIONS (token 'secret-token');
SELECT * FROM tc('noproject');

-- no project on the server
CREATE SERVER anyproject FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', api_url :'sim_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER anyproject OPTIONS (token 'secret-token');
SELECT * FROM tc('anyproject');

-- a token that may read issues only
CREATE SERVER limited FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'sim_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER limited OPTIONS (token 'limited-token');
SELECT * FROM tc('limited');

-- a token stored on the server works, with advice to move it
SET client_min_messages = error;
CREATE SERVER srvtoken FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'sim_url', token 'secret-token');
RESET client_min_messages;
SELECT * FROM tc('srvtoken') WHERE "check" = 'token';

-- wrong server name, and a role without USAGE on the server
SELECT * FROM coding_fdw.test_connection('nosuchserver');
CREATE ROLE coding_fdw_nousage;
SET ROLE coding_fdw_nousage;
SELECT * FROM coding_fdw.test_connection('good');
RESET ROLE;
DROP ROLE coding_fdw_nousage;

DROP SERVER good, oauth, dead, nohost, notcoding, badtoken, notoken, noproject,
  anyproject, limited, srvtoken CASCADE;
