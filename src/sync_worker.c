/*-------------------------------------------------------------------------
 * sync_worker.c
 *		The two sync background workers: the sync worker keeps each
 *		subscription's local tables current by running coding_fdw._sync()
 *		for it, as its owner, when a poll or full sync is due or asked for;
 *		the events worker applies the webhook events the listener stored
 *		(coding_fdw._apply_events()).
 *
 * Started from shared_preload_libraries for the database coding_fdw.database.
 * Two workers, so that a full sync of one subscription (minutes, with
 * details) does not hold up the webhook events of the others; they never
 * serve the same subscription at once (claim_server), so its events and its
 * syncs stay one after the other.  Each waits only on its latch (with a
 * timeout until the next poll or retry is due); sync_start/sync_now/
 * sync_stop set both latches when their transaction commits, the listener
 * the events worker's.  Every step runs in its own transaction under
 * PG_TRY: a failure (Coding down, a bad row) is rolled back, recorded as
 * last_error and retried later; the loop itself never stops for it.
 * SIGTERM ends a worker at the next interrupt check (also in the middle of
 * an HTTP transfer); the postmaster restarts it after a crash.
 *
 * Shared memory holds the workers' latch pointers (PGPROC latches, themselves
 * in shared memory), pids and the server oid each is serving: nothing
 * process-local.
 *-------------------------------------------------------------------------
 */
#include "coding_fdw.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(coding_worker_available);
PG_FUNCTION_INFO_V1(coding_acting_role);
PG_FUNCTION_INFO_V1(coding_wake_worker);
PG_FUNCTION_INFO_V1(coding_before_drop);
PG_FUNCTION_INFO_V1(coding_worker_syncing);

/* GUC: the database whose subscriptions the worker serves. */
char	   *coding_sync_database = NULL;

/*
 * The two workers: polls and full syncs, and webhook events.  Apart, so
 * that a full sync of one subscription (minutes, with details) does not
 * hold up the webhook events of the others.
 */
typedef enum WorkerRole
{
	ROLE_SYNC = 0,				/* polls and full syncs: _sync */
	ROLE_EVENTS = 1				/* webhook events: _apply_events */
} WorkerRole;

#define N_ROLES 2

/*
 * What backends need to wake the workers, and which subscription each is
 * serving: the two never serve the same one at once (claim_server), so a
 * subscription's events and its syncs stay one after the other, as with
 * one worker.
 */
typedef struct SyncShared
{
	slock_t		mutex;			/* protects serving[], wanted[], reserved*[] */
	Latch	   *latch[N_ROLES]; /* each worker's process latch, or NULL */
	pid_t		pid[N_ROLES];
	Oid			database;		/* the database the workers serve */
	Oid			serving[N_ROLES];	/* the server each serves now, or 0 */
	Oid			wanted[N_ROLES];	/* one each passed over this pass, or 0 */
	Oid			reserved[N_ROLES];	/* one released for each, or 0 */
	TimestampTz reserved_until[N_ROLES];	/* until when */
	int			connect_failures[N_CONNECTING];	/* coding_worker_connect */
} SyncShared;

/*
 * How long a released subscription is kept for the worker that passed it
 * over, so that the releasing worker (under a flood of events, say) does
 * not take it straight back and starve the other's polls.
 */
#define RESERVE_MS	2000

static SyncShared *sync_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_at_commit = false;
static bool xact_callback_registered = false;

/*
 * The role the worker acts for while it runs a subscription's SQL, or
 * InvalidOid.  The worker's session user is the bootstrap superuser, so
 * session_user cannot tell the extension's functions whose subscription a
 * call is for: user code (a trigger on the owner's tables) runs inside the
 * worker too.  coding_fdw._acting_role() reads this; no SQL can set it.
 */
static Oid	acting_role = InvalidOid;

/*
 * The gap between two attempts of a worker to connect to a database that
 * is not there (dropped WITH (FORCE), or coding_fdw.database set before it
 * was created): the postmaster's restart interval, doubled after each
 * failure up to a minute, so that three workers do not write two lines
 * each every 5 s for as long as it lasts.
 */
