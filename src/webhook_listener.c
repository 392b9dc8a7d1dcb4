/*-------------------------------------------------------------------------
 * webhook_listener.c
 *		The webhook listener background worker: receives Coding Service
 *		Hook deliveries, authenticates them, stores them durably in
 *		coding_fdw.webhook_event and acknowledges them.  It never calls
 *		Coding and never applies an event (the sync worker does), so it
 *		keeps answering while the sync worker waits on a slow API.
 *
 * libmicrohttpd runs in external epoll mode: its epoll fd sits in our
 * WaitEventSet beside the latch and postmaster death, and MHD_run() is
 * called from this loop only, in this process, with no thread.  The
 * access handler (a libmicrohttpd callback) never calls PostgreSQL: it
 * collects the request with malloc'd memory, answers what needs no
 * database (405, 413, a bad path) and suspends the rest.  The loop then
 * handles every suspended request of one round in ONE transaction (group
 * commit): key lookup, signature check, INSERT; after COMMIT it sets each
 * answer (200 only now) and resumes the connections, and libmicrohttpd
 * calls the handler again to send it.  A request that cannot be stored is
 * never answered 200.
 *
 * Bad configuration (port in use, bad address) is logged and retried
 * every few seconds or at the next reload, without exiting.
 *-------------------------------------------------------------------------
 */
#include "coding_fdw.h"
#include "json_fast.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha1.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/pg_bswap.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

/* GUCs (interface.md §1). */
char	   *coding_webhook_listen_address = NULL;
int			coding_webhook_port = 8808;
char	   *coding_webhook_public_url = NULL;
int			coding_webhook_max_body = 1024 * 1024;
int			coding_webhook_max_attempts = 5;

#define WEBHOOK_PATH		"/coding_fdw/webhook/"
#define MAX_KEY_LEN			128
#define MAX_DELIVERY_LEN	200
#define BIND_RETRY_MS		5000

PGDLLEXPORT void coding_webhook_listener_main(Datum arg);

/* Where a request stands. */
typedef enum RequestState
{
	REQ_READING,				/* headers seen, body arriving */
	REQ_SUSPENDED,				/* complete, waiting for the batch */
	REQ_ANSWER					/* answer decided, to send on resume */
} RequestState;

/*
 * One HTTP request, from its first callback to its completion.  malloc'd:
 * libmicrohttpd owns its lifetime (freed in request_completed), which is
 * unrelated to any memory context.
 */
typedef struct WebhookRequest
{
	struct MHD_Connection *conn;
	RequestState state;
	bool		is_get;
	bool		too_large;
	char		key[MAX_KEY_LEN + 1];
	char	   *body;
	size_t		len;
	size_t		cap;
	/* copied headers (NULL when absent) */
	char	   *content_type;
	char	   *delivery;
	char	   *event;
	char	   *signature;
	char	   *form_payload;	/* "payload" field of a form body */
	size_t		form_len;
	/* the answer */
	unsigned int status;
	char	   *answer;
	struct WebhookRequest *next_pending;
} WebhookRequest;

static WebhookRequest *pending_head = NULL;
static WebhookRequest **pending_tail = &pending_head;
static int	npending = 0;
/* the daemon is being stopped: finished requests are answered, not suspended */
static bool listener_stopping = false;

/* Last message libmicrohttpd logged (its logger callback must not elog). */
static char mhd_last_error[256];

/* ---------- helpers usable from callbacks (no PostgreSQL calls) ---------- */

/* xstrdup_or_null: malloc copy of a header value, NULL on absence or OOM. */
static char *
xstrdup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* set_answer: record the status and a small JSON body to send. */
static void
set_answer(WebhookRequest *req, unsigned int status, const char *message)
{
	char		buf[300];

	if (status == MHD_HTTP_OK)
		snprintf(buf, sizeof(buf), "{\"ok\":true%s%s%s}\n",
				 message ? ",\"note\":\"" : "", message ? message : "", message ? "\"" : "");
	else
		snprintf(buf, sizeof(buf), "{\"ok\":false,\"error\":\"%s\"}\n", message ? message : "");
	free(req->answer);
	req->answer = strdup(buf);
	req->status = status;
	req->state = REQ_ANSWER;
}

