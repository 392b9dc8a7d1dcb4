--
-- sync: the sync functions' errors in a cluster without the worker (the
-- worker itself is tested by test/tp_sync.py, with shared_preload_libraries),
-- and the privacy of the subscription table.
--
\set VERBOSITY default
CREATE SERVER coding FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', project 'backend');
SELECT coding_fdw.sync_start('coding', 'mirror', mode => 'push');
SELECT coding_fdw.sync_start('coding', 'mirror', poll_interval => '100 ms');
SELECT coding_fdw.sync_start('coding', 'mirror', reconcile_interval => '0');
SELECT coding_fdw.sync_start('nosuch', 'mirror');
-- without shared_preload_libraries: what to put in postgresql.conf (the
-- hint names this database, whose name depends on how the tests run)
DO $$
DECLARE m text; h text; st text;
BEGIN
  PERFORM coding_fdw.sync_start('coding', 'mirror');
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, h = PG_EXCEPTION_HINT;
  RAISE NOTICE '% %; HINT: %', st, m, replace(h, current_database(), 'DB');
END $$;
SELECT coding_fdw.sync_now('coding');
SELECT coding_fdw.wait_for_sync('coding');
SELECT coding_fdw.sync_stop('coding');
SELECT * FROM coding_fdw.sync_status;
-- subscriptions hold webhook keys and secrets: not for other roles
CREATE ROLE coding_fdw_sync_other;
SET ROLE coding_fdw_sync_other;
SELECT * FROM coding_fdw.subscription;
SELECT * FROM coding_fdw.sync_counts;
SELECT count(*) FROM coding_fdw.sync_status;
-- which server the worker is syncing is the owner's business too
SELECT coding_fdw._worker_syncing();
RESET ROLE;
-- every function any role may call: a new one shows up here, to be
-- checked (SECURITY DEFINER ones check their caller themselves)
SELECT p.oid::regprocedure AS function, p.prosecdef AS security_definer
  FROM pg_proc p
 WHERE p.pronamespace = 'coding_fdw'::regnamespace
   AND has_function_privilege('coding_fdw_sync_other', p.oid, 'EXECUTE')
 ORDER BY p.proname, 1::text;
-- DROP SERVER runs coding_fdw's lock-first trigger (_before_drop): where
-- an administrator revoked EXECUTE on it, the trigger steps aside and the
-- DROP still works
GRANT USAGE ON FOREIGN DATA WRAPPER coding_fdw TO coding_fdw_sync_other;
REVOKE EXECUTE ON FUNCTION coding_fdw._before_drop(oid[], oid[], oid[]) FROM PUBLIC;
SET ROLE coding_fdw_sync_other;
CREATE SERVER other_srv FOREIGN DATA WRAPPER coding_fdw OPTIONS (team 'acme', project 'backend');
DROP SERVER other_srv;
RESET ROLE;
GRANT EXECUTE ON FUNCTION coding_fdw._before_drop(oid[], oid[], oid[]) TO PUBLIC;
REVOKE USAGE ON FOREIGN DATA WRAPPER coding_fdw FROM coding_fdw_sync_other;
-- the trigger's own errors: called directly
SELECT coding_fdw._before_drop_trigger();
DROP ROLE coding_fdw_sync_other;
DROP SERVER coding;
