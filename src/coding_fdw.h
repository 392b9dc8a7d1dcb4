/*-------------------------------------------------------------------------
 * coding_fdw.h
 *		Types and prototypes shared by the files of coding_fdw.
 *
 * coding_fdw exposes Coding (coding.net) issues, iterations and project
 * members as foreign tables.  The files split by concern:
 *	options.c		option validator, option lookup, GUCs, _PG_init
 *	coding_client.c	libcurl + cJSON: one Coding OpenAPI call, retries,
 *					rate limit, error classes (the only file using libcurl)
 *	convert.c		known columns and JSON value -> Datum conversion
 *	fdw.c			FdwRoutine: planning, scanning, EXPLAIN, IMPORT
 *	functions.c		SQL-callable functions (test_connection)
 *	json_fast.cpp	simdjson parsing into cJSON trees (C++, json_fast.h)
 *	ratelimit.c		the per-team request spacing, shared when preloaded
 *	sync_worker.c	the sync background worker (polls, applies webhook events)
 *	webhook_listener.c	the webhook listener background worker (stores events)
 *-------------------------------------------------------------------------
 */
#ifndef CODING_FDW_H
#define CODING_FDW_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/bitmapset.h"
#include "nodes/pg_list.h"
#include "nodes/primnodes.h"
#include "utils/relcache.h"

#include <cJSON.h>

/* The three remote resources a foreign table can show. */
typedef enum CodingResource
{
	CODING_RES_ISSUES,
	CODING_RES_ITERATIONS,
	CODING_RES_MEMBERS
} CodingResource;

#define CODING_MAX_PAGE_SIZE 500

/*
 * Everything needed to talk to one team/project as one user: the merged
 * server, user-mapping and table options.  The token is kept only inside
 * auth_header and never printed.
 */
typedef struct CodingConnInfo
{
	Oid			serverid;
	char	   *servername;
	char	   *team;
	char	   *project;		/* NULL if neither table nor server sets it */
	char	   *api_url;
	char	   *auth_header;	/* "Authorization: token X", NULL if no token */
	bool		token_on_server;	/* token came from the server options */
	bool		bearer;			/* token_type = bearer */
	int			page_size;
	int			request_timeout_ms;
	int			connect_timeout_ms;
	int			max_retries;
	double		rate_limit;		/* requests per second */
	const struct CodingJsonRowFilter *row_filter;	/* list rows: the keys a
													 * scan reads (NULL: all) */
} CodingConnInfo;

/* Options of one foreign table, on top of the connection. */
typedef struct CodingTableInfo
{
	CodingResource resource;
	char	   *issue_type;		/* "ALL", "DEFECT", ... (issues only) */
} CodingTableInfo;

/* ---- options.c ---- */
extern int	coding_max_response_size;	/* GUC, bytes */
extern bool coding_fast_json;	/* GUC: simdjson before cJSON */
extern CodingConnInfo *coding_get_conn_info(Oid serverid, Oid userid,
											Oid foreigntableid);
extern CodingTableInfo *coding_get_table_info(Oid foreigntableid);
extern const char *coding_resource_name(CodingResource res);
extern char *coding_column_field_option(Oid relid, AttrNumber attnum);

/* ---- options.c: module entry point ---- */
extern void _PG_init(void);

/* ---- coding_client.c ---- */

/* Error classes; each maps to one documented SQLSTATE (README, "Errors"). */
typedef enum CodingErrorClass
{
	CODING_OK = 0,
	CODING_ERR_AUTH,			/* token rejected: 28000 */
	CODING_ERR_NOT_FOUND,		/* project (or object) not found: HV00Q */
	CODING_ERR_PERMISSION,		/* token lacks a permission: 42501 */
	CODING_ERR_RATE_LIMIT,		/* rate limited after retries: 53400 */
	CODING_ERR_NETWORK,			/* unreachable or timed out: HV00N */
	CODING_ERR_MALFORMED,		/* not a Coding answer: HV00M */
	CODING_ERR_BAD_REQUEST,		/* Coding rejected a parameter: 22023 */
	CODING_ERR_REMOTE			/* Coding-side failure: HV000 */
} CodingErrorClass;