#define RESTART_MS			5000
#define MAX_CONNECT_GAP_MS	60000

/* Longest sleep between checks of the subscriptions, in ms. */
#define MAX_SLEEP_MS	60000

PGDLLEXPORT void coding_sync_worker_main(Datum arg);
PGDLLEXPORT void coding_events_worker_main(Datum arg);

/* sync_shmem_request: room for SyncShared (preload only). */
static void
sync_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(SyncShared)));
}

/* sync_shmem_startup: attach to (or create) SyncShared. */
static void
sync_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	sync_shared = ShmemInitStruct("coding_fdw sync worker", sizeof(SyncShared), &found);
	if (!found)
	{
		memset(sync_shared, 0, sizeof(SyncShared));
		SpinLockInit(&sync_shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * coding_sync_init
 *		From _PG_init: the coding_fdw.database GUC, and when preloaded the
 *		shared memory and the worker itself.
 */
void
coding_sync_init(void)
{
	/*
	 * Postmaster-level only when preloaded: defining such a variable later
	 * is FATAL, and without preloading there is no worker to configure.
	 */
	DefineCustomStringVariable("coding_fdw.database",
							   "Database whose subscriptions the sync worker serves.",
							   NULL,
							   &coding_sync_database,
							   "postgres",
							   process_shared_preload_libraries_in_progress ?
							   PGC_POSTMASTER : PGC_SUSET, 0,
							   NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = sync_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = sync_shmem_startup;

	coding_register_worker("coding_sync_worker_main", "coding_fdw sync worker");
	coding_register_worker("coding_events_worker_main", "coding_fdw events worker");
}

/*
 * coding_register_worker
 *		Register one of coding_fdw's background workers (from _PG_init,
 *		preload only): connected to coding_fdw.database, started after
 *		recovery, restarted 5 s after it exits.  The name is also its
 *		backend_type in pg_stat_activity.
 */
void
coding_register_worker(const char *function, const char *name)
{
	BackgroundWorker worker;

	/*
	 * Not under pg_upgrade (postmaster -b, old and new cluster): connected
	 * to coding_fdw.database, the workers would make its restore (DROP
	 * DATABASE, CREATE DATABASE) fail, and would sync or apply events
	 * while the cluster is being copied.
	 */
	if (IsBinaryUpgrade)
		return;
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "coding_fdw");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", name);
	RegisterBackgroundWorker(&worker);
}

/*
 * coding_worker_connect
 *		Connect a worker (slot: CONNECTING_SYNC, _EVENTS or _LISTENER) to
 *		coding_fdw.database, first waiting out the rest of its back-off when
 *		its previous attempts failed.  A failed connection is FATAL, so the
 *		count of failures is kept in shared memory, raised before the
 *		attempt and cleared after it succeeds; a crash restart clears it
 *		with the rest of shared memory.
 */
void
coding_worker_connect(int slot, const char *name)
{
	int			failures;
	long		gap_ms = RESTART_MS;

	SpinLockAcquire(&sync_shared->mutex);
	failures = sync_shared->connect_failures[slot]++;
	SpinLockRelease(&sync_shared->mutex);

	for (int i = 1; i < failures && gap_ms < MAX_CONNECT_GAP_MS; i++)
		gap_ms *= 2;
	gap_ms = Min(gap_ms, MAX_CONNECT_GAP_MS);
	if (failures > 0 && gap_ms > RESTART_MS)
	{
		TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														gap_ms - RESTART_MS);

		ereport(LOG,
				(errmsg("%s could not connect to database \"%s\" (%d attempts in a row)",
						name, coding_sync_database, failures),
				 errdetail("The next attempt is in %ld s.", (gap_ms - RESTART_MS) / 1000),
				 errhint("Create the database, or set coding_fdw.database to an existing one and restart the server.")));
		for (;;)
		{
			long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);

			CHECK_FOR_INTERRUPTS();
			if (left <= 0)
				break;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 left, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}

	BackgroundWorkerInitializeConnection(coding_sync_database, NULL, 0);

	SpinLockAcquire(&sync_shared->mutex);
	sync_shared->connect_failures[slot] = 0;
	SpinLockRelease(&sync_shared->mutex);
}

/*
 * coding_acting_role
 *		The role a call acts for, for the extension's ownership checks: in
 *		the sync worker, the owner of the subscription being served; in any
 *		other session, the role SET ROLE chose (the session user without
 *		one), as everywhere in PostgreSQL.  That is the outer user: the
 *		extension's SECURITY DEFINER functions, which make the checks, do
 *		not change it.  The session user was wrong both ways: a NOINHERIT
 *		authenticator that SET ROLE to the owner was refused, and a member
 *		of the owner who SET ROLE to another role still acted as owner.
 */
Datum
coding_acting_role(PG_FUNCTION_ARGS)
{
	PG_RETURN_OID(OidIsValid(acting_role) ? acting_role : GetOuterUserId());
}

/* coding_oid_array: an oid[] Datum (the listener's and the DROP trigger's arguments). */
Datum
coding_oid_array(const Oid *items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = ObjectIdGetDatum(items[i]);
	return PointerGetDatum(construct_array(d, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
}

/*
 * coding_before_drop
 *		Event trigger at ddl_command_start of DROP SERVER, DROP FOREIGN DATA
 *		WRAPPER and DROP OWNED.  A cascaded drop locks a subscription's
 *		source tables in its own order, and a worker step under way holds
 *		some of them and waits for the next: a deadlock.  So, before any
 *		table, coding_fdw._before_drop locks the rows of the subscriptions
 *		the command may end, as sync_stop does.  Only the parse tree says
 *		which servers (or wrappers, or roles) a DROP names, hence C.
 */
Datum
coding_before_drop(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	Oid		   *servers = NULL;
	Oid		   *fdws = NULL;
	Oid		   *roles = NULL;
	int			nservers = 0;
	int			nfdws = 0;
	int			nroles = 0;
	ListCell   *lc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("coding_fdw: _before_drop_trigger() must be called by an event trigger")));
	trigdata = (EventTriggerData *) fcinfo->context;
	if (IsA(trigdata->parsetree, DropStmt))
	{
		DropStmt   *stmt = (DropStmt *) trigdata->parsetree;

		servers = palloc(sizeof(Oid) * list_length(stmt->objects));
		fdws = palloc(sizeof(Oid) * list_length(stmt->objects));
		foreach(lc, stmt->objects)
		{
			Node	   *name = lfirst(lc);
			Oid			oid = InvalidOid;

			if (!IsA(name, String))
				continue;
			if (stmt->removeType == OBJECT_FOREIGN_SERVER)
			{
				oid = get_foreign_server_oid(strVal(name), true);
				if (OidIsValid(oid))
					servers[nservers++] = oid;
			}
			else if (stmt->removeType == OBJECT_FDW)
			{
				oid = get_foreign_data_wrapper_oid(strVal(name), true);
				if (OidIsValid(oid))
					fdws[nfdws++] = oid;
			}
		}
	}
	else if (IsA(trigdata->parsetree, DropOwnedStmt))
	{
		List	   *specs = ((DropOwnedStmt *) trigdata->parsetree)->roles;

		roles = palloc(sizeof(Oid) * list_length(specs));
		foreach(lc, specs)
		{
			Oid			role = get_rolespec_oid(lfirst(lc), true);

			if (OidIsValid(role))
				roles[nroles++] = role;
		}
	}
	if (nservers + nfdws + nroles > 0)
	{
		Oid			types[3] = {OIDARRAYOID, OIDARRAYOID, OIDARRAYOID};
		Datum		values[3];
		bool		isnull;

		values[0] = coding_oid_array(servers, nservers);
		values[1] = coding_oid_array(fdws, nfdws);
		values[2] = coding_oid_array(roles, nroles);
		SPI_connect();
		/*
		 * Skipped where EXECUTE was revoked from the caller: the DROP (of
		 * any server, maybe not ours) must not fail for it.
		 */
		if (SPI_execute("SELECT has_function_privilege("
						"'coding_fdw._before_drop(oid[], oid[], oid[])', 'EXECUTE')",
						true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "coding_fdw: SPI failed for _before_drop");
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) &&
			SPI_execute_with_args("SELECT coding_fdw._before_drop($1, $2, $3)",
								  3, types, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "coding_fdw: SPI failed for _before_drop");
		SPI_finish();
	}
	PG_RETURN_VOID();
}

/*
 * coding_worker_available
 *		Whether subscriptions in this database will be served: the library
 *		is preloaded and coding_fdw.database names this database.
 */
Datum
coding_worker_available(PG_FUNCTION_ARGS)
{
	char	   *db = get_database_name(MyDatabaseId);

	PG_RETURN_BOOL(sync_shared != NULL && db != NULL &&
				   strcmp(db, coding_sync_database) == 0);
}

/*
 * coding_worker_syncing
 *		The server whose poll or full sync the worker is running now (0 if
 *		none, or in another database): sync_status shows it as "syncing",
 *		since the sync's own writes stay invisible until it commits.
 */
Datum
coding_worker_syncing(PG_FUNCTION_ARGS)
{
	Oid			server;

	if (sync_shared == NULL || sync_shared->database != MyDatabaseId)
		PG_RETURN_OID(InvalidOid);
	SpinLockAcquire(&sync_shared->mutex);
	server = sync_shared->serving[ROLE_SYNC];
	SpinLockRelease(&sync_shared->mutex);
	PG_RETURN_OID(server);
}

/* wake_role: set one worker's latch, if it runs. */
static void
wake_role(WorkerRole role)
{
	Latch	   *latch = sync_shared ? sync_shared->latch[role] : NULL;

	if (latch)
		SetLatch(latch);
}

/*
 * claim_server
 *		Whether this worker may serve "server" now: not while the other
 *		worker serves it (then it is marked as wanted by this one), nor
 *		just after the other asked for it in vain (reserved for the other
 *		for RESERVE_MS after its release).  Marks it as served by this one.
 */
static bool
claim_server(WorkerRole role, Oid server)
{
	WorkerRole	other = 1 - role;
	TimestampTz now = GetCurrentTimestamp();
	bool		ok;

	SpinLockAcquire(&sync_shared->mutex);
	if (sync_shared->serving[other] == server)
	{
		sync_shared->wanted[role] = server;
		ok = false;
	}
	else if (sync_shared->reserved[other] == server && now < sync_shared->reserved_until[other])
		ok = false;
	else
	{
		sync_shared->serving[role] = server;
		if (sync_shared->wanted[role] == server)
			sync_shared->wanted[role] = InvalidOid;
		if (sync_shared->reserved[role] == server)
			sync_shared->reserved[role] = InvalidOid;
		ok = true;
	}
	SpinLockRelease(&sync_shared->mutex);
	return ok;
}

/*
 * forget_wanted
 *		At the start of a pass over the due subscriptions: what this worker
 *		passed over before is asked for again only if still due.
 */
static void
forget_wanted(WorkerRole role)
{
	SpinLockAcquire(&sync_shared->mutex);
	sync_shared->wanted[role] = InvalidOid;
	SpinLockRelease(&sync_shared->mutex);
}

/*
 * release_server
 *		Done with the server claimed.  If the other worker passed it over
 *		meanwhile, it is reserved for that one for a moment, and that one
 *		is woken to look again (only then: a burst of events must not wake
 *		the sync worker after every batch).
 */
static void
release_server(WorkerRole role)
{
	WorkerRole	other = 1 - role;
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), RESERVE_MS);
	bool		passed_over;

	SpinLockAcquire(&sync_shared->mutex);
	/* not for one busy elsewhere (a long full sync): it could not take it */
	passed_over = sync_shared->wanted[other] == sync_shared->serving[role] &&
		sync_shared->serving[other] == InvalidOid;
	if (passed_over)
	{
		sync_shared->reserved[other] = sync_shared->serving[role];
		sync_shared->reserved_until[other] = until;
	}
	sync_shared->serving[role] = InvalidOid;
	SpinLockRelease(&sync_shared->mutex);
	if (passed_over)
		wake_role(other);
}

