/*
 * json_fast.cpp
 *		Parse Coding's answers with simdjson into the same cJSON trees the
 *		rest of coding_fdw reads.
 *
 * cJSON parses at about 200 MB/s, which made parsing, not the network, the
 * cost of a scan (bench/README.md, benchmark 2).  simdjson parses the same
 * pages several times faster; this file turns its document into cJSON nodes
 * carved out of a few large chunks, so every reader (conversion, pushdown
 * checks, the sync functions) keeps its one representation.
 *
 * The contract, kept narrow on purpose:
 *   - Only valid JSON that simdjson accepts becomes a tree here.  Anything
 *     else (invalid UTF-8, numbers out of 64-bit range, lone surrogates,
 *     nesting beyond cJSON's limit, trailing bytes) returns NULL and the
 *     caller parses with cJSON as before, so odd input keeps exactly the
 *     behaviour it had: this file only makes valid answers faster.
 *   - Memory comes from the caller's allocator (palloc in the current
 *     memory context, returning NULL instead of raising): the tree goes
 *     away with the context.  Nodes share chunks, so a tree made here is
 *     read-only and must never be given to cJSON_Delete; response trees
 *     never are (they die with their memory context).
 *   - No PostgreSQL call, no exception and no longjmp crosses this file:
 *     C++ exceptions (only std::bad_alloc is possible) are caught here.
 *   - The input must have CODING_JSON_PADDING readable bytes after its end
 *     (simdjson reads in 64-byte blocks); the receive buffer reserves them.
 *
 * Row views: a scan that reads list rows column by column (no raw column,
 * no details merged in) parses its pages with a parser of its own
 * (CodingJsonDoc), and each row of the page stays in simdjson's document;
 * conversion finds the row's wanted fields there (coding_json_view_fields)
 * and builds cJSON nodes only for the objects and arrays among them.
 * Building a node for every value had been about an eighth of a scan.
 *
 * The process's own parser is reused: its buffers (malloc'd by simdjson
 * outside any memory context; about 14 bytes of address space per byte of
 * capacity, of which a 435 kB page touches about 1.3 MB) are allocated
 * once, for half a megabyte, which holds a page of 500 issues.  A larger
 * answer grows them and they are freed after it, and answers above
 * FAST_MAX_BYTES go to cJSON, so a huge answer never keeps (or takes) more
 * than about a hundred megabytes here.  A scan's parser keeps its largest
 * page's buffers until the scan has read its last page or ends.
 */
#include <simdjson.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <new>

extern "C"
{
#include <cJSON.h>
#include "json_fast.h"
}

static_assert(simdjson::SIMDJSON_PADDING <= CODING_JSON_PADDING,
			  "the receive buffer must reserve simdjson's padding");

using namespace simdjson;

/* Larger documents go to cJSON. */
static const size_t FAST_MAX_BYTES = 8 * 1024 * 1024;

/* Documents above this size do not keep the parser's buffers afterwards. */
static const size_t KEEP_PARSER_MAX = 1024 * 1024;

/* cJSON's own nesting limit (CJSON_NESTING_LIMIT): deeper goes to cJSON. */
static const size_t NESTING_LIMIT = 1000;

/* Chunk size for nodes and strings; bigger strings get their own block. */
static const size_t CHUNK_SIZE = 256 * 1024;

/* Smallest capacity allocated, so small answers do not reallocate each time. */
static const size_t MIN_CAPACITY = 512 * 1024;

static dom::parser *fast_parser = nullptr;

/*
 * KeyTable
 *		Interned object keys.  Coding's rows repeat the same few dozen keys:
 *		one process-lifetime copy of each saves copying them per row, and
 *		lets readers (the row field index, the jsonb value cache) compare
 *		keys by pointer.  The copies live in one static block (json_fast.h:
 *		a key is interned when its address is in it); past the block's
 *		size, or for keys longer than MAX_KEY_LEN, keys are copied into the
 *		tree as before.
 */
