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

-- ===================================================================
-- Sync engine (interface.md §4, §5).  A subscription keeps three local
-- tables current; the background worker (shared_preload_libraries) does the
-- work as the subscription's owner, reading the project through foreign
-- tables that sync_start imports into a private schema, so every call goes
-- through the FDW: pushdown, the shared rate limit, retries, cancel.
-- ===================================================================

CREATE TABLE subscription (
  server_oid          oid PRIMARY KEY,
  server_name         name NOT NULL,
  owner_oid           oid NOT NULL,
  into_schema         name NOT NULL,
  source_schema       name NOT NULL,        -- the imported foreign tables
  mode                text NOT NULL CHECK (mode IN ('polling', 'webhook', 'both')),
  poll_interval       interval NOT NULL,
  reconcile_interval  interval NOT NULL DEFAULT '1 hour',
  webhook_key         text NOT NULL,        -- for the webhook listener
  webhook_secret      text,
  issues_cursor       timestamptz,          -- newest updated_at applied
  last_full_sync      timestamptz,
  last_poll           timestamptz,
  last_reconcile      timestamptz,
  next_poll           timestamptz,
  requested           bigint NOT NULL DEFAULT 1,   -- bumped by sync_now
  requested_full      boolean NOT NULL DEFAULT true,
  applied             bigint NOT NULL DEFAULT 0,   -- last request served
  state               text NOT NULL DEFAULT 'starting',
  last_error          text,
  last_error_at       timestamptz
);
-- keys and secrets: no role but the owner of the extension reads this
REVOKE ALL ON subscription FROM PUBLIC;

CREATE TABLE sync_counts (
  server_oid  oid NOT NULL REFERENCES subscription ON DELETE CASCADE,
  table_name  text NOT NULL,
  source      text NOT NULL CHECK (source IN ('full', 'poll', 'webhook')),
  inserted    bigint NOT NULL DEFAULT 0,
  updated     bigint NOT NULL DEFAULT 0,
  deleted     bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (server_oid, table_name, source)
);
REVOKE ALL ON sync_counts FROM PUBLIC;

-- Whether the worker can run at all: it needs shared_preload_libraries.
CREATE FUNCTION worker_available() RETURNS boolean
AS 'MODULE_PATHNAME', 'coding_worker_available' LANGUAGE C STRICT;

-- Wake the sync worker when the calling transaction commits.
CREATE FUNCTION wake_worker() RETURNS void
AS 'MODULE_PATHNAME', 'coding_wake_worker' LANGUAGE C STRICT;

-- The caller's subscription on a server, or an error naming what is wrong.
CREATE FUNCTION _subscription(server name) RETURNS subscription
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, coding_fdw AS $$
DECLARE
  s coding_fdw.subscription;