/* release_at_exit: a worker that exits serves nothing any more. */
static void
release_at_exit(int code, Datum arg)
{
	WorkerRole	role = (WorkerRole) DatumGetInt32(arg);

	/* its step's locks go first, so the other cannot meet them */
	AbortOutOfAnyTransaction();
	SpinLockAcquire(&sync_shared->mutex);
	sync_shared->serving[role] = InvalidOid;
	sync_shared->wanted[role] = InvalidOid;
	sync_shared->reserved[role] = InvalidOid;
	if (sync_shared->pid[role] == MyProcPid)
	{
		sync_shared->latch[role] = NULL;
		sync_shared->pid[role] = 0;
	}
	SpinLockRelease(&sync_shared->mutex);
}

/* wake_xact_callback: set both workers' latches once the wake is committed. */
static void
wake_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && wake_at_commit)
	{
		wake_role(ROLE_SYNC);
		wake_role(ROLE_EVENTS);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT)
		wake_at_commit = false;
}

/*
 * coding_sync_wake
 *		Wake the events worker now (the webhook listener, after its commit).
 */
void
coding_sync_wake(void)
{
	wake_role(ROLE_EVENTS);
}

/*
 * coding_wake_worker
 *		Wake the worker when the calling transaction commits (not before:
 *		it would not see the change yet; not at all if it aborts).
 */