static char key_block[CODING_JSON_KEY_STORE_BYTES];
extern "C" const char *const coding_json_key_store = key_block;

struct KeyTable
{
	static const size_t SLOTS = 4096;	/* power of two */
	static const size_t MAX_KEYS = SLOTS / 2;
	static const size_t MAX_KEY_LEN = 64;

	/*
	 * A slot holds a key's length and its first and last 8 bytes (as
	 * loaded by key_words), so that a lookup of a key of up to 16 bytes,
	 * which is almost every key Coding sends, compares two words and a
	 * length and calls no library function: the lookup runs for every key
	 * of every row, wanted or not, and strcmp/memcmp calls had made it a
	 * fifth of a scan's time.
	 */
	struct Slot
	{
		uint64_t	first;
		uint64_t	last;
		const char *key;		/* nullptr: empty slot */
		uint16_t	len;
		uint16_t	id;			/* 0, 1, 2... in order of interning */
	};

	Slot		slot[SLOTS] = {};
	size_t		nkeys = 0;
	size_t		used = 0;		/* bytes of key_block taken */

	/*
	 * Keys a document may add: the rest of MAX_KEYS is kept for the keys
	 * of scans' row filters, so that documents full of distinct keys (a map
	 * keyed by ids) cannot take the room filtering needs.
	 */
	static const size_t DOCUMENT_KEYS = MAX_KEYS * 3 / 4;

	/* load8: 8 bytes at p, in one load whatever the alignment */
	static uint64_t load8(const char *p)
	{
		uint64_t	w;

		memcpy(&w, p, 8);		/* constant size: compiled as one load */
		return w;
	}

	/*
	 * key_words: the first and the last 8 bytes of key (overlapping for a
	 * key of 8 to 16 bytes; a shorter key's bytes, zero-padded, in first),
	 * reading no byte outside key[0..len)
	 */
	static void key_words(const char *key, size_t len, uint64_t *first, uint64_t *last)
	{
		if (len >= 8)
		{
			*first = load8(key);
			*last = load8(key + len - 8);
			return;
		}
		*first = 0;
		*last = 0;
		for (size_t i = 0; i < len; i++)
			*first |= static_cast<uint64_t>(static_cast<unsigned char>(key[i])) << (8 * i);
	}

	/* holds: whether slot s holds key[0..len), whose words are first, last */
	static bool holds(const Slot *s, const char *key, size_t len, uint64_t first, uint64_t last)
	{
		/* the two words cover a key of up to 16 bytes; past that, its middle */
		return s->len == len && s->first == first && s->last == last &&
			(len <= 16 || memcmp(s->key + 8, key + 8, len - 16) == 0);
	}

	/*
	 * intern: the interned copy of key and its id (below MAX_KEYS), nullptr
	 * when not interned; a new key is added only below "limit" keys
	 */
	const char *intern(const char *key, size_t len, int *id, size_t limit)
	{
		const Slot *s = find(key, len, limit);

		if (s == nullptr)
			return nullptr;
		*id = s->id;
		return s->key;
	}

	/*
	 * expect: the slot of key when "guess" holds it (no hashing, and a slot
	 * just used is in cache), else as intern finds it without adding one
	 */
	const Slot *expect(const Slot *guess, const char *key, size_t len)
	{
		uint64_t	first;
		uint64_t	last;

		if (guess == nullptr || len > MAX_KEY_LEN)
			return find(key, len, 0);
		key_words(key, len, &first, &last);
		return holds(guess, key, len, first, last) ? guess : find(key, len, 0);
	}