/* send_answer: queue the decided answer on the connection. */
static enum MHD_Result
send_answer(WebhookRequest *req)
{
	const char *text = req->answer ? req->answer : "";
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(strlen(text), (void *) text, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (req->status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, POST");
	if (req->status == MHD_HTTP_SERVICE_UNAVAILABLE)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	ret = MHD_queue_response(req->conn, req->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* form_iterator: collect the "payload" field of a form-encoded body. */
static enum MHD_Result
form_iterator(void *cls, enum MHD_ValueKind kind, const char *key,
			  const char *filename, const char *content_type,
			  const char *transfer_encoding, const char *data,
			  uint64_t off, size_t size)
{
	WebhookRequest *req = cls;
	char	   *grown;

	if (strcmp(key, "payload") != 0 || size == 0)
		return MHD_YES;
	grown = realloc(req->form_payload, req->form_len + size + 1);
	if (grown == NULL)
		return MHD_NO;
	memcpy(grown + req->form_len, data, size);
	req->form_len += size;
	grown[req->form_len] = '\0';
	req->form_payload = grown;
	return MHD_YES;
}

/* valid_key_syntax: the key part of the path: 1..128 letters and digits. */
static bool
valid_key_syntax(const char *key)
{
	size_t		n = strlen(key);
	size_t		i;

	if (n == 0 || n > MAX_KEY_LEN)
		return false;
	for (i = 0; i < n; i++)
		if (!((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'z') ||
			  (key[i] >= 'A' && key[i] <= 'Z')))
			return false;
	return true;
}

/*
 * access_handler
 *		libmicrohttpd's request callback.  Called once with the headers, then
 *		per body chunk, then once with no data; again after a resume.  Must
 *		never elog (no longjmp through libmicrohttpd).
 */
static enum MHD_Result
access_handler(void *cls, struct MHD_Connection *conn, const char *url,
			   const char *method, const char *version, const char *upload_data,
			   size_t *upload_data_size, void **con_cls)
{
	WebhookRequest *req = *con_cls;

	if (req == NULL)
	{
		const char *clen;
		const char *expect;
		bool		body_follows;

		req = calloc(1, sizeof(WebhookRequest));
		if (req == NULL)
			return MHD_NO;
		*con_cls = req;
		req->conn = conn;
		req->state = REQ_READING;

		/*
		 * An early answer (404, 405, 413) is sent at once only if no body is
		 * on its way; otherwise the body is read and dropped first, so that
		 * the sender sees the answer instead of a connection reset.
		 */
		clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
		body_follows = (expect == NULL || pg_strcasecmp(expect, "100-continue") != 0) &&
			((clen != NULL && strtoull(clen, NULL, 10) > 0) ||
			 MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL);
		if (strncmp(url, WEBHOOK_PATH, strlen(WEBHOOK_PATH)) != 0 ||
			!valid_key_syntax(url + strlen(WEBHOOK_PATH)))
		{
			set_answer(req, MHD_HTTP_NOT_FOUND, "not found");
			return body_follows ? MHD_YES : send_answer(req);
		}
		strcpy(req->key, url + strlen(WEBHOOK_PATH));
		if (strcmp(method, MHD_HTTP_METHOD_GET) == 0)
			req->is_get = true;
		else if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
		{
			set_answer(req, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
			return body_follows ? MHD_YES : send_answer(req);
		}
		if (clen && strtoull(clen, NULL, 10) > (unsigned long long) coding_webhook_max_body)
		{
			req->too_large = true;
			set_answer(req, MHD_HTTP_CONTENT_TOO_LARGE, "body too large");
			return body_follows ? MHD_YES : send_answer(req);
		}
		return MHD_YES;
	}

	if (*upload_data_size > 0)
	{
		size_t		n = *upload_data_size;

		*upload_data_size = 0;
		if (req->state != REQ_READING || req->too_large)
			return MHD_YES;		/* answer decided: discard the body */
		if (req->len + n > (size_t) coding_webhook_max_body)
		{
			req->too_large = true;
			free(req->body);
			req->body = NULL;
			req->len = req->cap = 0;
			set_answer(req, MHD_HTTP_CONTENT_TOO_LARGE, "body too large");
			return MHD_YES;
		}
		if (req->len + n + 1 > req->cap)
		{
			size_t		cap = Max(req->cap * 2, req->len + n + 1);
			char	   *grown = realloc(req->body, Max(cap, 4096));

			if (grown == NULL)
				return MHD_NO;
			req->body = grown;
			req->cap = Max(cap, 4096);
		}
		memcpy(req->body + req->len, upload_data, n);
		req->len += n;
		req->body[req->len] = '\0';
		return MHD_YES;
	}

	/* the last call: answer if decided, else hand the request to the loop */
	if (req->state == REQ_ANSWER)
		return send_answer(req);
	if (req->state == REQ_SUSPENDED)
		return MHD_YES;			/* spurious: still waiting for the batch */

	req->content_type = xstrdup_or_null(MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
																	MHD_HTTP_HEADER_CONTENT_TYPE));
	req->delivery = xstrdup_or_null(MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
																"X-Coding-Delivery"));
	req->event = xstrdup_or_null(MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
															 "X-Coding-Service-Hook-Event"));
	if (req->event == NULL)
		req->event = xstrdup_or_null(MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
																 "X-Coding-Event"));
	req->signature = xstrdup_or_null(MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
																 "X-Coding-Signature"));
	if (!req->is_get && req->content_type &&
		strncasecmp(req->content_type, MHD_HTTP_POST_ENCODING_FORM_URLENCODED,
					strlen(MHD_HTTP_POST_ENCODING_FORM_URLENCODED)) == 0 && req->len > 0)
	{
		struct MHD_PostProcessor *pp = MHD_create_post_processor(conn, 16384, form_iterator, req);

		if (pp != NULL)
		{
			(void) MHD_post_process(pp, req->body, req->len);
			MHD_destroy_post_processor(pp);
		}
	}
	if (listener_stopping)
	{
		/* the daemon is about to stop: it must hold no suspended request */
		set_answer(req, MHD_HTTP_SERVICE_UNAVAILABLE, "the listener is restarting; retry");
		return send_answer(req);
	}
	req->state = REQ_SUSPENDED;
	MHD_suspend_connection(conn);
	*pending_tail = req;
	pending_tail = &req->next_pending;
	npending++;
	return MHD_YES;
}

