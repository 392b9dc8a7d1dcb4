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
  team                text NOT NULL,        -- the server's, when it started:
  project             text NOT NULL,        -- _check_server keeps them
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
  server_oid  oid NOT NULL REFERENCES subscription ON DELETE CASCADE ON UPDATE CASCADE,
  table_name  text NOT NULL,
  source      text NOT NULL CHECK (source IN ('full', 'poll', 'webhook')),
  inserted    bigint NOT NULL DEFAULT 0,
  updated     bigint NOT NULL DEFAULT 0,
  deleted     bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (server_oid, table_name, source)
);
REVOKE ALL ON sync_counts FROM PUBLIC;

-- Webhook deliveries (interface.md §4-§6).  The listener stores each
-- accepted delivery here and answers 200 only after that commit; the sync
-- worker applies pending events.  Applied and ignored events stay a day so
-- a redelivery with the same X-Coding-Delivery is recognised and applied
-- once; dead letters stay until replayed.  No foreign key to subscription:
-- the listener's inserts must not queue behind a long sync holding the
-- subscription row.
CREATE TABLE webhook_event (
  id            bigserial PRIMARY KEY,
  server_oid    oid NOT NULL,
  delivery      text NOT NULL,               -- X-Coding-Delivery
  event         text NOT NULL,               -- ISSUE_UPDATED, ...
  received_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  payload       jsonb NOT NULL,
  state         text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'applied', 'ignored', 'dead')),
  attempts      int NOT NULL DEFAULT 0,
  next_attempt  timestamptz NOT NULL DEFAULT '-infinity',
  retry_delay   interval,                    -- the last wait after Coding was unreachable
  last_error    text,
  done_at       timestamptz,
  UNIQUE (server_oid, delivery)
);
CREATE INDEX webhook_event_pending ON webhook_event (server_oid, id) WHERE state = 'pending';
-- the events worker's search for due events: min(next_attempt) per server
CREATE INDEX webhook_event_due ON webhook_event (server_oid, next_attempt) WHERE state = 'pending';
REVOKE ALL ON webhook_event FROM PUBLIC;

-- Webhook counters: the listener and the worker each own a row per
-- subscription, so neither ever waits for the other's transaction.
CREATE TABLE webhook_counts (
  server_oid  oid NOT NULL,
  who         text NOT NULL CHECK (who IN ('listener', 'worker')),
  received    bigint NOT NULL DEFAULT 0,   -- stored, duplicates included
  duplicates  bigint NOT NULL DEFAULT 0,
  rejected    bigint NOT NULL DEFAULT 0,   -- 400/401 for a known key
  applied     bigint NOT NULL DEFAULT 0,
  ignored     bigint NOT NULL DEFAULT 0,   -- events that change none of the tables
  PRIMARY KEY (server_oid, who)
);
REVOKE ALL ON webhook_counts FROM PUBLIC;

-- Deleted rows, remembered for a while so that a stale read (a poll, a
-- reordered webhook) does not bring them back: a row is only re-inserted
-- if Coding shows it changed after the deletion we saw.
CREATE TABLE tombstone (
  server_oid  oid NOT NULL,
  table_name  text NOT NULL,
  key         bigint NOT NULL,
  updated_at  timestamptz,                 -- the row's last change we knew of
  deleted_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (server_oid, table_name, key)
);
REVOKE ALL ON tombstone FROM PUBLIC;

-- Whether the worker can run at all: it needs shared_preload_libraries.
CREATE FUNCTION worker_available() RETURNS boolean
AS 'MODULE_PATHNAME', 'coding_worker_available' LANGUAGE C STRICT;

-- The role a call acts for, in the ownership checks below: in the sync
-- worker the owner of the subscription it is serving (the worker's session
-- user is the superuser, and the owner's own code, a trigger say, runs
-- inside it), elsewhere the session user.  Only the worker's C code sets it.
CREATE FUNCTION _acting_role() RETURNS oid
AS 'MODULE_PATHNAME', 'coding_acting_role' LANGUAGE C STABLE;

-- The server whose poll or full sync the worker runs now (0: none).  Not
-- for PUBLIC: it would tell anyone which server is being synced; callers
-- ask _syncing(), which answers only for the caller's own subscriptions.
CREATE FUNCTION _worker_syncing() RETURNS oid
AS 'MODULE_PATHNAME', 'coding_worker_syncing' LANGUAGE C VOLATILE;
REVOKE EXECUTE ON FUNCTION _worker_syncing() FROM PUBLIC;

-- Wake the sync worker when the calling transaction commits.
CREATE FUNCTION wake_worker() RETURNS void
AS 'MODULE_PATHNAME', 'coding_wake_worker' LANGUAGE C STRICT;

