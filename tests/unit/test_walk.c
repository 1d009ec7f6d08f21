/*
 * test_walk: the bounded-step directory lister (worker/walk.c) against
 * real directories under /tmp: a step never reads more than its budget,
 * a directory stays open across steps, urgent listings go first (pausing
 * a background one mid-way), and a cancelled node is never called back.
 */
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "worker/walk.h"

/* A directory to list, with what the walk said about it. */
struct dir {
	walk_node_t node;
	char path[128];
	int entries; /* entry callbacks */
	int done;    /* done callbacks */
	int ok;	     /* the last done's ok */
	int order;   /* when done was called (1, 2, ...) */
};

struct world {
	char tmp[64];
	walk_t walk;
	int dones;
	struct dir *cancel_on_entry; /* cancelled from its own entry callback */
};

static struct dir *dir_of(walk_node_t *n)
{
	return (struct dir *)((char *)n - offsetof(struct dir, node));
}

static int cb_open(void *arg, walk_node_t *n)
{
	(void)arg;
	return open(dir_of(n)->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static void cb_entry(void *arg, walk_node_t *n, int dfd, const char *name, unsigned char type)
{
	struct world *w = arg;

	(void)type;
	assert_true(dfd >= 0);
	assert_true(strcmp(name, ".") != 0 && strcmp(name, "..") != 0);
	dir_of(n)->entries++;
	if (w->cancel_on_entry == dir_of(n))
		walk_cancel(&w->walk, n);
}

static void cb_done(void *arg, walk_node_t *n, int ok)
{
	struct world *w = arg;

	dir_of(n)->done++;
	dir_of(n)->ok = ok;
	dir_of(n)->order = ++w->dones;
}

static const walk_ops_t ops = {.open = cb_open, .entry = cb_entry, .done = cb_done};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));

	assert_non_null(w);
	strcpy(w->tmp, "/tmp/test_walk.XXXXXX");
	assert_non_null(mkdtemp(w->tmp));
	walk_init(&w->walk, &ops, w);
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;

	walk_clear(&w->walk);
	nftw(w->tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(w);
	return 0;
}

/* A directory tmp/name holding n empty files. */
static void make(struct world *w, struct dir *d, const char *name, int n)
{
	char f[192];

	memset(d, 0, sizeof(*d));
	snprintf(d->path, sizeof(d->path), "%s/%s", w->tmp, name);
	assert_int_equal(mkdir(d->path, 0755), 0);
	for (int i = 0; i < n; i++) {
		snprintf(f, sizeof(f), "%s/f%d", d->path, i);
		close(open(f, O_CREAT | O_WRONLY, 0644));
	}
}

/* Steps until the walk is done, failing the test if it never is: a walk
 * that keeps returning "more" would otherwise hang the suite. Returns the
 * number of steps that returned "more". */
#define MAX_STEPS 100000
static int step_all(walk_t *wk, unsigned budget)
{
	int steps = 0;

	while (walk_step(wk, budget)) {
		steps++;
		assert_true(steps < MAX_STEPS);
	}
	return steps;
}

static void test_a_step_reads_at_most_its_budget_and_keeps_the_directory_open(void **state)
{
	struct world *w = *state;
	struct dir a;
	int steps = 0;

	make(w, &a, "a", 100);
	walk_push(&w->walk, &a.node, 0);
	assert_true(walk_queued(&a.node));
	assert_int_equal(walk_step(&w->walk, 10), 1); /* the open, then 9 entries (or . and ..) */
	assert_false(walk_queued(&a.node));
	assert_true(a.entries <= 9);
	steps = 1 + step_all(&w->walk, 10);
	assert_int_equal(a.entries, 100);
	assert_int_equal(a.done, 1);
	assert_int_equal(a.ok, 1);
	assert_true(steps >= 10); /* 1 open + 102 names, 10 a step */
	assert_false(walk_busy(&w->walk));
}