/* request_completed: libmicrohttpd is done with a request: free it. */
static void
request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
				  enum MHD_RequestTerminationCode toe)
{
	WebhookRequest *req = *con_cls;

	if (req == NULL)
		return;
	free(req->body);
	free(req->content_type);
	free(req->delivery);
	free(req->event);
	free(req->signature);
	free(req->form_payload);
	free(req->answer);
	free(req);
	*con_cls = NULL;
}

/*
 * mhd_logger: keep libmicrohttpd's last message for the loop to log, without
 * the newline it ends with (it would split our log line).
 */
static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
	size_t		len;

	vsnprintf(mhd_last_error, sizeof(mhd_last_error), fmt, ap);
	len = strlen(mhd_last_error);
	while (len > 0 && isspace((unsigned char) mhd_last_error[len - 1]))
		mhd_last_error[--len] = '\0';
}

/* ---------- the batch: PostgreSQL side, in the loop ---------- */

/* A subscription as the listener needs it. */
typedef struct ListenerSub
{
	Oid			server;
	char	   *key;
	char	   *secret;			/* NULL if none */
	bool		changing;		/* an uncommitted sync_stop is deleting it */
} ListenerSub;

/* keys_equal: constant-time comparison of two NUL-terminated keys. */
static bool
keys_equal(const char *a, const char *b)
{
	size_t		la = strlen(a);
	size_t		lb = strlen(b);
	unsigned char diff = (la != lb);
	size_t		i;

	for (i = 0; i < la; i++)
		diff |= (unsigned char) a[i] ^ (unsigned char) b[i < lb ? i : 0];
	return diff == 0;
}

/* find_sub: the subscription with this key, comparing every key fully. */
static ListenerSub *
find_sub(ListenerSub *subs, int nsubs, const char *key)
{
	ListenerSub *found = NULL;
	int			i;

	for (i = 0; i < nsubs; i++)
		if (keys_equal(subs[i].key, key))
			found = &subs[i];
	return found;
}

/*
 * signature_ok
 *		X-Coding-Signature must be "sha1=" + hex HMAC-SHA1(secret, raw body);
 *		compared in constant time.
 */
static bool
signature_ok(const char *secret, const char *signature, const char *body, size_t len)
{
	pg_hmac_ctx *ctx;
	uint8		mac[SHA1_DIGEST_LENGTH];
	char		hex[SHA1_DIGEST_LENGTH * 2 + 1];
	unsigned char diff = 0;
	int			i;

	if (signature == NULL || strncasecmp(signature, "sha1=", 5) != 0 ||
		strlen(signature + 5) != SHA1_DIGEST_LENGTH * 2)
		return false;
	ctx = pg_hmac_create(PG_SHA1);
	if (ctx == NULL ||
		pg_hmac_init(ctx, (const uint8 *) secret, strlen(secret)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) (body ? body : ""), len) < 0 ||
		pg_hmac_final(ctx, mac, sizeof(mac)) < 0)
	{
		pg_hmac_free(ctx);
		return false;
	}
	pg_hmac_free(ctx);
	for (i = 0; i < SHA1_DIGEST_LENGTH; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	for (i = 0; i < SHA1_DIGEST_LENGTH * 2; i++)
		diff |= (unsigned char) hex[i] ^ (unsigned char) pg_ascii_tolower((unsigned char) signature[5 + i]);
	return diff == 0;
}

/* random_delivery: an id for a delivery without X-Coding-Delivery. */
static char *
random_delivery(void)
{
	uint8		bytes[16];
	char	   *s = palloc(sizeof("local-") + 32);
	int			i;

	if (!pg_strong_random(bytes, sizeof(bytes)))
		elog(ERROR, "could not generate random bytes");
	strcpy(s, "local-");
	for (i = 0; i < 16; i++)
		sprintf(s + 6 + 2 * i, "%02x", bytes[i]);
	return s;
}

