/*
 * hmap: intrusive chained string hash table (see hmap.h). FNV-1a hashes,
 * power-of-two bucket counts, doubling at load factor 1; each node keeps
 * its hash so growth never rehashes a key and lookups compare hashes first.
 */
#include "common/hmap.h"

#include <stdlib.h>
#include <string.h>

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

static void grow(hmap_t *m)
{
	size_t n = m->nbuckets ? m->nbuckets * 2 : 8;
	hmap_node_t **b = calloc(n, sizeof(*b));

	if (b == NULL)
		abort();
	for (size_t i = 0; i < m->nbuckets; i++) {
		hmap_node_t *node = m->buckets[i], *next;

		for (; node != NULL; node = next) {
			next = node->next;
			node->next = b[node->hash & (n - 1)];
			b[node->hash & (n - 1)] = node;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
}

hmap_node_t *hmap_get(const hmap_t *m, const char *key)
{
	uint32_t h;

	if (m->nbuckets == 0)
		return NULL;
	h = hash_str(key);
	for (hmap_node_t *n = m->buckets[h & (m->nbuckets - 1)]; n != NULL; n = n->next)
		if (n->hash == h && strcmp(n->key, key) == 0)
			return n;
	return NULL;
}

void hmap_put(hmap_t *m, hmap_node_t *node, const char *key)
{
	hmap_node_t **slot;

	if (m->count + 1 > m->nbuckets)
		grow(m);
	node->key = key;
	node->hash = hash_str(key);
	slot = &m->buckets[node->hash & (m->nbuckets - 1)];
	node->next = *slot;
	*slot = node;
	m->count++;
}

void hmap_del(hmap_t *m, hmap_node_t *node)
{
	hmap_node_t **pp;

	if (m->nbuckets == 0)
		return;
	pp = &m->buckets[node->hash & (m->nbuckets - 1)];
	for (; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == node) {
			*pp = node->next;
			node->next = NULL;
			m->count--;
			return;
		}
	}
}

void hmap_free(hmap_t *m)
{
	free(m->buckets);
	m->buckets = NULL;
	m->nbuckets = 0;
	m->count = 0;
}