/* Counters of the calls a scan made, for EXPLAIN ANALYZE. */
typedef struct CodingCallStats
{
	int64		calls;			/* HTTP requests sent, retries included */
	int64		retries;
	int64		bytes;			/* response body bytes received */
} CodingCallStats;

/* Outcome of one API call, without raising an error. */
typedef struct CodingResult
{
	CodingErrorClass errclass;
	long		http_status;	/* 0 if no HTTP answer */
	char	   *code;			/* Coding Response.Error.Code */
	char	   *message;		/* Coding Response.Error.Message */
	char	   *request_id;		/* Coding Response.RequestId */
	char	   *transport_error;	/* libcurl's text, or our description */
	bool		timed_out;		/* the network error was a timeout */
	bool		too_large;		/* over coding_fdw.max_response_size */
	int			curl_code;		/* libcurl's result code, 0 if none */
	int			attempts;
	cJSON	   *response;		/* the "Response" object on success */
} CodingResult;

/* One call of a batch: its body in, its result out. */
typedef struct CodingBatchItem
{
	cJSON	   *body;
	CodingResult result;
} CodingBatchItem;

extern void coding_client_init(void);
extern void coding_call_batch(CodingConnInfo *conn, const char *action,
							  CodingBatchItem *items, int n, int concurrency,
							  CodingCallStats *stats);
extern void coding_call_noerror(CodingConnInfo *conn, const char *action,
								cJSON *body, CodingCallStats *stats,
								CodingResult *result);
extern void coding_require_token(CodingConnInfo *conn);
extern void coding_call_prefetch(CodingConnInfo *conn, const char *action,
								 cJSON *body, CodingCallStats *stats,
								 MemoryContext cxt);
extern void coding_call_poll(void);
extern cJSON *coding_call(CodingConnInfo *conn, const char *action,
						  cJSON *body, CodingCallStats *stats);
extern void coding_report_error(CodingConnInfo *conn, const char *action,
								CodingResult *result, int elevel);
extern int	coding_errclass_sqlstate(CodingErrorClass errclass);

/* ---- sync_worker.c ---- */
extern char *coding_sync_database;
extern void coding_sync_init(void);
extern void coding_sync_wake(void);
extern Datum coding_oid_array(const Oid *items, int n);
extern void coding_register_worker(const char *function, const char *name);

/* The preloaded workers, as coding_worker_connect counts their failures. */
#define CONNECTING_SYNC		0
#define CONNECTING_EVENTS	1
#define CONNECTING_LISTENER 2
#define N_CONNECTING		3
extern void coding_worker_connect(int slot, const char *name);

/* ---- webhook_listener.c ---- */
extern char *coding_webhook_listen_address;
extern int	coding_webhook_port;
extern char *coding_webhook_public_url;
extern int	coding_webhook_max_body;
extern int	coding_webhook_max_attempts;
extern void coding_webhook_init(void);

/* ---- ratelimit.c ---- */
extern void coding_ratelimit_init(void);
extern bool coding_ratelimit_shared(void);
extern bool coding_ratelimit_reserve(const char *team, double rate, int64 *at);
extern void coding_ratelimit_release(const char *team, double rate, int64 at);
extern int64 coding_monotonic_us(void);

/* ---- convert.c ---- */

/* How a column's JSON value becomes a Datum. */
typedef enum CodingColumnSource
{
	COLSRC_FIELD,				/* a field of the API object (maybe dotted) */
	COLSRC_TEAM,				/* the server's team */
	COLSRC_PROJECT,				/* the table's project */
	COLSRC_RAW					/* the whole API object */
} CodingColumnSource;

struct CodingFieldIndex;			/* convert.c: finds a row's fields in one pass */
struct CodingJsonbCache;			/* convert.c: a jsonb column's recent values */