/* A request accepted for storage. */
typedef struct StoredEvent
{
	WebhookRequest *req;
	Oid			server;
	char	   *delivery;
	char	   *event;
	const char *payload;
	size_t		payload_len;
} StoredEvent;

/*
 * check_request
 *		Decide a request's fate with the subscriptions loaded: an answer now
 *		(404, 400, 401, a ping), or storage (returns true and fills *ev).
 *		*rejected_server is the subscription a rejection counts against.
 */
static bool
check_request(WebhookRequest *req, ListenerSub *subs, int nsubs, StoredEvent *ev,
			  Oid *rejected_server)
{
	ListenerSub *sub = find_sub(subs, nsubs, req->key);
	char	   *payload;
	size_t		plen;
	cJSON	   *json;
	const char *event = req->event;
	char	   *body_event = NULL;

	*rejected_server = InvalidOid;
	if (sub == NULL)
	{
		set_answer(req, MHD_HTTP_NOT_FOUND, "not found");
		return false;
	}
	if (sub->changing)
	{
		/* stored now, it could outlive the subscription: ask again soon */
		set_answer(req, MHD_HTTP_SERVICE_UNAVAILABLE, "subscription being changed, try again");
		return false;
	}
	if (req->is_get)
	{
		set_answer(req, MHD_HTTP_OK, "pong");
		return false;
	}
	*rejected_server = sub->server;
	if (sub->secret && !signature_ok(sub->secret, req->signature, req->body, req->len))
	{
		set_answer(req, MHD_HTTP_UNAUTHORIZED,
				   req->signature ? "signature mismatch" : "signature required");
		return false;
	}
	payload = req->form_payload ? req->form_payload : req->body;
	plen = req->form_payload ? req->form_len : req->len;
	if (payload == NULL || plen == 0)
	{
		set_answer(req, MHD_HTTP_BAD_REQUEST, "empty body");
		return false;
	}
	/* (the signature was checked above, on the body as it came) */
	if (coding_json_fix_nul(payload, plen) ||
		!pg_verify_mbstr(PG_UTF8, payload, (int) plen, true))
	{
		set_answer(req, MHD_HTTP_BAD_REQUEST, "body is not valid UTF-8 JSON text");
		return false;
	}
	/* a \u0000 is now \uFFFD, as in the scans: jsonb cannot hold a NUL */
	json = cJSON_ParseWithLength(payload, plen);
	if (!cJSON_IsObject(json))
	{
		cJSON_Delete(json);
		set_answer(req, MHD_HTTP_BAD_REQUEST, "body is not a JSON object");
		return false;
	}
	if (event == NULL || event[0] == '\0')
	{
		cJSON	   *e = cJSON_GetObjectItemCaseSensitive(json, "event");

		if (cJSON_IsString(e) && e->valuestring[0] != '\0')
			event = body_event = pstrdup(e->valuestring);
	}
	cJSON_Delete(json);
	if (event == NULL || event[0] == '\0' || strlen(event) > 100)
	{
		set_answer(req, MHD_HTTP_BAD_REQUEST, "no event name");
		return false;
	}
	if (pg_strcasecmp(event, "ping") == 0)
	{
		*rejected_server = InvalidOid;
		set_answer(req, MHD_HTTP_OK, "pong");
		return false;
	}
	if (req->delivery && (strlen(req->delivery) == 0 || strlen(req->delivery) > MAX_DELIVERY_LEN ||
						  !pg_verify_mbstr(PG_UTF8, req->delivery, strlen(req->delivery), true)))
	{
		set_answer(req, MHD_HTTP_BAD_REQUEST, "bad X-Coding-Delivery");
		return false;
	}
	if (!pg_verify_mbstr(PG_UTF8, event, strlen(event), true))
	{
		set_answer(req, MHD_HTTP_BAD_REQUEST, "bad event name");
		return false;
	}
	*rejected_server = InvalidOid;
	ev->req = req;
	ev->server = sub->server;
	ev->delivery = req->delivery ? pstrdup(req->delivery) : random_delivery();
	ev->event = body_event ? body_event : pstrdup(event);
	ev->payload = payload;
	ev->payload_len = plen;
	return true;
}

/* text_array: a text[] Datum from C strings. */
static Datum
text_array(char **items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = PointerGetDatum(cstring_to_text(items[i]));
	return PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
}

