/*-------------------------------------------------------------------------
 * coding_client.c
 *		One Coding OpenAPI call: libcurl transfer, cJSON parse, retries,
 *		client-side rate limit and error classification.
 *
 * This is the only file that uses libcurl, as oracle_fdw keeps OCI in
 * oracle_utils.c.  The rules it follows:
 *
 *	- A transfer is driven by curl's multi "socket action" interface, and the
 *	  backend blocks only in a WaitEventSet that holds the process latch, the
 *	  postmaster-death event and curl's sockets.  A query cancel or
 *	  statement_timeout sets the latch, so CHECK_FOR_INTERRUPTS runs within
 *	  milliseconds even while a response is stalled mid-body.
 *	- curl callbacks never raise a PostgreSQL error (a longjmp through libcurl
 *	  frames would corrupt it): they record the problem and return curl's
 *	  abort code; the error is raised after curl returns.
 *	- Whatever happens (ERROR, cancel), the easy handle is detached from the
 *	  multi handle and the header list freed before the error propagates,
 *	  so the next call starts clean.  Handles are process-local and never
 *	  stored in shared memory.
 *	- The response body is collected in the caller's memory context and
 *	  parsed by cJSON, whose allocator is palloc (see coding_client_init), so
 *	  resetting that context frees everything, on error paths too.
 *	- The token is only ever placed in the Authorization header; no message
 *	  built here contains it.
 *-------------------------------------------------------------------------
 */
#include "coding_fdw.h"
#include "json_fast.h"

#include <curl/curl.h>
#include <poll.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* Retry back-off: base delay doubled per attempt, capped, full jitter. */
#define RETRY_BASE_DELAY_MS		200
#define RETRY_MAX_DELAY_MS		10000
#define RETRY_AFTER_MAX_MS		60000

/* Transfers running at once in one batch (DescribeIssue per row). */
#define MAX_CONCURRENCY			8

/* One socket libcurl asked us to watch. */
typedef struct CurlSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
} CurlSocket;

/* Response body being received; grown with palloc in "cxt" (no ERROR). */
typedef struct ResponseBuffer
{
	MemoryContext cxt;
	CURL	   *easy;			/* the transfer, to read its Content-Length */
	char	   *data;
	size_t		len;
	size_t		cap;
	size_t		limit;
	bool		too_large;
	bool		out_of_memory;
	bool		holds_nul;		/* a string holds a NUL: refused */
} ResponseBuffer;

/*
 * Process-local libcurl state.  Easy handles are kept across calls so
 * their connections are reused (keep-alive); sockets and the timer are what
 * curl's callbacks last told us.  None of it is ever in shared memory.
 */
static struct
{
	bool		initialized;
	CURLM	   *multi;
	CURL	   *easy[MAX_CONCURRENCY];
	bool		attached[MAX_CONCURRENCY];
	struct curl_slist *headers;
	CurlSocket *socks;			/* malloc'd: written from curl callbacks */
	int			nsocks;
	int			maxsocks;
	long		timer_ms;		/* -1: no timer */
	int64		timer_set_us;
	bool		socket_cb_failed;
	char		errbuf[MAX_CONCURRENCY][CURL_ERROR_SIZE];
} http;

/* One request of a batch, as the engine tracks it. */
typedef struct BatchEntry
{
	CodingBatchItem *item;
	char	   *body_text;
	int			attempts;
	int64		not_before_us;	/* retry back-off */
	bool		done;
	int			slot;			/* easy handle while running, else -1 */
	int64		collect_us;		/* a call made ahead: when it was asked for */
	ResponseBuffer buf;
} BatchEntry;

/*
 * A call made ahead of need (coding_call_prefetch): the next page of a scan
 * that reads every page, sent before the current page is converted so that
 * Coding answers while we work.  At most one per process.  It lives in the
 * caller's memory context; any other call abandons it (http_detach_all),
 * and so does the reset of that context (end of scan, ERROR, cancel).
 */
static struct
{
	bool		active;
	MemoryContext cxt;			/* where it lives */
	CodingConnInfo *conn;
	const char *action;
	char	   *url;
	int64		reserved_us;	/* rate-limit slot held for it, -1 none */
	BatchEntry	entry;
	CodingBatchItem item;
} ahead;

bool		coding_fast_json = true;	/* GUC coding_fdw.fast_json */

static void *cjson_palloc(size_t size);
static void cjson_pfree(void *ptr);

/*
 * coding_client_init
 *		Set up libcurl once per process and make cJSON allocate with palloc.
 *
 * cJSON memory then lives in whatever context was current when a document
 * was parsed, and goes away when that context is reset, even after an ERROR
 * in the middle of a scan.
 */
void
coding_client_init(void)
{
	cJSON_Hooks hooks = {cjson_palloc, cjson_pfree};

	cJSON_InitHooks(&hooks);
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		elog(WARNING, "coding_fdw: curl_global_init failed");
}

/*
 * cjson_palloc
 *		cJSON allocator: palloc that returns NULL instead of raising, so an
 *		out-of-memory inside cJSON becomes a parse failure, not a longjmp.
 */
static void *
cjson_palloc(size_t size)
{
	return palloc_extended(size, MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE);
}

/* cjson_pfree: cJSON deallocator matching cjson_palloc. */
static void
cjson_pfree(void *ptr)
{
	if (ptr)
		pfree(ptr);
}