typedef struct CodingColumn
{
	AttrNumber	attnum;
	char	   *colname;
	Oid			typid;
	int32		typmod;
	CodingColumnSource source;
	char	   *field;			/* API field path as given, e.g. "Iteration.Code" */
	List	   *path;			/* field path split at dots (char *) */
	List	   *fallback;		/* second path tried when the first is absent */
	bool		zero_is_null;	/* 0 means "not set" (ids, dates) */
	bool		empty_is_null;	/* "" means "not set" (enums) */
	bool		detail_only;	/* only DescribeIssue returns it */
	FmgrInfo	infunc;
	Oid			typioparam;
	int			slot;			/* index of path's first name in "index" */
	int			fallback_slot;	/* index of fallback's first name, or -1 */
	struct CodingFieldIndex *index; /* shared by the columns of one scan */
	struct CodingJsonbCache *jsonb_cache;	/* jsonb columns: recent values */
	bool		constant_ready; /* team/project: "constant" is made */
	Datum		constant;
} CodingColumn;

/* One known column of a resource, as IMPORT FOREIGN SCHEMA creates it. */
typedef struct CodingKnownColumn
{
	const char *name;
	const char *type;
	const char *field;			/* NULL for team/project/raw */
	const char *fallback;		/* field read when "field" is absent */
	bool		zero_is_null;
	bool		empty_is_null;
	bool		detail_only;
	bool		not_null;		/* part of the key */
} CodingKnownColumn;

extern const CodingKnownColumn *coding_known_columns(CodingResource res,
													 int *ncolumns);
extern CodingColumn *coding_make_columns(Relation rel, CodingResource res,
										 Bitmapset *wanted, int *ncolumns);
extern void coding_report_jsonb_caches(CodingColumn *cols, int ncols);
extern void coding_row_to_values(CodingColumn *cols, int ncols,
								 cJSON *item, cJSON *raw, CodingConnInfo *conn,
								 CodingResource res,
								 Datum *values, bool *nulls);
extern char *coding_json_scalar_text(cJSON *value);
extern bool coding_json_is_unset_object(cJSON *value);

/* ---- pushdown.c ---- */

/* Operators a pushed item can have. */
enum
{
	CODING_OP_EQ,
	CODING_OP_ANY,
	CODING_OP_LT,
	CODING_OP_LE,
	CODING_OP_GT,
	CODING_OP_GE,
	CODING_OP_NULL,
	CODING_OP_LIKE,
	CODING_OP_ILIKE,
	CODING_OP_CONTAINS,
	CODING_OP_NE,
	CODING_OP_NOT_ANY
};

/* A WHERE clause that can narrow the Coding request. */
typedef struct CodingPushedItem
{
	char	   *column;			/* known column name */
	int			op;				/* CODING_OP_* */
	Expr	   *value;			/* evaluated when the scan starts; NULL for IS NULL */
	Oid			collation;		/* the comparison's collation (ILIKE folds case by it) */
	bool		only_if_empty;	/* code, where a lookup cannot serve the query:
								 * sent never, only proves that nothing matches */
} CodingPushedItem;

/* The request a scan sends, built from the pushed items' values. */
typedef struct CodingRequest
{
	const char *issue_type;		/* IssueType */
	cJSON	   *conditions;		/* Conditions array (issues) */
	cJSON	   *iteration_fields;	/* Status, Assignee, Keywords, dates */
	bool		key_lookup;		/* DescribeIssue for "codes" instead */
	List	   *codes;			/* int list */
	bool		empty;			/* provably no row: no call at all */
	Bitmapset  *sent;			/* indexes of the items that shaped it */
	StringInfoData description; /* for EXPLAIN */
} CodingRequest;

extern bool coding_enable_pushdown;
extern CodingPushedItem *coding_classify_clause(Oid relid, Index scanrelid,
												CodingResource res, Expr *clause);
extern const char *coding_op_name(int op);
extern bool coding_column_pushable(Oid relid, CodingResource res,
								   AttrNumber attnum, const char *column);
extern const char *coding_sort_key(Oid relid, Index scanrelid,
								   CodingResource res, Expr *expr);
extern void coding_build_request(CodingRequest *req, CodingResource res,
								 const char *table_issue_type, List *items,
								 Datum *values, bool *isnull, Oid *types);

/* ---- fdw.c ---- */
extern void coding_import_columns_sql(StringInfo buf, CodingResource res);

#endif							/* CODING_FDW_H */