static void test_urgent_goes_first_and_pauses_a_background_listing(void **state)
{
	struct world *w = *state;
	struct dir bg, bg2, urgent;

	make(w, &bg, "bg", 50);
	make(w, &bg2, "bg2", 1);
	make(w, &urgent, "urgent", 3);
	walk_push(&w->walk, &bg.node, 0);
	walk_push(&w->walk, &bg2.node, 0);
	walk_step(&w->walk, 10);
	assert_true(bg.entries > 0 && bg.entries < 50);
	walk_push(&w->walk, &urgent.node, 1);
	for (int n = 0; urgent.done == 0; n++) {
		assert_true(n < MAX_STEPS);
		assert_int_equal(walk_step(&w->walk, 1), 1);
	}
	/* bg was held, open, meanwhile; then it resumes where it was. */
	assert_int_equal(urgent.order, 1);
	assert_int_equal(urgent.entries, 3);
	step_all(&w->walk, 7);
	assert_int_equal(bg.entries, 50);
	assert_int_equal(bg.order, 2);
	assert_int_equal(bg2.order, 3);
}

static void test_pushing_urgent_moves_a_queued_node_forward(void **state)
{
	struct world *w = *state;
	struct dir a, b;

	make(w, &a, "a", 1);
	make(w, &b, "b", 1);
	walk_push(&w->walk, &a.node, 0);
	walk_push(&w->walk, &b.node, 0);
	walk_push(&w->walk, &b.node, 1);
	walk_push(&w->walk, &a.node, 0); /* queued already: stays put */
	step_all(&w->walk, 100);
	assert_int_equal(b.order, 1);
	assert_int_equal(a.order, 2);
}

static void test_a_cancelled_node_is_never_called_back(void **state)
{
	struct world *w = *state;
	struct dir a, b, c;

	make(w, &a, "a", 20);
	make(w, &b, "b", 20);
	make(w, &c, "c", 20);
	walk_push(&w->walk, &a.node, 0);
	walk_push(&w->walk, &b.node, 0);
	walk_push(&w->walk, &c.node, 0);
	walk_step(&w->walk, 5);
	walk_cancel(&w->walk, &a.node); /* being listed */
	walk_cancel(&w->walk, &b.node); /* queued */
	w->cancel_on_entry = &c;	/* from inside its own callback */
	step_all(&w->walk, 5);
	assert_int_equal(a.done + b.done + c.done, 0);
	assert_int_equal(b.entries, 0);
	assert_int_equal(c.entries, 1);
	assert_false(walk_busy(&w->walk));
}

static void test_a_directory_that_cannot_be_opened_is_done_not_ok(void **state)
{
	struct world *w = *state;
	struct dir gone, after;

	make(w, &gone, "gone", 0);
	make(w, &after, "after", 2);
	assert_int_equal(rmdir(gone.path), 0);
	walk_push(&w->walk, &gone.node, 0);
	walk_push(&w->walk, &after.node, 0);
	step_all(&w->walk, 100);
	assert_int_equal(gone.done, 1);
	assert_int_equal(gone.ok, 0);
	assert_int_equal(after.ok, 1);
	assert_int_equal(after.entries, 2);
}

static void test_a_node_pushed_while_listed_is_listed_again(void **state)
{
	struct world *w = *state;
	struct dir a;

	make(w, &a, "a", 4);
	walk_push(&w->walk, &a.node, 0);
	walk_step(&w->walk, 2);
	walk_push(&w->walk, &a.node, 0);
	step_all(&w->walk, 100);
	assert_int_equal(a.done, 2);
	assert_int_equal(a.entries, 8);
}

#define WITH_DIR(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    WITH_DIR(test_a_step_reads_at_most_its_budget_and_keeps_the_directory_open),
	    WITH_DIR(test_urgent_goes_first_and_pauses_a_background_listing),
	    WITH_DIR(test_pushing_urgent_moves_a_queued_node_forward),
	    WITH_DIR(test_a_cancelled_node_is_never_called_back),
	    WITH_DIR(test_a_directory_that_cannot_be_opened_is_done_not_ok),
	    WITH_DIR(test_a_node_pushed_while_listed_is_listed_again),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
