/* coding_fdw--0.1.sql: objects of coding_fdw 0.1 (schema coding_fdw) */

\echo Use "CREATE EXTENSION coding_fdw" to load this file. \quit

CREATE FUNCTION coding_fdw_handler()
RETURNS fdw_handler
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FUNCTION coding_fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER coding_fdw
  HANDLER coding_fdw_handler
  VALIDATOR coding_fdw_validator;

COMMENT ON FOREIGN DATA WRAPPER coding_fdw IS
  'foreign-data wrapper for Coding (coding.net) issues, iterations and project members';

-- Checks team, token, project and read permissions of a server, in order;
-- ok is NULL for a check that could not run because an earlier one failed.
CREATE FUNCTION test_connection(server name)
RETURNS TABLE ("check" text, ok boolean, detail text)
AS 'MODULE_PATHNAME', 'coding_test_connection'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION test_connection(name) IS
  'check team, token, project and permissions of a coding_fdw server';

-- Every role may call the functions; each checks USAGE on the server it is
-- given and uses the caller's own user mapping.
GRANT USAGE ON SCHEMA coding_fdw TO PUBLIC;