Datum
coding_wake_worker(PG_FUNCTION_ARGS)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
	PG_RETURN_VOID();
}

/* A subscription the worker should serve now, or the time it is due. */
typedef struct DueSubscription
{
	Oid			server;
	Oid			owner;
	char	   *name;
	TransactionId row_version;	/* the subscription row's xmin */
} DueSubscription;

/*
 * find_due
 *		The subscriptions "role" should serve now (polls and syncs, or
 *		webhook events); *sleep_ms is how long until the next one is due.
 *		Nothing if the extension is not installed here.  A sync asked for
 *		runs at once, unless the last one failed: then it waits for its
 *		retry time, so a persistent failure (a revoked token) does not
 *		become a tight loop against Coding.  Events wait for their
 *		next_attempt the same way.
 */
static List *
find_due(WorkerRole role, long *sleep_ms)
{
	List	   *due = NIL;
	MemoryContext caller = CurrentMemoryContext;
	uint64		i;

	*sleep_ms = MAX_SLEEP_MS;
	/* else now() stays the time the worker started */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "coding_fdw: looking for due subscriptions");

	/*
	 * Columns: server, owner, name, due, ms until due, the row's version
	 * (xmin: hold_back).  Each time is clamped to now() first: a new
	 * event's next_attempt is -infinity.
	 */
	if (SPI_execute("SELECT 1 FROM pg_extension WHERE extname = 'coding_fdw'", true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1 &&
		/* after pg_upgrade: every subscription on its server's oid again */
		SPI_execute("SELECT coding_fdw._relink()", false, 0) == SPI_OK_SELECT &&
		SPI_execute(role == ROLE_SYNC ?
					"SELECT server_oid, owner_oid,"
					" coding_fdw._server_name(s.server_oid, s.server_name)::text,"
					" next_poll <= now() OR (requested > applied AND state <> 'error'),"
					" (extract(epoch FROM least(greatest(next_poll, now()),"
					"                          now() + interval '1 hour') - now()) * 1000)::bigint,"
					" s.xmin"
					" FROM coding_fdw.subscription s"
					" ORDER BY next_poll" :
					"SELECT server_oid, owner_oid,"
					" coding_fdw._server_name(s.server_oid, s.server_name)::text,"
					" coalesce(e.next_attempt <= now(), false),"
					" (extract(epoch FROM least(CASE WHEN e.next_attempt IS NOT NULL"
					"                                    THEN greatest(e.next_attempt, now()) END,"
					"                          now() + interval '1 hour') - now()) * 1000)::bigint,"
					" s.xmin"
					" FROM coding_fdw.subscription s"
					" LEFT JOIN LATERAL (SELECT min(next_attempt) AS next_attempt"
					"                      FROM coding_fdw.webhook_event w"
					"                     WHERE w.server_oid = s.server_oid AND w.state = 'pending') e ON true"
					" ORDER BY e.next_attempt",
					true, 0) == SPI_OK_SELECT)
	{
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;

			if (DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull)))
			{
				MemoryContext old = MemoryContextSwitchTo(caller);
				DueSubscription *d = palloc(sizeof(DueSubscription));

				d->server = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
				d->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
				d->name = SPI_getvalue(tup, desc, 3);
				d->row_version = DatumGetTransactionId(SPI_getbinval(tup, desc, 6, &isnull));
				due = lappend(due, d);
				MemoryContextSwitchTo(old);
			}
			else
				*sleep_ms = Min(*sleep_ms,
								(long) DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull)) + 1);
		}
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return due;
}