BEGIN
  SELECT * INTO s FROM coding_fdw.subscription WHERE server_name = server;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'server "%" has no subscription', server
      USING ERRCODE = 'undefined_object',
            HINT = 'Start one with coding_fdw.sync_start(''' || server || ''', ''schema'').';
  END IF;
  IF NOT pg_has_role(session_user, s.owner_oid, 'USAGE') THEN
    RAISE EXCEPTION 'permission denied for the subscription of server "%"', server
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN s;
END $$;

CREATE FUNCTION sync_start(server name, into_schema name,
                           mode text DEFAULT 'polling',
                           poll_interval interval DEFAULT '2 minutes',
                           webhook_secret text DEFAULT NULL,
                           reconcile_interval interval DEFAULT '1 hour',
                           details boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  srv oid;
  src name;
  tbl text;
  keycol text;
BEGIN
  IF mode NOT IN ('polling', 'webhook', 'both') THEN
    RAISE EXCEPTION 'invalid sync mode "%"', mode
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Valid modes are polling, webhook and both.';
  END IF;
  IF poll_interval < interval '1 second' THEN
    RAISE EXCEPTION 'poll_interval must be at least 1 second' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF reconcile_interval < interval '1 second' THEN
    RAISE EXCEPTION 'reconcile_interval must be at least 1 second' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT oid INTO srv FROM pg_foreign_server WHERE srvname = server;
  IF srv IS NULL THEN
    RAISE EXCEPTION 'server "%" does not exist', server USING ERRCODE = 'undefined_object';
  END IF;
  IF NOT has_server_privilege(srv, 'USAGE') THEN
    RAISE EXCEPTION 'permission denied for foreign server %', server USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NOT coding_fdw.worker_available() THEN
    RAISE EXCEPTION 'the coding_fdw sync worker is not running'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Add to postgresql.conf: shared_preload_libraries = ''coding_fdw'' and coding_fdw.database = '''
                   || current_database() || ''', then restart the server.';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = into_schema) IS NOT TRUE THEN
    EXECUTE format('CREATE SCHEMA %I', into_schema);
  END IF;

  -- the project's foreign tables, imported where only the worker looks
  src := format('coding_fdw_src_%s', srv);
  EXECUTE format('CREATE SCHEMA %I', src);
  EXECUTE format('IMPORT FOREIGN SCHEMA %I FROM SERVER %I INTO %I',
                 (SELECT coalesce((SELECT substr(o, 9) FROM unnest(srvoptions) o WHERE o LIKE 'project=%'), '')
                    FROM pg_foreign_server WHERE oid = srv),
                 server, src);

  -- the local tables: the imported columns, synced_at, synced_by, the key
  FOREACH tbl IN ARRAY ARRAY['issues', 'iterations', 'project_members'] LOOP
    keycol := CASE tbl WHEN 'project_members' THEN 'id' ELSE 'code' END;
    EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I, synced_at timestamptz NOT NULL, synced_by text NOT NULL '
                   'CHECK (synced_by IN (''full'', ''poll'', ''webhook'')), PRIMARY KEY (team, project, %I))',
                   into_schema, tbl, src, tbl, keycol);
  END LOOP;
  -- without details, issues keep the list's columns: a full sync then
  -- costs pages, not one DescribeIssue per issue (the worker copies the
  -- columns the local table has)
  IF NOT details THEN
    EXECUTE format('ALTER TABLE %I.issues DROP COLUMN assignee, DROP COLUMN creator, DROP COLUMN watchers, '
                   'DROP COLUMN files, DROP COLUMN sub_tasks, DROP COLUMN third_links, '
                   'DROP COLUMN project_module, DROP COLUMN requirement_type, DROP COLUMN defect_type, '
                   'DROP COLUMN epic, DROP COLUMN parent', into_schema);
  END IF;

  PERFORM coding_fdw._register(srv, server, into_schema, src, mode, poll_interval, webhook_secret,
                               reconcile_interval);
  PERFORM coding_fdw.wake_worker();
END $$;

-- Record a subscription (as the extension owner: the table is private).
CREATE FUNCTION _register(srv oid, server name, into_schema name, src name, mode text,
                          poll_interval interval, webhook_secret text,
                          reconcile_interval interval)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM coding_fdw.subscription WHERE server_oid = srv) THEN
    RAISE EXCEPTION 'server "%" already has a subscription', server
      USING ERRCODE = 'duplicate_object', HINT = 'coding_fdw.sync_stop() ends it.';
  END IF;
  INSERT INTO coding_fdw.subscription (server_oid, server_name, owner_oid, into_schema, source_schema,
                                       mode, poll_interval, reconcile_interval, webhook_key,
                                       webhook_secret, next_poll)
  VALUES (srv, server, (SELECT oid FROM pg_roles WHERE rolname = session_user), into_schema, src,
          mode, poll_interval, reconcile_interval,
          replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), webhook_secret, now());
END $$;

CREATE FUNCTION sync_now(server name, "full" boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw AS $$
DECLARE
  s coding_fdw.subscription := coding_fdw._subscription(server);
BEGIN
  UPDATE coding_fdw.subscription
     SET requested = requested + 1, requested_full = requested_full OR "full"
   WHERE server_oid = s.server_oid;
  PERFORM coding_fdw.wake_worker();
END $$;

CREATE FUNCTION wait_for_sync(server name, timeout interval DEFAULT '60 s') RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, coding_fdw AS $$
DECLARE
  s coding_fdw.subscription := coding_fdw._subscription(server);
  target bigint := s.requested;
  deadline timestamptz := clock_timestamp() + timeout;
BEGIN
  LOOP
    IF (SELECT applied >= target FROM coding_fdw.subscription WHERE server_oid = s.server_oid) THEN
      RETURN true;
    END IF;
    IF clock_timestamp() >= deadline THEN
      RETURN false;
    END IF;
    PERFORM pg_sleep(0.02);     -- latch-based, so Ctrl-C ends the wait
  END LOOP;
END $$;

CREATE FUNCTION sync_stop(server name, drop_tables boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw AS $$
DECLARE
  s coding_fdw.subscription := coding_fdw._subscription(server);
BEGIN
  -- tables first, then the subscription row: the worker's order (it reads
  -- the tables, then updates the row), so a sync running now is waited
  -- for instead of deadlocking with it
  EXECUTE format('DROP SCHEMA %I CASCADE', s.source_schema);
  IF drop_tables THEN
    EXECUTE format('DROP TABLE IF EXISTS %I.issues, %I.iterations, %I.project_members',
                   s.into_schema, s.into_schema, s.into_schema);
  END IF;
  DELETE FROM coding_fdw.subscription WHERE server_oid = s.server_oid;
  PERFORM coding_fdw.wake_worker();
END $$;

-- Apply one resource: upsert what changed, and (with do_delete) delete what
-- Coding no longer has.  Runs as the subscription owner.  One statement, so
-- the foreign table is read once; column names come from the catalog.
-- Returns inserted, updated, deleted and the newest updated_at seen.
CREATE FUNCTION _apply(src name, dst name, tbl text, source text,
                       since timestamptz, do_delete boolean,
                       OUT inserted bigint, OUT updated bigint, OUT deleted bigint,
                       OUT newest timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
  keycol text := CASE tbl WHEN 'project_members' THEN 'id' ELSE 'code' END;
  cols text;
  excluded_cols text;
  current_cols text;
  newer text := '';
BEGIN
  SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum),
         string_agg('EXCLUDED.' || quote_ident(attname), ', ' ORDER BY attnum),
         string_agg('d.' || quote_ident(attname), ', ' ORDER BY attnum)
    INTO cols, excluded_cols, current_cols
    FROM pg_attribute
   WHERE attrelid = format('%I.%I', dst, tbl)::regclass AND attnum > 0 AND NOT attisdropped
     AND attname NOT IN ('synced_at', 'synced_by');
  IF tbl <> 'project_members' THEN
    -- a change older than the row is never applied
    newer := ' AND (d.updated_at IS NULL OR EXCLUDED.updated_at >= d.updated_at)';
  END IF;
  EXECUTE format(
    'WITH s AS MATERIALIZED (SELECT %1$s FROM %2$I.%3$I %4$s),
          up AS (INSERT INTO %5$I.%3$I AS d (%1$s, synced_at, synced_by)
                 SELECT %1$s, now(), $2 FROM s
                 ON CONFLICT (team, project, %6$I) DO UPDATE
                   SET (%1$s, synced_at, synced_by) = (%7$s, now(), $2)
                   WHERE (%8$s) IS DISTINCT FROM (%7$s)%9$s
                 RETURNING (xmax = 0) AS ins),
          del AS (DELETE FROM %5$I.%3$I d WHERE $3 AND NOT EXISTS
                    (SELECT 1 FROM s WHERE s.%6$I = d.%6$I) RETURNING 1)
     SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins),
            (SELECT count(*) FROM del), %10$s FROM up',
    cols, src, tbl,
    CASE WHEN since IS NULL THEN '' ELSE 'WHERE updated_at >= $1' END,
    dst, keycol, excluded_cols, current_cols, newer,
    CASE WHEN tbl = 'issues' THEN '(SELECT max(updated_at) FROM s)' ELSE 'NULL::timestamptz' END)
  INTO inserted, updated, deleted, newest
  USING since, source, do_delete;
END $$;

-- Delete local issues that Coding no longer has: one listing of the codes
-- (a list-only column, so no DescribeIssue), the delete local.
CREATE FUNCTION _reconcile(src name, dst name) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
BEGIN
  EXECUTE format('WITH k AS MATERIALIZED (SELECT code FROM %I.issues),
                       del AS (DELETE FROM %I.issues d WHERE NOT EXISTS
                                 (SELECT 1 FROM k WHERE k.code = d.code) RETURNING 1)
                  SELECT count(*) FROM del', src, dst)
    INTO n;
  RETURN n;
END $$;

-- The subscription row for the worker (private table).
CREATE FUNCTION _get(srv oid) RETURNS subscription
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, coding_fdw AS $$
  SELECT * FROM coding_fdw.subscription WHERE server_oid = srv
$$;

-- Record what one sync did (private tables).
CREATE FUNCTION _record(srv oid, tbl text, source text, ins bigint, upd bigint, del bigint)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw AS $$
  INSERT INTO coding_fdw.sync_counts AS c VALUES (srv, tbl, source, ins, upd, del)
  ON CONFLICT (server_oid, table_name, source) DO UPDATE
    SET inserted = c.inserted + ins, updated = c.updated + upd, deleted = c.deleted + del
$$;

CREATE FUNCTION _finish(srv oid, served bigint, was_full boolean, reconciled boolean,
                        cursor_to timestamptz) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw AS $$
  UPDATE coding_fdw.subscription
     SET applied = greatest(applied, served),
         requested_full = requested_full AND requested > served,
         issues_cursor = greatest(issues_cursor, cursor_to),
         last_full_sync = CASE WHEN was_full THEN now() ELSE last_full_sync END,
         last_poll = now(),
         last_reconcile = CASE WHEN reconciled THEN now() ELSE last_reconcile END,
         next_poll = now() + poll_interval,
         state = 'idle', last_error = NULL
   WHERE server_oid = srv
$$;

-- A failed sync: keep tables and cursor as they were, say why, retry soon.
CREATE FUNCTION _failed(srv oid, message text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw AS $$
  UPDATE coding_fdw.subscription
     SET state = 'error', last_error = message, last_error_at = now(),
         next_poll = now() + least(poll_interval, interval '30 seconds')
   WHERE server_oid = srv
$$;

-- One sync of a subscription, run by the worker as its owner: a full sync
-- when asked (or never done), else a poll (issues by UPDATED_AT delta with a
-- day of overlap, as Coding filters by whole days; iterations and members
-- re-read whole and diffed), with a key reconciliation every
-- reconcile_interval so deleted issues go too.  One transaction: the
-- cursor moves with the rows it covers.
CREATE FUNCTION _sync(srv oid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  s coding_fdw.subscription := coding_fdw._get(srv);
  is_full boolean := s.requested_full OR s.last_full_sync IS NULL;
  reconcile boolean;
  source text;
  r record;
  tbl text;
  removed bigint;
  newest timestamptz;
BEGIN
  IF s IS NULL THEN
    RETURN;
  END IF;
  reconcile := is_full OR s.last_reconcile IS NULL
               OR now() - s.last_reconcile >= s.reconcile_interval;
  source := CASE WHEN is_full THEN 'full' ELSE 'poll' END;
  FOREACH tbl IN ARRAY ARRAY['issues', 'iterations', 'project_members'] LOOP
    SELECT * INTO r FROM coding_fdw._apply(
      s.source_schema, s.into_schema, tbl, source,
      CASE WHEN tbl = 'issues' AND NOT is_full THEN s.issues_cursor - interval '1 day' END,
      is_full OR tbl <> 'issues');
    removed := r.deleted;
    IF tbl = 'issues' THEN
      newest := r.newest;
      IF reconcile AND NOT is_full THEN
        removed := removed + coding_fdw._reconcile(s.source_schema, s.into_schema);
      END IF;
    END IF;
    PERFORM coding_fdw._record(srv, tbl, source, r.inserted, r.updated, removed);
    IF r.inserted + r.updated + removed > 0 THEN
      PERFORM pg_notify('coding_fdw_changes',
        json_build_object('server', s.server_name, 'table', tbl, 'source', source,
                          'inserted', r.inserted, 'updated', r.updated, 'deleted', removed)::text);
    END IF;
  END LOOP;
  PERFORM coding_fdw._finish(srv, s.requested, is_full, reconcile, newest);
END $$;

-- Rows in one local table (NULL if it was dropped).
CREATE FUNCTION _rows(schema name, tbl text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
  n bigint;
BEGIN
  IF to_regclass(format('%I.%I', schema, tbl)) IS NULL THEN
    RETURN NULL;
  END IF;
  EXECUTE format('SELECT count(*) FROM %I.%I', schema, tbl) INTO n;
  RETURN n;
END $$;

-- Per server and table: what interface.md §4 lists.  Only the
-- subscription's owner (or members of its role) see its rows.
CREATE VIEW sync_status WITH (security_barrier) AS
SELECT s.server_name AS server, t.table_name, s.into_schema, s.mode, s.state,
       coding_fdw._rows(s.into_schema, t.table_name) AS rows,
       s.last_full_sync, s.last_poll, s.next_poll, s.issues_cursor AS cursor,
       coalesce(f.inserted, 0) AS full_inserted, coalesce(f.updated, 0) AS full_updated,
       coalesce(f.deleted, 0) AS full_deleted,
       coalesce(p.inserted, 0) AS poll_inserted, coalesce(p.updated, 0) AS poll_updated,
       coalesce(p.deleted, 0) AS poll_deleted,
       coalesce(w.inserted, 0) AS webhook_inserted, coalesce(w.updated, 0) AS webhook_updated,
       coalesce(w.deleted, 0) AS webhook_deleted,
       0::bigint AS webhook_received, 0::bigint AS webhook_applied, 0::bigint AS webhook_rejected,
       s.last_error, s.last_error_at
  FROM coding_fdw.subscription s
 CROSS JOIN (VALUES ('issues'), ('iterations'), ('project_members')) t(table_name)
  LEFT JOIN coding_fdw.sync_counts f ON f.server_oid = s.server_oid AND f.table_name = t.table_name AND f.source = 'full'
  LEFT JOIN coding_fdw.sync_counts p ON p.server_oid = s.server_oid AND p.table_name = t.table_name AND p.source = 'poll'
  LEFT JOIN coding_fdw.sync_counts w ON w.server_oid = s.server_oid AND w.table_name = t.table_name AND w.source = 'webhook'
 WHERE pg_has_role(s.owner_oid, 'USAGE');
GRANT SELECT ON sync_status TO PUBLIC;
