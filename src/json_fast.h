/*
 * json_fast.h
 *		C interface of json_fast.cpp: simdjson parsing into cJSON trees.
 *		Included from C and from C++ (plain declarations only).
 */
#ifndef CODING_JSON_FAST_H
#define CODING_JSON_FAST_H

#include <stddef.h>

/* Bytes the receive buffer keeps readable after a body (simdjson's padding). */
#define CODING_JSON_PADDING 64

/* Allocator for the tree: returns NULL when out of memory, never raises. */
typedef void *(*coding_json_alloc_fn) (size_t size);

/*
 * The cJSON tree of data[0..len) (data followed by CODING_JSON_PADDING
 * readable bytes), or NULL if simdjson does not accept it: parse with cJSON
 * then.  The tree is read-only: never cJSON_Delete it; it is freed with the
 * memory the allocator took it from.
 */
extern struct cJSON *coding_json_parse_fast(const char *data, size_t len,
											coding_json_alloc_fn alloc);

#endif							/* CODING_JSON_FAST_H */