/*
 * run_sql
 *		One statement with one oid argument (and maybe two text ones: an
 *		error message and its SQLSTATE), in its own transaction, as "role".
 *		Returns the first column of the first row if it is a true boolean.
 */
static bool
run_sql(const char *sql, Oid role, Oid server, const char *message, const char *sqlstate)
{
	Oid			types[3] = {OIDOID, TEXTOID, TEXTOID};
	Datum		values[3];
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;
	bool		result = false;

	/* else now() stays the time the worker started */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	GetUserIdAndSecContext(&save_userid, &save_sec);
	/*
	 * As REFRESH MATERIALIZED VIEW runs the owner's code: restricted (no
	 * SET ROLE, no session state kept), and any setting the owner's code
	 * changes (search_path first) undone afterwards.
	 */
	SetUserIdAndSecContext(role, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	acting_role = role;
	values[0] = ObjectIdGetDatum(server);
	values[1] = message ? CStringGetTextDatum(message) : (Datum) 0;
	values[2] = sqlstate ? CStringGetTextDatum(sqlstate) : (Datum) 0;
	if (SPI_execute_with_args(sql, message ? 3 : 1, types, values, NULL, false, 0) < 0)
		elog(ERROR, "coding_fdw: SPI failed for \"%s\"", sql);
	if (SPI_processed > 0 && SPI_tuptable->tupdesc->natts > 0 &&
		SPI_tuptable->tupdesc->attrs[0].atttypid == BOOLOID)
	{
		bool		isnull;
		Datum		v = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		result = !isnull && DatumGetBool(v);
	}
	acting_role = InvalidOid;
	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return result;
}

/*
 * abort_step
 *		In a PG_CATCH after run_sql failed: back in "cxt", the acting role
 *		cleared, the transaction rolled back; returns the error (in "cxt")
 *		for the caller to log and free.
 */
static ErrorData *
abort_step(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	acting_role = InvalidOid;
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	return edata;
}

/*
 * Servers whose failure could not be recorded (a user's open transaction
 * holds the subscription row): their retry time in the table did not move,
 * so the worker keeps its own, 30 s doubling up to 10 minutes, in this
 * process.  It holds that version of the row only: once the row changed
 * (a sync_now, or a sync_stop and a new sync_start) the owner's new
 * request is served at once.  A handful at most; a full table just forgets
 * the oldest.
 */
typedef struct HeldBack
{
	Oid			server;
	TransactionId row_version;
	TimestampTz not_before;
	int			delay_ms;
} HeldBack;

#define MAX_HELD_BACK	32
static HeldBack held_back[MAX_HELD_BACK];

/* hold_back: after an unrecorded failure, wait before serving it again. */
static void
hold_back(Oid server, TransactionId row_version)
{
	HeldBack   *slot = NULL;
	int			i;

	for (i = 0; i < MAX_HELD_BACK && slot == NULL; i++)
		if (held_back[i].server == server)
			slot = &held_back[i];
	for (i = 0; i < MAX_HELD_BACK && slot == NULL; i++)
		if (held_back[i].server == InvalidOid)
			slot = &held_back[i];
	if (slot == NULL)
	{
		slot = &held_back[0];
		for (i = 1; i < MAX_HELD_BACK; i++)
			if (held_back[i].not_before < slot->not_before)
				slot = &held_back[i];
		slot->server = InvalidOid;
	}
	slot->delay_ms = slot->server == server ? Min(slot->delay_ms * 2, 600000) : 30000;
	slot->server = server;
	slot->row_version = row_version;
	slot->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), slot->delay_ms);
}