	/* find: the slot of key, added below "limit" keys; nullptr: not interned */
	const Slot *find(const char *key, size_t len, size_t limit)
	{
		uint64_t	first;
		uint64_t	last;
		uint64_t	h;

		if (len > MAX_KEY_LEN)
			return nullptr;
		key_words(key, len, &first, &last);
		h = (first ^ (last * 0x9E3779B97F4A7C15ull) ^ len) * 0xFF51AFD7ED558CCDull;
		for (size_t i = (h >> 32) & (SLOTS - 1);; i = (i + 1) & (SLOTS - 1))
		{
			Slot	   *s = &slot[i];

			if (s->key == nullptr)
			{
				char	   *copy = key_block + used;

				if (nkeys >= std::min(limit, MAX_KEYS) || used + len + 1 > sizeof(key_block))
					return nullptr;
				memcpy(copy, key, len);
				copy[len] = '\0';
				used += len + 1;
				s->first = first;
				s->last = last;
				s->len = static_cast<uint16_t>(len);
				s->id = static_cast<uint16_t>(nkeys++);
				s->key = copy;
				return s;
			}
			if (holds(s, key, len, first, last))
				return s;
		}
	}
};

static_assert(KeyTable::MAX_KEYS == CODING_JSON_MAX_KEY_IDS,
			  "json_fast.h must tell readers how many key ids there are");

static KeyTable *key_table = nullptr;

/*
 * CodingJsonDoc (json_fast.h)
 *		One scan's parser.  Its document holds the scan's current page; the
 *		page's row views point into it.
 */
struct CodingJsonDoc
{
	dom::parser parser;
};

/*
 * RowView
 *		What a row view's node points at (through its valuedouble's bits,
 *		which no cJSON function follows): the row object in the document.
 */
struct RowView
{
	dom::object object;
};

/*
 * Filter
 *		A CodingJsonRowFilter made ready for one parse: the row keys as a
 *		set of interned key ids, so a row key is tested with one lookup.
 */
struct Filter
{
	const CodingJsonRowFilter *spec;
	unsigned char wanted[KeyTable::MAX_KEYS / 8] = {};

	explicit Filter(const CodingJsonRowFilter *f) : spec(f) {}

	/* rows become row views (the answer is parsed with a scan's own parser) */
	bool		views() const
	{
		return spec->doc != nullptr;
	}

	/* ready: intern the row keys; false (build everything) if one cannot be */
	bool		ready()
	{
		if (spec == nullptr || key_table == nullptr)
			return false;
		for (int i = 0; i < spec->nkeys; i++)
		{
			int			id;

			if (key_table->intern(spec->keys[i], strlen(spec->keys[i]), &id,
								  KeyTable::MAX_KEYS) == nullptr)
				return false;
			wanted[id / 8] |= static_cast<unsigned char>(1 << (id % 8));
		}
		return true;
	}

	bool		wants(int id) const
	{
		return (wanted[id / 8] >> (id % 8)) & 1;
	}
};

/* Where build() is relative to a filter's path. */
static const int LEVEL_ALL = -1;	/* no filter, or off its path: everything */

/*
 * Arena
 *		Bump allocation out of chunks from the caller's allocator: one call
 *		per 256 kB instead of one per node and string.
 */
struct Arena
{
	coding_json_alloc_fn alloc;
	size_t		chunk_size;
	char	   *next = nullptr;
	size_t		left = 0;

	explicit Arena(coding_json_alloc_fn fn, size_t chunk = CHUNK_SIZE) :
		alloc(fn), chunk_size(chunk) {}

	/* take: n bytes aligned for a cJSON node, or nullptr when out of memory */
	void	   *take(size_t n)
	{
		n = (n + 15) & ~static_cast<size_t>(15);
		if (n > left)
		{
			if (n > chunk_size / 4)
				return alloc(n);	/* a big string: a block of its own */
			next = static_cast<char *>(alloc(chunk_size));
			if (next == nullptr)
			{
				left = 0;
				return nullptr;
			}
			left = chunk_size;
		}
		void	   *p = next;

		next += n;
		left -= n;
		return p;
	}

	/* node: a zeroed cJSON node */
	cJSON	   *node()
	{
		cJSON	   *n = static_cast<cJSON *>(take(sizeof(cJSON)));

		if (n != nullptr)
			memset(n, 0, sizeof(cJSON));
		return n;
	}

