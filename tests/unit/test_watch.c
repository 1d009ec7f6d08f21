/*
 * test_watch: the recursive inotify watch against real directories under
 * /tmp. Events are awaited with a bounded poll on the inotify fd (5 s),
 * never with sleeps; absence is proven by a later marker event arriving
 * first, since one inotify queue keeps the order of everything it holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "worker/watch.h"

#define WAIT_MS	   5000
#define MAX_EVENTS 65536

struct event {
	enum watch_kind kind;
	char path[256];
	char from[256];
	int is_dir;
	int has_from;
};

/* Everything the callback reported, in order. */
struct record {
	struct event *evs;
	size_t n;
};

/* One test's world: a fresh temp dir, a watch on some path in it. */
struct fixture {
	char tmp[64];
	struct record rec;
	watch_t *w;
};

static void on_event(void *arg, enum watch_kind kind, const char *path, int is_dir, const char *from)
{
	struct record *r = arg;
	struct event *e;

	assert_true(r->n < MAX_EVENTS);
	e = &r->evs[r->n++];
	e->kind = kind;
	e->is_dir = is_dir;
	snprintf(e->path, sizeof(e->path), "%s", path);
	e->has_from = from != NULL;
	snprintf(e->from, sizeof(e->from), "%s", from != NULL ? from : "");
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	fx->rec.evs = calloc(MAX_EVENTS, sizeof(struct event));
	assert_non_null(fx->rec.evs);
	strcpy(fx->tmp, "/tmp/test_watch.XXXXXX");
	assert_non_null(mkdtemp(fx->tmp));
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	watch_close(fx->w);
	nftw(fx->tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(fx->rec.evs);
	free(fx);
	return 0;
}

/* tmp/rel, in a static buffer (one at a time). */
static const char *at(struct fixture *fx, const char *rel)
{
	static char path[4][512];
	static int i;

	i = (i + 1) % 4;
	snprintf(path[i], sizeof(path[i]), "%s/%s", fx->tmp, rel);
	return path[i];
}

static void touch(struct fixture *fx, const char *rel)
{
	int fd = open(at(fx, rel), O_CREAT | O_WRONLY | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
}

static void mkdir_p(struct fixture *fx, const char *rel)
{
	char path[512], *p;

	snprintf(path, sizeof(path), "%s", at(fx, rel));
	for (p = path + strlen(fx->tmp) + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
		*p = '/';
	}
	assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
}

static void open_watch(struct fixture *fx, const char *rel, const char *data_dir)
{
	fx->w = watch_open(rel == NULL ? fx->tmp : at(fx, rel), data_dir, on_event, &fx->rec);
	assert_non_null(fx->w);
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const struct event *find(struct fixture *fx, enum watch_kind kind, const char *path)
{
	for (size_t i = 0; i < fx->rec.n; i++)
		if (fx->rec.evs[i].kind == kind && strcmp(fx->rec.evs[i].path, path) == 0)
			return &fx->rec.evs[i];
	return NULL;
}

/* Processes events until (kind, path) was reported, for at most WAIT_MS. */
static const struct event *wait_for(struct fixture *fx, enum watch_kind kind, const char *path)
{
	long deadline = now_ms() + WAIT_MS;
	const struct event *e;

	while ((e = find(fx, kind, path)) == NULL) {
		struct pollfd pfd = {.fd = watch_fd(fx->w), .events = POLLIN};
		long left = deadline - now_ms();

		if (left <= 0)
			fail_msg("no %s event for \"%s\" within %d ms", watch_kind_name(kind), path, WAIT_MS);
		if (poll(&pfd, 1, (int)left) > 0)
			assert_true(watch_process(fx->w) >= 0);
	}
	return e;
}

/* No event so far names anything under prefix. */
static void assert_nothing_under(struct fixture *fx, const char *prefix)
{
	size_t n = strlen(prefix);

	for (size_t i = 0; i < fx->rec.n; i++) {
		const struct event *e = &fx->rec.evs[i];

		if (strncmp(e->path, prefix, n) == 0 || strncmp(e->from, prefix, n) == 0)
			fail_msg("unexpected %s event for \"%s\"", watch_kind_name(e->kind), e->path);
	}
}

static void test_file_create_modify_delete_are_reported_relative_to_root(void **state)
{
	struct fixture *fx = *state;
	const struct event *e;

	open_watch(fx, NULL, NULL);
	assert_true(watch_active(fx->w));
	touch(fx, "a.txt");
	e = wait_for(fx, WATCH_CREATED, "a.txt");
	assert_false(e->is_dir);
	assert_false(e->has_from);
	wait_for(fx, WATCH_MODIFIED, "a.txt");
	assert_int_equal(unlink(at(fx, "a.txt")), 0);
	e = wait_for(fx, WATCH_DELETED, "a.txt");
	assert_false(e->is_dir);
	assert_int_equal(mkdir(at(fx, "d"), 0755), 0);
	assert_true(wait_for(fx, WATCH_CREATED, "d")->is_dir);
	assert_int_equal(rmdir(at(fx, "d")), 0);
	assert_true(wait_for(fx, WATCH_DELETED, "d")->is_dir);
}

static void test_existing_contents_are_not_reported_at_open(void **state)
{
	struct fixture *fx = *state;

	mkdir_p(fx, "old/deep");
	touch(fx, "old/deep/f");
	open_watch(fx, NULL, NULL);
	touch(fx, "old/deep/marker");
	wait_for(fx, WATCH_CREATED, "old/deep/marker");
	assert_null(find(fx, WATCH_CREATED, "old/deep/f"));
	assert_null(find(fx, WATCH_CREATED, "old"));
}

static void test_rename_within_tree_is_one_renamed_event(void **state)
{
	struct fixture *fx = *state;
	const struct event *e;

	mkdir_p(fx, "sub");
	touch(fx, "a");
	open_watch(fx, NULL, NULL);
	assert_int_equal(rename(at(fx, "a"), at(fx, "sub/b")), 0);
	e = wait_for(fx, WATCH_RENAMED, "sub/b");
	assert_true(e->has_from);
	assert_string_equal(e->from, "a");
	assert_false(e->is_dir);
	assert_null(find(fx, WATCH_DELETED, "a"));
	assert_null(find(fx, WATCH_CREATED, "sub/b"));
}

static void test_renamed_directory_reports_under_its_new_path(void **state)
{
	struct fixture *fx = *state;
	const struct event *e;

	mkdir_p(fx, "old/inner");
	open_watch(fx, NULL, NULL);
	assert_int_equal(rename(at(fx, "old"), at(fx, "new")), 0);
	e = wait_for(fx, WATCH_RENAMED, "new");
	assert_true(e->is_dir);
	assert_string_equal(e->from, "old");
	touch(fx, "new/inner/f");
	wait_for(fx, WATCH_CREATED, "new/inner/f");
	assert_nothing_under(fx, "old/");
}

static void test_moves_across_the_tree_edge_are_deleted_and_created(void **state)
{
	struct fixture *fx = *state;

	mkdir_p(fx, "ws");
	mkdir_p(fx, "outside/dir/inner");
	touch(fx, "outside/dir/inner/f");
	touch(fx, "ws/leaving");
	open_watch(fx, "ws", NULL);
	assert_int_equal(rename(at(fx, "ws/leaving"), at(fx, "outside/left")), 0);
	assert_false(wait_for(fx, WATCH_DELETED, "leaving")->is_dir);
	/* A directory moved in is reported with everything inside it, and watched. */
	assert_int_equal(rename(at(fx, "outside/dir"), at(fx, "ws/dir")), 0);
	assert_true(wait_for(fx, WATCH_CREATED, "dir")->is_dir);
	assert_true(wait_for(fx, WATCH_CREATED, "dir/inner")->is_dir);
	wait_for(fx, WATCH_CREATED, "dir/inner/f");
	touch(fx, "ws/dir/inner/g");
	wait_for(fx, WATCH_CREATED, "dir/inner/g");
	/* Moved out again: deleted, and no longer watched. */
	assert_int_equal(rename(at(fx, "ws/dir"), at(fx, "outside/gone")), 0);
	assert_true(wait_for(fx, WATCH_DELETED, "dir")->is_dir);
	touch(fx, "outside/gone/inner/h");
	touch(fx, "ws/marker");
	wait_for(fx, WATCH_CREATED, "marker");
	assert_null(find(fx, WATCH_CREATED, "dir/inner/h"));
}

static void test_new_subdirectory_is_watched(void **state)
{
	struct fixture *fx = *state;

	open_watch(fx, NULL, NULL);
	assert_int_equal(mkdir(at(fx, "sub"), 0755), 0);
	wait_for(fx, WATCH_CREATED, "sub");
	touch(fx, "sub/file");
	assert_false(wait_for(fx, WATCH_CREATED, "sub/file")->is_dir);
	wait_for(fx, WATCH_MODIFIED, "sub/file");
}

static void test_mkdir_p_then_file_inside_is_not_lost(void **state)
{
	struct fixture *fx = *state;

	open_watch(fx, NULL, NULL);
	/* No processing in between: the tree exists before its watches do. */
	mkdir_p(fx, "a/b/c");
	touch(fx, "a/b/c/f");
	assert_true(wait_for(fx, WATCH_CREATED, "a")->is_dir);
	assert_true(wait_for(fx, WATCH_CREATED, "a/b")->is_dir);
	assert_true(wait_for(fx, WATCH_CREATED, "a/b/c")->is_dir);
	assert_false(wait_for(fx, WATCH_CREATED, "a/b/c/f")->is_dir);
	touch(fx, "a/b/c/g");
	wait_for(fx, WATCH_MODIFIED, "a/b/c/g");
}

static void test_directory_renamed_before_it_was_watched_is_reported_in_full(void **state)
{
	struct fixture *fx = *state;
	const struct event *e;

	open_watch(fx, NULL, NULL);
	/* All before the first event is read: "a" is gone when its creation
	 * is processed, so the rename must bring its contents to light. */
	mkdir_p(fx, "a/b/c");
	touch(fx, "a/b/c/f");
	assert_int_equal(rename(at(fx, "a"), at(fx, "z")), 0);
	e = wait_for(fx, WATCH_RENAMED, "z");
	assert_string_equal(e->from, "a");
	assert_true(wait_for(fx, WATCH_CREATED, "z/b")->is_dir);
	assert_true(wait_for(fx, WATCH_CREATED, "z/b/c")->is_dir);
	wait_for(fx, WATCH_CREATED, "z/b/c/f");
	touch(fx, "z/b/c/g");
	wait_for(fx, WATCH_MODIFIED, "z/b/c/g");
}

static void test_git_and_default_data_dir_are_ignored(void **state)
{
	struct fixture *fx = *state;

	mkdir_p(fx, ".git/objects");
	open_watch(fx, NULL, NULL);
	touch(fx, ".git/HEAD");
	touch(fx, ".git/objects/ab");
	mkdir_p(fx, ".crush/logs");
	touch(fx, ".crush/logs/crush.log");
	touch(fx, ".gitignore"); /* a sibling that merely starts like .git */
	wait_for(fx, WATCH_CREATED, ".gitignore");
	assert_nothing_under(fx, ".git/");
	assert_nothing_under(fx, ".crush");
	assert_null(find(fx, WATCH_CREATED, ".git"));
}

static void test_custom_data_dir_inside_tree_is_ignored(void **state)
{
	struct fixture *fx = *state;
	char data_dir[512];

	snprintf(data_dir, sizeof(data_dir), "%s//state/crush/", fx->tmp);
	open_watch(fx, NULL, data_dir);
	mkdir_p(fx, "state/crush");
	touch(fx, "state/crush/db");
	touch(fx, "state/other");
	touch(fx, ".crush"); /* not the data dir any more: reported */
	wait_for(fx, WATCH_CREATED, "state/other");
	wait_for(fx, WATCH_CREATED, ".crush");
	assert_true(wait_for(fx, WATCH_CREATED, "state")->is_dir);
	assert_nothing_under(fx, "state/crush");
}

static void test_data_dir_written_through_a_symlink_is_ignored(void **state)
{
	struct fixture *fx = *state;
	char data_dir[512];

	/* The supervisor passes the resolved key and the data dir as the
	 * client wrote it; the data dir need not exist yet. */
	mkdir_p(fx, "real");
	assert_int_equal(symlink("real", at(fx, "link")), 0);
	snprintf(data_dir, sizeof(data_dir), "%s", at(fx, "link/.state"));
	open_watch(fx, "real", data_dir);
	mkdir_p(fx, "real/.state");
	touch(fx, "real/.state/db");
	touch(fx, "real/marker");
	wait_for(fx, WATCH_CREATED, "marker");
	assert_nothing_under(fx, ".state");
}

/* Processes events until watch_process fails; returns its errno. */
static int wait_dead(struct fixture *fx)
{
	long deadline = now_ms() + WAIT_MS;

	for (;;) {
		struct pollfd pfd = {.fd = watch_fd(fx->w), .events = POLLIN};
		long left = deadline - now_ms();

		if (left <= 0)
			fail_msg("the watch went on for %d ms", WAIT_MS);
		if (poll(&pfd, 1, (int)left) > 0 && watch_process(fx->w) < 0)
			return errno;
	}
}

static void test_root_through_a_symlink_is_refused(void **state)
{
	struct fixture *fx = *state;

	mkdir_p(fx, "real");
	assert_int_equal(symlink("real", at(fx, "link")), 0);
	assert_null(watch_open(at(fx, "link"), NULL, on_event, &fx->rec));
	assert_int_equal(errno, ELOOP);
	mkdir_p(fx, "real/sub");
	assert_int_equal(symlink("../../real", at(fx, "real/sub/up")), 0);
	assert_null(watch_open(at(fx, "real/sub/up"), NULL, on_event, &fx->rec));
	assert_int_equal(errno, ELOOP);
}

static void test_open_rejects_a_non_canonical_root(void **state)
{
	struct fixture *fx = *state;

	/* The worker never cleans or resolves its root: the supervisor's key
	 * is canonical, anything else is a bug to refuse. */
	assert_null(watch_open(at(fx, "gone/../ws"), NULL, on_event, &fx->rec));
	assert_int_equal(errno, EINVAL);
	assert_null(watch_open(at(fx, "ws/."), NULL, on_event, &fx->rec));
	assert_null(watch_open(at(fx, "ws/"), NULL, on_event, &fx->rec));
	assert_null(watch_open(at(fx, "a//ws"), NULL, on_event, &fx->rec));
}

static void test_missing_root_that_appears_as_a_symlink_kills_the_watch(void **state)
{
	struct fixture *fx = *state;

	mkdir_p(fx, "elsewhere");
	open_watch(fx, "ws", NULL);
	assert_false(watch_active(fx->w));
	assert_int_equal(symlink("elsewhere", at(fx, "ws")), 0);
	assert_int_equal(wait_dead(fx), ELOOP);
	assert_false(watch_active(fx->w));
	touch(fx, "elsewhere/f");
	assert_int_equal(watch_process(fx->w), -1);
	assert_int_equal(errno, ELOOP);
	assert_int_equal(fx->rec.n, 0);
}

static void test_root_replaced_by_a_symlink_to_itself_kills_the_watch(void **state)
{
	struct fixture *fx = *state;

	/* The same directory, now behind a symlink: the supervisor would
	 * resolve the key to another one, so it is no longer ours. */
	mkdir_p(fx, "ws");
	open_watch(fx, "ws", NULL);
	assert_int_equal(rename(at(fx, "ws"), at(fx, "moved")), 0);
	assert_int_equal(symlink("moved", at(fx, "ws")), 0);
	assert_int_equal(wait_dead(fx), ELOOP);
}

static void test_missing_directory_is_watched_from_when_it_appears(void **state)
{
	struct fixture *fx = *state;

	open_watch(fx, "x/y/ws", NULL);
	assert_false(watch_active(fx->w));
	mkdir_p(fx, "x");
	mkdir_p(fx, "x/y/other"); /* a sibling of the next component: no change */
	mkdir_p(fx, "x/y/ws/sub");
	touch(fx, "x/y/ws/sub/early");
	wait_for(fx, WATCH_CREATED, "sub/early");
	assert_true(watch_active(fx->w));
	assert_true(find(fx, WATCH_CREATED, "sub")->is_dir);
	touch(fx, "x/y/ws/late");
	wait_for(fx, WATCH_MODIFIED, "late");
	/* Nothing but the directory's own contents, ever. */
	for (size_t i = 0; i < fx->rec.n; i++)
		assert_true(strcmp(fx->rec.evs[i].path, "sub") == 0 ||
			    strncmp(fx->rec.evs[i].path, "sub/", 4) == 0 ||
			    strcmp(fx->rec.evs[i].path, "late") == 0);
}

static void test_missing_directory_created_by_rename_is_watched(void **state)
{
	struct fixture *fx = *state;

	mkdir_p(fx, "staging/inner");
	open_watch(fx, "ws", NULL);
	assert_int_equal(rename(at(fx, "staging"), at(fx, "ws")), 0);
	wait_for(fx, WATCH_CREATED, "inner");
	touch(fx, "ws/inner/f");
	wait_for(fx, WATCH_MODIFIED, "inner/f");
}

/* Removes ws (with its file), recreates it, and expects it watched again. */
static void remove_and_recreate_root(struct fixture *fx)
{
	mkdir_p(fx, "ws");
	open_watch(fx, "ws", NULL);
	touch(fx, "ws/f");
	wait_for(fx, WATCH_MODIFIED, "f");
	assert_int_equal(unlink(at(fx, "ws/f")), 0);
	assert_int_equal(rmdir(at(fx, "ws")), 0);
	wait_for(fx, WATCH_DELETED, "f");
	mkdir_p(fx, "ws");
	touch(fx, "ws/again"); /* may predate the new watch: then only created */
	wait_for(fx, WATCH_CREATED, "again");
	assert_true(watch_active(fx->w));
}

static void test_removed_root_is_waited_for_again(void **state)
{
	remove_and_recreate_root(*state);
}

/* The worker's cwd is its root, which delays the kernel's DELETE_SELF for
 * it until the cwd moves: the removal must be seen from the parent. */
static void test_removed_root_is_seen_even_while_it_is_our_cwd(void **state)
{
	struct fixture *fx = *state;
	int cwd = open(".", O_RDONLY | O_DIRECTORY);

	assert_true(cwd >= 0);
	mkdir_p(fx, "ws");
	assert_int_equal(chdir(at(fx, "ws")), 0);
	remove_and_recreate_root(fx);
	assert_int_equal(fchdir(cwd), 0);
	close(cwd);
}

static void test_root_renamed_away_is_waited_for_again(void **state)
{
	struct fixture *fx = *state;

	mkdir_p(fx, "ws");
	open_watch(fx, "ws", NULL);
	assert_int_equal(rename(at(fx, "ws"), at(fx, "moved")), 0);
	touch(fx, "moved/f"); /* no longer the workspace */
	mkdir_p(fx, "ws");
	touch(fx, "ws/new");
	wait_for(fx, WATCH_CREATED, "new");
	assert_null(find(fx, WATCH_CREATED, "f"));
}

static void test_queue_overflow_is_reported(void **state)
{
	struct fixture *fx = *state;
	FILE *f = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
	long max = 0;
	char name[32];
	size_t overflows = 0;

	if (f != NULL) {
		if (fscanf(f, "%ld", &max) != 1)
			max = 0;
		fclose(f);
	}
	if (max <= 0 || max > 100000)
		skip();
	open_watch(fx, NULL, NULL);
	/* Two events per file (create, close-write), none read meanwhile. */
	for (long i = 0; i < max / 2 + 100; i++) {
		snprintf(name, sizeof(name), "f%ld", i);
		touch(fx, name);
	}
	wait_for(fx, WATCH_OVERFLOW, "");
	for (size_t i = 0; i < fx->rec.n; i++)
		overflows += fx->rec.evs[i].kind == WATCH_OVERFLOW;
	assert_int_equal(overflows, 1);
	/* Still watching afterwards, new directories included. */
	mkdir_p(fx, "after/deep");
	touch(fx, "after/deep/f");
	wait_for(fx, WATCH_CREATED, "after/deep/f");
}

static void test_open_rejects_a_relative_root(void **state)
{
	(void)state;
	assert_null(watch_open("relative/path", NULL, on_event, NULL));
	assert_int_equal(errno, EINVAL);
}

/* Every test but the last runs in its own fresh temp dir. */
#define WITH_DIR(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    WITH_DIR(test_file_create_modify_delete_are_reported_relative_to_root),
	    WITH_DIR(test_existing_contents_are_not_reported_at_open),
	    WITH_DIR(test_rename_within_tree_is_one_renamed_event),
	    WITH_DIR(test_renamed_directory_reports_under_its_new_path),
	    WITH_DIR(test_moves_across_the_tree_edge_are_deleted_and_created),
	    WITH_DIR(test_new_subdirectory_is_watched),
	    WITH_DIR(test_mkdir_p_then_file_inside_is_not_lost),
	    WITH_DIR(test_directory_renamed_before_it_was_watched_is_reported_in_full),
	    WITH_DIR(test_git_and_default_data_dir_are_ignored),
	    WITH_DIR(test_custom_data_dir_inside_tree_is_ignored),
	    WITH_DIR(test_data_dir_written_through_a_symlink_is_ignored),
	    WITH_DIR(test_root_through_a_symlink_is_refused),
	    WITH_DIR(test_open_rejects_a_non_canonical_root),
	    WITH_DIR(test_missing_root_that_appears_as_a_symlink_kills_the_watch),
	    WITH_DIR(test_root_replaced_by_a_symlink_to_itself_kills_the_watch),
	    WITH_DIR(test_missing_directory_is_watched_from_when_it_appears),
	    WITH_DIR(test_missing_directory_created_by_rename_is_watched),
	    WITH_DIR(test_removed_root_is_waited_for_again),
	    WITH_DIR(test_removed_root_is_seen_even_while_it_is_our_cwd),
	    WITH_DIR(test_root_renamed_away_is_waited_for_again),
	    WITH_DIR(test_queue_overflow_is_reported),
	    cmocka_unit_test(test_open_rejects_a_relative_root),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