/* release_hold: a step of it ran, or its failure was recorded. */
static void
release_hold(Oid server)
{
	int			i;

	for (i = 0; i < MAX_HELD_BACK; i++)
		if (held_back[i].server == server)
			held_back[i].server = InvalidOid;
}

/*
 * held_back_ms
 *		How long this subscription is still held back (0: not at all, or
 *		its row changed since).
 */
static long
held_back_ms(const DueSubscription *d)
{
	int			i;

	for (i = 0; i < MAX_HELD_BACK; i++)
		if (held_back[i].server == d->server && held_back[i].row_version == d->row_version)
		{
			long		secs;
			int			usecs;

			TimestampDifference(GetCurrentTimestamp(), held_back[i].not_before, &secs, &usecs);
			return secs * 1000 + usecs / 1000;
		}
	return 0;
}

/*
 * record_failure
 *		Record a step's failure.  If that fails too, log it, hold the
 *		server back (hold_back) and go on: an ERROR here would end the
 *		worker, and every subscription with it.
 */
static void
record_failure(const char *failed_sql, DueSubscription *d, const char *message,
			   const char *sqlstate)
{
	MemoryContext oldcxt = CurrentMemoryContext;

	PG_TRY();
	{
		run_sql(failed_sql, GetUserId(), d->server, message, sqlstate);
		release_hold(d->server);
	}
	PG_CATCH();
	{
		ErrorData  *edata = abort_step(oldcxt);

		ereport(LOG,
				(errcode(edata->sqlerrcode),
				 errmsg("coding_fdw: could not record the failure for server \"%s\": %s",
						d->name, edata->message)));
		FreeErrorData(edata);
		hold_back(d->server, d->row_version);
	}
	PG_END_TRY();
}