static const char *store_sql =
"WITH r AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1::oid[]), pg_catalog.unnest($2::text[]),"
"                                     pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::text[]))"
"                AS r(srv, delivery, event, payload)),"
"     ins AS (INSERT INTO coding_fdw.webhook_event (server_oid, delivery, event, payload)"
"             SELECT srv, delivery, event, payload::jsonb FROM r"
"             ON CONFLICT (server_oid, delivery) DO NOTHING RETURNING server_oid),"
"     n AS (SELECT srv, pg_catalog.count(*) AS received FROM r GROUP BY srv),"
"     rej AS (SELECT srv, pg_catalog.count(*) AS rejected FROM pg_catalog.unnest($5::oid[]) srv GROUP BY srv),"
"     d AS (SELECT server_oid AS srv, pg_catalog.count(*) AS stored FROM ins GROUP BY 1)"
" INSERT INTO coding_fdw.webhook_counts AS c (server_oid, who, received, duplicates, rejected)"
" SELECT srv, 'listener', coalesce(n.received, 0), coalesce(n.received, 0) OPERATOR(pg_catalog.-) coalesce(d.stored, 0),"
"        coalesce(rej.rejected, 0)"
"   FROM n FULL JOIN rej USING (srv) LEFT JOIN d USING (srv)"
" ON CONFLICT (server_oid, who) DO UPDATE"
"   SET received = c.received OPERATOR(pg_catalog.+) EXCLUDED.received,"
"       duplicates = c.duplicates OPERATOR(pg_catalog.+) EXCLUDED.duplicates,"
"       rejected = c.rejected OPERATOR(pg_catalog.+) EXCLUDED.rejected";

/*
 * Statements prepared once and kept for the life of the process: parsing
 * and planning them per batch cost more than the insert itself.  The plan
 * cache re-plans them if the extension is dropped and created again.
 */
static SPIPlanPtr plan_extension = NULL;
static SPIPlanPtr plan_subscriptions = NULL;
static SPIPlanPtr plan_store = NULL;

/* keep_plan: the saved plan for sql, prepared on first use (inside SPI). */
static SPIPlanPtr
keep_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL)
			elog(ERROR, "coding_fdw: could not prepare \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "coding_fdw: could not keep a plan");
		*plan = p;
	}
	return *plan;
}

/*
 * store_batch
 *		In one transaction: load the subscriptions, check each request, store
 *		the accepted events and the counters, commit.  Answers are set on
 *		the requests; the caller sends them only if this returns.
 */
static void
store_batch(WebhookRequest **reqs, int n)
{
	ListenerSub *subs = NULL;
	int			nsubs = 0;
	StoredEvent *evs = palloc(sizeof(StoredEvent) * n);
	int			nevs = 0;
	Oid		   *rejected = palloc(sizeof(Oid) * n);
	int			nrejected = 0;
	int			i;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());

	/*
	 * No extension here (yet, or any more): no key is known.  The keys are
	 * locked FOR KEY SHARE, so a sync_stop that starts waits for this commit
	 * and its clean-up also removes what is stored here.  One under way
	 * (its DELETE not yet committed) holds its row: SKIP LOCKED finds it
	 * "changing" without waiting, and its deliveries get 503 (a stored
	 * event could outlive the subscription; if the stop rolls back, the
	 * sender's retry is stored).  The listener never waits on a user's
	 * transaction.
	 */
	if (SPI_execute_plan(keep_plan(&plan_extension, "SELECT 1 FROM pg_extension WHERE extname = 'coding_fdw'",
								   0, NULL),
						 NULL, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1 &&
		SPI_execute_plan(keep_plan(&plan_subscriptions,
								   "SELECT s.server_oid, s.webhook_key, s.webhook_secret, l.server_oid IS NULL"
								   "  FROM coding_fdw.subscription s"
								   "  LEFT JOIN (SELECT server_oid FROM coding_fdw.subscription"
								   "              FOR KEY SHARE SKIP LOCKED) l USING (server_oid)",
								   0, NULL),
						 NULL, NULL, false, 0) == SPI_OK_SELECT)
	{
		subs = palloc(sizeof(ListenerSub) * Max(SPI_processed, 1));
		for (i = 0; i < (int) SPI_processed; i++)
		{
			bool		isnull;

			subs[i].server = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			subs[i].key = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
			subs[i].secret = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
			if (subs[i].secret && subs[i].secret[0] == '\0')
				subs[i].secret = NULL;
			subs[i].changing = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &isnull));
		}
		nsubs = (int) SPI_processed;
	}

	for (i = 0; i < n; i++)
	{
		Oid			rej;

		if (check_request(reqs[i], subs, nsubs, &evs[nevs], &rej))
			nevs++;
		else if (OidIsValid(rej))
			rejected[nrejected++] = rej;
	}

	if (nevs > 0 || nrejected > 0)
	{
		Oid			argtypes[5] = {OIDARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, OIDARRAYOID};
		Datum		values[5];
		Oid		   *servers = palloc(sizeof(Oid) * Max(nevs, 1));
		char	  **deliveries = palloc(sizeof(char *) * Max(nevs, 1));
		char	  **events = palloc(sizeof(char *) * Max(nevs, 1));
		char	  **payloads = palloc(sizeof(char *) * Max(nevs, 1));

		for (i = 0; i < nevs; i++)
		{
			servers[i] = evs[i].server;
			deliveries[i] = evs[i].delivery;
			events[i] = evs[i].event;
			payloads[i] = pnstrdup(evs[i].payload, evs[i].payload_len);
		}
		values[0] = coding_oid_array(servers, nevs);
		values[1] = text_array(deliveries, nevs);
		values[2] = text_array(events, nevs);
		values[3] = text_array(payloads, nevs);
		values[4] = coding_oid_array(rejected, nrejected);
		if (SPI_execute_plan(keep_plan(&plan_store, store_sql, 5, argtypes), values, NULL, false, 0) < 0)
			elog(ERROR, "coding_fdw: storing webhook events failed");
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	/* committed: now, and only now, the stored events may be acknowledged */
	for (i = 0; i < nevs; i++)
		set_answer(evs[i].req, MHD_HTTP_OK, NULL);
	if (nevs > 0)
		coding_sync_wake();
}

