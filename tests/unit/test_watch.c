/*
 * test_watch: the recursive inotify watch against real directories under
 * /tmp. Events are awaited with a bounded poll on the inotify fd (5 s),
 * never with sleeps; absence is proven by a later marker event arriving
 * first, since one inotify queue keeps the order of everything it holds.
 * The watch's own work (walks, retries) runs whenever watch_next says so,
 * as the worker's loop runs it; open_watch waits for the first walk.
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
	char cause[32];
	int is_dir;
	int has_from;
	int has_status;
	struct {
		int complete, scanning;
		size_t unwatched;
		char first[256];
	} st;
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

static void on_event(void *arg, const struct watch_event *ev)
{
	struct record *r = arg;
	struct event *e;

	assert_true(r->n < MAX_EVENTS);
	e = &r->evs[r->n++];
	memset(e, 0, sizeof(*e));
	e->kind = ev->kind;
	e->is_dir = ev->is_dir;
	snprintf(e->path, sizeof(e->path), "%s", ev->path);
	e->has_from = ev->from != NULL;
	snprintf(e->from, sizeof(e->from), "%s", ev->from != NULL ? ev->from : "");
	snprintf(e->cause, sizeof(e->cause), "%s", ev->cause != NULL ? ev->cause : "");
	/* Every watch event (and no fs event) says the view after it. */
	assert_true((ev->status != NULL) == (ev->kind > WATCH_KIND_FS_LAST));
	if (ev->status != NULL) {
		e->has_status = 1;
		e->st.complete = ev->status->complete;
		e->st.scanning = ev->status->scanning;
		e->st.unwatched = ev->status->unwatched;
		assert_true(ev->status->nsample <= WATCH_SAMPLE);
		assert_true(ev->status->nsample ==
			    (ev->status->unwatched < WATCH_SAMPLE ? ev->status->unwatched : WATCH_SAMPLE));
		snprintf(e->st.first, sizeof(e->st.first), "%s",
			 ev->status->nsample > 0 ? ev->status->sample[0] : "");
	}
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

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const struct event *find_from(struct fixture *fx, size_t after, enum watch_kind kind, const char *path)
{
	for (size_t i = after; i < fx->rec.n; i++)
		if (fx->rec.evs[i].kind == kind && strcmp(fx->rec.evs[i].path, path) == 0)
			return &fx->rec.evs[i];
	return NULL;
}

static const struct event *find(struct fixture *fx, enum watch_kind kind, const char *path)
{
	return find_from(fx, 0, kind, path);
}

static size_t count(struct fixture *fx, enum watch_kind kind, const char *path)
{
	size_t n = 0;

	for (size_t i = 0; i < fx->rec.n; i++)
		n += fx->rec.evs[i].kind == kind && (path == NULL || strcmp(fx->rec.evs[i].path, path) == 0);
	return n;
}

static size_t count_fs(struct fixture *fx)
{
	size_t n = 0;

	for (size_t i = 0; i < fx->rec.n; i++)
		n += fx->rec.evs[i].kind <= WATCH_KIND_FS_LAST;
	return n;
}

/* File times tick coarsely (a few ms): waits one out, so that what comes
 * before and after an instant is told apart by them. */
static void tick(void)
{
	struct timespec ts = {0, 30 * 1000 * 1000};

	nanosleep(&ts, NULL);
}

/* One turn of the worker's loop, waiting at most left ms: the watch's
 * work when it wants it, else inotify events. */
static void turn(struct fixture *fx, long left)
{
	struct pollfd pfd = {.fd = watch_fd(fx->w), .events = POLLIN};
	long next = watch_next(fx->w);

	if (next == 0) {
		watch_work(fx->w, 1024);
		next = 0;
	}
	if (next < 0 || next > left)
		next = left;
	if (poll(&pfd, 1, (int)next) > 0)
		assert_true(watch_process(fx->w) >= 0);
}

/* Runs the loop until (kind, path) was reported at index >= after, for
 * at most WAIT_MS. */