/*
 * run_guarded
 *		Run one step of a subscription as its owner.  A failure is rolled
 *		back, logged and recorded by failed_sql(server, message, sqlstate);
 *		the worker goes on, also when recording fails (the subscription
 *		stopped meanwhile).  Returns the step's boolean result (false on
 *		failure).
 */
static bool
run_guarded(DueSubscription *d, const char *sql, const char *failed_sql, const char *what)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	bool		result = false;

	PG_TRY();
	{
		result = run_sql(sql, d->owner, d->server, NULL, NULL);
		release_hold(d->server);
	}
	PG_CATCH();
	{
		ErrorData  *edata = abort_step(oldcxt);
		char	   *message;
		char	   *sqlstate;

		message = edata->detail ?
			psprintf("%s (%s)", edata->message, edata->detail) : pstrdup(edata->message);
		sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
		/* its SQLSTATE too, for log_line_prefix's %e and csvlog */
		ereport(LOG,
				(errcode(edata->sqlerrcode),
				 errmsg("coding_fdw: %s of server \"%s\" failed: %s", what, d->name, message)));
		FreeErrorData(edata);
		record_failure(failed_sql, d, message, sqlstate);
		result = false;
	}
	PG_END_TRY();
	return result;
}

/*
 * A subscription's turn at applying webhook events: then the others'
 * events are served (a flood for one must not hold up the rest), and the
 * events worker comes back to it.
 */
#define EVENTS_TURN_MS	10000

/*
 * How long the events worker waits, at most, before it looks again at a
 * subscription it passed over because the sync worker was serving it
 * (release_server wakes it sooner).
 */
#define PASSED_OVER_MS	1000

/* How long a step waits for a lock before it fails and is retried later. */
#define WORKER_LOCK_TIMEOUT "10s"

/*
 * serve
 *		One subscription's due work: for the sync worker its poll or full
 *		sync, for the events worker its webhook events, batch after batch
 *		for one turn at most.
 */