/*
 * process_pending
 *		Store every suspended request in one transaction.  If that fails
 *		(one payload PostgreSQL's jsonb rejects, say), store them one by one
 *		so the others still get in; a request that cannot be stored gets an
 *		error status, never 200.  Then resume the connections.
 */
static void
process_pending(MemoryContext batch_cxt)
{
	WebhookRequest **reqs;
	WebhookRequest *req;
	int			n = npending;
	int			i;
	MemoryContext old;

	if (n == 0)
		return;
	MemoryContextReset(batch_cxt);
	old = MemoryContextSwitchTo(batch_cxt);
	reqs = palloc(sizeof(WebhookRequest *) * n);
	for (i = 0, req = pending_head; req != NULL; req = req->next_pending)
		reqs[i++] = req;
	pending_head = NULL;
	pending_tail = &pending_head;
	npending = 0;
	pgstat_report_activity(STATE_RUNNING, "coding_fdw: storing webhook events");

	PG_TRY();
	{
		store_batch(reqs, n);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(batch_cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		for (i = 0; i < n; i++)
		{
			PG_TRY();
			{
				store_batch(&reqs[i], 1);
			}
			PG_CATCH();
			{
				ErrorData  *edata;

				MemoryContextSwitchTo(batch_cxt);
				edata = CopyErrorData();
				FlushErrorState();
				AbortCurrentTransaction();
				/* bad data is the sender's problem; anything else is ours */
				if (edata->sqlerrcode == ERRCODE_INVALID_TEXT_REPRESENTATION ||
					edata->sqlerrcode == ERRCODE_UNTRANSLATABLE_CHARACTER ||
					edata->sqlerrcode == ERRCODE_CHARACTER_NOT_IN_REPERTOIRE ||
					ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_DATA_EXCEPTION)
					set_answer(reqs[i], MHD_HTTP_BAD_REQUEST, "payload rejected by PostgreSQL");
				else
					set_answer(reqs[i], MHD_HTTP_SERVICE_UNAVAILABLE, "could not store the event");
				FreeErrorData(edata);
			}
			PG_END_TRY();
		}
	}
	PG_END_TRY();

	for (i = 0; i < n; i++)
	{
		if (reqs[i]->state != REQ_ANSWER)
			set_answer(reqs[i], MHD_HTTP_SERVICE_UNAVAILABLE, "could not store the event");
		MHD_resume_connection(reqs[i]->conn);
	}
	MemoryContextSwitchTo(old);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* ---------- the daemon's lifetime ---------- */

#define MAX_CONNECTIONS		1000
#define RESERVED_FDS		128		/* PostgreSQL's own files and sockets */

/*
 * connection_limit
 *		How many connections libmicrohttpd may hold at once: at its own limit
 *		it stops accepting and resumes as connections close, but if accept()
 *		fails for lack of descriptors (EMFILE) it suspends accepting on its
 *		own terms, and its documentation asks for a limit below the
 *		process's.  So the soft open-files limit is raised to the hard one,
 *		and the connection limit stays RESERVED_FDS below it.
 */
static unsigned int
connection_limit(void)
{
	struct rlimit rl;
	unsigned int limit = MAX_CONNECTIONS;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return limit;
	if (rl.rlim_cur < rl.rlim_max)
	{
		struct rlimit raised = rl;

		raised.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl = raised;
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < MAX_CONNECTIONS + RESERVED_FDS)
	{
		limit = rl.rlim_cur > RESERVED_FDS + 16 ? (unsigned int) (rl.rlim_cur - RESERVED_FDS) : 16;
		ereport(LOG,
				(errmsg("coding_fdw webhook listener: at most %u connections at once (open files limit %lu)",
						limit, (unsigned long) rl.rlim_cur),
				 errhint("Raise the server's open files limit (ulimit -n) for more.")));
	}
	return limit;
}

/* connections libmicrohttpd holds now */
static unsigned int
current_connections(struct MHD_Daemon *daemon)
{
	const union MHD_DaemonInfo *info =
		MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);

	return info ? info->num_connections : 0;
}

/*
 * run_daemon
 *		MHD_run, again while it closed connections.  At its connection limit
 *		libmicrohttpd takes the listening socket out of its epoll set, and
 *		puts it back only at the start of a later run: if the run that
 *		closed the connections was the last (nothing else registered, so
 *		nothing wakes the loop), the listener stopped accepting for good.
 */
static void
run_daemon(struct MHD_Daemon *daemon)
{
	unsigned int before;

	do
	{
		before = current_connections(daemon);
		MHD_run(daemon);
	} while (current_connections(daemon) < before);
}

/*
 * start_daemon
 *		Bind and start libmicrohttpd on the configured address and port, or
 *		log why not and return NULL (the loop retries).
 */
static struct MHD_Daemon *
start_daemon(char **bound)
{
	struct addrinfo hints;
	struct addrinfo *ai = NULL;
	struct MHD_Daemon *d;
	char		port[16];
	const char *host = coding_webhook_listen_address;
	int			rc;
	unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if (strcmp(host, "*") == 0)
		host = "0.0.0.0";
	snprintf(port, sizeof(port), "%d", coding_webhook_port);
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0 || ai == NULL)
	{
		ereport(LOG,
				(errmsg("coding_fdw webhook listener: invalid coding_fdw.webhook_listen_address \"%s\": %s",
						coding_webhook_listen_address, gai_strerror(rc)),
				 errhint("Set it to an IP address or host name of this machine and reload.")));
		return NULL;
	}
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	mhd_last_error[0] = '\0';
	d = MHD_start_daemon(flags, (uint16_t) coding_webhook_port, NULL, NULL,
						 access_handler, NULL,
						 MHD_OPTION_SOCK_ADDR, ai->ai_addr,
						 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 30,
						 MHD_OPTION_CONNECTION_LIMIT, connection_limit(),
						 MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
						 MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
						 MHD_OPTION_END);
	freeaddrinfo(ai);
	if (d == NULL)
	{
		ereport(LOG,
				(errmsg("coding_fdw webhook listener: could not listen on %s:%d%s%s",
						coding_webhook_listen_address, coding_webhook_port,
						mhd_last_error[0] ? ": " : "", mhd_last_error),
				 errhint("Free the port or change coding_fdw.webhook_port, then reload; retrying every %d s.",
						 BIND_RETRY_MS / 1000)));
		return NULL;
	}
	*bound = psprintf("%s:%d", coding_webhook_listen_address, coding_webhook_port);
	ereport(LOG, (errmsg("coding_fdw webhook listener listening on %s", *bound)));
	return d;
}

