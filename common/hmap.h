/*
 * hmap: an intrusive chained hash table keyed by NUL-terminated strings.
 * Entries embed an hmap_node_t whose key points into the entry itself;
 * the map never allocates entries or copies keys, it only owns its bucket
 * array. Grows by doubling at load factor 1. Not iteration-stable across
 * insertions; removal during hmap_foreach of the current node is allowed.
 */
#ifndef CRUSH_HMAP_H
#define CRUSH_HMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct hmap_node {
	struct hmap_node *next;
	const char *key;
	uint32_t hash;
} hmap_node_t;

typedef struct hmap {
	hmap_node_t **buckets;
	size_t nbuckets; /* power of two, or 0 before first insert */
	size_t count;
} hmap_t;

#define HMAP_INIT                                                                                            \
	{                                                                                                    \
		NULL, 0, 0                                                                                   \
	}

hmap_node_t *hmap_get(const hmap_t *m, const char *key);
/* Inserts node (its key must be set and not already present). */
void hmap_put(hmap_t *m, hmap_node_t *node, const char *key);
/* Removes node, which must be in m. */
void hmap_del(hmap_t *m, hmap_node_t *node);
void hmap_free(hmap_t *m);

/* Iterates every node; `nxt` is saved first so `n` may be deleted. */
#define hmap_foreach(m, n, nxt)                                                                              \
	for (size_t hmap_i_ = 0; hmap_i_ < (m)->nbuckets; hmap_i_++)                                         \
		for ((n) = (m)->buckets[hmap_i_], (nxt) = (n) ? (n)->next : NULL; (n) != NULL;               \
		     (n) = (nxt), (nxt) = (n) ? (n)->next : NULL)

#endif
