/*
 * unwatched: the directories a watch could not watch for want of inotify
 * watches, each the top of an unwatched subtree (nothing under it is
 * watched either), by path relative to the root, oldest first. A set with
 * an order and an epoch per entry (the last full walk that met it, for
 * sweeping): no I/O, no clock, no events. watch.c decides when to retry
 * and what to tell clients.
 *
 * Ownership: the set owns its entries and their paths; a path it hands
 * out lives until its entry is removed.
 */
#ifndef CRUSH_UNWATCHED_H
#define CRUSH_UNWATCHED_H

#include <stddef.h>

#include "common/hmap.h"

typedef struct unwatched_entry {
	hmap_node_t node;		     /* keyed by rel */
	struct unwatched_entry *prev, *next; /* oldest first */
	unsigned epoch;
	char *rel;
} unwatched_entry_t;

typedef struct unwatched {
	hmap_t map;
	unwatched_entry_t list; /* sentinel */
} unwatched_t;

void unwatched_init(unwatched_t *u);
/* Removes every entry and frees the set's memory. */
void unwatched_clear(unwatched_t *u);

size_t unwatched_count(const unwatched_t *u);
int unwatched_has(const unwatched_t *u, const char *rel);
/* The oldest entry's path, or NULL when empty. */
const char *unwatched_first(const unwatched_t *u);
/* The paths of the oldest max entries into out; returns how many. */
size_t unwatched_sample(const unwatched_t *u, const char **out, size_t max);

/* Adds rel met in epoch (an entry there already is only marked met).
 * Returns 1 when it is new. */
int unwatched_add(unwatched_t *u, const char *rel, unsigned epoch);
/* Removes rel and every entry under it; returns how many went. */
size_t unwatched_drop_under(unwatched_t *u, const char *rel);
/* A directory moved from `from` to `to` within the tree: so do the
 * entries under it (one landing on an entry there already merges). */
void unwatched_rename(unwatched_t *u, const char *from, const char *to);
/* Removes the entries not met in epoch; returns how many went. */
size_t unwatched_sweep(unwatched_t *u, unsigned epoch);

#endif