/*
 * socket_cb
 *		curl tells which sockets to watch.  Runs inside curl: no palloc, no
 *		ereport; malloc failure is reported to curl as -1.
 */
static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < http.nsocks; i++)
		if (http.socks[i].fd == s)
			break;

	if (what == CURL_POLL_REMOVE)
	{
		if (i < http.nsocks)
			http.socks[i] = http.socks[--http.nsocks];
		return 0;
	}

	if (i == http.nsocks)
	{
		if (http.nsocks == http.maxsocks)
		{
			int			newmax = http.maxsocks ? http.maxsocks * 2 : 8;
			CurlSocket *n = realloc(http.socks, newmax * sizeof(CurlSocket));

			if (n == NULL)
			{
				http.socket_cb_failed = true;
				return -1;
			}
			http.socks = n;
			http.maxsocks = newmax;
		}
		http.socks[http.nsocks].fd = s;
		http.nsocks++;
	}
	http.socks[i].what = what;
	return 0;
}

/* timer_cb: curl asks to be called back after timeout_ms (-1: cancel). */
static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	http.timer_ms = timeout_ms;
	http.timer_set_us = coding_monotonic_us();
	return 0;
}

/*
 * write_cb
 *		Append received body bytes.  Never raises: on a size overflow or an
 *		allocation failure it records why and returns 0, which makes curl
 *		abort the transfer with CURLE_WRITE_ERROR.
 */
static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	ResponseBuffer *buf = (ResponseBuffer *) userdata;
	size_t		n = size * nmemb;

	if (buf->len + n > buf->limit)
	{
		buf->too_large = true;
		return 0;
	}
	/* room for the NUL and the JSON parser's padding after the body */
	if (buf->len + n + CODING_JSON_PADDING > buf->cap)
	{
		size_t		newcap = Max(buf->cap * 2, buf->len + n + CODING_JSON_PADDING);
		char	   *newdata;
		curl_off_t	announced;

		newcap = Max(newcap, 16384);

		/*
		 * The first chunk: make room for the whole body the server announced
		 * at once, rather than doubling from 16 kB and copying a 430 kB page
		 * five times.  A wrong Content-Length only changes how often we grow.
		 */
		if (buf->data == NULL && buf->easy != NULL &&
			curl_easy_getinfo(buf->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
							  &announced) == CURLE_OK && announced > 0 &&
			(uint64) announced < (uint64) buf->limit)
			newcap = Max(newcap, (size_t) announced + CODING_JSON_PADDING);
		/* never more than the largest body accepted needs */
		newcap = Min(newcap, buf->limit + CODING_JSON_PADDING);
		newdata = MemoryContextAllocExtended(buf->cxt, newcap,
											 MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE);
		if (newdata == NULL)
		{
			buf->out_of_memory = true;
			return 0;
		}
		if (buf->data)
		{
			memcpy(newdata, buf->data, buf->len);
			pfree(buf->data);
		}
		buf->data = newdata;
		buf->cap = newcap;
	}
	memcpy(buf->data + buf->len, ptr, n);
	buf->len += n;
	buf->data[buf->len] = '\0';
	return n;
}

/*
 * http_ensure_handles
 *		Create the multi handle and the easy handles on first use.
 */
