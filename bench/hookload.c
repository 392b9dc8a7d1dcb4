/*
 * bench/hookload.c: the load generator of the webhook ingest benchmark
 * (bench/webhook.py, bench/README.md "Webhook ingest").
 *
 * Reads pre-rendered deliveries from a TSV file (one per line:
 * delivery id, event name, JSON body; the body has no tab or newline),
 * then POSTs them to one URL over N concurrent keep-alive connections:
 * one libcurl easy handle per slot, reused for every request of that
 * slot, all driven by one multi handle (libcurl's multi interface, one
 * thread), each slot sending its next delivery as soon as the previous one
 * is answered, until every delivery was sent once.  Python is too slow to
 * saturate the listener; this is not.
 *
 * For each request it records the delivery id, the send time and the
 * answer time (epoch seconds, CLOCK_REALTIME, so they compare with
 * PostgreSQL's clock_timestamp() on the same machine) and the HTTP status,
 * and writes them as TSV (delivery, send, ack, status, ok).  A request is
 * acknowledged ("ok") only if the transfer completed, the status is 200
 * and the answer says {"ok":true}: a non-200 is never counted.
 *
 * The last line on stdout is the summary:
 *   hookload: count N ok K failed F seconds S events/s R connections C
 * where seconds runs from the first send to the last answer, events/s =
 * ok / seconds, and connections is how many TCP connections libcurl opened
 * in all (N concurrent keep-alive connections should open N).
 *
 * Build: gcc -O2 -o hookload hookload.c -lcurl   (bench/webhook.py does it)
 * Usage: hookload URL CONCURRENCY INPUT.tsv OUTPUT.tsv
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One delivery to send, and what became of it. */
typedef struct Delivery
{
	char	   *id;				/* X-Coding-Delivery */
	char	   *event;			/* X-Coding-Service-Hook-Event */
	char	   *body;			/* JSON body */
	size_t		body_len;
	double		sent;			/* epoch seconds */
	double		acked;			/* epoch seconds, 0 if never answered */
	long		status;			/* HTTP status, 0 if none */
	int			ok;				/* 200 and {"ok":true} */
} Delivery;

/* One connection slot: a reused easy handle and the delivery in flight. */
typedef struct Slot
{
	CURL	   *easy;
	struct curl_slist *headers;
	Delivery   *d;
	char		answer[256];	/* start of the response body */
	size_t		answer_len;
} Slot;

/* now_epoch: wall-clock time in seconds (CLOCK_REALTIME, like PostgreSQL's). */
static double
now_epoch(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* die: report a setup error and exit (nothing is measured yet). */
static void
die(const char *what, const char *detail)
{
	fprintf(stderr, "hookload: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	exit(2);
}

/*
 * read_input: load every delivery into memory before the clock starts, so
 * the measured loop does no file I/O and no formatting.
 */
static Delivery *
read_input(const char *path, size_t *count)
{
	FILE	   *f = fopen(path, "r");
	Delivery   *ds = NULL;
	size_t		n = 0,
				cap = 0;
	char	   *line = NULL;
	size_t		linecap = 0;
	ssize_t		len;

	if (f == NULL)
		die("cannot open input", strerror(errno));
	while ((len = getline(&line, &linecap, f)) > 0)
	{
		char	   *tab1,
				   *tab2;

		if (line[len - 1] == '\n')
			line[--len] = '\0';
		if (len == 0)
			continue;
		tab1 = strchr(line, '\t');
		tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
		if (tab2 == NULL)
			die("input line without three tab-separated fields", line);
		*tab1 = *tab2 = '\0';
		if (n == cap)
		{
			cap = cap ? cap * 2 : 1024;
			ds = realloc(ds, cap * sizeof(Delivery));
			if (ds == NULL)
				die("out of memory", NULL);
		}
		memset(&ds[n], 0, sizeof(Delivery));
		ds[n].id = strdup(line);
		ds[n].event = strdup(tab1 + 1);
		ds[n].body = strdup(tab2 + 1);
		ds[n].body_len = strlen(tab2 + 1);
		n++;
	}
	free(line);
	fclose(f);
	*count = n;
	return ds;
}

/* collect_answer: keep the start of the response body (to check {"ok":true}). */
static size_t
collect_answer(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	Slot	   *s = userdata;
	size_t		n = size * nmemb;
	size_t		room = sizeof(s->answer) - 1 - s->answer_len;
	size_t		take = n < room ? n : room;

	memcpy(s->answer + s->answer_len, ptr, take);
	s->answer_len += take;
	s->answer[s->answer_len] = '\0';
	return n;
}

/*
 * start_next: put delivery d on slot s and hand the handle to the multi.
 * The send time is taken here, just before libcurl can write the request:
 * the latency measured includes the client's own overhead, never less.
 */
static void
start_next(CURLM *multi, Slot *s, Delivery *d)
{
	char		buf[512];

	curl_slist_free_all(s->headers);
	s->headers = NULL;
	s->headers = curl_slist_append(s->headers, "Content-Type: application/json");
	snprintf(buf, sizeof(buf), "X-Coding-Service-Hook-Event: %s", d->event);
	s->headers = curl_slist_append(s->headers, buf);
	snprintf(buf, sizeof(buf), "X-Coding-Delivery: %s", d->id);
	s->headers = curl_slist_append(s->headers, buf);
	s->headers = curl_slist_append(s->headers, "Expect:");	/* no 100-continue round trip */
	curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
	curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, d->body);
	curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) d->body_len);
	s->d = d;
	s->answer_len = 0;
	s->answer[0] = '\0';
	d->sent = now_epoch();
	curl_multi_add_handle(multi, s->easy);
}