static const struct event *wait_after(struct fixture *fx, size_t after, enum watch_kind kind,
				      const char *path)
{
	long deadline = now_ms() + WAIT_MS;
	const struct event *e;

	while ((e = find_from(fx, after, kind, path)) == NULL) {
		long left = deadline - now_ms();

		if (left <= 0) {
			for (size_t i = fx->rec.n > 30 ? fx->rec.n - 30 : 0; i < fx->rec.n; i++)
				print_message("  got %s \"%s\"\n", watch_kind_name(fx->rec.evs[i].kind),
					      fx->rec.evs[i].path);
			fail_msg("no %s event for \"%s\" within %d ms", watch_kind_name(kind), path, WAIT_MS);
		}
		turn(fx, left);
	}
	return e;
}

static const struct event *wait_for(struct fixture *fx, enum watch_kind kind, const char *path)
{
	return wait_after(fx, 0, kind, path);
}

/* Opens the watch without walking it. What the test made before is
 * older than the opening by a file-time tick: never taken for a change
 * made after it. */
static void open_only(struct fixture *fx, const char *rel, const char *data_dir)
{
	tick();
	fx->w = watch_open(rel == NULL ? fx->tmp : at(fx, rel), data_dir, on_event, &fx->rec);
	assert_non_null(fx->w);
}