static void
http_ensure_handles(void)
{
	int			i;

	if (http.initialized)
		return;
	http.multi = curl_multi_init();
	if (http.multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not initialize libcurl")));
	for (i = 0; i < MAX_CONCURRENCY; i++)
	{
		http.easy[i] = curl_easy_init();
		if (http.easy[i] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not initialize libcurl")));
	}
	curl_multi_setopt(http.multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(http.multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	http.timer_ms = -1;
	http.initialized = true;
}

/*
 * The rate-limit send time reserved for a call that has not started yet
 * (at most one: a batch reserves for one entry at a time, and a call made
 * ahead hands its reservation to the call that collects it).  If the wait
 * for it ends in an ERROR or cancel, or the call made ahead is abandoned,
 * the time is given back (coding_ratelimit_release).
 */
static struct
{
	int64		at;				/* -1: none held */
	char		team[64];
	double		rate;
}			held_slot = {-1, "", 0};

/* hold_slot: remember a reserved, not yet used send time */
static void
hold_slot(CodingConnInfo *conn, int64 at)
{
	held_slot.at = at;
	strlcpy(held_slot.team, conn->team, sizeof(held_slot.team));
	held_slot.rate = conn->rate_limit;
}

/* release_held_slot: give back a reserved send time nobody used */
static void
release_held_slot(void)
{
	if (held_slot.at >= 0)
		coding_ratelimit_release(held_slot.team, held_slot.rate, held_slot.at);
	held_slot.at = -1;
}

/*
 * http_detach_all
 *		Take every easy handle out of the multi handle and free the header
 *		list.  Called after each batch and on every error path; a transfer
 *		interrupted mid-response has its connection closed by curl.
 */
static void
http_detach_all(void)
{
	int			i;

	for (i = 0; i < MAX_CONCURRENCY; i++)
	{
		if (http.attached[i])
		{
			curl_multi_remove_handle(http.multi, http.easy[i]);
			http.attached[i] = false;
		}
	}
	if (http.headers)
	{
		curl_slist_free_all(http.headers);
		http.headers = NULL;
	}
	http.nsocks = 0;
	http.timer_ms = -1;
	ahead.active = false;		/* a call made ahead is abandoned */
	release_held_slot();		/* and the send time it or a batch waited for */
}

/*
 * http_wait_and_drive
 *		Wait for curl's sockets, its timer, the latch, postmaster death or
 *		"wake_us" (a retry or rate-limit time of the caller), then let curl
 *		act on what happened.  Interrupts are processed here, after the
 *		WaitEventSet is freed, so an ERROR leaks nothing.
 */
static void
http_wait_and_drive(int64 wake_us)
{
	WaitEventSet *volatile set = NULL;
	WaitEvent  *events;
	int			nevents;
	int			nready;
	volatile long timeout = 1000;
	int64		now = coding_monotonic_us();
	int			running;
	int			i;

	if (http.timer_ms >= 0)
	{
		long		left = http.timer_ms - (long) ((now - http.timer_set_us) / 1000);

		if (left <= 0)
		{
			http.timer_ms = -1;
			curl_multi_socket_action(http.multi, CURL_SOCKET_TIMEOUT, 0, &running);
			return;
		}
		timeout = Min(timeout, left);
	}
	if (wake_us > 0)
	{
		long		left = (long) ((wake_us - now + 999) / 1000);

		if (left <= 0)
			return;
		timeout = Min(timeout, left);
	}

	nevents = http.nsocks + 2;
	events = palloc(sizeof(WaitEvent) * nevents);

	PG_TRY();
	{
		set = CreateWaitEventSet(CurrentMemoryContext, nevents);
		AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (i = 0; i < http.nsocks; i++)
		{
			uint32		ev = 0;

			if (http.socks[i].what & CURL_POLL_IN)
				ev |= WL_SOCKET_READABLE;
			if (http.socks[i].what & CURL_POLL_OUT)
				ev |= WL_SOCKET_WRITEABLE;
			AddWaitEventToSet(set, ev, http.socks[i].fd, NULL, NULL);
		}
		nready = WaitEventSetWait(set, timeout, events, nevents,
								  PG_WAIT_EXTENSION);
		FreeWaitEventSet(set);
		set = NULL;
	}
	PG_CATCH();
	{
		if (set)
			FreeWaitEventSet(set);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (nready == 0 && http.timer_ms >= 0 &&
		coding_monotonic_us() >= http.timer_set_us + (int64) http.timer_ms * 1000)
	{
		http.timer_ms = -1;
		curl_multi_socket_action(http.multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	for (i = 0; i < nready; i++)
	{
		int			flags = 0;

		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		if (events[i].events & WL_SOCKET_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events[i].events & WL_SOCKET_WRITEABLE)
			flags |= CURL_CSELECT_OUT;
		if (flags)
			curl_multi_socket_action(http.multi, events[i].fd, flags, &running);
	}
	pfree(events);
}

/*
 * start_transfer
 *		Put one request on a free easy handle.
 */
static void
start_transfer(CodingConnInfo *conn, const char *url, BatchEntry *e, int slot,
			   MemoryContext cxt)
{
	CURL	   *easy = http.easy[slot];
	int			running;

	curl_easy_reset(easy);
	memset(&e->buf, 0, sizeof(e->buf));
	e->buf.cxt = cxt;
	e->buf.easy = easy;
	e->buf.limit = (size_t) coding_max_response_size;
	e->slot = slot;
	e->attempts++;
	http.errbuf[slot][0] = '\0';

	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, http.headers);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, e->body_text);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) strlen(e->body_text));
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &e->buf);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, e);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) conn->request_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) conn->connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
	/* a cancel during a slow name lookup must not wait for getaddrinfo */
	curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