	/* string: a NUL-terminated copy of the first n bytes of s */
	char	   *string(std::string_view s, size_t n)
	{
		char	   *p = static_cast<char *>(take(n + 1));

		if (p != nullptr)
		{
			memcpy(p, s.data(), n);
			p[n] = '\0';
		}
		return p;
	}
};

/* set_number: a number node as cJSON's parse_number leaves it */
static void
set_number(cJSON *node, double d)
{
	node->type = cJSON_Number;
	node->valuedouble = d;
	if (d >= INT_MAX)
		node->valueint = INT_MAX;
	else if (d <= (double) INT_MIN)
		node->valueint = INT_MIN;
	else
		node->valueint = (int) d;
}

/*
 * append
 *		Link child last under parent the way cJSON's parser does: the first
 *		child's prev points at the last child, the last child's next is NULL.
 */
static void
append(cJSON *parent, cJSON *child)
{
	if (parent->child == nullptr)
	{
		parent->child = child;
		child->prev = child;
	}
	else
	{
		cJSON	   *last = parent->child->prev;

		last->next = child;
		child->prev = last;
		parent->child->prev = child;
	}
}

/*
 * set_scalar
 *		Fill a zeroed node with a scalar element, as cJSON's parser would
 *		(CODING_JSON_UTF8 is the caller's to add).  A string is copied into
 *		the arena, or with in_place left in the document (simdjson ends each
 *		string there with a NUL), which a row view's reader may do because
 *		the document outlives the row.  False when out of memory.
 */
static bool
set_scalar(cJSON *node, dom::element e, Arena &arena, bool in_place)
{
	std::string_view str;
	size_t		len;

	switch (e.type())
	{
		case dom::element_type::INT64:
			set_number(node, (double) e.get_int64().value_unsafe());
			break;
		case dom::element_type::UINT64:
			set_number(node, (double) e.get_uint64().value_unsafe());
			break;
		case dom::element_type::DOUBLE:
			set_number(node, e.get_double().value_unsafe());
			break;
		case dom::element_type::STRING:
			node->type = cJSON_String;
			str = e.get_string().value_unsafe();
			len = str.size();	/* no NUL inside: coding_json_fix_nul ran */
			node->valuestring = in_place ? const_cast<char *>(str.data()) :
				arena.string(str, len);
			if (node->valuestring == nullptr)
				return false;
			node->valueint = static_cast<int>(len);	/* below FAST_MAX_BYTES */
			break;
		case dom::element_type::BOOL:
			node->type = e.get_bool().value_unsafe() ? cJSON_True : cJSON_False;
			break;
		case dom::element_type::NULL_VALUE:
			node->type = cJSON_NULL;
			break;
		case dom::element_type::ARRAY:
		case dom::element_type::OBJECT:
			return false;		/* not a scalar: build() handles these */
	}
	return true;
}

/*
 * build
 *		The cJSON node for one simdjson element, nullptr when out of memory.
 *		level: LEVEL_ALL, or how many keys of the filter's path lead here
 *		(filter is then set); at the path's end the element is the array of
 *		rows; a row (level npath + 1) keeps only the wanted keys, or is a
 *		row view, with no children, when the filter asks for views.
 */
