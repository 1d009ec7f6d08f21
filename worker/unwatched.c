/*
 * unwatched: the set of unwatched subtrees (see unwatched.h): an hmap for
 * lookups, an intrusive list for the order.
 */
#include "worker/unwatched.h"

#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "worker/relpath.h"

static unwatched_entry_t *find(const unwatched_t *u, const char *rel)
{
	return (unwatched_entry_t *)hmap_get(&u->map, rel);
}

static void unlink_entry(unwatched_entry_t *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
}

static void remove_entry(unwatched_t *u, unwatched_entry_t *e)
{
	hmap_del(&u->map, &e->node);
	unlink_entry(e);
	free(e->rel);
	free(e);
}

void unwatched_init(unwatched_t *u)
{
	memset(u, 0, sizeof(*u));
	u->list.prev = u->list.next = &u->list;
}

void unwatched_clear(unwatched_t *u)
{
	while (u->list.next != &u->list)
		remove_entry(u, u->list.next);
	hmap_free(&u->map);
}

size_t unwatched_count(const unwatched_t *u)
{
	return u->map.count;
}

int unwatched_has(const unwatched_t *u, const char *rel)
{
	return u->map.count > 0 && find(u, rel) != NULL;
}

const char *unwatched_first(const unwatched_t *u)
{
	return u->list.next != &u->list ? u->list.next->rel : NULL;
}

size_t unwatched_sample(const unwatched_t *u, const char **out, size_t max)
{
	size_t n = 0;

	for (const unwatched_entry_t *e = u->list.next; e != &u->list && n < max; e = e->next)
		out[n++] = e->rel;
	return n;
}

int unwatched_add(unwatched_t *u, const char *rel, unsigned epoch)
{
	unwatched_entry_t *e = find(u, rel);

	if (e != NULL) {
		e->epoch = epoch;
		return 0;
	}
	e = xmalloc(sizeof(*e));
	e->rel = strcpy(xmalloc(strlen(rel) + 1), rel);
	e->epoch = epoch;
	hmap_put(&u->map, &e->node, e->rel);
	e->next = &u->list;
	e->prev = u->list.prev;
	e->prev->next = e;
	u->list.prev = e;
	return 1;
}

size_t unwatched_drop_under(unwatched_t *u, const char *rel)
{
	unwatched_entry_t *e, *next;
	size_t before = u->map.count;

	for (e = u->list.next; e != &u->list; e = next) {
		next = e->next;
		if (relpath_under(e->rel, rel))
			remove_entry(u, e);
	}
	return before - u->map.count;
}

void unwatched_rename(unwatched_t *u, const char *from, const char *to)
{
	size_t n = strlen(from);
	unwatched_entry_t *e, *next;

	for (e = u->list.next; e != &u->list; e = next) {
		char *rel;

		next = e->next;
		if (!relpath_under(e->rel, from))
			continue;
		rel = xmalloc(strlen(to) + strlen(e->rel + n) + 1);
		strcpy(rel, to);
		strcat(rel, e->rel + n);
		hmap_del(&u->map, &e->node);
		free(e->rel);
		e->rel = rel;
		if (find(u, rel) == NULL) {
			hmap_put(&u->map, &e->node, e->rel);
			continue;
		}
		/* Moved over a stale entry of that name: one is enough. */
		unlink_entry(e);
		free(e->rel);
		free(e);
	}
}

size_t unwatched_sweep(unwatched_t *u, unsigned epoch)
{
	unwatched_entry_t *e, *next;
	size_t before = u->map.count;

	for (e = u->list.next; e != &u->list; e = next) {
		next = e->next;
		if (e->epoch != epoch)
			remove_entry(u, e);
	}
	return before - u->map.count;
}