#endif
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, http.errbuf[slot]);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "coding_fdw/0.1");
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);

	if (curl_multi_add_handle(http.multi, easy) != CURLM_OK)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
						errmsg("could not start a libcurl transfer")));
	http.attached[slot] = true;
	curl_multi_socket_action(http.multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

/* backoff_ms: exponential back-off with full jitter for attempt n (1-based). */
static long
backoff_ms(int attempt, long retry_after_ms)
{
	long		cap = RETRY_BASE_DELAY_MS;

	if (retry_after_ms >= 0)
		return retry_after_ms;
	while (attempt-- > 1 && cap < RETRY_MAX_DELAY_MS)
		cap *= 2;
	cap = Min(cap, RETRY_MAX_DELAY_MS);
	/* jittered, but never less than half the cap so retries spread out */
	return cap / 2 + (long) ((random() % 1000) * (cap / 2) / 1000);
}

/* json_string_member: pstrdup of a JSON string member, NULL if absent. */
static char *
json_string_member(cJSON *obj, const char *name)
{
	cJSON	   *v = cJSON_GetObjectItemCaseSensitive(obj, name);

	if (cJSON_IsString(v) && v->valuestring)
		return pstrdup(v->valuestring);
	return NULL;
}

/*
 * redact_token
 *		A copy of text from Coding with the connection's token replaced by
 *		<token>: an endpoint that echoes the Authorization header in an error
 *		message must not put the token into errors, logs or sync_status.
 */
static char *
redact_token(CodingConnInfo *conn, char *text)
{
	const char *token;
	size_t		len;
	StringInfoData out;
	char	   *p;
	char	   *hit;

	if (text == NULL || conn->auth_header == NULL)
		return text;
	token = strrchr(conn->auth_header, ' ');
	if (token == NULL || (len = strlen(++token)) < 4 || strstr(text, token) == NULL)
		return text;
	initStringInfo(&out);
	for (p = text; (hit = strstr(p, token)) != NULL; p = hit + len)
	{
		appendBinaryStringInfo(&out, p, hit - p);
		appendStringInfoString(&out, "<token>");
	}
	appendStringInfoString(&out, p);
	return out.data;
}

/*
 * classify_coding_error
 *		Map Coding's Response.Error.Code (Tencent Cloud API 3.0 style) to one
 *		of our classes.  InvalidParameterValue with an empty Message is how
 *		Coding reports a token that lacks a permission (coding-api.md §1).
 */
static CodingErrorClass
classify_coding_error(const char *code, const char *message)
{
	if (code == NULL)
		return CODING_ERR_REMOTE;
	if (strcmp(code, "AuthFailure") == 0 ||
		strncmp(code, "AuthFailure.", 12) == 0)
		return CODING_ERR_AUTH;
	if (strcmp(code, "ResourceNotFound") == 0 ||
		strncmp(code, "ResourceNotFound.", 17) == 0)
		return CODING_ERR_NOT_FOUND;
	if (strcmp(code, "UnauthorizedOperation") == 0 ||
		strcmp(code, "OperationDenied") == 0 ||
		strncmp(code, "UnauthorizedOperation.", 22) == 0)
		return CODING_ERR_PERMISSION;
	if (strcmp(code, "InvalidParameterValue") == 0 &&
		(message == NULL || message[0] == '\0'))
		return CODING_ERR_PERMISSION;
	if (strcmp(code, "RequestLimitExceeded") == 0 ||
		strcmp(code, "LimitExceeded") == 0)
		return CODING_ERR_RATE_LIMIT;
	if (strncmp(code, "InvalidParameter", 16) == 0 ||
		strcmp(code, "MissingParameter") == 0 ||
		strcmp(code, "UnknownParameter") == 0 ||
		strcmp(code, "InvalidAction") == 0 ||
		strcmp(code, "UnsupportedOperation") == 0)
		return CODING_ERR_BAD_REQUEST;
	return CODING_ERR_REMOTE;
}

/* is_retryable: whether a failed attempt is worth another try. */
static bool
is_retryable(CodingResult *r, CURLcode cc)
{
	switch (r->errclass)
	{
		case CODING_ERR_RATE_LIMIT:
			return true;
		case CODING_ERR_NETWORK:
			/* a host that does not resolve will not resolve in 200 ms */
			return cc != CURLE_COULDNT_RESOLVE_HOST &&
				cc != CURLE_UNSUPPORTED_PROTOCOL &&
				cc != CURLE_URL_MALFORMAT;
		case CODING_ERR_REMOTE:
			/* HTTP 5xx and Coding's InternalError are transient */
			return r->http_status >= 500 ||
				(r->code && strncmp(r->code, "InternalError", 13) == 0) ||
				(r->code && strcmp(r->code, "ResourceUnavailable") == 0);
		default:
			return false;
	}
}

/*
 * parse_body
 *		The body as a cJSON tree in the current memory context, NULL if it is
 *		not JSON.  simdjson first (several times faster on Coding's pages);
 *		whatever it does not accept goes to cJSON, so odd input is judged as
 *		it always was.  row_filter: the list rows' keys a scan reads (only
 *		simdjson skips the others).
 */
static cJSON *
parse_body(ResponseBuffer *buf, const CodingJsonRowFilter *row_filter)
{
	cJSON	   *doc;

	/*
	 * A \u0000 becomes U+FFFD for both parsers alike: one issue holding it
	 * must not make the project unreadable (refusing the answer did), nor
	 * be cut there (as cJSON does).  A raw NUL byte is not JSON.
	 */
	if ((buf->holds_nul = coding_json_fix_nul(buf->data, buf->len)))
		return NULL;
	/* simdjson reads whole blocks: the padding must hold defined bytes */
	memset(buf->data + buf->len, 0, CODING_JSON_PADDING);
	doc = coding_fast_json ?
		coding_json_parse_fast(buf->data, buf->len, cjson_palloc, row_filter) : NULL;
	if (doc == NULL)
		doc = cJSON_ParseWithLength(buf->data, buf->len);
	return doc;
}

/*
 * finish_transfer
 *		Classify a finished attempt into its item's result: Coding's error
 *		envelope (which arrives with HTTP 200), an HTTP status, a transport
 *		failure or a malformed body.  Returns the retry-after hint (ms, -1).
 */
static long
finish_transfer(CodingConnInfo *conn, BatchEntry *e, CURLcode cc)
{
	CodingResult *result = &e->item->result;
	CURL	   *easy = http.easy[e->slot];
	ResponseBuffer *buf = &e->buf;
	long		retry_after_ms = -1;
	cJSON	   *doc;
	cJSON	   *resp;
	cJSON	   *err;

	memset(result, 0, sizeof(*result));
	result->attempts = e->attempts;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &result->http_status);
	if (result->http_status == 429 || result->http_status == 503)
	{
		curl_off_t	ra = 0;

		if (curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
			retry_after_ms = Min((long) ra * 1000L, RETRY_AFTER_MAX_MS);
	}

	if (cc != CURLE_OK)
	{
		if (buf->too_large)
		{
			result->errclass = CODING_ERR_MALFORMED;
			result->too_large = true;
			result->transport_error =
				psprintf("the response is larger than coding_fdw.max_response_size (%d kB)",
						 coding_max_response_size / 1024);
		}
		else if (buf->out_of_memory)
		{
			result->errclass = CODING_ERR_MALFORMED;
			result->transport_error = pstrdup("out of memory while receiving the response");
		}
		else
		{
			result->errclass = CODING_ERR_NETWORK;
			result->timed_out = (cc == CURLE_OPERATION_TIMEDOUT);
			result->transport_error =
				pstrdup(http.errbuf[e->slot][0] ? http.errbuf[e->slot] : curl_easy_strerror(cc));
		}
		result->curl_code = cc;
		if (buf->data)
			pfree(buf->data);
		return retry_after_ms;
	}

	doc = buf->data ? parse_body(buf, conn->row_filter) : NULL;
	resp = cJSON_IsObject(doc) ? cJSON_GetObjectItemCaseSensitive(doc, "Response") : NULL;
	err = cJSON_IsObject(resp) ? cJSON_GetObjectItemCaseSensitive(resp, "Error") : NULL;
	if (buf->data)
		pfree(buf->data);

	if (cJSON_IsObject(resp))
		result->request_id = redact_token(conn, json_string_member(resp, "RequestId"));
	if (cJSON_IsObject(err))
	{
		cJSON	   *message = cJSON_GetObjectItemCaseSensitive(err, "Message");

		result->code = redact_token(conn, json_string_member(err, "Code"));
		result->message = redact_token(conn, json_string_member(err, "Message"));
		if (result->code == NULL || (message && !cJSON_IsString(message) && !cJSON_IsNull(message)))
		{
			/* no class can be read from it: not Coding's envelope */
			result->errclass = CODING_ERR_MALFORMED;
			result->code = NULL;
			result->message = NULL;
			result->transport_error = pstrdup("the answer's \"Error\" has no text \"Code\" and \"Message\"");
		}
		else
			result->errclass = classify_coding_error(result->code, result->message);
	}
	else if (result->http_status == 401 || result->http_status == 403)
	{
		/* a gateway in front of Coding, answering without Coding's envelope */
		result->errclass = result->http_status == 401 ? CODING_ERR_AUTH : CODING_ERR_PERMISSION;
		result->transport_error = psprintf("HTTP status %ld", result->http_status);
	}
	else if (result->http_status == 429)
	{
		result->errclass = CODING_ERR_RATE_LIMIT;
		result->transport_error = pstrdup("HTTP status 429 (Too Many Requests)");
	}
	else if (result->http_status >= 500)
	{
		result->errclass = CODING_ERR_REMOTE;
		result->transport_error = psprintf("HTTP status %ld", result->http_status);
	}
	else if (result->http_status != 200)
	{
		result->errclass = CODING_ERR_MALFORMED;
		result->transport_error = psprintf("HTTP status %ld", result->http_status);
	}
	else if (!cJSON_IsObject(resp))
	{
		result->errclass = CODING_ERR_MALFORMED;
		result->transport_error = pstrdup(buf->holds_nul ?
										  "the body holds a NUL byte, which JSON does not allow" :
										  doc == NULL ? "the body is not valid JSON" :
										  "the body has no \"Response\" object");
	}
	else
	{
		result->errclass = CODING_OK;
		result->response = resp;
	}
	return retry_after_ms;
}

/*
 * take_finished
 *		Classify every transfer curl reports finished; schedule a retry with
 *		back-off for a failed attempt worth another, or mark its entry done.
 *		Returns how many finished.
 */
static int
take_finished(CodingConnInfo *conn, CodingCallStats *stats, int *nrunning, int *ndone)
{
	CURLMsg    *msg;
	int			left;
	int			nfinished = 0;

	while ((msg = curl_multi_info_read(http.multi, &left)) != NULL)
	{
		BatchEntry *e;
		long		retry_after_ms;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &e);
		retry_after_ms = finish_transfer(conn, e, msg->data.result);
		if (stats)
			stats->bytes += e->buf.len;
		curl_multi_remove_handle(http.multi, http.easy[e->slot]);
		http.attached[e->slot] = false;
		e->slot = -1;
		(*nrunning)--;
		nfinished++;

		/*
		 * A call made ahead runs its timeout while nobody drives curl (a
		 * client pausing between FETCHes): when it "timed out" before we
		 * waited request_timeout_ms for it, send it again, as the same
		 * attempt.
		 */
		if (e->collect_us > 0 && msg->data.result == CURLE_OPERATION_TIMEDOUT &&
			coding_monotonic_us() - e->collect_us < (int64) conn->request_timeout_ms * 1000)
		{
			e->collect_us = 0;
			e->attempts--;
			e->not_before_us = 0;
			continue;
		}
		e->collect_us = 0;

		if (e->item->result.errclass != CODING_OK &&
			e->attempts <= conn->max_retries &&
			is_retryable(&e->item->result, e->item->result.curl_code))
			e->not_before_us = coding_monotonic_us() +
				(int64) backoff_ms(e->attempts, retry_after_ms) * 1000;
		else
		{
			e->done = true;
			(*ndone)++;
		}
	}
	return nfinished;
}