/* Opens the watch and runs it until its first walk is done. */
static void open_watch(struct fixture *fx, const char *rel, const char *data_dir)
{
	open_only(fx, rel, data_dir);
	wait_for(fx, WATCH_SCAN_COMPLETE, "");
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
	assert_int_equal(count_fs(fx), 0);
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
		assert_true(
		    fx->rec.evs[i].kind > WATCH_KIND_FS_LAST || strcmp(fx->rec.evs[i].path, "sub") == 0 ||
		    strncmp(fx->rec.evs[i].path, "sub/", 4) == 0 || strcmp(fx->rec.evs[i].path, "late") == 0);
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

/* Removes ws (with its file), recreates it, and expects it watched again:
 * root_gone, then root_appeared and a walk whose contents are news. */
static void remove_and_recreate_root(struct fixture *fx)
{
	const struct event *e;
	size_t mark;

	mkdir_p(fx, "ws");
	open_watch(fx, "ws", NULL);
	touch(fx, "ws/f");
	wait_for(fx, WATCH_MODIFIED, "f");
	assert_int_equal(unlink(at(fx, "ws/f")), 0);
	assert_int_equal(rmdir(at(fx, "ws")), 0);
	wait_for(fx, WATCH_DELETED, "f");
	e = wait_for(fx, WATCH_ROOT_GONE, "");
	assert_true(e->st.complete); /* nothing there to miss */
	assert_false(watch_active(fx->w));
	assert_null(find(fx, WATCH_ROOT_MOVED, ""));
	mark = fx->rec.n;
	mkdir_p(fx, "ws");
	touch(fx, "ws/again"); /* may predate the new watch: then only created */
	wait_after(fx, mark, WATCH_ROOT_APPEARED, "");
	wait_for(fx, WATCH_CREATED, "again");
	e = wait_after(fx, mark, WATCH_SCAN_COMPLETE, "");
	assert_string_equal(e->cause, "root_appeared");
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
	wait_for(fx, WATCH_ROOT_MOVED, "");
	assert_null(find(fx, WATCH_ROOT_GONE, ""));
	touch(fx, "moved/f"); /* no longer the workspace */
	mkdir_p(fx, "ws");
	touch(fx, "ws/new");
	wait_for(fx, WATCH_ROOT_APPEARED, "");
	wait_for(fx, WATCH_CREATED, "new");
	assert_null(find(fx, WATCH_CREATED, "f"));
}

/* The watches the kernel holds for fd (from /proc/self/fdinfo). */
static int kernel_watches(int fd)
{
	char path[64], line[512];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		n += strncmp(line, "inotify wd:", 11) == 0;
	fclose(f);
	return n;
}

/* max_queued_events, or skips the test when it is too big to fill. */
static long queue_limit(void)
{
	FILE *f = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
	long max = 0;

	if (f != NULL) {
		if (fscanf(f, "%ld", &max) != 1)
			max = 0;
		fclose(f);
	}
	if (max <= 0 || max > 100000)
		skip();
	return max;
}

/* Queues more inotify events than the kernel keeps, none read meanwhile:
 * a close-write per open for writing, of two files in turn (the kernel
 * merges an event identical to the one before it). */
static void overflow_queue(struct fixture *fx, const char *dir)
{
	long max = queue_limit();
	char name[2][64];

	for (int i = 0; i < 2; i++) {
		snprintf(name[i], sizeof(name[i]), "%s/f%d", dir, i);
		touch(fx, name[i]);
	}
	for (long i = 0; i < max + 100; i++) {
		int fd = open(at(fx, name[i % 2]), O_WRONLY);

		assert_true(fd >= 0);
		close(fd);
	}
}

static void test_queue_overflow_is_reported(void **state)
{
	struct fixture *fx = *state;

	open_watch(fx, NULL, NULL);
	overflow_queue(fx, ".");
	wait_for(fx, WATCH_OVERFLOW, "");
	wait_for(fx, WATCH_SCAN_COMPLETE, "");
	assert_int_equal(count(fx, WATCH_OVERFLOW, NULL), 1);
	/* Still watching afterwards, new directories included. */
	mkdir_p(fx, "after/deep");
	touch(fx, "after/deep/f");
	wait_for(fx, WATCH_CREATED, "after/deep/f");
}

/* Runs the loop until the watch's unwatched count is n. */
static void wait_unwatched(struct fixture *fx, size_t n)
{
	long deadline = now_ms() + WAIT_MS;
	struct watch_status st;

	for (;;) {
		long left = deadline - now_ms();

		watch_status(fx->w, &st);
		if (st.unwatched == n)
			return;
		if (left <= 0)
			fail_msg("%zu directories unwatched, not %zu, after %d ms", st.unwatched, n, WAIT_MS);
		turn(fx, left < 50 ? left : 50);
	}
}

/* Issue 9 (1): a directory moved out of the tree while the queue had
 * overflowed is not met by the rescan: its watch is dropped, so writes
 * outside the tree are never reported under its old name. */
static void test_rescan_after_an_overflow_drops_the_watch_of_a_directory_moved_out(void **state)
{
	struct fixture *fx = *state;
	const struct event *done;
	size_t mark;
	int before;

	mkdir_p(fx, "ws/sub/deeper");
	mkdir_p(fx, "ws/flood");
	mkdir_p(fx, "outside");
	open_watch(fx, "ws", NULL);
	before = kernel_watches(watch_fd(fx->w));
	mark = fx->rec.n;
	overflow_queue(fx, "ws/flood");
	/* Its MOVED_FROM is lost: the queue is full already. */
	assert_int_equal(rename(at(fx, "ws/sub"), at(fx, "outside/sub")), 0);
	wait_after(fx, mark, WATCH_OVERFLOW, "");
	assert_true(wait_after(fx, mark, WATCH_SCANNING, "")->st.scanning);
	done = wait_after(fx, mark, WATCH_SCAN_COMPLETE, "");
	assert_string_equal(done->cause, "overflow");
	assert_true(done->st.complete);
	assert_false(done->st.scanning);
	/* sub and sub/deeper went with it: two watches fewer. */
	assert_int_equal(kernel_watches(watch_fd(fx->w)), before - 2);
	touch(fx, "outside/sub/x");
	touch(fx, "outside/sub/deeper/y");
	touch(fx, "ws/marker");
	wait_for(fx, WATCH_CREATED, "marker");
	assert_nothing_under(fx, "sub");
	/* What is still in the tree is still watched. */
	touch(fx, "ws/flood/after");
	wait_for(fx, WATCH_CREATED, "flood/after");
}

/* Makes ws/d0 .. ws/d<n-1>. */
static void make_dirs(struct fixture *fx, int n)
{
	char name[32];

	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "ws/d%d", i);
		mkdir_p(fx, name);
	}
}