/*
 * coding_webhook_listener_main
 *		The listener's loop: wait on the latch, postmaster death and the
 *		daemon's epoll fd (at most until libmicrohttpd's next timeout), run
 *		libmicrohttpd, store what it collected, repeat.
 */
void
coding_webhook_listener_main(Datum arg)
{
	struct MHD_Daemon *daemon = NULL;
	WaitEventSet *set = NULL;
	char	   *bound = NULL;
	char	   *bound_conf = NULL;
	MemoryContext batch_cxt;
	long		retry_ms = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	pqsignal(SIGPIPE, SIG_IGN);
	BackgroundWorkerUnblockSignals();
	coding_worker_connect(CONNECTING_LISTENER, "coding_fdw webhook listener");
	pgstat_report_appname("coding_fdw webhook listener");
	/* as superuser: no role's schema may shadow what its SQL calls */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	/* acknowledging means durable: never let a global "off" weaken that */
	if (strcmp(GetConfigOption("synchronous_commit", false, false), "off") == 0)
		SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);

	batch_cxt = AllocSetContextCreate(TopMemoryContext, "coding_fdw webhook batch",
									  ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		WaitEvent	events[4];
		long		timeout = -1;
		MHD_UNSIGNED_LONG_LONG mhd_timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			char	   *conf;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			conf = psprintf("%s:%d", coding_webhook_listen_address, coding_webhook_port);
			if (bound_conf == NULL || strcmp(conf, bound_conf) != 0)
				retry_ms = 0;	/* rebind below */
			if (daemon && bound_conf && strcmp(conf, bound_conf) != 0)
			{
				/*
				 * Every request answered first: libmicrohttpd aborts the
				 * process if a connection is still suspended when it stops.
				 * A request that completes meanwhile is answered 503 instead
				 * of being suspended, so the second round has nothing left.
				 */
				listener_stopping = true;
				do
				{
					process_pending(batch_cxt);
					MHD_run(daemon);
				} while (npending > 0);
				listener_stopping = false;
				FreeWaitEventSet(set);
				set = NULL;
				MHD_stop_daemon(daemon);
				daemon = NULL;
				ereport(LOG, (errmsg("coding_fdw webhook listener stopped listening on %s", bound)));
			}
			pfree(conf);
		}

		if (daemon == NULL && coding_webhook_listen_address[0] != '\0' && retry_ms == 0)
		{
			daemon = start_daemon(&bound);
			if (bound_conf)
				pfree(bound_conf);
			bound_conf = MemoryContextStrdup(TopMemoryContext,
											 psprintf("%s:%d", coding_webhook_listen_address,
													  coding_webhook_port));
			if (daemon)
			{
				const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_EPOLL_FD);

				set = CreateWaitEventSet(TopMemoryContext, 3);
				AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
				AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
				AddWaitEventToSet(set, WL_SOCKET_READABLE, info->epoll_fd, NULL, NULL);
			}
			else
				retry_ms = BIND_RETRY_MS;
		}

		if (daemon == NULL)
		{
			/* disabled or not bound: wait for a reload, or retry */
			int			rc = WaitLatch(MyLatch,
									   WL_LATCH_SET | WL_EXIT_ON_PM_DEATH |
									   (retry_ms > 0 ? WL_TIMEOUT : 0),
									   retry_ms, PG_WAIT_EXTENSION);

			ResetLatch(MyLatch);
			if (rc & WL_TIMEOUT)
				retry_ms = 0;
			continue;
		}

		if (MHD_get_timeout(daemon, &mhd_timeout) == MHD_YES)
			timeout = (long) Min(mhd_timeout, (MHD_UNSIGNED_LONG_LONG) 60000);
		(void) WaitEventSetWait(set, timeout, events, lengthof(events), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		/* run libmicrohttpd until it has nothing more to hand over */
		run_daemon(daemon);
		while (npending > 0)
		{
			process_pending(batch_cxt);
			run_daemon(daemon); /* send the answers, take what came meanwhile */
		}
		pgstat_report_stat(false);
	}
}

