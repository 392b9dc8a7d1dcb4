/*
 * json_fast.h
 *		C interface of json_fast.cpp: simdjson parsing into cJSON trees.
 *		Included from C and from C++ (plain declarations only).
 */
#ifndef CODING_JSON_FAST_H
#define CODING_JSON_FAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes the receive buffer keeps readable after a body (simdjson's padding). */
#define CODING_JSON_PADDING 64

/*
 * Type flag on every node built by coding_json_parse_fast (cJSON keeps its
 * own flags at 256 and 512 and reads types through "type & 0xFF"): the
 * node's key and string are valid UTF-8, and a string node's valueint is
 * the length of its valuestring, so conversion neither verifies nor
 * measures them again.
 */
#define CODING_JSON_UTF8 (1 << 12)
/* (so such a node's valuestring must never be changed: trees are read-only) */

/*
 * Type flag of a row view (see CodingJsonDoc): an object node with no
 * children whose fields are read with coding_json_view_fields.
 */
#define CODING_JSON_VIEW (1 << 13)

/*
 * Interned object keys: one copy of each distinct key for the life of the
 * process, in one static block, so equal interned keys are equal pointers.
 * Whether a key is interned is told by its address, not by a flag: cJSON's
 * duplicates and references copy a node's flags but not its key.
 */
#define CODING_JSON_KEY_STORE_BYTES (64 * 1024)
extern const char *const coding_json_key_store;

#define CODING_JSON_KEY_IS_INTERNED(p) \
	((uintptr_t) (p) - (uintptr_t) coding_json_key_store < CODING_JSON_KEY_STORE_BYTES)

/* Allocator for the tree: returns NULL when out of memory, never raises. */
typedef void *(*coding_json_alloc_fn) (size_t size);

/* Interned keys have ids below this (coding_json_key_id). */
#define CODING_JSON_MAX_KEY_IDS 2048

/*
 * A scan's own parser.  Parsed with one, a list answer's rows are row views
 * (CODING_JSON_VIEW): their fields stay in simdjson's document and are read
 * from there, with no cJSON node built for them, until the next answer is
 * parsed with the same CodingJsonDoc.  A scan owns one so that no other
 * parse can overwrite the document while its page's rows are converted.
 */
typedef struct CodingJsonDoc CodingJsonDoc;

/*
 * Which keys of a list answer's rows a scan reads.  Rows are the elements
 * of the array found by following "path" (object keys) from the root; of
 * each row object only the keys in "keys" are built (their values whole).
 * A row keeps its other keys when cJSON parses the answer (whatever
 * simdjson refuses), so readers must only rely on the listed keys being
 * there; an answer of another shape is built whole.
 */
typedef struct CodingJsonRowFilter
{
	const char *const *path;
	int			npath;
	const char *const *keys;
	int			nkeys;
	CodingJsonDoc *doc;			/* not NULL: parse with it into row views */
} CodingJsonRowFilter;

/*
 * The cJSON tree of data[0..len) (data followed by CODING_JSON_PADDING
 * readable bytes), or NULL if simdjson does not accept it: parse with cJSON
 * then.  With a filter (NULL: none), only the rows' listed keys are built.
 * The tree is read-only: never cJSON_Delete it; it is freed with the memory
 * the allocator took it from.  The caller runs coding_json_fix_nul first,
 * so no string holds a NUL (nor is cut at one, as cJSON would).
 */
extern struct cJSON *coding_json_parse_fast(const char *data, size_t len,
											coding_json_alloc_fn alloc,
											const CodingJsonRowFilter *filter);

/*
 * Turn each \u0000 escape of a JSON text into \uFFFD, in place (PostgreSQL's
 * text and jsonb cannot hold a NUL, and cJSON would cut the string there);
 * true if the text holds a raw NUL byte, which JSON does not allow.
 */
extern bool coding_json_fix_nul(char *data, size_t len);

/*
 * A new parser for one scan (NULL when out of memory), its end, and the
 * return of its buffers once the scan has read its last page (the next
 * parse allocates them again); after either, its views are not read again.
 */
extern CodingJsonDoc *coding_json_doc_create(void);
extern void coding_json_doc_free(CodingJsonDoc *doc);
extern void coding_json_doc_release(CodingJsonDoc *doc);

/* The id of an interned key, -1 if the key is not interned. */
extern int	coding_json_key_id(const char *key);

/*
 * Find the wanted fields of a row view: for each field whose key id k has
 * slot_of_key[k] >= 0, found[slot] is the field's value (the first of
 * duplicate keys wins): a scalar is written into scratch[slot] (its string
 * points into the document), an object or array is built as a cJSON tree
 * with alloc.  Slots not found are left as they are.  hints: the caller's
 * CODING_JSON_VIEW_HINTS pointers, NULL at first, kept from row to row (they
 * remember the keys at each position).  Returns false when out of memory.
 */
#define CODING_JSON_VIEW_HINTS 64
extern bool coding_json_view_fields(const struct cJSON *row, const int16_t *slot_of_key,
									struct cJSON *scratch, struct cJSON **found,
									const void **hints, coding_json_alloc_fn alloc);

#endif							/* CODING_JSON_FAST_H */