static void
serve(WorkerRole role, DueSubscription *d)
{
	if (role == ROLE_EVENTS)
	{
		TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), EVENTS_TURN_MS);

		pgstat_report_activity(STATE_RUNNING,
							   psprintf("coding_fdw: applying webhook events of server %s", d->name));
		while (run_guarded(d, "SELECT coding_fdw._apply_events($1)",
						   "SELECT coding_fdw._events_failed($1, $2, $3)", "applying webhook events") &&
			   GetCurrentTimestamp() < until)
			CHECK_FOR_INTERRUPTS();
	}
	else
	{
		pgstat_report_activity(STATE_RUNNING,
							   psprintf("coding_fdw: syncing server %s", d->name));
		(void) run_guarded(d, "SELECT coding_fdw._sync($1)", "SELECT coding_fdw._failed($1, $2, $3)", "sync");
	}
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * worker_main
 *		A worker's loop: serve what is due for its role (passing over a
 *		subscription the other worker is serving), then wait on the latch
 *		until woken or the next one is due.
 */
static void
worker_main(WorkerRole role)
{
	const char *name = role == ROLE_SYNC ? "coding_fdw sync worker" : "coding_fdw events worker";
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	coding_worker_connect(role == ROLE_SYNC ? CONNECTING_SYNC : CONNECTING_EVENTS, name);
	/*
	 * As superuser, and as each owner: no role's schema may shadow what the
	 * worker's SQL calls.  A session setting, so the SET clauses of the
	 * extension's functions still apply.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
	/*
	 * A worker serves every subscription in turn: a lock a user holds on a
	 * synced table (VACUUM FULL, a long FOR UPDATE) must not stall all of
	 * them.  The step fails with 55P03 and is retried with its back-off
	 * (_failed; events keep their attempts, _failure_outcome).
	 */
	SetConfigOption("lock_timeout", WORKER_LOCK_TIMEOUT, PGC_SUSET, PGC_S_SESSION);

	SpinLockAcquire(&sync_shared->mutex);
	sync_shared->latch[role] = MyLatch;
	sync_shared->pid[role] = MyProcPid;
	sync_shared->serving[role] = InvalidOid;
	sync_shared->database = MyDatabaseId;
	SpinLockRelease(&sync_shared->mutex);
	before_shmem_exit(release_at_exit, Int32GetDatum(role));
	pgstat_report_appname(name);
	ereport(LOG, (errmsg("%s started for database \"%s\"", name, coding_sync_database)));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "coding_fdw worker loop",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		List	   *due;
		ListCell   *lc;
		long		sleep_ms;
		bool		served = false;
		bool		passed_over = false;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		PG_TRY();
		{
			due = find_due(role, &sleep_ms);
		}
		PG_CATCH();
		{
			/* a broken catalog or extension must not crash-loop the worker */
			MemoryContextSwitchTo(loop_cxt);
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
			due = NIL;
			sleep_ms = 5000;
		}
		PG_END_TRY();
		forget_wanted(role);
		foreach(lc, due)
		{
			DueSubscription *d = (DueSubscription *) lfirst(lc);
			long		held_ms = held_back_ms(d);

			CHECK_FOR_INTERRUPTS();
			if (held_ms > 0)
			{
				sleep_ms = Min(sleep_ms, held_ms + 1);
				continue;
			}
			if (!claim_server(role, d->server))
			{
				passed_over = true;
				continue;
			}
			serve(role, d);
			release_server(role);
			served = true;
		}
		pgstat_report_stat(false);

		if (served)
			continue;			/* look again: more may have come due */
		if (passed_over)
			sleep_ms = Min(sleep_ms, PASSED_OVER_MS);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
	}
}

/* coding_sync_worker_main: the worker for polls and full syncs. */
void
coding_sync_worker_main(Datum arg)
{
	worker_main(ROLE_SYNC);
}

/* coding_events_worker_main: the worker for webhook events. */
void
coding_events_worker_main(Datum arg)
{
	worker_main(ROLE_EVENTS);
}