-- The caller's subscription on a server, or an error naming what is wrong.
CREATE FUNCTION _subscription(server name) RETURNS subscription
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  s coding_fdw.subscription;
BEGIN
  IF server IS NULL THEN
    RAISE EXCEPTION 'the server name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  PERFORM coding_fdw._relink();         -- after pg_upgrade: the oids right first
  -- by the server's oid, so a renamed server keeps its subscription; by the
  -- recorded name only for a server that no longer exists (to stop it)
  SELECT * INTO s FROM coding_fdw.subscription
   WHERE server_oid = (SELECT oid FROM pg_foreign_server WHERE srvname = server);
  IF NOT FOUND THEN
    SELECT * INTO s FROM coding_fdw.subscription su
     WHERE su.server_name = server AND NOT EXISTS (SELECT 1 FROM pg_foreign_server WHERE oid = su.server_oid);
  END IF;
  IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM pg_foreign_server WHERE srvname = server) THEN
    RAISE EXCEPTION 'server "%" does not exist', server USING ERRCODE = 'undefined_object';
  END IF;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'server "%" has no subscription', server
      USING ERRCODE = 'undefined_object',
            HINT = 'Start one with coding_fdw.sync_start(''' || server || ''', ''schema'').';
  END IF;
  IF NOT pg_has_role(coding_fdw._acting_role(), s.owner_oid, 'USAGE') THEN
    RAISE EXCEPTION 'permission denied for the subscription of server "%"', server
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN s;
END $$;

-- The issue columns only DescribeIssue returns (interface.md §2): what a
-- subscription without details drops, and what _refresh_details reads.
CREATE FUNCTION _detail_columns() RETURNS name[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT ARRAY['assignee', 'creator', 'watchers', 'files', 'sub_tasks', 'third_links',
               'project_module', 'requirement_type', 'defect_type', 'epic', 'parent']::name[]
$$;

-- One option of a server, or NULL: what follows "opt=" in srvoptions.
CREATE FUNCTION _server_option(srv oid, opt text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT substr(o, length(opt) + 2) FROM pg_foreign_server, unnest(srvoptions) o
   WHERE oid = srv AND starts_with(o, opt || '=')
$$;

-- A synced table's columns that its source table has too (so not
-- synced_at and synced_by, nor a column the user added: the apply steps
-- leave those alone; only those in "names" when given), each after
-- "prefix", comma-separated in column order: the lists the apply steps
-- build their statements from.
CREATE FUNCTION _column_list(rel regclass, source regclass, prefix text, names name[] DEFAULT NULL) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT string_agg(prefix || quote_ident(a.attname), ', ' ORDER BY a.attnum)
    FROM pg_attribute a
   WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
     AND a.attname NOT IN ('synced_at', 'synced_by') AND (names IS NULL OR a.attname = ANY (names))
     AND EXISTS (SELECT 1 FROM pg_attribute s
                  WHERE s.attrelid = source AND s.attname = a.attname AND s.attnum > 0 AND NOT s.attisdropped)
$$;

CREATE FUNCTION sync_start(server name, into_schema name,
                           mode text DEFAULT 'polling',
                           poll_interval interval DEFAULT '2 minutes',
                           webhook_secret text DEFAULT NULL,
                           reconcile_interval interval DEFAULT '1 hour',
                           details boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  srv oid;
  src name;
  tbl text;
  keycol text;
BEGIN
  -- NULLs named here, before they reach a table (a failing row's DETAIL
  -- would show the subscription, webhook secret included)
  IF server IS NULL OR into_schema IS NULL OR mode IS NULL OR poll_interval IS NULL
     OR reconcile_interval IS NULL OR details IS NULL THEN
    RAISE EXCEPTION 'argument "%" must not be NULL',
      CASE WHEN server IS NULL THEN 'server' WHEN into_schema IS NULL THEN 'into_schema'
           WHEN mode IS NULL THEN 'mode' WHEN poll_interval IS NULL THEN 'poll_interval'
           WHEN reconcile_interval IS NULL THEN 'reconcile_interval' ELSE 'details' END
      USING ERRCODE = 'null_value_not_allowed';
  END IF;
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
  PERFORM coding_fdw._relink();         -- after pg_upgrade: the oids right first
  -- before anything is created: a second call would otherwise fail on the
  -- source schema it left, with a message that says nothing useful
  IF coding_fdw._subscribed(srv) THEN
    RAISE EXCEPTION 'server "%" already has a subscription', server
      USING ERRCODE = 'duplicate_object', HINT = 'coding_fdw.sync_stop() ends it.';
  END IF;
  IF NOT coding_fdw.worker_available()
     AND 'coding_fdw' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
     AND current_setting('coding_fdw.database', true) IS DISTINCT FROM current_database() THEN
    RAISE EXCEPTION 'the coding_fdw workers serve database "%", not this one', current_setting('coding_fdw.database')
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = format('They serve one database: subscribe there, or set coding_fdw.database = %L in '
                          'postgresql.conf and restart the server.', current_database());
  END IF;
  IF NOT coding_fdw.worker_available() THEN
    RAISE EXCEPTION 'the coding_fdw sync worker is not running'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Add to postgresql.conf: shared_preload_libraries = ''coding_fdw'' and coding_fdw.database = '''
                   || current_database() || ''', then restart the server.';
  END IF;
  -- a subscription follows the server's project (the foreign tables'
  -- own "project" options do not name one for the server)
  IF coalesce(coding_fdw._server_option(srv, 'project'), '') = '' THEN
    RAISE EXCEPTION 'server "%" has no "project" option', server
      USING ERRCODE = 'fdw_option_name_not_found',
            HINT = format('A subscription follows the server''s project: ALTER SERVER %I OPTIONS (ADD project ''NAME'').', server);
  END IF;
  IF into_schema IN ('coding_fdw', 'pg_catalog', 'information_schema') OR into_schema LIKE 'pg\_%'
     OR into_schema LIKE 'coding\_fdw\_src\_%' THEN
    RAISE EXCEPTION 'schema "%" cannot hold synced tables', into_schema
      USING ERRCODE = 'invalid_schema_name', HINT = 'Choose a schema of your own.';
  END IF;
  -- the tables a stopped subscription left (sync_stop keeps them) are not
  -- taken over: their rows may be stale, and the worker trusts its own
  IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = into_schema AND c.relname IN ('issues', 'iterations', 'project_members')) THEN
    RAISE EXCEPTION 'schema "%" already has a table issues, iterations or project_members', into_schema
      USING ERRCODE = 'duplicate_table',
            HINT = 'Sync into another schema, or drop those tables first (sync_stop(server, drop_tables => true) drops a subscription''s own).';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = into_schema) IS NOT TRUE THEN
    EXECUTE format('CREATE SCHEMA %I', into_schema);
  END IF;

  -- the project's foreign tables, imported where only the worker looks
  src := format('coding_fdw_src_%s', srv);
  IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = src) THEN
    -- not a subscription's (this server has none): left by a restored dump
    -- or a DROP EXTENSION, whose server happened to have this oid
    RAISE EXCEPTION 'schema "%" already exists', src
      USING ERRCODE = 'duplicate_schema',
            HINT = format('It is left from an earlier subscription (a restored dump, or DROP EXTENSION): '
                          'DROP SCHEMA %I CASCADE, then sync_start again.', src);
  END IF;
  EXECUTE format('CREATE SCHEMA %I', src);
  EXECUTE format('IMPORT FOREIGN SCHEMA %I FROM SERVER %I INTO %I',
                 coalesce(coding_fdw._server_option(srv, 'project'), ''),
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
    EXECUTE format('ALTER TABLE %I.issues %s', into_schema,
                   (SELECT string_agg(format('DROP COLUMN %I', c), ', ') FROM unnest(coding_fdw._detail_columns()) c));
  END IF;

  PERFORM coding_fdw._register(srv, server, into_schema, src, mode, poll_interval, webhook_secret,
                               reconcile_interval, (SELECT oid FROM pg_roles WHERE rolname = current_user));
  PERFORM coding_fdw.wake_worker();
END $$;

-- Whether a server has a subscription (the table is private; this says
-- only yes or no, to a caller who may use the server).
CREATE FUNCTION _subscribed(srv oid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT EXISTS (SELECT 1 FROM coding_fdw.subscription WHERE server_oid = srv)
$$;

-- ----- servers whose oids changed (pg_upgrade) -----

-- Subscriptions refer to their server by oid (a renamed server keeps its
-- subscription), but pg_upgrade restores the servers with new oids and
-- copies this extension's tables as they were: a row may then name no
-- server, or another subscriber's (sync_stop by name would act on that
-- one).  The source schema's foreign tables are restored by name, so they
-- still know the server: for each subscription whose issues table is on
-- another server, the subscription's old and new oids.
CREATE FUNCTION _moved_servers()
RETURNS TABLE (old_oid oid, new_oid oid)
LANGUAGE sql STABLE SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT s.server_oid, ft.ftserver
    FROM coding_fdw.subscription s
    JOIN pg_namespace n ON n.nspname = s.source_schema
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = 'issues' AND c.relkind = 'f'
    JOIN pg_foreign_table ft ON ft.ftrelid = c.oid
   WHERE ft.ftserver <> s.server_oid
$$;

-- Give moved subscriptions their servers' oids again, in every table that
-- keys by server, and their source schemas the matching names; the worker
-- runs this before each pass, and each function that looks a subscription
-- up by a server's name first, so no step acts on a stale oid for long
-- and no user on another's subscription.  Oids below FirstNormalObjectId
-- (16384) are no server's, so going through them keeps every unique key
-- when two subscriptions swapped oids.  A subscription that would take an
-- oid another one keeps (its source tables gone) stays as it is.
CREATE FUNCTION _relink() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp
SET client_min_messages = warning AS $$
DECLARE
  olds oid[];
  news oid[];
  keep_olds oid[];
  keep_news oid[];
  temps oid[];
  tbl name;
  tmp name;
  i int;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM coding_fdw._moved_servers()) THEN
    RETURN;
  END IF;
  -- one at a time (both workers and any session may find them)
  PERFORM pg_advisory_xact_lock('coding_fdw._relink'::regproc::oid::bigint);
  SELECT array_agg(old_oid ORDER BY old_oid), array_agg(new_oid ORDER BY old_oid)
    INTO olds, news FROM coding_fdw._moved_servers();
  LOOP
    -- not to an oid a subscription keeps, nor one two would take
    SELECT array_agg(o ORDER BY o), array_agg(n ORDER BY o) INTO keep_olds, keep_news
      FROM unnest(olds, news) m(o, n)
     WHERE NOT EXISTS (SELECT 1 FROM coding_fdw.subscription s
                        WHERE s.server_oid = m.n AND s.server_oid <> ALL (olds))
       AND (SELECT count(*) FROM unnest(news) x WHERE x = m.n) = 1;
    EXIT WHEN coalesce(cardinality(keep_olds), 0) = coalesce(cardinality(olds), 0);
    olds := keep_olds;
    news := keep_news;
  END LOOP;
  IF olds IS NULL THEN
    RETURN;
  END IF;
  temps := ARRAY(SELECT g::oid FROM generate_series(1, cardinality(olds)) g);
  -- the subscription rows first: the listener's FOR KEY SHARE of them
  -- orders its stores before or after this (sync_counts follows its key)
  FOREACH tbl IN ARRAY ARRAY['subscription', 'webhook_event', 'webhook_counts', 'tombstone'] LOOP
    EXECUTE format('UPDATE coding_fdw.%I e SET server_oid = m.b FROM unnest($1, $2) m(a, b) '
                   'WHERE e.server_oid = m.a', tbl) USING olds, temps;
    EXECUTE format('UPDATE coding_fdw.%I e SET server_oid = m.b FROM unnest($1, $2) m(a, b) '
                   'WHERE e.server_oid = m.a', tbl) USING temps, news;
  END LOOP;
  UPDATE coding_fdw.subscription s SET server_name = fs.srvname
    FROM pg_foreign_server fs WHERE fs.oid = s.server_oid AND s.server_oid = ANY (news);
  -- the source schemas are coding_fdw_src_<oid> again (sync_stop and DROP
  -- SERVER drop them by that name), through names of their own when two
  -- swap; one whose name a leftover schema holds keeps its own
  FOR i IN 1 .. cardinality(news) LOOP
    tmp := format('coding_fdw_src_relink_%s', news[i]);
    EXECUTE format('ALTER SCHEMA %I RENAME TO %I',
                   (SELECT source_schema FROM coding_fdw.subscription WHERE server_oid = news[i]), tmp);
    UPDATE coding_fdw.subscription SET source_schema = tmp WHERE server_oid = news[i];
  END LOOP;
  FOR i IN 1 .. cardinality(news) LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = format('coding_fdw_src_%s', news[i])) THEN
      EXECUTE format('ALTER SCHEMA %I RENAME TO %I', format('coding_fdw_src_relink_%s', news[i]),
                     format('coding_fdw_src_%s', news[i]));
      UPDATE coding_fdw.subscription SET source_schema = format('coding_fdw_src_%s', news[i])
       WHERE server_oid = news[i];
    END IF;
    RAISE LOG 'coding_fdw: the subscription of server "%" referred to server oid %, now %: relinked (pg_upgrade gives servers new oids)',
      (SELECT srvname FROM pg_foreign_server WHERE oid = news[i]), olds[i], news[i];
  END LOOP;
END $$;

-- A subscription's server as it is called now (a renamed server keeps
-- its subscription), or the recorded name if the server is gone.
CREATE FUNCTION _server_name(srv oid, recorded name) RETURNS name
LANGUAGE sql STABLE SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT coalesce((SELECT srvname FROM pg_foreign_server WHERE oid = srv), recorded)
$$;

-- Record a subscription (as the extension owner: the table is private).
CREATE FUNCTION _register(srv oid, server name, into_schema name, src name, mode text,
                          poll_interval interval, webhook_secret text,
                          reconcile_interval interval, owner oid)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
BEGIN
  -- callable by anyone, so it checks what sync_start made sure of: the
  -- owner is a role the session may act as (SET ROLE included), may use
  -- a coding_fdw server of that name, and the source schema is the one
  -- sync_start created for it (sync_stop drops that schema)
  IF owner IS NULL OR NOT pg_has_role(coding_fdw._acting_role(), owner, 'MEMBER')
     OR NOT EXISTS (SELECT 1 FROM pg_foreign_server fs JOIN pg_foreign_data_wrapper w ON w.oid = fs.srvfdw
                     WHERE fs.oid = srv AND fs.srvname = server AND w.fdwname = 'coding_fdw')
     OR NOT has_server_privilege(owner, srv, 'USAGE')
     OR src IS DISTINCT FROM format('coding_fdw_src_%s', srv)::name THEN
    RAISE EXCEPTION 'permission denied for foreign server %', server USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF coding_fdw._subscribed(srv) THEN
    RAISE EXCEPTION 'server "%" already has a subscription', server
      USING ERRCODE = 'duplicate_object', HINT = 'coding_fdw.sync_stop() ends it.';
  END IF;
  INSERT INTO coding_fdw.subscription (server_oid, server_name, owner_oid, into_schema, source_schema,
                                       team, project, mode, poll_interval, reconcile_interval, webhook_key,
                                       webhook_secret, next_poll)
  VALUES (srv, server, owner, into_schema, src,
          coding_fdw._server_option(srv, 'team'), coding_fdw._server_option(srv, 'project'),
          mode, poll_interval, reconcile_interval,
          replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), webhook_secret, now());
END $$;

CREATE FUNCTION sync_now(server name, "full" boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  s coding_fdw.subscription := coding_fdw._subscription(server);
BEGIN
  IF "full" IS NULL THEN
    RAISE EXCEPTION 'argument "full" must not be NULL' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  UPDATE coding_fdw.subscription
     SET requested = requested + 1, requested_full = requested_full OR "full",
         next_poll = least(next_poll, now())       -- also right after a failure
   WHERE server_oid = s.server_oid;
  PERFORM coding_fdw.wake_worker();
END $$;

CREATE FUNCTION wait_for_sync(server name, timeout interval DEFAULT '60 s') RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  s coding_fdw.subscription := coding_fdw._subscription(server);
  target bigint := s.requested;
  -- webhook events stored (acknowledged) before this call
  last_event bigint := (SELECT max(id) FROM coding_fdw.webhook_event
                         WHERE server_oid = s.server_oid AND state = 'pending');
  deadline timestamptz := clock_timestamp() + timeout;
  cur coding_fdw.subscription;
BEGIN
  IF timeout IS NULL THEN
    RAISE EXCEPTION 'argument "timeout" must not be NULL' USING ERRCODE = 'null_value_not_allowed',
      HINT = 'Give an interval such as ''10 minutes''; statement_timeout also ends the wait.';
  END IF;
  -- a sync_start or sync_now of this transaction: the worker sees it only
  -- after COMMIT, so waiting here would always time out
  IF (SELECT xmin FROM coding_fdw.subscription WHERE server_oid = s.server_oid)
     = xid(pg_current_xact_id_if_assigned()) THEN
    RAISE EXCEPTION 'the workers cannot see this transaction''s sync_start or sync_now of server "%" before it commits',
                    server
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Call wait_for_sync after COMMIT, in a transaction of its own.';
  END IF;
  LOOP
    SELECT * INTO cur FROM coding_fdw.subscription WHERE server_oid = s.server_oid;
    IF cur.applied >= target
       AND NOT EXISTS (SELECT 1 FROM coding_fdw.webhook_event
                        WHERE server_oid = s.server_oid AND state = 'pending' AND id <= last_event) THEN
      RETURN true;
    END IF;
    -- a failed sync is retried at next_poll (sync_now: at once): when that
    -- is past the deadline, waiting on cannot help
    IF clock_timestamp() >= deadline
       OR (cur.state = 'error' AND cur.applied < target AND cur.next_poll > deadline) THEN
      IF cur.state = 'error' THEN
        RAISE NOTICE 'the last sync of server "%" failed: %', server, cur.last_error
          USING DETAIL = format('The worker retries at %s.', cur.next_poll),
                HINT = 'coding_fdw.sync_status shows the error; coding_fdw.sync_now retries at once.';
      END IF;
      RETURN false;
    END IF;
    PERFORM pg_sleep(0.02);     -- latch-based, so Ctrl-C ends the wait
  END LOOP;
END $$;

-- A subscription's rows, gone (sync_stop, a dropped server).  Runs with
-- its caller's rights: only the extension's SECURITY DEFINER functions may
-- touch those tables.
CREATE FUNCTION _forget(srv oid) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  DELETE FROM coding_fdw.subscription WHERE server_oid = srv;
  DELETE FROM coding_fdw.webhook_event WHERE server_oid = srv;
  DELETE FROM coding_fdw.webhook_counts WHERE server_oid = srv;
  DELETE FROM coding_fdw.tombstone WHERE server_oid = srv;
$$;
REVOKE EXECUTE ON FUNCTION _forget(oid) FROM PUBLIC;

-- client_min_messages: the private schema's "drop cascades to" NOTICE
-- names internals the user never created.
CREATE FUNCTION sync_stop(server name, drop_tables boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp
SET client_min_messages = warning AS $$
DECLARE
  s coding_fdw.subscription := coding_fdw._subscription(server);
  tbl text;
BEGIN
  -- the row first, FOR UPDATE: a step of the worker holds it FOR KEY SHARE
  -- (_get) from before it reads the source tables, so a sync running now
  -- is waited for, and one starting now waits for this; taking the tables
  -- first could deadlock with a step that holds some of them (the DROP
  -- below locks them in its own order, not the worker's).  A stop that
  -- waited on another stop finds no row and says so.
  PERFORM 1 FROM coding_fdw.subscription WHERE server_oid = s.server_oid FOR UPDATE;
  IF NOT FOUND THEN
    s := coding_fdw._subscription(server);     -- raises unless started again meanwhile
    PERFORM 1 FROM coding_fdw.subscription WHERE server_oid = s.server_oid FOR UPDATE;
  END IF;
  IF s.source_schema = format('coding_fdw_src_%s', s.server_oid)::name THEN
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', s.source_schema);
  END IF;
  IF drop_tables THEN
    -- this runs as the extension's owner: only the subscription owner's tables
    FOREACH tbl IN ARRAY ARRAY['issues', 'iterations', 'project_members'] LOOP
      IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = s.into_schema AND c.relname = tbl AND c.relowner = s.owner_oid) THEN
        EXECUTE format('DROP TABLE %I.%I', s.into_schema, tbl);
      END IF;
    END LOOP;
  END IF;
  PERFORM coding_fdw._forget(s.server_oid);
  PERFORM coding_fdw.wake_worker();
END $$;

-- A dropped server (DROP SERVER ... CASCADE, DROP OWNED) ends its
-- subscription as sync_stop does, keeping the synced tables: the worker
-- would otherwise fail on the dropped foreign tables for good, and the
-- listener keep storing events for a subscription nobody can stop.
CREATE FUNCTION _server_dropped() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp
SET client_min_messages = warning AS $$
DECLARE
  gone oid[];
  srv oid;
BEGIN
  gone := ARRAY(SELECT d.objid FROM pg_event_trigger_dropped_objects() d
                 WHERE d.classid = 'pg_catalog.pg_foreign_server'::regclass
                   AND d.objid IN (SELECT server_oid FROM coding_fdw.subscription));
  FOREACH srv IN ARRAY gone LOOP
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', format('coding_fdw_src_%s', srv));
    PERFORM coding_fdw._forget(srv);
  END LOOP;
  IF cardinality(gone) > 0 THEN
    PERFORM coding_fdw.wake_worker();
  END IF;
END $$;
CREATE EVENT TRIGGER coding_fdw_server_dropped ON sql_drop
  WHEN TAG IN ('DROP SERVER', 'DROP FOREIGN DATA WRAPPER', 'DROP OWNED')
  EXECUTE FUNCTION _server_dropped();

-- Before DROP SERVER, DROP FOREIGN DATA WRAPPER and DROP OWNED (an event
-- trigger at ddl_command_start; coding_before_drop in C reads the command's
-- targets): the subscription rows of the servers the command may drop,
-- FOR UPDATE in one order, as sync_stop takes its row first.  The DROP then
-- waits for a step of the worker under way instead of deadlocking with it
-- on the source tables.  Only rows the caller could drop (their server or
-- their subscription): no one can hold another's row and stall the worker.
CREATE FUNCTION _before_drop(servers oid[], fdws oid[], roles oid[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
BEGIN
  PERFORM coding_fdw._relink();         -- after pg_upgrade: drop what the command names
  PERFORM FROM coding_fdw.subscription s JOIN pg_foreign_server fs ON fs.oid = s.server_oid
   WHERE (s.server_oid = ANY (servers) OR fs.srvfdw = ANY (fdws)
          OR fs.srvowner = ANY (roles) OR s.owner_oid = ANY (roles))
     AND (pg_has_role(coding_fdw._acting_role(), fs.srvowner, 'USAGE')
          OR pg_has_role(coding_fdw._acting_role(), s.owner_oid, 'USAGE'))
   ORDER BY s.server_oid
     FOR UPDATE OF s;
END $$;
CREATE FUNCTION _before_drop_trigger() RETURNS event_trigger
AS 'MODULE_PATHNAME', 'coding_before_drop' LANGUAGE C;
CREATE EVENT TRIGGER coding_fdw_before_drop ON ddl_command_start
  WHEN TAG IN ('DROP SERVER', 'DROP FOREIGN DATA WRAPPER', 'DROP OWNED')
  EXECUTE FUNCTION _before_drop_trigger();

-- ----- tombstones (private; reached through these two functions) -----

-- Whether the calling session may act for a subscription: its owner, a
-- member of the owner's role, or the worker (a superuser session).
CREATE FUNCTION _owns(srv oid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT coalesce((SELECT pg_has_role(coding_fdw._acting_role(), owner_oid, 'USAGE')
                     FROM coding_fdw.subscription WHERE server_oid = srv), false)
$$;

-- Whether the worker is syncing this server now (sync_status.syncing);
-- false for a subscription the caller does not own.
CREATE FUNCTION _syncing(srv oid) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT srv = coding_fdw._worker_syncing() AND coding_fdw._owns(srv)
$$;

CREATE FUNCTION _tombstones(srv oid, tbl text)
RETURNS TABLE (key bigint, updated_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
BEGIN
  IF NOT coding_fdw._owns(srv) THEN
    RAISE EXCEPTION 'permission denied for the subscription of server %', srv USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN QUERY SELECT t.key, t.updated_at FROM coding_fdw.tombstone t
                WHERE t.server_oid = srv AND t.table_name = tbl;
END $$;

-- Remember deleted keys with the newest change known for each.
CREATE FUNCTION _bury(srv oid, tbl text, keys bigint[], stamps timestamptz[]) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  n bigint;
BEGIN
  IF NOT coding_fdw._owns(srv) THEN
    RAISE EXCEPTION 'permission denied for the subscription of server %', srv USING ERRCODE = 'insufficient_privilege';
  END IF;
  INSERT INTO coding_fdw.tombstone AS t (server_oid, table_name, key, updated_at)
  SELECT DISTINCT ON (k) srv, tbl, k, u FROM unnest(keys, stamps) x(k, u)
   WHERE k IS NOT NULL ORDER BY k, u DESC NULLS LAST
  ON CONFLICT (server_oid, table_name, key) DO UPDATE
    SET updated_at = greatest(t.updated_at, EXCLUDED.updated_at), deleted_at = now();
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;

-- Apply one resource: upsert what changed, and (with do_delete) delete what
-- Coding no longer has; with codes, only those issues are read and only they
-- can be deleted; with since, only issues updated since then are listed
-- (both: the list filtered by UPDATED_AT, then by code, before any
-- DescribeIssue).  Runs as the subscription owner.  One
-- statement, so the foreign table is read once; column names come from the
-- catalog.  In a poll or webhook refresh, a row with a tombstone is only
-- brought back by a change newer than its deletion; deleted rows get
-- tombstones.
-- Returns inserted, updated, deleted, the newest updated_at seen, the
-- keys of the rows inserted, updated or deleted, and (with codes) the keys
-- Coding returned.
CREATE FUNCTION _apply(srv oid, src name, dst name, tbl text, source text,
                       since timestamptz, do_delete boolean, codes int[] DEFAULT NULL,
                       OUT inserted bigint, OUT updated bigint, OUT deleted bigint,
                       OUT newest timestamptz, OUT changed bigint[], OUT seen bigint[])
LANGUAGE plpgsql SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  keycol text := CASE tbl WHEN 'project_members' THEN 'id' ELSE 'code' END;
  stamped boolean := tbl <> 'project_members';     -- rows carry updated_at
  cols text;
  excluded_cols text;
  current_cols text;
  filter text := '';
  buried bigint;
  dst_rel regclass := format('%I.%I', dst, tbl)::regclass;
  src_rel regclass := format('%I.%I', src, tbl)::regclass;
BEGIN
  cols := coding_fdw._column_list(dst_rel, src_rel, '');
  excluded_cols := coding_fdw._column_list(dst_rel, src_rel, 'EXCLUDED.');
  current_cols := coding_fdw._column_list(dst_rel, src_rel, 'd.');
  IF since IS NOT NULL THEN
    filter := 'WHERE updated_at >= $1';
  END IF;
  IF codes IS NOT NULL THEN
    filter := CASE WHEN filter = '' THEN 'WHERE ' ELSE filter || ' AND ' END || 'code = ANY($6)';
  END IF;
  EXECUTE format(
    'WITH s AS MATERIALIZED (SELECT %1$s FROM %2$I.%3$I %4$s),
          t AS MATERIALIZED (SELECT key, updated_at FROM coding_fdw._tombstones($4, $5) WHERE %14$L),
          up AS (INSERT INTO %5$I.%3$I AS d (%1$s, synced_at, synced_by)
                 SELECT %1$s, now(), $2 FROM s
                  WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.key = s.%6$I AND %10$s)
                 ON CONFLICT (team, project, %6$I) DO UPDATE
                   SET (%1$s, synced_at, synced_by) = (%7$s, now(), $2)
                   WHERE (%8$s) IS DISTINCT FROM (%7$s)%11$s
                 RETURNING (xmax = 0) AS ins, d.%6$I::bigint AS key),
          del AS (DELETE FROM %5$I.%3$I d
                   WHERE $3 AND ($6 IS NULL OR d.%6$I = ANY($6))
                     AND NOT EXISTS (SELECT 1 FROM s WHERE s.%6$I = d.%6$I AND s.team = d.team
                                                        AND s.project = d.project)
                  RETURNING d.%6$I AS key, %12$s AS updated_at),
          tomb AS (SELECT coding_fdw._bury($4, $5, array_agg(key), array_agg(updated_at)) AS n
                     FROM del WHERE %9$L)
     SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins),
            (SELECT count(*) FROM del), %13$s, (SELECT n FROM tomb),
            array_agg(key) || (SELECT coalesce(array_agg(key::bigint), ''{}'') FROM del),
            CASE WHEN $6 IS NOT NULL THEN (SELECT coalesce(array_agg(%6$I::bigint), ''{}'') FROM s) END
       FROM up',
    cols, src, tbl, filter, dst, keycol, excluded_cols, current_cols, stamped,
    CASE WHEN stamped THEN '(t.updated_at IS NULL OR s.updated_at IS NULL OR s.updated_at <= t.updated_at)'
         ELSE 'false' END,
    CASE WHEN stamped THEN ' AND (d.updated_at IS NULL OR EXCLUDED.updated_at >= d.updated_at)' ELSE '' END,
    CASE WHEN stamped THEN 'd.updated_at' ELSE 'NULL::timestamptz' END,
    CASE WHEN tbl = 'issues' THEN '(SELECT max(updated_at) FROM s)' ELSE 'NULL::timestamptz' END,
    -- a full sync is an explicit "take Coding's state": no tombstone holds
    stamped AND source <> 'full')
  INTO inserted, updated, deleted, newest, buried, changed, seen
  USING since, source, do_delete, srv, tbl, codes;
  changed := array_remove(changed, NULL);
END $$;

-- The issues whose detail columns show something of the given ones: their
-- parents (parent_code, and any row whose sub_tasks list one of them, so
-- a former parent too), the sub-tasks they list or that name them as
-- parent, and the issues of an epic.  Those copies change without their
-- own updated_at changing, so no poll or webhook would otherwise reach
-- them.  Empty without detail columns (details => false).
CREATE FUNCTION _related(dst name, codes bigint[]) RETURNS int[]
LANGUAGE plpgsql SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  rel int[];
BEGIN
  IF codes IS NULL OR cardinality(codes) = 0 OR NOT EXISTS (
       SELECT 1 FROM pg_attribute WHERE attrelid = format('%I.issues', dst)::regclass
          AND attname IN ('sub_tasks', 'epic') AND NOT attisdropped HAVING count(*) = 2) THEN
    RETURN '{}';
  END IF;
  EXECUTE format($q$
    WITH sub AS (SELECT d.code, CASE WHEN st->>'Code' ~ '^[0-9]{1,9}$' THEN (st->>'Code')::int END AS child
                   FROM %1$I.issues d,
                        jsonb_array_elements(CASE jsonb_typeof(d.sub_tasks) WHEN 'array' THEN d.sub_tasks
                                             ELSE '[]' END) st)
    SELECT coalesce(array_agg(DISTINCT x), '{}') FROM (
      SELECT d.parent_code AS x FROM %1$I.issues d WHERE d.code = ANY($1)
      UNION ALL SELECT sub.child FROM sub WHERE sub.code = ANY($1)
      UNION ALL SELECT sub.code FROM sub WHERE sub.child = ANY($1)
      UNION ALL SELECT d.code FROM %1$I.issues d WHERE d.parent_code = ANY($1)
      UNION ALL SELECT d.code FROM %1$I.issues d WHERE d.epic->>'Code' = ANY($1::text[])
    ) r WHERE x IS NOT NULL AND x <> ALL ($1)$q$, dst) INTO rel USING codes;
  RETURN rel;
END $$;

-- Read again the detail columns of the issues _related names and update
-- the rows where they differ: a query of code and detail columns only, so
-- the foreign scan looks each code up with DescribeIssue (one call each)
-- instead of listing the project.  Those issues' own change, if any, comes
-- by its own poll or event; their list columns and raw hold no copies.
-- Returns the rows updated.
CREATE FUNCTION _refresh_details(src name, dst name, source text, codes int[]) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  cols text;
  s_cols text;
  d_cols text;
  n bigint;
  dst_rel regclass;
  src_rel regclass;
BEGIN
  IF codes IS NULL OR cardinality(codes) = 0 THEN
    RETURN 0;
  END IF;
  dst_rel := format('%I.issues', dst)::regclass;
  src_rel := format('%I.issues', src)::regclass;
  cols := coding_fdw._column_list(dst_rel, src_rel, '', coding_fdw._detail_columns());
  IF cols IS NULL THEN
    RETURN 0;               -- details => false
  END IF;
  s_cols := coding_fdw._column_list(dst_rel, src_rel, 's.', coding_fdw._detail_columns());
  d_cols := coding_fdw._column_list(dst_rel, src_rel, 'd.', coding_fdw._detail_columns());
  EXECUTE format('WITH s AS MATERIALIZED (SELECT code, %1$s FROM %2$I.issues WHERE code = ANY($1)),
                       up AS (UPDATE %3$I.issues d SET (%1$s, synced_at, synced_by) = (%4$s, now(), $2)
                                FROM s WHERE d.code = s.code AND (%5$s) IS DISTINCT FROM (%4$s)
                              RETURNING 1)
                  SELECT count(*) FROM up', cols, src, dst, s_cols, d_cols)
    INTO n USING codes, source;
  RETURN n;
END $$;

-- The issues' copies of changed iterations: an issue's raw holds its
-- iteration's Code, Name and Status, which change without the issue's
-- UpdatedAt.  One list of those iterations' issues (the ITERATION filter,
-- list columns only: no DescribeIssue); only the Iteration object of raw is
-- replaced, so a row is never half newer than its other columns.  Returns
-- the rows updated.
CREATE FUNCTION _refresh_iteration_copies(src name, dst name, source text, iterations int[]) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  n bigint;
BEGIN
  IF iterations IS NULL OR cardinality(iterations) = 0 THEN
    RETURN 0;
  END IF;
  EXECUTE format('WITH s AS MATERIALIZED (SELECT code, raw->''Iteration'' AS it FROM %1$I.issues
                                           WHERE iteration_code = ANY($1)),
                       up AS (UPDATE %2$I.issues d SET raw = jsonb_set(d.raw, ''{Iteration}'', s.it),
                                     synced_at = now(), synced_by = $2
                                FROM s WHERE d.code = s.code AND d.raw ? ''Iteration'' AND s.it IS NOT NULL
                                 AND d.raw->''Iteration'' IS DISTINCT FROM s.it
                              RETURNING 1)
                  SELECT count(*) FROM up', src, dst)
    INTO n USING iterations, source;
  RETURN n;
END $$;

-- Reconcile the keys: one listing of the codes (a list-only column, so no
-- DescribeIssue).  Deletes the local issues that Coding no longer has
-- (tombstones for what went) and returns their codes, whose copies in
-- other issues the caller refreshes; returns as "missing" the codes Coding
-- has and the table lacks (rows deleted by hand, a TRUNCATE), which the
-- caller reads (_apply skips those a tombstone holds).
CREATE FUNCTION _reconcile(srv oid, src name, dst name, OUT gone bigint[], OUT missing int[])
LANGUAGE plpgsql SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
BEGIN
  EXECUTE format('WITH k AS MATERIALIZED (SELECT team, project, code FROM %1$I.issues),
                       del AS (DELETE FROM %2$I.issues d WHERE NOT EXISTS
                                 (SELECT 1 FROM k WHERE k.code = d.code AND k.team = d.team
                                                    AND k.project = d.project)
                               RETURNING d.code, d.updated_at),
                       tomb AS (SELECT coding_fdw._bury($1, ''issues'', array_agg(code::bigint),
                                                        array_agg(updated_at)) FROM del)
                  SELECT (SELECT coalesce(array_agg(code::bigint), ''{}'') FROM del
                           WHERE (SELECT count(*) FROM tomb) >= 0),
                         (SELECT coalesce(array_agg(k.code), ''{}'') FROM k
                           WHERE NOT EXISTS (SELECT 1 FROM %2$I.issues d WHERE d.code = k.code
                                                AND d.team = k.team AND d.project = k.project))',
                 src, dst)
    INTO gone, missing USING srv;
END $$;

-- The subscription row for the worker (private table).
CREATE FUNCTION _get(srv oid) RETURNS subscription
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  s coding_fdw.subscription;
BEGIN
  IF NOT coding_fdw._owns(srv) THEN
    RAISE EXCEPTION 'permission denied for the subscription of server %', srv USING ERRCODE = 'insufficient_privilege';
  END IF;
  -- FOR KEY SHARE, held to the end of the worker's step: sync_stop takes
  -- the row FOR UPDATE before it drops anything, so it waits for a step
  -- under way (or the step for the stop) instead of deadlocking with it
  -- on the source tables, which a cascaded DROP locks in its own order.
  -- sync_now's UPDATE and the listener's FOR KEY SHARE do not conflict.
  SELECT * INTO s FROM coding_fdw.subscription WHERE server_oid = srv FOR KEY SHARE;
  RETURN s;
END $$;

-- A subscription's tables hold one team's project: the one its server
-- named at sync_start.  The project is an option of its imported tables
-- (the server's may change: the foreign tables' default, not the
-- subscription's), the team the server's: once the server names another
-- team, or the imported tables another project, each step fails saying so
-- instead of mixing two projects' rows in one table.
CREATE FUNCTION _check_server(s subscription) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  now_team text := coding_fdw._server_option(s.server_oid, 'team');
  read_project text;
  server name := coding_fdw._server_name(s.server_oid, s.server_name);
BEGIN
  SELECT substr(o, 9) INTO read_project
    FROM pg_foreign_table ft, unnest(ft.ftoptions) o
   WHERE ft.ftrelid = to_regclass(format('%I.issues', s.source_schema)) AND o LIKE 'project=%';
  IF now_team IS DISTINCT FROM s.team THEN
    RAISE EXCEPTION 'server "%" now names team "%", its subscription follows team "%"',
                    server, coalesce(now_team, ''), s.team
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = format('A subscription keeps the team and project it started with. Set the server''s "team" '
                          'option back, or start again for the new team: coding_fdw.sync_stop(%L, '
                          'drop_tables => true), then coding_fdw.sync_start.', server);
  END IF;
  IF read_project IS DISTINCT FROM s.project THEN
    RAISE EXCEPTION 'the foreign table %.issues now names project "%", the subscription of server "%" follows project "%"',
                    quote_ident(s.source_schema), coalesce(read_project, ''), server, s.project
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = format('Set its "project" option back: ALTER FOREIGN TABLE %I.issues OPTIONS (SET project %L).',
                          s.source_schema, s.project);
  END IF;
END $$;

-- Record what one sync did (private tables).
CREATE FUNCTION _record(srv oid, tbl text, source text, ins bigint, upd bigint, del bigint)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  INSERT INTO coding_fdw.sync_counts AS c
  SELECT srv, tbl, source, ins, upd, del WHERE coding_fdw._owns(srv)
  ON CONFLICT (server_oid, table_name, source) DO UPDATE
    SET inserted = c.inserted + ins, updated = c.updated + upd, deleted = c.deleted + del
$$;

-- A sync done: the request it served, the cursor, the next poll (in mode
-- webhook only the reconciliation interval: events keep the tables
-- current), and old applied events and tombstones pruned.  The row update
-- waits the workers' 10 s for a user's open sync_now/sync_stop: then the
-- sync is rolled back, and if _failed cannot write the row either, the
-- worker holds the server back itself (sync_worker.c, hold_back).
CREATE FUNCTION _finish(srv oid, served bigint, was_full boolean, reconciled boolean,
                        cursor_to timestamptz) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  UPDATE coding_fdw.subscription
     SET applied = greatest(applied, served),
         requested_full = requested_full AND requested > served,
         issues_cursor = greatest(issues_cursor, cursor_to),
         last_full_sync = CASE WHEN was_full THEN now() ELSE last_full_sync END,
         last_poll = now(),
         last_reconcile = CASE WHEN reconciled THEN now() ELSE last_reconcile END,
         next_poll = now() + CASE mode WHEN 'webhook' THEN reconcile_interval ELSE poll_interval END,
         state = 'idle', last_error = NULL
   WHERE server_oid = srv AND coding_fdw._owns(srv);
  DELETE FROM coding_fdw.webhook_event
   WHERE server_oid = srv AND state IN ('applied', 'ignored') AND done_at < now() - interval '1 day'
     AND coding_fdw._owns(srv);
  DELETE FROM coding_fdw.tombstone WHERE server_oid = srv AND deleted_at < now() - interval '2 days'
     AND coding_fdw._owns(srv);
$$;

-- A failed sync: keep tables and cursor as they were, say why, retry soon.
CREATE FUNCTION _failed(srv oid, message text, sqlstate text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  -- the retry waits poll_interval (at most 30 s), twice as long after each
  -- further failure, up to 10 minutes: a sync that fails on a missing
  -- permission after its DescribeIssue calls must not spend the team's
  -- rate limit every 30 s (sync_now retries at once).  "sqlstate" is
  -- taken for the worker's one calling convention (_events_failed uses
  -- it); a sync is retried whatever the cause
  UPDATE coding_fdw.subscription
     SET state = 'error', last_error = message, last_error_at = now(),
         next_poll = now() + least(greatest(
                       CASE WHEN state = 'error' AND next_poll > last_error_at
                            THEN (next_poll - last_error_at) * 2 END,
                       least(poll_interval, interval '30 seconds')), interval '10 minutes')
   WHERE server_oid = srv AND coding_fdw._owns(srv)
$$;

-- One sync of a subscription, run by the worker as its owner: a full sync
-- when asked (or never done), else a poll (issues by UPDATED_AT delta with a
-- day of overlap, as Coding filters by whole days; iterations and members
-- re-read whole and diffed), with a key reconciliation every
-- reconcile_interval so deleted issues go too.  One transaction: the
-- cursor moves with the rows it covers.
CREATE FUNCTION _sync(srv oid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  s coding_fdw.subscription := coding_fdw._get(srv);
  is_full boolean := s.requested_full OR s.last_full_sync IS NULL;
  reconcile boolean;
  source text;
  r record;
  keys record;
  back record;
  gone bigint[];
  iterations_changed int[] := '{}';
  ins bigint;
  upd bigint;
  tbl text;
  removed bigint;
  newest timestamptz;
BEGIN
  IF s IS NULL THEN
    RETURN;
  END IF;
  PERFORM coding_fdw._check_server(s);
  -- the local tables before any call to Coding: a user's lock on one
  -- (VACUUM FULL, LOCK TABLE) fails the step now (lock_timeout), not after
  -- a full sync's calls, and once held no such lock can come in between
  EXECUTE format('LOCK TABLE %1$I.issues, %1$I.iterations, %1$I.project_members IN ROW EXCLUSIVE MODE',
                 s.into_schema);
  reconcile := is_full OR s.last_reconcile IS NULL
               OR now() - s.last_reconcile >= s.reconcile_interval;
  source := CASE WHEN is_full THEN 'full' ELSE 'poll' END;
  -- the cheap tables first: a token that may not read them fails before
  -- the issues' pages and DescribeIssue calls, not after
  FOREACH tbl IN ARRAY ARRAY['iterations', 'project_members', 'issues'] LOOP
    SELECT * INTO r FROM coding_fdw._apply(
      srv, s.source_schema, s.into_schema, tbl, source,
      CASE WHEN tbl = 'issues' AND NOT is_full THEN s.issues_cursor - interval '1 day' END,
      is_full OR tbl <> 'issues');
    removed := r.deleted;
    ins := r.inserted;
    upd := r.updated;
    IF tbl = 'iterations' THEN
      iterations_changed := r.changed::int[];
    END IF;
    IF tbl = 'issues' AND NOT is_full THEN
      gone := '{}';
      IF reconcile THEN
        SELECT * INTO keys FROM coding_fdw._reconcile(srv, s.source_schema, s.into_schema);
        gone := keys.gone;
        removed := removed + cardinality(gone);
        IF cardinality(keys.missing) > 0 THEN
          SELECT * INTO back FROM coding_fdw._apply(srv, s.source_schema, s.into_schema, 'issues', source,
                                                    NULL, false, keys.missing);
          ins := ins + back.inserted;
          upd := upd + back.updated;
        END IF;
      END IF;
      -- the copies other issues hold of what changed or went (a full sync
      -- reads all); a deleted sub-task is still listed in its parent's
      -- sub_tasks, which is how _related finds the parent
      upd := upd + coding_fdw._refresh_details(s.source_schema, s.into_schema, source,
                                               coding_fdw._related(s.into_schema, r.changed || gone))
                 + coding_fdw._refresh_iteration_copies(s.source_schema, s.into_schema, source,
                                                        iterations_changed);
    END IF;
    IF tbl = 'issues' THEN
      newest := r.newest;
    END IF;
    PERFORM coding_fdw._record(srv, tbl, source, ins, upd, removed);
    IF ins + upd + removed > 0 THEN
      PERFORM pg_notify('coding_fdw_changes',
        json_build_object('server', coding_fdw._server_name(srv, s.server_name), 'table', tbl, 'source', source,
                          'inserted', ins, 'updated', upd, 'deleted', removed)::text);
    END IF;
  END LOOP;
  PERFORM coding_fdw._finish(srv, s.requested, is_full, reconcile, newest);
END $$;

-- ===================================================================
-- Webhook events: applied by the worker through the same upsert/delete
-- path as polling (interface.md §5, coding-api.md §5.4).
-- ===================================================================

-- A Coding millisecond epoch (number) as timestamptz; 0 and -28800000
-- (Coding's "not set") and anything not a number are NULL.
CREATE FUNCTION _ms(j jsonb) RETURNS timestamptz
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT CASE WHEN jsonb_typeof(j) = 'number' AND j::numeric NOT IN (0, -28800000)
              THEN to_timestamp(j::numeric / 1000) END
$$;

-- The same, NULL where timestamptz has no such moment: for the stamp that
-- orders an issue's events, computed for a whole batch before any event's
-- own error handling (one event's 1e20 failed every event of its batch).
CREATE FUNCTION _ms_stamp(j jsonb) RETURNS timestamptz
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT CASE WHEN jsonb_typeof(j) = 'number'
               AND j::numeric BETWEEN -210866803200000 AND 9224318015999999
              THEN coding_fdw._ms(j) END
$$;

-- A user reference: a user object's "id" or a plain number; 0 is NULL.
CREATE FUNCTION _uid(j jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT nullif(CASE jsonb_typeof(j) WHEN 'object' THEN (j->>'id')::bigint
                                     WHEN 'number' THEN j::numeric::bigint END, 0)
$$;

-- A positive int key (a number or a numeric string), else NULL.
CREATE FUNCTION _key(j jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT CASE WHEN jsonb_typeof(j) IN ('number', 'string') AND (j #>> '{}') ~ '^[0-9]{1,18}$'
               AND (j #>> '{}')::bigint > 0 THEN (j #>> '{}')::bigint END
$$;

-- Which table an event changes: issues, iterations, project_members, or
-- NULL for events that change none of them (GIT_*, WIKI_*, ...).
CREATE FUNCTION _event_table(event text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT CASE WHEN event LIKE 'ISSUE\_%' OR event = 'ITERATION_PLANNED' THEN 'issues'
              WHEN event LIKE 'ITERATION\_%' THEN 'iterations'
              WHEN event LIKE 'MEMBER\_%' THEN 'project_members' END
$$;

-- The issue code an issue event is about: "issue", the comment's issue, or
-- the copy under the issue's type name that real deliveries carry.
CREATE FUNCTION _issue_code(p jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT coding_fdw._key(coalesce(p->'issue', p->'issueComment'->'issue', p->'requirement',
                                  p->'defect', p->'mission', p->'epic', p->'sub_task')->'code')
$$;

-- Upsert one row from a webhook object (members: their payloads carry no
-- timestamp, so there is no newer-than check).  cols/exprs map columns to
-- expressions over $4 (the object); a column whose payload key (keys) is
-- absent keeps its value, as webhook objects carry fewer fields than the
-- API.  raw is merged.  Returns 'insert', 'update' or 'none'.
CREATE FUNCTION _upsert_object(dst name, tbl text, keycol text, team text, project text,
                               key bigint, obj jsonb, raw jsonb,
                               cols text[], keys text[], exprs text[]) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  ins boolean;
  new_vals text;
  set_vals text;
  cur_vals text;
BEGIN
  SELECT string_agg(e, ', ' ORDER BY i),
         string_agg(format('CASE WHEN $4 ? %L THEN EXCLUDED.%I ELSE d.%I END', k, c, c), ', ' ORDER BY i),
         string_agg('d.' || quote_ident(c), ', ' ORDER BY i)
    INTO new_vals, set_vals, cur_vals
    FROM unnest(cols, keys, exprs) WITH ORDINALITY u(c, k, e, i);
  EXECUTE format(
    'INSERT INTO %1$I.%2$I AS d (team, project, %3$I, %4$s, raw, synced_at, synced_by)
     VALUES ($1, $2, $3, %5$s, $5, now(), ''webhook'')
     ON CONFLICT (team, project, %3$I) DO UPDATE
       SET (%4$s, raw, synced_at, synced_by) = (%6$s, coalesce(d.raw, ''{}'') || EXCLUDED.raw, now(), ''webhook'')
       WHERE (%7$s, d.raw) IS DISTINCT FROM (%6$s, coalesce(d.raw, ''{}'') || EXCLUDED.raw)
     RETURNING xmax = 0',
    dst, tbl, keycol, (SELECT string_agg(quote_ident(c), ', ') FROM unnest(cols) c),
    new_vals, set_vals, cur_vals)
  INTO ins USING team, project, key, obj, raw;
  RETURN CASE WHEN ins IS NULL THEN 'none' WHEN ins THEN 'insert' ELSE 'update' END;
END $$;

-- ITERATION_* events of one batch in one statement (the webhook burst
-- path: no dynamic SQL or subtransaction per event), mapped as
-- coding-api.md §5.4 says, each id from its own object (assignee, creator,
-- starter, completer, deleter).  Per code the
-- decisive event is the one with the newest updated_at, a delete before
-- an update of the same age, then the latest arrival: a delete wins over
-- the updates it overtook.  Counts are of the net change per row.  Malformed
-- events are returned for the caller to keep with their error; if the
-- statement fails (a value that does not fit), the caller applies the
-- events one by one to find the culprit.  Absent payload keys keep their
-- column, an event older than the row or its tombstone is ignored,
-- deletes are buried.
CREATE FUNCTION _webhook_iterations(srv oid, dst name, team text, project text,
                                    ids bigint[], events text[], payloads jsonb[],
                                    OUT inserted bigint, OUT updated bigint, OUT deleted bigint,
                                    OUT bad_ids bigint[], OUT bad_errors text[])
LANGUAGE plpgsql SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  buried bigint;
BEGIN
  SELECT coalesce(array_agg(id), '{}'), coalesce(array_agg(err), '{}') INTO bad_ids, bad_errors
    FROM (SELECT id, CASE WHEN jsonb_typeof(p->'iteration') IS DISTINCT FROM 'object'
                          THEN 'the payload has no "iteration" object'
                          ELSE 'the payload''s iteration has no valid "code"' END AS err
            FROM unnest(ids, payloads) u(id, p)
           WHERE jsonb_typeof(p->'iteration') IS DISTINCT FROM 'object'
              OR coalesce(coding_fdw._key(p->'iteration'->'code') > 2147483647, true)) b;
  EXECUTE format('
    WITH e AS (SELECT id, ev, p->''iteration'' AS it, coding_fdw._key(p->''iteration''->''code'')::int AS code,
                      coding_fdw._ms(p->''iteration''->''updated_at'') AS stamp
                 FROM unnest($4, $5, $6) u(id, ev, p) WHERE id <> ALL ($7)),
         last AS (SELECT DISTINCT ON (code) * FROM e
                   ORDER BY code, stamp DESC NULLS LAST, ev = ''ITERATION_DELETED'' DESC, id DESC),
         del AS (DELETE FROM %1$I.iterations d USING last
                  WHERE last.ev = ''ITERATION_DELETED'' AND d.team = $1 AND d.project = $2 AND d.code = last.code
                 RETURNING d.code, d.updated_at),
         tomb AS (SELECT coding_fdw._bury($3, ''iterations'', array_agg(l.code::bigint),
                                          array_agg(greatest(l.stamp, (SELECT del.updated_at FROM del WHERE del.code = l.code)))) AS n
                    FROM last l WHERE l.ev = ''ITERATION_DELETED''),
         t AS MATERIALIZED (SELECT key, updated_at FROM coding_fdw._tombstones($3, ''iterations'')),
         src AS (SELECT l.code, l.it,
                        (SELECT jsonb_object_agg(m.api, CASE WHEN m.uid THEN to_jsonb(coding_fdw._uid(l.it->m.k)) ELSE l.it->m.k END)
                           FROM (VALUES (''title'', ''Name'', false), (''goal'', ''Goal'', false), (''status'', ''Status'', false), (''start_at'', ''StartAt'', false), (''end_at'', ''EndAt'', false), (''created_at'', ''CreatedAt'', false), (''updated_at'', ''UpdatedAt'', false), (''assignee'', ''Assignee'', true), (''creator'', ''Creator'', true), (''starter'', ''Starter'', true), (''completer'', ''Completer'', true), (''deleter'', ''Deleter'', true), (''wait_process_count'', ''WaitProcessCount'', false), (''processing_count'', ''ProcessingCount'', false), (''completed_count'', ''CompletedCount'', false), (''completed_percent'', ''CompletedPercent'', false)) m(k, api, uid) WHERE l.it ? m.k)
                        || jsonb_build_object(''Code'', l.code)
                        -- Coding leaves an unset assignee out of a whole
                        -- iteration (one with its creator): that is Assignee 0
                        || CASE WHEN l.it ? ''creator'' AND NOT l.it ? ''assignee''
                                THEN jsonb_build_object(''Assignee'', 0) ELSE ''{}'' END AS raw
                   FROM last l
                  WHERE l.ev <> ''ITERATION_DELETED''
                    AND NOT EXISTS (SELECT 1 FROM t WHERE t.key = l.code
                                       AND (t.updated_at IS NULL OR l.stamp IS NULL OR l.stamp <= t.updated_at))),
         up AS (INSERT INTO %1$I.iterations AS d (team, project, code, name, goal, status, start_at, end_at, created_at, updated_at, assignee_id, creator_id, starter_id, completer_id, deleter_id, wait_process_count, processing_count, completed_count, completed_percent, raw, synced_at, synced_by)
                SELECT $1, $2, code, it->>''title'', it->>''goal'', it->>''status'', coding_fdw._ms(it->''start_at''), coding_fdw._ms(it->''end_at''), coding_fdw._ms(it->''created_at''), coding_fdw._ms(it->''updated_at''), coding_fdw._uid(it->''assignee''), coding_fdw._uid(it->''creator''), coding_fdw._uid(it->''starter''), coding_fdw._uid(it->''completer''), coding_fdw._uid(it->''deleter''), (it->>''wait_process_count'')::int, (it->>''processing_count'')::int, (it->>''completed_count'')::int, (it->>''completed_percent'')::numeric, raw, now(), ''webhook'' FROM src
                ON CONFLICT (team, project, code) DO UPDATE
                  SET (name, goal, status, start_at, end_at, created_at, updated_at, assignee_id, creator_id, starter_id, completer_id, deleter_id, wait_process_count, processing_count, completed_count, completed_percent, raw, synced_at, synced_by) = (CASE WHEN EXCLUDED.raw ? ''Name'' THEN EXCLUDED.name ELSE d.name END, CASE WHEN EXCLUDED.raw ? ''Goal'' THEN EXCLUDED.goal ELSE d.goal END, CASE WHEN EXCLUDED.raw ? ''Status'' THEN EXCLUDED.status ELSE d.status END, CASE WHEN EXCLUDED.raw ? ''StartAt'' THEN EXCLUDED.start_at ELSE d.start_at END, CASE WHEN EXCLUDED.raw ? ''EndAt'' THEN EXCLUDED.end_at ELSE d.end_at END, CASE WHEN EXCLUDED.raw ? ''CreatedAt'' THEN EXCLUDED.created_at ELSE d.created_at END, CASE WHEN EXCLUDED.raw ? ''UpdatedAt'' THEN EXCLUDED.updated_at ELSE d.updated_at END, CASE WHEN EXCLUDED.raw ? ''Assignee'' THEN EXCLUDED.assignee_id ELSE d.assignee_id END, CASE WHEN EXCLUDED.raw ? ''Creator'' THEN EXCLUDED.creator_id ELSE d.creator_id END, CASE WHEN EXCLUDED.raw ? ''Starter'' THEN EXCLUDED.starter_id ELSE d.starter_id END, CASE WHEN EXCLUDED.raw ? ''Completer'' THEN EXCLUDED.completer_id ELSE d.completer_id END, CASE WHEN EXCLUDED.raw ? ''Deleter'' THEN EXCLUDED.deleter_id ELSE d.deleter_id END, CASE WHEN EXCLUDED.raw ? ''WaitProcessCount'' THEN EXCLUDED.wait_process_count ELSE d.wait_process_count END, CASE WHEN EXCLUDED.raw ? ''ProcessingCount'' THEN EXCLUDED.processing_count ELSE d.processing_count END, CASE WHEN EXCLUDED.raw ? ''CompletedCount'' THEN EXCLUDED.completed_count ELSE d.completed_count END, CASE WHEN EXCLUDED.raw ? ''CompletedPercent'' THEN EXCLUDED.completed_percent ELSE d.completed_percent END, coalesce(d.raw, ''{}'') || EXCLUDED.raw, now(), ''webhook'')
                  WHERE (d.name, d.goal, d.status, d.start_at, d.end_at, d.created_at, d.updated_at, d.assignee_id, d.creator_id, d.starter_id, d.completer_id, d.deleter_id, d.wait_process_count, d.processing_count, d.completed_count, d.completed_percent, d.raw) IS DISTINCT FROM (CASE WHEN EXCLUDED.raw ? ''Name'' THEN EXCLUDED.name ELSE d.name END, CASE WHEN EXCLUDED.raw ? ''Goal'' THEN EXCLUDED.goal ELSE d.goal END, CASE WHEN EXCLUDED.raw ? ''Status'' THEN EXCLUDED.status ELSE d.status END, CASE WHEN EXCLUDED.raw ? ''StartAt'' THEN EXCLUDED.start_at ELSE d.start_at END, CASE WHEN EXCLUDED.raw ? ''EndAt'' THEN EXCLUDED.end_at ELSE d.end_at END, CASE WHEN EXCLUDED.raw ? ''CreatedAt'' THEN EXCLUDED.created_at ELSE d.created_at END, CASE WHEN EXCLUDED.raw ? ''UpdatedAt'' THEN EXCLUDED.updated_at ELSE d.updated_at END, CASE WHEN EXCLUDED.raw ? ''Assignee'' THEN EXCLUDED.assignee_id ELSE d.assignee_id END, CASE WHEN EXCLUDED.raw ? ''Creator'' THEN EXCLUDED.creator_id ELSE d.creator_id END, CASE WHEN EXCLUDED.raw ? ''Starter'' THEN EXCLUDED.starter_id ELSE d.starter_id END, CASE WHEN EXCLUDED.raw ? ''Completer'' THEN EXCLUDED.completer_id ELSE d.completer_id END, CASE WHEN EXCLUDED.raw ? ''Deleter'' THEN EXCLUDED.deleter_id ELSE d.deleter_id END, CASE WHEN EXCLUDED.raw ? ''WaitProcessCount'' THEN EXCLUDED.wait_process_count ELSE d.wait_process_count END, CASE WHEN EXCLUDED.raw ? ''ProcessingCount'' THEN EXCLUDED.processing_count ELSE d.processing_count END, CASE WHEN EXCLUDED.raw ? ''CompletedCount'' THEN EXCLUDED.completed_count ELSE d.completed_count END, CASE WHEN EXCLUDED.raw ? ''CompletedPercent'' THEN EXCLUDED.completed_percent ELSE d.completed_percent END, coalesce(d.raw, ''{}'') || EXCLUDED.raw)
                    AND (d.updated_at IS NULL OR EXCLUDED.updated_at IS NULL OR EXCLUDED.updated_at >= d.updated_at)
                RETURNING xmax = 0 AS ins)
    SELECT (SELECT count(*) FROM up WHERE ins), (SELECT count(*) FROM up WHERE NOT ins),
           (SELECT count(*) FROM del), (SELECT n FROM tomb)', dst)
    INTO inserted, updated, deleted, buried
    USING team, project, srv, ids, events, payloads, bad_ids;
END $$;

-- One ITERATION_* event: the batch path with a batch of one, its
-- malformed-payload message raised as an error.  Used where events apply
-- one at a time (ITERATION_PLANNED, and finding the culprit when a batch
-- fails).  Returns 'insert', 'update', 'delete' or 'none'.
CREATE FUNCTION _webhook_iteration(srv oid, dst name, team text, project text, event text, p jsonb)
RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  r record;
BEGIN
  SELECT * INTO r FROM coding_fdw._webhook_iterations(srv, dst, team, project,
                                                      ARRAY[0::bigint], ARRAY[event], ARRAY[p]);
  IF cardinality(r.bad_errors) > 0 THEN
    RAISE EXCEPTION '%', r.bad_errors[1] USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN CASE WHEN r.inserted > 0 THEN 'insert' WHEN r.updated > 0 THEN 'update'
              WHEN r.deleted > 0 THEN 'delete' ELSE 'none' END;
END $$;

-- MEMBER_* from the payload: id, name, name_pinyin, avatar (avatar_url),
-- global_key (login); not the reference connector's Email <- html_url and
-- Phone <- name.  Members carry no timestamp: events apply in arrival
-- order, and a poll or reconciliation re-reads the whole list.
-- Whether the inbox holds a MEMBER_DELETED of this member stored before
-- event "ev_id" (pending, or applied in the last day).  SECURITY DEFINER:
-- the worker applies events as the subscription's owner, who cannot read
-- the inbox.
CREATE FUNCTION _member_removed_before(srv oid, ev_id bigint, member_id bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT coding_fdw._owns(srv) AND EXISTS (
    SELECT 1 FROM coding_fdw.webhook_event e
     WHERE e.server_oid = srv AND e.id < ev_id AND e.event = 'MEMBER_DELETED'
       AND e.state IN ('pending', 'applied') AND coding_fdw._key(e.payload->'member'->'id') = member_id)
$$;

-- Member payloads carry no time, so a reordered pair cannot be put back in
-- order from the events alone.  Where an event contradicts the table, a
-- poll (members are re-read whole) is brought forward to decide: an update
-- of a member the table does not hold inserts nothing (it may be older than
-- the MEMBER_DELETED applied before it), and a MEMBER_CREATED after a
-- MEMBER_DELETED of the same member (delivered earlier: "ev_id" is this
-- event's inbox id) is applied and checked.
CREATE FUNCTION _webhook_member(srv oid, dst name, team text, project text, event text, p jsonb,
                                ev_id bigint)
RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  m jsonb := p->'member';
  member_id bigint := coding_fdw._key(m->'id');
  n bigint;
  present boolean;
BEGIN
  IF jsonb_typeof(m) IS DISTINCT FROM 'object' THEN
    RAISE EXCEPTION 'the payload has no "member" object' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF member_id IS NULL THEN
    RAISE EXCEPTION 'the payload''s member has no valid "id"' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF event = 'MEMBER_DELETED' THEN
    EXECUTE format('DELETE FROM %I.project_members WHERE team = $1 AND project = $2 AND id = $3', dst)
      USING team, project, member_id;
    GET DIAGNOSTICS n = ROW_COUNT;      -- EXECUTE does not set FOUND
    RETURN CASE WHEN n > 0 THEN 'delete' ELSE 'none' END;
  END IF;
  IF event = 'MEMBER_CREATED' THEN
    IF coding_fdw._member_removed_before(srv, ev_id, member_id) THEN
      PERFORM coding_fdw._poll_soon(srv);
    END IF;
  ELSE
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.project_members WHERE team = $1 AND project = $2 AND id = $3)',
                   dst) INTO present USING team, project, member_id;
    IF NOT present THEN
      PERFORM coding_fdw._poll_soon(srv);
      RETURN 'none';
    END IF;
  END IF;
  RETURN coding_fdw._upsert_object(dst, 'project_members', 'id', team, project, member_id, m,
    jsonb_strip_nulls(jsonb_build_object('Id', member_id, 'Name', m->'name', 'NamePinYin', m->'name_pinyin',
                                         'Avatar', m->'avatar_url', 'GlobalKey', m->'login')),
    ARRAY['name', 'name_pinyin', 'avatar', 'global_key'],
    ARRAY['name', 'name_pinyin', 'avatar_url', 'login'],
    ARRAY['$4->>''name''', '$4->>''name_pinyin''', '$4->>''avatar_url''', '$4->>''login''']);
