--
-- secrets: the token never appears in EXPLAIN, in any error (message,
-- detail, hint, context) or in test_connection, and other roles cannot read
-- a user mapping's token.
--
\getenv sim_url CODING_SIM_URL
\getenv dead_url CODING_DEAD_URL
CREATE SERVER coding FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'sim_url', rate_limit '1000', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER coding OPTIONS (token 'secret-token');
CREATE FOREIGN TABLE issues (code int, name text, assignee jsonb) SERVER coding OPTIONS (resource 'issues');

-- every line of EXPLAIN ANALYZE VERBOSE, checked for the token
CREATE FUNCTION explain_lines(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE l text;
BEGIN
  FOR l IN EXECUTE 'EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF, SUMMARY OFF) ' || q LOOP
    RETURN NEXT l;
  END LOOP;
END $$;
SELECT regexp_replace(l, '\d+', 'N', 'g') AS line
  FROM explain_lines('SELECT code, assignee FROM issues WHERE code < 3') l;
SELECT count(*) FILTER (WHERE l LIKE '%secret-token%') AS lines_with_token
  FROM explain_lines('SELECT * FROM issues') l;

-- every part of an error, checked for the token
CREATE FUNCTION error_text(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE m text; d text; h text; c text;
BEGIN
  EXECUTE q;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL,
                          h = PG_EXCEPTION_HINT, c = PG_EXCEPTION_CONTEXT;
  RETURN concat_ws(' | ', m, d, h, c);
END $$;

CREATE TABLE error_cases (label text, query text);
INSERT INTO error_cases VALUES
  ('auth', 'SELECT * FROM s_auth'), ('network', 'SELECT * FROM s_dead'),
  ('project', 'SELECT * FROM s_project'), ('conversion', 'SELECT * FROM s_misfit');
CREATE SERVER s FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'sim_url', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER s OPTIONS (token 'tok-SECRET-0042');
CREATE FOREIGN TABLE s_auth (code int) SERVER s OPTIONS (resource 'issues');
CREATE SERVER s2 FOREIGN DATA WRAPPER coding_fdw
  OPTIONS (team 'acme', project 'backend', api_url :'dead_url', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER s2 OPTIONS (token 'tok-SECRET-0042');
CREATE FOREIGN TABLE s_dead (code int) SERVER s2 OPTIONS (resource 'issues');
CREATE FOREIGN TABLE s_project (code int) SERVER coding OPTIONS (resource 'issues', project 'none');
CREATE FOREIGN TABLE s_misfit (code int, name int) SERVER coding OPTIONS (resource 'issues');
SELECT label, position('tok-SECRET-0042' IN error_text(query)) = 0
          AND position('secret-token' IN error_text(query)) = 0 AS token_hidden,
       error_text(query) <> 'no error' AS failed
  FROM error_cases ORDER BY label;

-- test_connection shows whose token it is, not the token
SELECT "check", ok, position('secret-token' IN detail) = 0 AS token_hidden
  FROM coding_fdw.test_connection('coding');

-- another role cannot read this role's user mapping options
CREATE ROLE coding_fdw_other;
GRANT USAGE ON FOREIGN SERVER coding TO coding_fdw_other;
GRANT SELECT ON issues TO coding_fdw_other;
SET ROLE coding_fdw_other;
SELECT srvname, umoptions FROM pg_user_mappings WHERE srvname = 'coding';
-- and has no token of its own to use
SELECT * FROM issues;
RESET ROLE;
DROP OWNED BY coding_fdw_other;
DROP ROLE coding_fdw_other;

DROP TABLE error_cases;
DROP SERVER coding, s, s2 CASCADE;
