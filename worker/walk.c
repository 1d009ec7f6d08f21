/*
 * walk: the bounded-step lister (see walk.h). One DIR stream open at a
 * time; two intrusive FIFO queues.
 */
#include "worker/walk.h"

#include <stddef.h>
#include <string.h>
#include <unistd.h>

static void init_list(walk_node_t *s)
{
	s->prev = s->next = s;
}

static int list_empty(const walk_node_t *s)
{
	return s->next == s;
}

static void unlink_node(walk_node_t *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
}

static void append(walk_node_t *s, walk_node_t *n)
{
	n->prev = s->prev;
	n->next = s;
	s->prev->next = n;
	s->prev = n;
}

void walk_init(walk_t *wk, const walk_ops_t *ops, void *arg)
{
	memset(wk, 0, sizeof(*wk));
	init_list(&wk->urgent);
	init_list(&wk->background);
	wk->ops = ops;
	wk->arg = arg;
}

int walk_queued(const walk_node_t *n)
{
	return n->next != NULL;
}

void walk_push(walk_t *wk, walk_node_t *n, int urgent)
{
	if (walk_queued(n)) {
		if (!urgent)
			return;
		unlink_node(n);
	}
	append(urgent ? &wk->urgent : &wk->background, n);
}

static void close_cur(walk_t *wk)
{
	if (wk->dir != NULL)
		closedir(wk->dir);
	wk->dir = NULL;
	wk->cur = NULL;
}

void walk_cancel(walk_t *wk, walk_node_t *n)
{
	if (walk_queued(n))
		unlink_node(n);
	if (wk->cur == n)
		close_cur(wk);
	if (wk->held == n) {
		closedir(wk->held_dir);
		wk->held = NULL;
		wk->held_dir = NULL;
	}
}

/* Ends the current listing, telling the owner (which may queue more). */
static void finish(walk_t *wk, int ok)
{
	walk_node_t *n = wk->cur;

	close_cur(wk);
	wk->ops->done(wk->arg, n, ok);
}

/* Opens the next queued node; 0 when none is left. */
static int open_next(walk_t *wk)
{
	walk_node_t *s = !list_empty(&wk->urgent) ? &wk->urgent : &wk->background, *n;
	int fd;

	if (list_empty(s))
		return 0;
	n = s->next;
	unlink_node(n);
	wk->cur = n;
	wk->cur_urgent = s == &wk->urgent;
	fd = wk->ops->open(wk->arg, n);
	if (wk->cur != n) { /* cancelled from inside open: closed already */
		if (fd >= 0)
			close(fd);
		return 1;
	}
	if (fd >= 0 && (wk->dir = fdopendir(fd)) == NULL)
		close(fd);
	if (wk->dir == NULL)
		finish(wk, 0);
	return 1;
}

int walk_step(walk_t *wk, unsigned budget)
{
	while (budget > 0) {
		struct dirent *de;
		walk_node_t *n;

		/* A background listing that urgent work arrived behind waits,
		 * still open, until the urgent queue is empty again: urgent
		 * listings are what just appeared, and clients wait for them. */
		if (wk->cur != NULL && !wk->cur_urgent && wk->held == NULL && !list_empty(&wk->urgent)) {
			wk->held = wk->cur;
			wk->held_dir = wk->dir;
			wk->cur = NULL;
			wk->dir = NULL;
		}
		if (wk->cur == NULL && wk->held != NULL && list_empty(&wk->urgent)) {
			wk->cur = wk->held;
			wk->dir = wk->held_dir;
			wk->cur_urgent = 0;
			wk->held = NULL;
			wk->held_dir = NULL;
		}
		if (wk->cur == NULL) {
			if (!open_next(wk))
				break;
			budget--;
			continue;
		}
		n = wk->cur;
		if ((de = readdir(wk->dir)) == NULL) {
			finish(wk, 1);
			continue;
		}
		budget--;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		wk->ops->entry(wk->arg, n, dirfd(wk->dir), de->d_name, de->d_type);
	}
	return walk_busy(wk);
}

int walk_busy(const walk_t *wk)
{
	return wk->cur != NULL || wk->held != NULL || !list_empty(&wk->urgent) ||
	       !list_empty(&wk->background);
}

void walk_clear(walk_t *wk)
{
	close_cur(wk);
	if (wk->held != NULL)
		walk_cancel(wk, wk->held);
	while (!list_empty(&wk->urgent))
		unlink_node(wk->urgent.next);
	while (!list_empty(&wk->background))
		unlink_node(wk->background.next);
}