END $$;

-- The pending events of a subscription that are due, oldest first.
CREATE FUNCTION _events_due(srv oid, lim int)
RETURNS TABLE (id bigint, event text, payload jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM coding_fdw.subscription s WHERE s.server_oid = srv) THEN
    RETURN;                 -- stopped meanwhile (sync_stop): nothing is due
  END IF;
  IF NOT coding_fdw._owns(srv) THEN
    RAISE EXCEPTION 'permission denied for the subscription of server %', srv USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN QUERY SELECT e.id, e.event, e.payload FROM coding_fdw.webhook_event e
                WHERE e.server_oid = srv AND e.state = 'pending' AND e.next_attempt <= now()
                ORDER BY e.id LIMIT lim;
END $$;

-- What a failure to apply events makes of them (_events_done): "retry"
-- when Coding could not be reached or asked us to wait (network, HTTP 5xx,
-- rate limit after the call's own retries) or the worker waited too long
-- for a lock a user held (lock_timeout; a deadlock, a serialization
-- failure), or the subscription's set-up is wrong until its owner mends it
-- (the token rejected, a permission missing, the server naming another
-- team: _check_server), which no number of attempts should turn into a
-- dead letter; else "failed".
CREATE FUNCTION _failure_outcome(sqlstate text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  SELECT CASE WHEN sqlstate IN ('HV00N', 'HV000', '53400', '55P03', '40P01', '40001', '28000', '42501', '55000')
              THEN 'retry' ELSE 'failed' END
$$;

-- Record the outcome of events: applied or ignored, or failed with an
-- error: retried with backoff (1 s doubling, at most 5 minutes) until
-- coding_fdw.webhook_max_attempts, then a dead letter (and a poll soon, to
-- repair what the event would have changed); "retry" (Coding unreachable)
-- is retried with the same backoff without counting an attempt, for as
-- long as the outage lasts; or dead at once (an event that no retry can
-- make apply).
CREATE FUNCTION _events_done(srv oid, ids bigint[], outcomes text[], errors text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  max_attempts int := coalesce(current_setting('coding_fdw.webhook_max_attempts', true), '5')::int;
  n_applied bigint;
  n_ignored bigint;
  n_dead bigint;
  n_dead_deletes bigint;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM coding_fdw.subscription WHERE server_oid = srv) THEN
    RETURN;                 -- stopped meanwhile (sync_stop): its events are gone
  END IF;
  IF NOT coding_fdw._owns(srv) THEN
    RAISE EXCEPTION 'permission denied for the subscription of server %', srv USING ERRCODE = 'insufficient_privilege';
  END IF;
  -- a transient failure stops being free once the event is a day old: an
  -- error that only looks transient must still end as a dead letter (and
  -- a poll).  Waits run from the end of this transaction (clock_timestamp),
  -- not its start: an apply may take longer than the wait itself.
  WITH x AS (
    SELECT x.id, x.error,
           CASE WHEN x.outcome = 'retry' AND e.received_at < clock_timestamp() - interval '1 day'
                THEN 'failed' ELSE x.outcome END AS outcome,
           least(coalesce(e.retry_delay * 2, interval '1 second'), interval '5 minutes') AS delay
      FROM unnest(ids, outcomes, errors) x(id, outcome, error)
      JOIN coding_fdw.webhook_event e ON e.id = x.id AND e.server_oid = srv),
  u AS (
    UPDATE coding_fdw.webhook_event e
       SET state = CASE WHEN x.outcome = 'retry' THEN 'pending'
                        WHEN x.outcome <> 'failed' THEN x.outcome
                        WHEN e.attempts + 1 >= max_attempts THEN 'dead' ELSE 'pending' END,
           attempts = e.attempts + (x.outcome = 'failed')::int,
           last_error = x.error,
           retry_delay = CASE WHEN x.outcome = 'retry' THEN x.delay ELSE e.retry_delay END,
           next_attempt = CASE WHEN x.outcome = 'failed'
                               THEN clock_timestamp() + least(interval '1 second' * 2 ^ e.attempts, interval '5 minutes')
                               WHEN x.outcome = 'retry' THEN clock_timestamp() + x.delay
                               ELSE e.next_attempt END,
           done_at = clock_timestamp()
      FROM x
     WHERE e.id = x.id AND e.server_oid = srv AND e.state = 'pending'
    RETURNING e.state, e.event, x.outcome)
  SELECT count(*) FILTER (WHERE state = 'applied'), count(*) FILTER (WHERE state = 'ignored'),
         count(*) FILTER (WHERE state = 'dead'),
         count(*) FILTER (WHERE state = 'dead' AND outcome = 'failed' AND event = 'ISSUE_DELETED')
    INTO n_applied, n_ignored, n_dead, n_dead_deletes FROM u;
  INSERT INTO coding_fdw.webhook_counts AS c (server_oid, who, applied, ignored)
  VALUES (srv, 'worker', n_applied, n_ignored)
  ON CONFLICT (server_oid, who) DO UPDATE
    SET applied = c.applied + n_applied, ignored = c.ignored + n_ignored;
  IF n_dead > 0 THEN
    -- a poll cannot see deleted issues: for a delete that failed for
    -- good, the poll also reconciles the keys
    IF n_dead_deletes > 0 THEN
      UPDATE coding_fdw.subscription SET last_reconcile = NULL
       WHERE server_oid = srv AND coding_fdw._owns(srv);
    END IF;
    PERFORM coding_fdw._poll_soon(srv);
  END IF;
END $$;

-- The worker could not run _apply_events at all: every due event counts a
-- failed attempt with the message (or waits, when Coding was unreachable).
CREATE FUNCTION _events_failed(srv oid, message text, sqlstate text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  -- the subscription row first, as every step (_get): sync_stop takes it
  -- FOR UPDATE before it deletes the events
  SELECT coding_fdw._get(srv);
  SELECT coding_fdw._events_done(srv, array_agg(id), array_agg(coding_fdw._failure_outcome(sqlstate)),
                                 array_agg(message))
    FROM coding_fdw._events_due(srv, 1000)
$$;

-- Ask for a poll soon (an event whose change only a poll can read).
CREATE FUNCTION _poll_soon(srv oid) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
  -- not while the last sync failed: its retry waits on a back-off
  -- (_failed), which asking for polls must not undo
  UPDATE coding_fdw.subscription SET next_poll = least(next_poll, now())
   WHERE server_oid = srv AND state <> 'error' AND coding_fdw._owns(srv);
  -- the events worker asks: the sync worker may be asleep until its next poll
  SELECT coding_fdw.wake_worker();
$$;

-- Apply up to "batch" due webhook events of a subscription, run by the
-- worker as its owner in one transaction.  Issue events become one read of
-- the issues they name (the list of the issues updated since the events'
-- day, filtered by code, and DescribeIssue each, concurrently; the last
-- event per code decides between a refresh and a delete, and an issue
-- Coding no longer has is deleted), so duplicates and reordering cost nothing and
-- the row is always Coding's current one.  Iteration and member events
-- apply their payload, each in its own subtransaction.  A failure is kept
-- on its events for a retry.  Returns whether more events are due.
CREATE FUNCTION _apply_events(srv oid, batch int DEFAULT 1000) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  s coding_fdw.subscription := coding_fdw._get(srv);
  team text;
  project text;
  ev record;
  tbl text;
  n int := 0;
  err_state text;
  ids bigint[] := '{}';
  outcomes text[] := '{}';
  errors text[] := '{}';
  issue_ids bigint[] := '{}';
  issue_codes bigint[] := '{}';
  issue_deletes boolean[] := '{}';
  issue_stamps timestamptz[] := '{}';
  it_ids bigint[] := '{}';
  it_events text[] := '{}';
  it_payloads jsonb[] := '{}';
  picked bigint[];
  refresh int[];
  missing int[];
  since timestamptz;
  gone bigint[];
  related int[];
  r record;
  res text;
  msg text;
  det text;              -- an error's detail (Coding's code, RequestId)
  counts jsonb := '{}';       -- table -> [inserted, updated, deleted]
  k text;
BEGIN
  IF s IS NULL THEN
    RETURN false;
  END IF;
  -- the team and project the subscription started with, as long as the
  -- server's team and the imported tables' project still name them (or
  -- every event of the batch waits, with the error)
  PERFORM coding_fdw._check_server(s);
  team := s.team;
  project := s.project;

  FOR ev IN SELECT * FROM coding_fdw._events_due(srv, batch) LOOP
    n := n + 1;
    -- one Service URL pasted into two projects' Service Hooks: an event of
    -- the other project would change (or delete) rows of this one
    IF lower(ev.payload->'project'->>'name') IS DISTINCT FROM lower(project)
         AND jsonb_typeof(ev.payload->'project'->'name') = 'string'
       OR lower(ev.payload->'team'->>'domain') IS DISTINCT FROM lower(team)
         AND jsonb_typeof(ev.payload->'team'->'domain') = 'string' THEN
      ids := ids || ev.id;
      outcomes := outcomes || 'dead'::text;
      errors := errors || format('the event is for project "%s" of team "%s", this subscription follows '
                                 'project "%s" of team "%s": the Service URL is pasted into another '
                                 'project''s Service Hook',
                                 ev.payload->'project'->>'name', ev.payload->'team'->>'domain', project, team);
      CONTINUE;
    END IF;
    tbl := coding_fdw._event_table(ev.event);
    IF tbl = 'iterations' THEN
      it_ids := it_ids || ev.id;
      it_events := it_events || ev.event;
      it_payloads := it_payloads || ev.payload;
      CONTINUE;
    END IF;
    IF tbl = 'issues' AND (ev.event <> 'ITERATION_PLANNED' OR coding_fdw._issue_code(ev.payload) IS NOT NULL) THEN
      issue_ids := issue_ids || ev.id;
      issue_codes := issue_codes || coding_fdw._issue_code(ev.payload);
      issue_deletes := issue_deletes || (ev.event = 'ISSUE_DELETED');
      issue_stamps := issue_stamps || coding_fdw._ms_stamp(ev.payload->'issue'->'updated_at');
      CONTINUE;
    END IF;
    BEGIN
      IF tbl = 'iterations' OR ev.event = 'ITERATION_PLANNED' THEN
        -- ITERATION_PLANNED without an issue: its iteration, and a poll
        -- for the issues planned into it
        IF ev.event = 'ITERATION_PLANNED' THEN
          PERFORM coding_fdw._poll_soon(srv);
          res := CASE WHEN ev.payload ? 'iteration'
                      THEN coding_fdw._webhook_iteration(srv, s.into_schema, team, project, 'ITERATION_UPDATED', ev.payload)
                      ELSE 'none' END;
          tbl := 'iterations';
        ELSE
          res := coding_fdw._webhook_iteration(srv, s.into_schema, team, project, ev.event, ev.payload);
        END IF;
      ELSIF tbl = 'project_members' THEN
        res := coding_fdw._webhook_member(srv, s.into_schema, team, project, ev.event, ev.payload, ev.id);
      ELSE
        res := 'ignored';
      END IF;
      ids := ids || ev.id;
      outcomes := outcomes || CASE WHEN res = 'ignored' THEN 'ignored' ELSE 'applied' END;
      errors := errors || NULL::text;
      IF res IN ('insert', 'update', 'delete') THEN
        counts := jsonb_set(counts, ARRAY[tbl], to_jsonb(ARRAY[
          coalesce((counts->tbl->>0)::bigint, 0) + (res = 'insert')::int,
          coalesce((counts->tbl->>1)::bigint, 0) + (res = 'update')::int,
          coalesce((counts->tbl->>2)::bigint, 0) + (res = 'delete')::int]));
      END IF;
    EXCEPTION WHEN lock_not_available OR deadlock_detected OR serialization_failure THEN
      RAISE;   -- a lock a user holds (lock_timeout): the whole step fails once, not each event
    WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, err_state = RETURNED_SQLSTATE;
        msg := msg || coalesce(' (' || nullif(det, '') || ')', '');
      ids := ids || ev.id;
      outcomes := outcomes || coding_fdw._failure_outcome(err_state);
      errors := errors || msg;
    END;
  END LOOP;

  IF cardinality(it_ids) > 0 THEN
    -- Coding takes the issues out of a deleted iteration and sends no issue
    -- event for that: a poll reads them
    IF 'ITERATION_DELETED' = ANY (it_events) THEN
      PERFORM coding_fdw._poll_soon(srv);
    END IF;
    BEGIN
      SELECT * INTO r FROM coding_fdw._webhook_iterations(srv, s.into_schema, team, project,
                                                          it_ids, it_events, it_payloads);
      counts := jsonb_set(counts, '{iterations}', to_jsonb(ARRAY[
        coalesce((counts->'iterations'->>0)::bigint, 0) + r.inserted,
        coalesce((counts->'iterations'->>1)::bigint, 0) + r.updated,
        coalesce((counts->'iterations'->>2)::bigint, 0) + r.deleted]));
      picked := ARRAY(SELECT i FROM unnest(it_ids) i WHERE i <> ALL (r.bad_ids));
      ids := ids || picked || r.bad_ids;
      outcomes := outcomes || array_fill('applied'::text, ARRAY[cardinality(picked)])
                           || array_fill('failed'::text, ARRAY[cardinality(r.bad_ids)]);
      errors := errors || array_fill(NULL::text, ARRAY[cardinality(picked)]) || r.bad_errors;
    EXCEPTION WHEN lock_not_available OR deadlock_detected OR serialization_failure THEN
      RAISE;   -- a lock a user holds (lock_timeout): the whole step fails once, not each event
    WHEN OTHERS THEN
      -- one event does not fit: apply them one by one to find it
      FOR i IN 1 .. cardinality(it_ids) LOOP
        BEGIN
          res := coding_fdw._webhook_iteration(srv, s.into_schema, team, project, it_events[i], it_payloads[i]);
          ids := ids || it_ids[i];
          outcomes := outcomes || 'applied'::text;
          errors := errors || NULL::text;
          IF res IN ('insert', 'update', 'delete') THEN
            counts := jsonb_set(counts, '{iterations}', to_jsonb(ARRAY[
              coalesce((counts->'iterations'->>0)::bigint, 0) + (res = 'insert')::int,
              coalesce((counts->'iterations'->>1)::bigint, 0) + (res = 'update')::int,
              coalesce((counts->'iterations'->>2)::bigint, 0) + (res = 'delete')::int]));
          END IF;
        EXCEPTION WHEN lock_not_available OR deadlock_detected OR serialization_failure THEN
          RAISE;   -- a lock a user holds (lock_timeout): the whole step fails once, not each event
        WHEN OTHERS THEN
          GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, err_state = RETURNED_SQLSTATE;
        msg := msg || coalesce(' (' || nullif(det, '') || ')', '');
          ids := ids || it_ids[i];
          outcomes := outcomes || coding_fdw._failure_outcome(err_state);
          errors := errors || msg;
        END;
      END LOOP;
    END;
  END IF;

  IF cardinality(issue_ids) > 0 THEN
    -- per code, the last event decides: refresh from Coding, or delete
    SELECT array_agg(code::int) FILTER (WHERE NOT del), array_agg(code) FILTER (WHERE del)
      INTO refresh, gone
      FROM (SELECT DISTINCT ON (code) code, del FROM unnest(issue_codes, issue_deletes, issue_ids) u(code, del, id)
             WHERE code IS NOT NULL AND code <= 2147483647 ORDER BY code, id DESC) x;
    -- events naming no issue: malformed, kept with the error
    picked := ARRAY(SELECT i FROM unnest(issue_ids, issue_codes) u(i, c) WHERE c IS NULL OR c > 2147483647);
    ids := ids || picked;
    outcomes := outcomes || array_fill('failed'::text, ARRAY[cardinality(picked)]);
    errors := errors || array_fill('the payload names no issue code'::text, ARRAY[cardinality(picked)]);
    IF refresh IS NOT NULL THEN
      BEGIN
        -- Coding's UpdatedAt only grows, so each issue is in the list of
        -- issues updated since its newest event's day (Coding filters whole
        -- days: a day of margin, and never after now): a list of today's
        -- changes, not of the project, then DescribeIssue for the codes
        -- asked.  What it misses (deleted since, or events without a
        -- stamp) is looked for in the whole list, which also deletes it.
        since := (SELECT least(min(st), now()) - interval '1 day' FROM (
                    SELECT max(u.st) AS st FROM unnest(issue_codes, issue_stamps) u(c, st)
                     WHERE u.c = ANY(refresh) GROUP BY u.c) x
                  HAVING bool_and(st IS NOT NULL));
        SELECT * INTO r FROM coding_fdw._apply(srv, s.source_schema, s.into_schema, 'issues', 'webhook',
                                               since, since IS NULL, refresh);
        counts := jsonb_set(counts, '{issues}', to_jsonb(ARRAY[r.inserted, r.updated, r.deleted]));
        missing := ARRAY(SELECT c FROM unnest(refresh) c WHERE c <> ALL (r.seen));
        IF since IS NOT NULL AND cardinality(missing) > 0 THEN
          SELECT * INTO r FROM coding_fdw._apply(srv, s.source_schema, s.into_schema, 'issues', 'webhook',
                                                 NULL, true, missing);
          counts := jsonb_set(counts, '{issues}', to_jsonb(ARRAY[
            (counts->'issues'->>0)::bigint + r.inserted, (counts->'issues'->>1)::bigint + r.updated,
            (counts->'issues'->>2)::bigint + r.deleted]));
        END IF;
        msg := NULL;
      EXCEPTION WHEN lock_not_available OR deadlock_detected OR serialization_failure THEN
        RAISE;   -- a lock a user holds (lock_timeout): the whole step fails once, not each event
      WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, err_state = RETURNED_SQLSTATE;
        msg := msg || coalesce(' (' || nullif(det, '') || ')', '');
      END;
      picked := ARRAY(SELECT i FROM unnest(issue_ids, issue_codes) u(i, c) WHERE c = ANY(refresh));
      ids := ids || picked;
      outcomes := outcomes || array_fill(CASE WHEN msg IS NULL THEN 'applied' ELSE coding_fdw._failure_outcome(err_state) END,
                                         ARRAY[cardinality(picked)]);
      errors := errors || array_fill(msg, ARRAY[cardinality(picked)]);
    END IF;
    IF gone IS NOT NULL THEN
      EXECUTE format('WITH d AS (DELETE FROM %I.issues WHERE team = $1 AND project = $2 AND code = ANY($3)
                                 RETURNING code::bigint, updated_at)
                      SELECT count(*), coding_fdw._bury($4, ''issues'', array_agg(d.code),
                             array_agg(greatest(d.updated_at, (SELECT max(st) FROM unnest($5, $6) u(c, st)
                                                               WHERE u.c = d.code)))) FROM d', s.into_schema)
        INTO r USING team, project, gone, srv, issue_codes, issue_stamps;
      -- tombstones also for deletes of rows we never had: a reordered
      -- older event must not create them
      PERFORM coding_fdw._bury(srv, 'issues', array_agg(c), array_agg(st))
         FROM unnest(issue_codes, issue_stamps, issue_deletes) u(c, st, del) WHERE del AND c = ANY(gone);
      counts := jsonb_set(counts, '{issues}', to_jsonb(ARRAY[
        coalesce((counts->'issues'->>0)::bigint, 0), coalesce((counts->'issues'->>1)::bigint, 0),
        coalesce((counts->'issues'->>2)::bigint, 0) + r.count]));
      picked := ARRAY(SELECT i FROM unnest(issue_ids, issue_codes) u(i, c) WHERE c = ANY(gone));
      ids := ids || picked;
      outcomes := outcomes || array_fill('applied'::text, ARRAY[cardinality(picked)]);
      errors := errors || array_fill(NULL::text, ARRAY[cardinality(picked)]);
    END IF;
    -- the copies other issues hold of these (parents' sub_tasks, sub-tasks'
    -- parent, an epic's issues): if they cannot be read, the events count
    -- as failed and come again, as their own refresh would have
    related := coding_fdw._related(s.into_schema, coalesce(refresh::bigint[], '{}') || coalesce(gone, '{}'));
    IF cardinality(related) > 0 THEN
      BEGIN
        counts := jsonb_set(counts, '{issues}', to_jsonb(ARRAY[
          coalesce((counts->'issues'->>0)::bigint, 0),
          coalesce((counts->'issues'->>1)::bigint, 0)
            + coding_fdw._refresh_details(s.source_schema, s.into_schema, 'webhook', related),
          coalesce((counts->'issues'->>2)::bigint, 0)]));
      EXCEPTION WHEN lock_not_available OR deadlock_detected OR serialization_failure THEN
        RAISE;   -- a lock a user holds (lock_timeout): the whole step fails once, not each event
      WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, err_state = RETURNED_SQLSTATE;
        msg := msg || coalesce(' (' || nullif(det, '') || ')', '');
        FOR i IN 1 .. cardinality(ids) LOOP
          IF ids[i] = ANY(issue_ids) AND outcomes[i] = 'applied' THEN
            outcomes[i] := coding_fdw._failure_outcome(err_state);
            errors[i] := msg;
          END IF;
        END LOOP;
      END;
    END IF;
  END IF;

  -- the issues' copies of the iterations these events changed (in raw);
  -- if they cannot be read, the iteration events come again
  picked := ARRAY(SELECT DISTINCT coding_fdw._key(u.p->'iteration'->'code')
                    FROM unnest(it_events, it_payloads) u(e, p)
                   WHERE u.e = 'ITERATION_UPDATED'
                     AND coding_fdw._key(u.p->'iteration'->'code') BETWEEN 1 AND 2147483647);
  IF cardinality(picked) > 0 THEN
    BEGIN
      counts := jsonb_set(counts, '{issues}', to_jsonb(ARRAY[
        coalesce((counts->'issues'->>0)::bigint, 0),
        coalesce((counts->'issues'->>1)::bigint, 0)
          + coding_fdw._refresh_iteration_copies(s.source_schema, s.into_schema, 'webhook', picked::int[]),
        coalesce((counts->'issues'->>2)::bigint, 0)]));
    EXCEPTION WHEN lock_not_available OR deadlock_detected OR serialization_failure THEN
      RAISE;   -- a lock a user holds (lock_timeout): the whole step fails once, not each event
    WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, err_state = RETURNED_SQLSTATE;
      msg := msg || coalesce(' (' || nullif(det, '') || ')', '');
      FOR i IN 1 .. cardinality(ids) LOOP
        IF ids[i] = ANY(it_ids) AND outcomes[i] = 'applied' THEN
          outcomes[i] := coding_fdw._failure_outcome(err_state);
          errors[i] := msg;
        END IF;
      END LOOP;
    END;
  END IF;

  IF n = 0 THEN
    RETURN false;
  END IF;
  PERFORM coding_fdw._events_done(srv, ids, outcomes, errors);
  FOR k IN SELECT jsonb_object_keys(counts) LOOP
    PERFORM coding_fdw._record(srv, k, 'webhook', (counts->k->>0)::bigint, (counts->k->>1)::bigint,
                               (counts->k->>2)::bigint);
    IF (counts->k->>0)::bigint + (counts->k->>1)::bigint + (counts->k->>2)::bigint > 0 THEN
      PERFORM pg_notify('coding_fdw_changes',
        json_build_object('server', coding_fdw._server_name(srv, s.server_name), 'table', k, 'source', 'webhook',
                          'inserted', (counts->k->>0)::bigint, 'updated', (counts->k->>1)::bigint,
                          'deleted', (counts->k->>2)::bigint)::text);
    END IF;
  END LOOP;
  RETURN n >= batch;
END $$;

-- Rows in one local table (NULL if it was dropped).
CREATE FUNCTION _rows(schema name, tbl text) RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
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
-- subscription's owner (or members of its role) see its rows.  Webhook
-- counters are per subscription (an event may be rejected before anyone
-- knows its table), so they repeat on the server's three rows.
CREATE VIEW sync_status WITH (security_barrier) AS
SELECT coding_fdw._server_name(s.server_oid, s.server_name) AS server, t.table_name, s.into_schema, s.mode, s.state,
       -- a poll or full sync under way (its writes show when it commits)
       coding_fdw._syncing(s.server_oid) AS syncing,
       coding_fdw._rows(s.into_schema, t.table_name) AS rows,
       s.last_full_sync, s.last_poll, s.next_poll, s.issues_cursor AS cursor,
       coalesce(f.inserted, 0) AS full_inserted, coalesce(f.updated, 0) AS full_updated,
       coalesce(f.deleted, 0) AS full_deleted,
       coalesce(p.inserted, 0) AS poll_inserted, coalesce(p.updated, 0) AS poll_updated,
       coalesce(p.deleted, 0) AS poll_deleted,
       coalesce(w.inserted, 0) AS webhook_inserted, coalesce(w.updated, 0) AS webhook_updated,
       coalesce(w.deleted, 0) AS webhook_deleted,
       coalesce(wl.received, 0) AS webhook_received,
       coalesce(ww.applied, 0) AS webhook_applied,
       coalesce(wl.rejected, 0) AS webhook_rejected,
       -- the newest error: the sync's, or a webhook event's still in the
       -- inbox (waiting for its retry) or in the dead letters
       CASE WHEN ev.done_at > s.last_error_at OR s.last_error IS NULL THEN ev.last_error
            ELSE s.last_error END AS last_error,
       CASE WHEN ev.done_at > s.last_error_at OR s.last_error IS NULL THEN ev.done_at
            ELSE s.last_error_at END AS last_error_at
  FROM coding_fdw.subscription s
  LEFT JOIN LATERAL (SELECT e.last_error, e.done_at FROM coding_fdw.webhook_event e
                      WHERE e.server_oid = s.server_oid AND e.state IN ('pending', 'dead')
                        AND e.last_error IS NOT NULL
                      ORDER BY e.done_at DESC LIMIT 1) ev ON true
 CROSS JOIN (VALUES ('issues'), ('iterations'), ('project_members')) t(table_name)
  LEFT JOIN coding_fdw.sync_counts f ON f.server_oid = s.server_oid AND f.table_name = t.table_name AND f.source = 'full'
  LEFT JOIN coding_fdw.sync_counts p ON p.server_oid = s.server_oid AND p.table_name = t.table_name AND p.source = 'poll'
  LEFT JOIN coding_fdw.sync_counts w ON w.server_oid = s.server_oid AND w.table_name = t.table_name AND w.source = 'webhook'
  LEFT JOIN coding_fdw.webhook_counts wl ON wl.server_oid = s.server_oid AND wl.who = 'listener'
  LEFT JOIN coding_fdw.webhook_counts ww ON ww.server_oid = s.server_oid AND ww.who = 'worker'
 WHERE pg_has_role(coding_fdw._acting_role(), s.owner_oid, 'USAGE');
GRANT SELECT ON sync_status TO PUBLIC;

-- Events received and not yet applied (with their last error, if any);
-- the owner's subscriptions only.  No key, no secret.
CREATE VIEW webhook_inbox WITH (security_barrier) AS
SELECT coding_fdw._server_name(s.server_oid, s.server_name) AS server, e.delivery, e.event, e.received_at, e.attempts,
       e.next_attempt, e.last_error, e.payload
  FROM coding_fdw.webhook_event e
  JOIN coding_fdw.subscription s ON s.server_oid = e.server_oid
 WHERE e.state = 'pending' AND pg_has_role(coding_fdw._acting_role(), s.owner_oid, 'USAGE');
GRANT SELECT ON webhook_inbox TO PUBLIC;

-- Events that failed coding_fdw.webhook_max_attempts times, with the error.
CREATE VIEW webhook_dead_letter WITH (security_barrier) AS
SELECT coding_fdw._server_name(s.server_oid, s.server_name) AS server, e.delivery, e.event, e.received_at, e.attempts,
       e.done_at AS failed_at, e.last_error AS error, e.payload
  FROM coding_fdw.webhook_event e
  JOIN coding_fdw.subscription s ON s.server_oid = e.server_oid
 WHERE e.state = 'dead' AND pg_has_role(coding_fdw._acting_role(), s.owner_oid, 'USAGE');
GRANT SELECT ON webhook_dead_letter TO PUBLIC;

-- The caller's dead letters with this delivery id (of the named server's
-- subscription, if one is named), for replay and discard.  A delivery id is
-- Coding's, so two subscriptions may each hold one with the same id: then
-- the server must be named.
CREATE FUNCTION _dead_letters(delivery text, server name, verb text) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  mine bigint[];
BEGIN
  PERFORM coding_fdw._relink();         -- after pg_upgrade: the oids right first
  IF server IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_foreign_server WHERE srvname = server) THEN
    RAISE EXCEPTION 'server "%" does not exist', server USING ERRCODE = 'undefined_object';
  END IF;
  mine := ARRAY(SELECT e.id FROM coding_fdw.webhook_event e
                 WHERE e.delivery = _dead_letters.delivery AND e.state = 'dead'
                   AND (_dead_letters.server IS NULL OR e.server_oid =
                        (SELECT oid FROM pg_foreign_server WHERE srvname = _dead_letters.server))
                   AND e.server_oid IN (SELECT server_oid FROM coding_fdw.subscription
                                         WHERE pg_has_role(coding_fdw._acting_role(), owner_oid, 'USAGE')));
  IF cardinality(mine) > 1 THEN
    RAISE EXCEPTION 'delivery "%" is a dead letter of more than one subscription', delivery
      USING ERRCODE = 'ambiguous_parameter',
            HINT = format('Name the server: coding_fdw.%s(delivery, server).', verb);
  END IF;
  IF cardinality(mine) = 0 THEN
    RAISE EXCEPTION 'no dead letter with delivery "%"', delivery
      USING ERRCODE = 'undefined_object',
            HINT = 'SELECT delivery FROM coding_fdw.webhook_dead_letter lists them.';
  END IF;
  RETURN mine;