/*
 * check_public_url
 *		GUC check hook of coding_fdw.webhook_public_url: empty, or an http(s)
 *		URL without spaces or control characters, since webhook_url() hands
 *		it to Coding as the start of the Service URL.
 */
static bool
check_public_url(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;
	const char *p;

	if (v == NULL || v[0] == '\0')
		return true;
	if (pg_strncasecmp(v, "http://", 7) != 0 && pg_strncasecmp(v, "https://", 8) != 0)
	{
		GUC_check_errdetail("The URL must start with http:// or https://, as https://pg.example.com:8808.");
		return false;
	}
	for (p = v; *p; p++)
		if ((unsigned char) *p <= ' ' || *p == 0x7f)
		{
			GUC_check_errdetail("The URL must not contain spaces or control characters.");
			return false;
		}
	/* the key is appended as a path: a query or fragment would swallow it */
	p = strstr(v, "://") + 3;
	if (*p == '\0' || *p == '/' || strpbrk(p, "?#") != NULL)
	{
		GUC_check_errdetail("The URL needs a host, and no query (?) or fragment (#): webhook_url() appends /coding_fdw/webhook/KEY to it.");
		return false;
	}
	return true;
}

/*
 * coding_webhook_init
 *		From _PG_init: the listener's GUCs and, when preloaded, the worker.
 */
void
coding_webhook_init(void)
{
	DefineCustomStringVariable("coding_fdw.webhook_listen_address",
							   "Address the webhook listener binds to ('' disables it).",
							   NULL, &coding_webhook_listen_address, "127.0.0.1",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("coding_fdw.webhook_port",
							"TCP port of the webhook listener.",
							NULL, &coding_webhook_port, 8808, 1, 65535,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("coding_fdw.webhook_public_url",
							   "Base URL under which Coding reaches the listener (used by webhook_url()).",
							   "Empty means http://{webhook_listen_address}:{webhook_port}.",
							   &coding_webhook_public_url, "",
							   PGC_SIGHUP, 0, check_public_url, NULL, NULL);
	DefineCustomIntVariable("coding_fdw.webhook_max_body",
							"Largest webhook body accepted; a larger one is answered 413.",
							NULL, &coding_webhook_max_body, 1024 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("coding_fdw.webhook_max_attempts",
							"Attempts to apply a webhook event before it becomes a dead letter.",
							"An attempt that fails because Coding could not be reached or kept "
							"refusing (SQLSTATE HV00N, HV000, 53400) does not count.",
							&coding_webhook_max_attempts, 5, 1, 1000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	coding_register_worker("coding_webhook_listener_main", "coding_fdw webhook listener");
}