/*
 * batch_loop
 *		The engine: run every entry to a final result, up to "concurrency"
 *		transfers at once, each started no earlier than the team's rate
 *		limit allows and retried with back-off when worth it.  Blocks only in
 *		the WaitEventSet of http_wait_and_drive.
 */
static void
batch_loop(CodingConnInfo *conn, const char *url, BatchEntry *entries, int n,
		   int concurrency, CodingCallStats *stats, MemoryContext cxt,
		   int64 reserved_us)
{
	int			ndone = 0;
	int			nrunning = 0;
	int			i;

	/* a call started ahead (coding_call_prefetch) is already running */
	for (i = 0; i < n; i++)
		if (entries[i].slot >= 0)
			nrunning++;

	while (ndone < n)
	{
		int64		now = coding_monotonic_us();
		int64		wake_us = 0;

		/* start what may start: a free handle, a due entry, a slot */
		while (nrunning < concurrency)
		{
			BatchEntry *e = NULL;
			int			slot;

			for (i = 0; i < n && e == NULL; i++)
				if (!entries[i].done && entries[i].slot < 0 &&
					entries[i].not_before_us <= now)
					e = &entries[i];
			if (e == NULL)
				break;
			if (reserved_us < 0)
			{
				int64		at;

				if (!coding_ratelimit_reserve(conn->team, conn->rate_limit, &at))
				{
					wake_us = at;	/* too far ahead to hold: ask again then */
					break;
				}
				reserved_us = at;
				hold_slot(conn, reserved_us);
			}
			if (reserved_us > now)
			{
				wake_us = reserved_us;
				break;
			}
			reserved_us = -1;
			held_slot.at = -1;	/* used */
			for (slot = 0; http.attached[slot]; slot++)
				;
			start_transfer(conn, url, e, slot, cxt);
			nrunning++;
			if (stats)
			{
				stats->calls++;
				if (e->attempts > 1)
					stats->retries++;
			}
		}

		/* the earliest retry due, when nothing else wakes us sooner */
		for (i = 0; i < n; i++)
			if (!entries[i].done && entries[i].slot < 0 &&
				entries[i].not_before_us > now &&
				(wake_us == 0 || entries[i].not_before_us < wake_us))
				wake_us = entries[i].not_before_us;

		/* a transfer may have ended as it started: then do not wait */
		if (take_finished(conn, stats, &nrunning, &ndone) == 0)
		{
			http_wait_and_drive(wake_us);
			take_finished(conn, stats, &nrunning, &ndone);
		}
	}
}