END $$;

-- Put a dead letter back in the inbox (attempts start again).
CREATE FUNCTION replay(delivery text, server name DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  mine bigint[] := coding_fdw._dead_letters(delivery, server, 'replay');
BEGIN
  UPDATE coding_fdw.webhook_event e
     SET state = 'pending', attempts = 0, next_attempt = '-infinity', retry_delay = NULL, done_at = NULL
   WHERE e.id = ANY (mine) AND e.state = 'dead';
  PERFORM coding_fdw.wake_worker();
END $$;

-- Forget a dead letter the owner has dealt with: it leaves the dead
-- letters, and sync_status.last_error, for good (a later delivery with
-- the same id is a new event).
CREATE FUNCTION discard(delivery text, server name DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  mine bigint[] := coding_fdw._dead_letters(delivery, server, 'discard');
BEGIN
  DELETE FROM coding_fdw.webhook_event e WHERE e.id = ANY (mine) AND e.state = 'dead';
END $$;

-- The Service URL to paste into Coding (Project settings -> Developer
-- options -> Service Hook -> HTTP webhook): the subscription owner only.
CREATE FUNCTION webhook_url(server name) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, coding_fdw, pg_temp AS $$
DECLARE
  s coding_fdw.subscription := coding_fdw._subscription(server);
  base text := coalesce(current_setting('coding_fdw.webhook_public_url', true), '');
  addr text := coalesce(current_setting('coding_fdw.webhook_listen_address', true), '');
BEGIN
  IF addr = '' THEN
    RAISE WARNING 'the webhook listener is disabled'
      USING HINT = 'Set coding_fdw.webhook_listen_address in postgresql.conf and reload.';
  END IF;
  IF base = '' THEN
    IF addr IN ('*', '0.0.0.0', '::') THEN
      RAISE NOTICE 'the Service URL names localhost, which Coding cannot reach'
        USING HINT = 'Set coding_fdw.webhook_public_url to the address Coding reaches the listener by.';
    END IF;
    base := format('http://%s:%s', CASE WHEN addr IN ('', '*', '0.0.0.0', '::') THEN 'localhost'
                                        WHEN addr LIKE '%:%' THEN '[' || addr || ']'   -- IPv6
                                        ELSE addr END,
                   current_setting('coding_fdw.webhook_port', true));
  END IF;
  RETURN rtrim(base, '/') || '/coding_fdw/webhook/' || s.webhook_key;
END $$;