/* main: load, run the slots until every delivery is answered, write the TSV. */
int
main(int argc, char **argv)
{
	const char *url;
	int			conc;
	size_t		n,
				next = 0,
				done = 0,
				ok = 0,
				i;
	long		connects = 0;
	Delivery   *ds;
	Slot	   *slots;
	CURLM	   *multi;
	double		first = 0,
				last = 0,
				secs;
	FILE	   *out;

	if (argc != 5)
	{
		fprintf(stderr, "usage: hookload URL CONCURRENCY INPUT.tsv OUTPUT.tsv\n");
		return 2;
	}
	url = argv[1];
	conc = atoi(argv[2]);
	if (conc < 1)
		die("concurrency must be at least 1", argv[2]);
	ds = read_input(argv[3], &n);
	if (n == 0)
		die("no deliveries in the input", argv[3]);

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		die("curl_global_init failed", NULL);
	multi = curl_multi_init();
	/* exactly one connection per slot, kept alive, no HTTP/2, no pipelining */
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) conc);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) conc);
	curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long) CURLPIPE_NOTHING);

	slots = calloc(conc, sizeof(Slot));
	for (i = 0; i < (size_t) conc; i++)
	{
		CURL	   *e = curl_easy_init();

		if (e == NULL)
			die("curl_easy_init failed", NULL);
		slots[i].easy = e;
		curl_easy_setopt(e, CURLOPT_URL, url);
		curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
		curl_easy_setopt(e, CURLOPT_TIMEOUT, 120L);
		curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect_answer);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, &slots[i]);
		curl_easy_setopt(e, CURLOPT_PRIVATE, &slots[i]);
	}

	first = now_epoch();
	for (i = 0; i < (size_t) conc && next < n; i++)
		start_next(multi, &slots[i], &ds[next++]);

	while (done < n)
	{
		int			running = 0;
		int			msgs;
		CURLMsg    *m;

		if (curl_multi_perform(multi, &running) != CURLM_OK)
			die("curl_multi_perform failed", NULL);
		while ((m = curl_multi_info_read(multi, &msgs)) != NULL)
		{
			Slot	   *s;
			Delivery   *d;
			long		c = 0;

			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &s);
			d = s->d;
			d->acked = now_epoch();
			curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &d->status);
			d->ok = m->data.result == CURLE_OK && d->status == 200 &&
				strstr(s->answer, "\"ok\":true") != NULL;
			if (m->data.result != CURLE_OK)
				fprintf(stderr, "hookload: %s: %s\n", d->id, curl_easy_strerror(m->data.result));
			ok += d->ok;
			done++;
			last = d->acked;
			curl_easy_getinfo(s->easy, CURLINFO_NUM_CONNECTS, &c);
			connects += c;
			/* remove and re-add: the easy handle keeps its connection alive */
			curl_multi_remove_handle(multi, s->easy);
			if (next < n)
				start_next(multi, s, &ds[next++]);
		}
		if (done < n && curl_multi_poll(multi, NULL, 0, 1000, NULL) != CURLM_OK)
			die("curl_multi_poll failed", NULL);
	}

	out = fopen(argv[4], "w");
	if (out == NULL)
		die("cannot write output", strerror(errno));
	for (i = 0; i < n; i++)
		fprintf(out, "%s\t%.6f\t%.6f\t%ld\t%d\n", ds[i].id, ds[i].sent, ds[i].acked,
				ds[i].status, ds[i].ok);
	if (fclose(out) != 0)
		die("cannot write output", strerror(errno));

	secs = last - first;
	printf("hookload: count %zu ok %zu failed %zu seconds %.3f events/s %.1f connections %ld\n",
		   n, ok, n - ok, secs, secs > 0 ? ok / secs : 0.0, connects);
	for (i = 0; i < (size_t) conc; i++)
	{
		curl_slist_free_all(slots[i].headers);
		curl_easy_cleanup(slots[i].easy);
	}
	curl_multi_cleanup(multi);
	curl_global_cleanup();
	return 0;
}