/*
 * set_headers
 *		The request headers of the calls about to run (freed by
 *		http_detach_all).
 */
static void
set_headers(CodingConnInfo *conn)
{
	http.headers = curl_slist_append(NULL, "Content-Type: application/json");
	http.headers = curl_slist_append(http.headers, "Accept: application/json");
	http.headers = curl_slist_append(http.headers, "Expect:");
	if (conn->auth_header)
		http.headers = curl_slist_append(http.headers, conn->auth_header);
	if (http.headers == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
}

/* action_url: the endpoint with the Action (which only helps server logs). */
static char *
action_url(CodingConnInfo *conn, const char *action)
{
	return psprintf("%s%sAction=%s", conn->api_url,
					strchr(conn->api_url, '?') ? "&" : "?", action);
}

/*
 * request_text
 *		The body as sent: the caller's fields plus "Action", in UTF-8 (its
 *		strings come from the database, in the database's encoding).
 */
static char *
request_text(cJSON *body, const char *action)
{
	char	   *text;

	cJSON_DeleteItemFromObjectCaseSensitive(body, "Action");
	cJSON_AddStringToObject(body, "Action", action);
	text = cJSON_PrintUnformatted(body);
	if (text == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	return pg_server_to_any(text, strlen(text), PG_UTF8);
}

/*
 * drive_batch
 *		Run the engine, then detach every transfer whatever happens (ERROR
 *		or cancel included).
 */
static void
drive_batch(CodingConnInfo *conn, const char *url, BatchEntry *entries, int n,
			int concurrency, CodingCallStats *stats, MemoryContext cxt,
			int64 reserved_us)
{
	PG_TRY();
	{
		batch_loop(conn, url, entries, n, concurrency, stats, cxt, reserved_us);
	}
	PG_CATCH();
	{
		http_detach_all();
		PG_RE_THROW();
	}
	PG_END_TRY();
	http_detach_all();
}

/*
 * run_batch
 *		Set up the headers, run the engine, and detach every transfer
 *		whatever happens (ERROR or cancel included).
 */
static void
run_batch(CodingConnInfo *conn, const char *action, BatchEntry *entries, int n,
		  int concurrency, CodingCallStats *stats)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *url;

	concurrency = Max(1, Min(concurrency, MAX_CONCURRENCY));
	url = action_url(conn, action);

	http_ensure_handles();
	http_detach_all();			/* after an earlier ERROR, if any */
	set_headers(conn);
	drive_batch(conn, url, entries, n, concurrency, stats, cxt, -1);
	pfree(url);
}

/*
 * coding_call_batch
 *		Make several calls of one Action, up to "concurrency" at a time,
 *		within the team's rate limit, each retried on its own.  Every item
 *		gets a result; nothing raises for Coding or network failures
 *		(interrupts still do).  Responses are parsed into the current memory
 *		context.
 */
void
coding_call_batch(CodingConnInfo *conn, const char *action,
				  CodingBatchItem *items, int n, int concurrency,
				  CodingCallStats *stats)
{
	BatchEntry *entries;
	int			i;

	if (n <= 0)
		return;
	entries = palloc0(sizeof(BatchEntry) * n);
	for (i = 0; i < n; i++)
	{
		entries[i].item = &items[i];
		entries[i].slot = -1;
		entries[i].body_text = request_text(items[i].body, action);
	}
	run_batch(conn, action, entries, n, concurrency, stats);
	for (i = 0; i < n; i++)
		pfree(entries[i].body_text);
	pfree(entries);
}

/* ahead_reset_cb: the context of a call made ahead is going away */
static void
ahead_reset_cb(void *arg)
{
	/* a later call made ahead in another context is not this one's */
	if (ahead.active && ahead.cxt == (MemoryContext) arg)
		http_detach_all();
}

/*
 * coding_call_prefetch
 *		Send a call now whose answer a later coding_call with the same
 *		connection, Action and body will collect; it and its buffers live in
 *		"cxt".  It takes its rate-limit slot now (and is sent later, by the
 *		collecting call, if the slot is in the future).  Any other call in
 *		between abandons it: the scan that makes it must be sure it will ask
 *		for it, or accept one wasted call.
 */
void
coding_call_prefetch(CodingConnInfo *conn, const char *action, cJSON *body,
					 CodingCallStats *stats, MemoryContext cxt)
{
	MemoryContext old;
	MemoryContextCallback *cb;

	http_ensure_handles();
	http_detach_all();
	old = MemoryContextSwitchTo(cxt);
	memset(&ahead.entry, 0, sizeof(ahead.entry));
	memset(&ahead.item, 0, sizeof(ahead.item));
	ahead.entry.item = &ahead.item;
	ahead.entry.slot = -1;
	ahead.entry.body_text = request_text(body, action);
	ahead.conn = conn;
	ahead.action = pstrdup(action);
	ahead.url = action_url(conn, action);
	ahead.cxt = cxt;
	cb = palloc(sizeof(MemoryContextCallback));
	cb->func = ahead_reset_cb;
	cb->arg = cxt;
	MemoryContextRegisterResetCallback(cxt, cb);
	set_headers(conn);
	ahead.active = true;
	if (!coding_ratelimit_reserve(conn->team, conn->rate_limit, &ahead.reserved_us))
		ahead.reserved_us = -1;	/* none held: the collecting call asks */
	else
		hold_slot(conn, ahead.reserved_us);
	if (ahead.reserved_us >= 0 && ahead.reserved_us <= coding_monotonic_us())
	{
		ahead.reserved_us = -1;
		held_slot.at = -1;		/* used */
		start_transfer(conn, ahead.url, &ahead.entry, 0, cxt);
		if (stats)
			stats->calls++;
	}
	MemoryContextSwitchTo(old);
}

/*
 * coding_call_poll
 *		Let a call made ahead read what has arrived, without waiting (a
 *		poll with timeout 0), so the answer streams in while the scan
 *		converts rows and is complete before its timeout can run out.
 */
void
coding_call_poll(void)
{
	struct pollfd fds[8];
	int			nfds = 0;
	int			running;
	int			i;

	if (!ahead.active || ahead.entry.slot < 0)
		return;
	for (i = 0; i < http.nsocks && nfds < (int) lengthof(fds); i++)
	{
		fds[nfds].fd = http.socks[i].fd;
		fds[nfds].events = ((http.socks[i].what & CURL_POLL_IN) ? POLLIN : 0) |
			((http.socks[i].what & CURL_POLL_OUT) ? POLLOUT : 0);
		fds[nfds].revents = 0;
		nfds++;
	}
	if (nfds == 0 || poll(fds, nfds, 0) <= 0)
		return;
	for (i = 0; i < nfds; i++)
	{
		int			flags = 0;

		if (fds[i].revents & (POLLIN | POLLHUP | POLLERR))
			flags |= CURL_CSELECT_IN;
		if (fds[i].revents & POLLOUT)
			flags |= CURL_CSELECT_OUT;
		if (flags)
			curl_multi_socket_action(http.multi, fds[i].fd, flags, &running);
	}
}

/*
 * collect_ahead
 *		The answer of the call made ahead, retried as any call would be,
 *		parsed into the current memory context.
 */
static void
collect_ahead(CodingConnInfo *conn, CodingCallStats *stats, CodingResult *result)
{
	ahead.entry.collect_us = coding_monotonic_us();
	drive_batch(conn, ahead.url, &ahead.entry, 1, 1, stats, CurrentMemoryContext,
				ahead.reserved_us);
	*result = ahead.item.result;
}

/*
 * coding_call_noerror
 *		Make one API call with retries and fill *result; never raises an
 *		error for Coding or network failures (interrupts still raise).
 *
 * On success result->response is the "Response" object, allocated in the
 * current memory context together with the whole parsed document.
 */
void
coding_call_noerror(CodingConnInfo *conn, const char *action, cJSON *body,
					CodingCallStats *stats, CodingResult *result)
{
	CodingBatchItem item;

	item.body = body;
	coding_call_batch(conn, action, &item, 1, 1, stats);
	*result = item.result;
}

/*
 * coding_errclass_sqlstate
 *		The documented SQLSTATE of each error class (README, "Errors").
 */
int
coding_errclass_sqlstate(CodingErrorClass errclass)
{
	switch (errclass)
	{
		case CODING_ERR_AUTH:
			return ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
		case CODING_ERR_NOT_FOUND:
			return ERRCODE_FDW_SCHEMA_NOT_FOUND;
		case CODING_ERR_PERMISSION:
			return ERRCODE_INSUFFICIENT_PRIVILEGE;
		case CODING_ERR_RATE_LIMIT:
			return ERRCODE_CONFIGURATION_LIMIT_EXCEEDED;
		case CODING_ERR_NETWORK:
			return ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION;
		case CODING_ERR_MALFORMED:
			return ERRCODE_FDW_UNABLE_TO_CREATE_REPLY;
		case CODING_ERR_BAD_REQUEST:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case CODING_ERR_REMOTE:
		case CODING_OK:
			break;
	}
	return ERRCODE_FDW_ERROR;
}

/*
 * coding_report_error
 *		Raise (or log at elevel) the error described by *result.
 *
 * errmsg names what failed plus team, project and Action; errdetail carries
 * Coding's Code, Message and RequestId (or the transport failure); errhint
 * says what to do.  The token is never part of any of them.
 */
void
coding_report_error(CodingConnInfo *conn, const char *action,
					CodingResult *r, int elevel)
{
	const char *what;
	char	   *where;
	char	   *hint;
	StringInfoData detail;

	switch (r->errclass)
	{
		case CODING_ERR_AUTH:
			what = "Coding rejected the token";
			hint = psprintf("Check the \"token\" option of the user mapping for server \"%s\"; "
							"\"token_type\" must be 'token' for a personal access token and 'bearer' for an OAuth access token.",
							conn->servername);
			break;
		case CODING_ERR_NOT_FOUND:
			what = strcmp(action, "DescribeIssue") == 0 ?
				"Coding issue not found" : "Coding project not found";
			hint = psprintf("The \"project\" option must be the project's name as in https://%s.coding.net/p/NAME, not its display name.",
							conn->team);
			break;
		case CODING_ERR_PERMISSION:
			what = "permission denied by Coding";
			hint = psprintf("Grant the token read access to this project in Coding; coding_fdw.test_connection('%s') shows which permission is missing.",
							conn->servername);
			break;
		case CODING_ERR_RATE_LIMIT:
			what = r->attempts == 1 ? "Coding rate limit exceeded" :
				psprintf("Coding rate limit exceeded after %d attempts", r->attempts);
			hint = pstrdup("Lower the server's \"rate_limit\" option, raise \"max_retries\", or retry later.");
			break;
		case CODING_ERR_NETWORK:
			what = r->timed_out ? "Coding request timed out" : "could not reach Coding";
			hint = pstrdup("Check the server's \"team\" and \"api_url\" options and the network; "
						   "raise \"request_timeout_ms\" or \"connect_timeout_ms\" for a slow link.");
			break;
		case CODING_ERR_MALFORMED:
			what = "malformed response from Coding";
			hint = r->too_large ?
				pstrdup("Raise coding_fdw.max_response_size if such a large answer is expected.") :
				pstrdup("Check that \"api_url\" points at Coding's OpenAPI endpoint.");
			break;
		case CODING_ERR_BAD_REQUEST:
			what = "Coding rejected the request";
			hint = pstrdup("Check the server and foreign table options.");
			break;
		default:
			what = "Coding request failed";
			hint = pstrdup("Coding reported an internal error; retry later.");
			break;
	}

	if (conn->project && strcmp(action, "DescribeCodingCurrentUser") != 0)
		where = psprintf("team \"%s\", project \"%s\", Action %s",
						 conn->team, conn->project, action);
	else
		where = psprintf("team \"%s\", Action %s", conn->team, action);

	initStringInfo(&detail);
	if (r->code)
		appendStringInfo(&detail, "Coding error %s: %s", r->code,
						 r->message && r->message[0] ? r->message : "(no message)");
	else if (r->transport_error)
		appendStringInfoString(&detail, r->transport_error);
	if (r->request_id)
		appendStringInfo(&detail, "%sRequestId %s", detail.len ? "; " : "",
						 r->request_id);
	if (r->attempts > 1 && r->errclass != CODING_ERR_RATE_LIMIT)
		appendStringInfo(&detail, "%s(after %d attempts)", detail.len ? " " : "",
						 r->attempts);

	ereport(elevel,
			(errcode(coding_errclass_sqlstate(r->errclass)),
			 errmsg("%s (%s)", what, where),
			 detail.len ? errdetail("%s.", detail.data) : 0,
			 errhint("%s", hint)));
}

/*
 * coding_require_token
 *		Raise the "no token" error when neither the user mapping nor the
 *		server gives one.
 */
void
coding_require_token(CodingConnInfo *conn)
{
	if (conn->auth_header == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("no Coding token for server \"%s\"", conn->servername),
				 errhint("Create a user mapping with the token: CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (token '...').",
						 quote_identifier(conn->servername))));
}

/*
 * coding_call
 *		Make one API call with retries; raise the classified error on failure.
 *		Returns the "Response" object.
 */
cJSON *
coding_call(CodingConnInfo *conn, const char *action, cJSON *body,
			CodingCallStats *stats)
{
	CodingResult result;

	coding_require_token(conn);
	if (ahead.active)
	{
		char	   *text = request_text(body, action);

		if (ahead.conn == conn && strcmp(ahead.action, action) == 0 &&
			strcmp(ahead.entry.body_text, text) == 0)
			collect_ahead(conn, stats, &result);
		else
		{
			http_detach_all();	/* not what was asked for: abandoned */
			coding_call_noerror(conn, action, body, stats, &result);
		}
		pfree(text);
	}
	else
		coding_call_noerror(conn, action, body, stats, &result);
	if (result.errclass != CODING_OK)
		coding_report_error(conn, action, &result, ERROR);
	return result.response;
}