static cJSON *
build(dom::element e, Arena &arena, const Filter *filter, int level)
{
	cJSON	   *node = arena.node();
	dom::array	array;
	dom::object object;
	int			npath = level == LEVEL_ALL ? 0 : filter->spec->npath;

	if (node == nullptr)
		return nullptr;
	switch (e.type())
	{
		case dom::element_type::ARRAY:
			node->type = cJSON_Array;
			if (e.get_array().get(array) != SUCCESS)
				return nullptr;
			for (dom::element item : array)
			{
				cJSON	   *child = build(item, arena, filter,
										  level != LEVEL_ALL && level == npath ? level + 1 :
										  LEVEL_ALL);

				if (child == nullptr)
					return nullptr;
				append(node, child);
			}
			break;
		case dom::element_type::OBJECT:
			node->type = cJSON_Object;
			if (e.get_object().get(object) != SUCCESS)
				return nullptr;
			if (level != LEVEL_ALL && level == npath + 1 && filter->views())
			{
				RowView    *view = static_cast<RowView *>(arena.take(sizeof(RowView)));

				if (view == nullptr)
					return nullptr;
				new (view) RowView{object};
				static_assert(sizeof(view) <= sizeof(node->valuedouble), "a pointer fits");
				memcpy(&node->valuedouble, &view, sizeof(view));
				node->type |= CODING_JSON_VIEW;
				break;
			}
			for (dom::key_value_pair field : object)
			{
				size_t		klen = field.key.size();
				int			id = -1;
				const char *interned = key_table ?
					key_table->intern(field.key.data(), klen, &id, KeyTable::DOCUMENT_KEYS) :
					nullptr;
				int			child_level = LEVEL_ALL;
				cJSON	   *child;

				if (level != LEVEL_ALL && level == npath + 1 &&
					(interned == nullptr || !filter->wants(id)))
					continue;	/* a row's key the scan does not read */
				if (level != LEVEL_ALL && level < npath &&
					klen == strlen(filter->spec->path[level]) &&
					memcmp(field.key.data(), filter->spec->path[level], klen) == 0)
					child_level = level + 1;
				child = build(field.value, arena, filter, child_level);
				if (child == nullptr)
					return nullptr;
				if (interned)
					child->string = const_cast<char *>(interned);
				else
					child->string = arena.string(field.key, klen);
				if (child->string == nullptr)
					return nullptr;
				append(node, child);
			}
			break;
		default:
			if (!set_scalar(node, e, arena, false))
				return nullptr;
			break;
	}
	node->type |= CODING_JSON_UTF8;
	return node;
}

/*
 * coding_json_fix_nul (json_fast.h)
 *		Each \u0000 escape (not an escaped backslash before "u0000") becomes
 *		\uFFFD in place, the same six bytes; true if the text holds a raw NUL
 *		byte, which JSON does not allow in a string.
 */
extern "C" bool
coding_json_fix_nul(char *data, size_t len)
{
	char	   *p = data;
	char	   *end = data + len;

	if (memchr(data, '\0', len) != nullptr)
		return true;
	while ((p = static_cast<char *>(memchr(p, '\\', end - p))) != nullptr)
	{
		char	   *run = p;

		/* a run of backslashes: pairs are literal backslashes */
		while (p < end && *p == '\\')
			p++;
		if ((p - run) % 2 == 1 && end - p >= 5 && memcmp(p, "u0000", 5) == 0)
			memcpy(p + 1, "FFFD", 4);
	}
	return false;
}

/*
 * coding_json_parse_fast
 *		The cJSON tree of data[0..len), or NULL when simdjson does not accept
 *		it or memory ran out: the caller then parses with cJSON.
 */
extern "C" cJSON *
coding_json_parse_fast(const char *data, size_t len, coding_json_alloc_fn alloc,
					   const CodingJsonRowFilter *filter)
{
	cJSON	   *root = nullptr;
	bool		own_parser = filter != nullptr && filter->doc != nullptr;

	if (len > FAST_MAX_BYTES)
		return nullptr;
	try
	{
		dom::element doc;
		dom::parser *parser;

		if (!own_parser && fast_parser == nullptr)
		{
			fast_parser = new (std::nothrow) dom::parser();
			if (fast_parser == nullptr)
				return nullptr;
		}
		parser = own_parser ? &filter->doc->parser : fast_parser;
		/* grow only: parse() would otherwise reallocate with its own depth */
		if (parser->capacity() < len &&
			parser->allocate(std::max(len, MIN_CAPACITY), NESTING_LIMIT) != SUCCESS)
			return nullptr;
		if (key_table == nullptr)
			key_table = new (std::nothrow) KeyTable();	/* nullptr: keys are copied */
		if (parser->parse(data, len, false).get(doc) == SUCCESS)
		{
			Arena		arena(alloc);
			Filter		rows(filter);

			root = build(doc, arena, &rows, rows.ready() ? 0 : LEVEL_ALL);
		}
	}
	catch (...)
	{
		root = nullptr;
	}
	/* a scan's parser keeps its document: its rows are read from it */
	if (!own_parser && len > KEEP_PARSER_MAX)
	{
		delete fast_parser;
		fast_parser = nullptr;
	}
	return root;
}

