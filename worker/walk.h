/*
 * walk: directories waiting to be listed, listed in bounded steps so that
 * no tree, however big, holds the worker's loop (STYLE: long work never
 * runs on a loop others wait on). A step reads at most `budget` entries
 * and keeps its directory open across steps, so one directory of a
 * million entries is as divisible as a million directories. Two queues:
 * urgent (a directory that just appeared: its contents are news to
 * clients) is listed before background (the initial walk, rescans,
 * retries).
 *
 * It knows nothing of inotify or paths: the owner embeds a walk_node_t in
 * each thing it wants listed and is called back to open it, once per
 * entry, and when its listing ends.
 *
 * Ownership: nodes are the owner's; the walk only links them. An owner
 * that frees a node calls walk_cancel first. Callbacks may push and
 * cancel nodes, the one being listed included.
 */
#ifndef CRUSH_WALK_H
#define CRUSH_WALK_H

#include <dirent.h>

typedef struct walk_node {
	struct walk_node *prev, *next; /* in a queue, or both NULL */
} walk_node_t;

typedef struct walk_ops {
	/* An fd (O_RDONLY | O_DIRECTORY, which the walk then owns) to list
	 * n from, or -1 to skip it (gone, or not a directory any more). */
	int (*open)(void *arg, walk_node_t *n);
	/* One entry of n, never "." or "..": its name, its d_type (maybe
	 * DT_UNKNOWN), and the fd of n for *at() calls. */
	void (*entry)(void *arg, walk_node_t *n, int dfd, const char *name, unsigned char d_type);
	/* n's listing ended: ok is 1 when read to its end, 0 when it could not
	 * be opened or read. Not called for a node cancelled meanwhile. */
	void (*done)(void *arg, walk_node_t *n, int ok);
} walk_ops_t;

typedef struct walk {
	walk_node_t urgent, background; /* sentinels of two circular lists */
	walk_node_t *cur;		/* being listed, or NULL */
	DIR *dir;			/* cur's open listing */
	int cur_urgent;			/* cur came from the urgent queue */
	walk_node_t *held;		/* a background listing urgent work paused */
	DIR *held_dir;
	const walk_ops_t *ops;
	void *arg;
} walk_t;

void walk_init(walk_t *wk, const walk_ops_t *ops, void *arg);

/* Queues n (urgent or not). A node queued already stays where it is,
 * unless urgent moves it forward. The node being listed may be queued
 * again: it is listed again, from the start, later. */
void walk_push(walk_t *wk, walk_node_t *n, int urgent);

/* Takes n out of the walk: out of its queue, and if it is being listed,
 * its listing is closed without a done callback. */
void walk_cancel(walk_t *wk, walk_node_t *n);

/* 1 while n waits in a queue. */
int walk_queued(const walk_node_t *n);

/* Lists for at most `budget` units (one per entry, one per directory
 * opened). Returns 1 while work remains, 0 once both queues are empty
 * and nothing is open. */
int walk_step(walk_t *wk, unsigned budget);

/* 1 while anything is queued or open. */
int walk_busy(const walk_t *wk);

/* Closes what is open and forgets every queued node (not freeing them). */
void walk_clear(walk_t *wk);

#endif