/* Issue 9 (2): with no inotify watch left, the subtrees that could not be
 * watched are said (incomplete, naming the first), retried as soon as one
 * of our watches is freed, and complete is said once none is left. */
static void test_unwatched_directories_are_said_and_retried_when_watches_free_up(void **state)
{
	struct fixture *fx = *state;
	struct watch_status st;
	const struct event *e;
	char unwatched[3][32], watched[2][32], path[128];
	int nw = 0;

	make_dirs(fx, 5);
	open_only(fx, "ws", NULL);
	watch_set_max_watches(fx->w, 3); /* root and two directories */
	e = wait_for(fx, WATCH_SCAN_COMPLETE, "");
	assert_false(e->st.complete);
	assert_int_equal(e->st.unwatched, 3);
	e = find(fx, WATCH_INCOMPLETE, e->st.first); /* said when it happened */
	assert_non_null(e);
	assert_int_equal(e->st.unwatched, 1);
	assert_false(e->st.complete);
	watch_status(fx->w, &st);
	assert_int_equal(st.nsample, 3);
	assert_string_equal(st.reason, "fs.inotify.max_user_watches reached");
	for (int i = 0; i < 3; i++)
		snprintf(unwatched[i], sizeof(unwatched[i]), "%s", st.sample[i]);
	for (int i = 0; i < 5; i++) {
		char d[16];

		snprintf(d, sizeof(d), "d%d", i);
		if (strcmp(d, unwatched[0]) && strcmp(d, unwatched[1]) && strcmp(d, unwatched[2]))
			snprintf(watched[nw++], sizeof(watched[0]), "%s", d);
	}
	assert_int_equal(nw, 2);

	/* A watched directory goes: its watch is freed, the oldest
	 * unwatched one takes it. */
	snprintf(path, sizeof(path), "ws/%s", watched[0]);
	assert_int_equal(rmdir(at(fx, path)), 0);
	wait_unwatched(fx, 2);
	snprintf(path, sizeof(path), "ws/%s/f", unwatched[0]);
	touch(fx, path);
	wait_for(fx, WATCH_CREATED, path + 3);
	/* An unwatched directory goes: off the list. Then the last. */
	snprintf(path, sizeof(path), "ws/%s", unwatched[1]);
	assert_int_equal(rmdir(at(fx, path)), 0);
	wait_unwatched(fx, 1);
	snprintf(path, sizeof(path), "ws/%s", watched[1]);
	assert_int_equal(rmdir(at(fx, path)), 0);
	e = wait_for(fx, WATCH_COMPLETE, "");
	assert_true(e->st.complete);
	assert_int_equal(e->st.unwatched, 0);
	snprintf(path, sizeof(path), "ws/%s/g", unwatched[2]);
	touch(fx, path);
	wait_for(fx, WATCH_CREATED, path + 3);
}

/* Watches freed by others (another worker of the user) go unseen: a timer
 * retries, backing off. */
static void test_unwatched_directories_are_retried_on_a_timer(void **state)
{
	struct fixture *fx = *state;
	const struct event *e;

	make_dirs(fx, 3);
	open_only(fx, "ws", NULL);
	watch_set_max_watches(fx->w, 2);
	e = wait_for(fx, WATCH_SCAN_COMPLETE, "");
	assert_int_equal(e->st.unwatched, 2);
	assert_true(watch_next(fx->w) > 0); /* a retry is due, not now */
	watch_set_max_watches(fx->w, 0);
	e = wait_for(fx, WATCH_COMPLETE, "");
	assert_true(e->st.complete);
	for (int i = 0; i < 3; i++) {
		char path[32];

		snprintf(path, sizeof(path), "ws/d%d/f", i);
		touch(fx, path);
		wait_for(fx, WATCH_CREATED, path + 3);
	}
	assert_int_equal(watch_next(fx->w), -1); /* nothing left to do */
}

