/*
 * parse_floor.cpp
 *		Benchmark 2's floor: what a client that only receives and parses the
 *		scan's pages costs, with the libraries coding_fdw uses (libcurl,
 *		simdjson) and the same read-ahead (page n+1 is asked for before page
 *		n is parsed), but no PostgreSQL: no conversion to Datums, no tuples,
 *		no executor.  No client that reads every row can be faster on this
 *		machine, so its ratio to curl says how much of the 1.3x target is
 *		left for everything else.
 *
 *		parse_floor URL TOKEN BODYFILE...
 *
 * Each BODYFILE is the JSON body of one request to URL (the Action in its
 * query string), as the warm-up scan sent it.  Prints one line:
 * "<ms> <cpu ms> <bytes> <rows> <values> <text>": wall and CPU time of the
 * fetching and parsing, bytes received, rows under Response.Data.List,
 * values visited and bytes of their strings
 * (every field of every row is visited, so the parse cannot be skipped).
 * Exits non-zero on any HTTP or parse failure.
 */
#include <curl/curl.h>
#include <simdjson.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

/* append: libcurl's write callback, into a std::string */
static size_t
append(char *data, size_t size, size_t n, void *user)
{
	static_cast<std::string *>(user)->append(data, size * n);
	return size * n;
}

int
main(int argc, char **argv)
{
	if (argc < 4)
	{
		fprintf(stderr, "usage: parse_floor URL TOKEN BODYFILE...\n");
		return 2;
	}
	std::vector<std::string> bodies;
	for (int i = 3; i < argc; i++)
	{
		std::ifstream in(argv[i]);
		std::stringstream ss;

		ss << in.rdbuf();
		bodies.push_back(ss.str());
	}
	std::string auth = std::string("Authorization: token ") + argv[2];
	struct curl_slist *headers = curl_slist_append(nullptr, "Content-Type: application/json");
	headers = curl_slist_append(headers, auth.c_str());

	auto t0 = std::chrono::steady_clock::now();
	struct timespec cpu0, cpu1;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu0);
	CURLM *multi = curl_multi_init();
	CURL *easy = curl_easy_init();
	std::string buf[2];
	simdjson::dom::parser parser;
	size_t bytes = 0, rows = 0, values = 0, text = 0;

	curl_easy_setopt(easy, CURLOPT_URL, argv[1]);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, append);

	/* start: send request i; its answer goes to buf[i % 2] */
	auto start = [&](size_t i) {
		buf[i % 2].clear();
		curl_easy_setopt(easy, CURLOPT_WRITEDATA, &buf[i % 2]);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, bodies[i].c_str());
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) bodies[i].size());
		curl_multi_add_handle(multi, easy);
		int running;
		curl_multi_perform(multi, &running);
	};
	/* finish: wait for the transfer started last; false on failure */
	auto finish = [&]() {
		int running = 1;
		bool ok = true;
		while (running)
		{
			curl_multi_perform(multi, &running);
			if (running)
				curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
		}
		int queued;
		CURLMsg *msg;
		while ((msg = curl_multi_info_read(multi, &queued)) != nullptr)
			if (msg->msg == CURLMSG_DONE && msg->data.result != CURLE_OK)
				ok = false;
		long status = 0;
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
		curl_multi_remove_handle(multi, easy);
		return ok && status == 200;
	};

	start(0);
	for (size_t i = 0; i < bodies.size(); i++)
	{
		if (!finish())
		{
			fprintf(stderr, "request %zu failed\n", i);
			return 1;
		}
		std::string &page = buf[i % 2];
		size_t len = page.size();

		bytes += len;
		if (i + 1 < bodies.size())
			start(i + 1);		/* read-ahead, as coding_fdw does */
		page.append(simdjson::SIMDJSON_PADDING, ' ');
		simdjson::dom::element doc;
		if (parser.parse(page.data(), len, false).get(doc) != simdjson::SUCCESS)
		{
			fprintf(stderr, "page %zu: simdjson refused it\n", i);
			return 1;
		}
		simdjson::dom::array list;
		if (doc.at_pointer("/Response/Error").error() == simdjson::SUCCESS ||
			doc.at_pointer("/Response/Data/List").get(list) != simdjson::SUCCESS)
		{
			fprintf(stderr, "page %zu: an error answer or no Response.Data.List\n", i);
			return 1;
		}
		for (simdjson::dom::element row : list)
		{
			simdjson::dom::object fields;

			if (row.get(fields) != simdjson::SUCCESS)
				continue;
			rows++;
			for (simdjson::dom::key_value_pair field : fields)
			{
				std::string_view s;

				values++;
				if (field.value.get(s) == simdjson::SUCCESS)
					text += s.size();
			}
		}
	}
	auto t1 = std::chrono::steady_clock::now();
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu1);

	printf("%.1f %.1f %zu %zu %zu %zu\n", std::chrono::duration<double, std::milli>(t1 - t0).count(),
		   (cpu1.tv_sec - cpu0.tv_sec) * 1000.0 + (cpu1.tv_nsec - cpu0.tv_nsec) / 1e6,
		   bytes, rows, values, text);
	curl_multi_cleanup(multi);
	curl_easy_cleanup(easy);
	curl_slist_free_all(headers);
	return 0;
}