/*
 * coding_json_doc_create
 *		A parser for one scan (json_fast.h).  It allocates its buffers at
 *		the first parse.
 */
extern "C" CodingJsonDoc *
coding_json_doc_create(void)
{
	try
	{
		return new (std::nothrow) CodingJsonDoc();
	}
	catch (...)
	{
		return nullptr;
	}
}

/*
 * coding_json_doc_release
 *		Give back a scan's parser buffers (a scan read to its end keeps them
 *		no longer, though the query may still hold the scan); the next parse
 *		allocates them again.  Its views must not be read again.
 */
extern "C" void
coding_json_doc_release(CodingJsonDoc *doc)
{
	doc->parser = dom::parser();	/* the old buffers go with the old parser */
}

/* coding_json_doc_free: the scan is over; its views must not be read again */
extern "C" void
coding_json_doc_free(CodingJsonDoc *doc)
{
	delete doc;
}

/* coding_json_key_id: a key's id in the key table, -1 if not interned */
extern "C" int
coding_json_key_id(const char *key)
{
	int			id = -1;

	/* a limit of 0 keys: find, never add */
	if (key_table == nullptr || key_table->intern(key, strlen(key), &id, 0) == nullptr)
		return -1;
	return id;
}

/*
 * coding_json_view_fields
 *		The wanted fields of a row view (json_fast.h): what build() would
 *		have made of them, without a node for each.  Scalars go into the
 *		caller's scratch nodes, strings pointing into the document (simdjson
 *		ends each with a NUL); objects and arrays are built, in small
 *		chunks, since a row's memory is reset per row.
 */
extern "C" bool
coding_json_view_fields(const cJSON *row, const int16_t *slot_of_key, cJSON *scratch,
						cJSON **found, const void **hints, coding_json_alloc_fn alloc)
{
	RowView    *view;
	size_t		pos = 0;

	memcpy(&view, &row->valuedouble, sizeof(view));
	if (key_table == nullptr)
		return true;			/* no view is made without one */
	try
	{
		Arena		arena(alloc, 4096);

		for (dom::key_value_pair field : view->object)
		{
			size_t		klen = field.key.size();
			const KeyTable::Slot *key;
			int			slot;
			cJSON	   *node;

			/* rows repeat their keys in the same order: try the last row's first */
			if (pos < CODING_JSON_VIEW_HINTS)
			{
				key = key_table->expect(static_cast<const KeyTable::Slot *>(hints[pos]),
										field.key.data(), klen);
				hints[pos++] = key;
			}
			else
				key = key_table->find(field.key.data(), klen, 0);
			if (key == nullptr || (slot = slot_of_key[key->id]) < 0 || found[slot] != nullptr)
				continue;
			if (field.value.is_array() || field.value.is_object())
			{
				node = build(field.value, arena, nullptr, LEVEL_ALL);
				if (node == nullptr)
					return false;
			}
			else
			{
				node = &scratch[slot];
				memset(node, 0, sizeof(cJSON));
				set_scalar(node, field.value, arena, true);	/* cannot fail in place */
				node->type |= CODING_JSON_UTF8;
			}
			node->string = const_cast<char *>(key->key);
			found[slot] = node;
		}
	}
	catch (...)
	{
		return false;
	}
	return true;
}