/* Issue 9 (5): opening watches only the root; the tree is walked in
 * steps of a bounded size, and its end is said. */
static void test_the_first_walk_goes_in_bounded_steps(void **state)
{
	struct fixture *fx = *state;
	const struct event *e;
	int steps = 0;

	for (int i = 0; i < 300; i++) {
		char name[32];

		snprintf(name, sizeof(name), "d%03d/sub", i);
		mkdir_p(fx, name);
	}
	open_only(fx, NULL, NULL);
	assert_int_equal(fx->rec.n, 0);			      /* nothing is said before the owner runs it */
	assert_int_equal(kernel_watches(watch_fd(fx->w)), 2); /* root and its parent */
	while (find(fx, WATCH_SCAN_COMPLETE, "") == NULL) {
		assert_int_equal(watch_next(fx->w), 0);
		watch_work(fx->w, 20);
		steps++;
		assert_true(steps < 10000);
	}
	/* 300 + 600 entries and 601 directories, 20 units a step. */
	assert_true(steps >= 1500 / 20);
	e = find(fx, WATCH_SCANNING, "");
	assert_non_null(e);
	assert_string_equal(e->cause, "start");
	assert_true(e->st.scanning);
	assert_false(e->st.complete);
	e = find(fx, WATCH_SCAN_COMPLETE, "");
	assert_string_equal(e->cause, "start");
	assert_true(e->st.complete);
	assert_int_equal(kernel_watches(watch_fd(fx->w)), 602);
	assert_int_equal(count(fx, WATCH_CREATED, NULL), 0);
	touch(fx, "d299/sub/f");
	wait_for(fx, WATCH_CREATED, "d299/sub/f");
}

/* What changed in a directory before the first walk reached it (and
 * watched it) is reported once, when the walk gets there. */
static void test_changes_before_the_walk_reaches_a_directory_are_reported_once(void **state)
{
	struct fixture *fx = *state;

	mkdir_p(fx, "a/b/c");
	touch(fx, "a/b/c/old");
	touch(fx, "a/b/c/untouched");
	open_only(fx, NULL, NULL);
	/* At once: within the file-time tick of the opening, too. */
	touch(fx, "a/b/c/new");
	touch(fx, "a/b/c/old"); /* rewritten */
	mkdir_p(fx, "a/b/nd");
	touch(fx, "a/b/nd/f");
	wait_for(fx, WATCH_SCAN_COMPLETE, "");
	assert_int_equal(count(fx, WATCH_CREATED, "a/b/c/new"), 1);
	assert_int_equal(count(fx, WATCH_CREATED, "a/b/nd"), 1);
	assert_int_equal(count(fx, WATCH_CREATED, "a/b/nd/f"), 1);
	assert_int_equal(count(fx, WATCH_MODIFIED, "a/b/c/old") + count(fx, WATCH_CREATED, "a/b/c/old"), 1);
	assert_null(find(fx, WATCH_CREATED, "a"));
	assert_null(find(fx, WATCH_CREATED, "a/b"));
	assert_null(find(fx, WATCH_CREATED, "a/b/c"));
	assert_null(find(fx, WATCH_CREATED, "a/b/c/untouched"));
	assert_null(find(fx, WATCH_MODIFIED, "a/b/c/untouched"));
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
	    WITH_DIR(test_rescan_after_an_overflow_drops_the_watch_of_a_directory_moved_out),
	    WITH_DIR(test_unwatched_directories_are_said_and_retried_when_watches_free_up),
	    WITH_DIR(test_unwatched_directories_are_retried_on_a_timer),
	    WITH_DIR(test_the_first_walk_goes_in_bounded_steps),
	    WITH_DIR(test_changes_before_the_walk_reaches_a_directory_are_reported_once),
	    cmocka_unit_test(test_open_rejects_a_relative_root),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
