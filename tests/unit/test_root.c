/*
 * test_root: the worker's root key, checked and opened without resolving
 * it again (worker/root.c), against real paths under /tmp.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
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

#include "worker/root.h"

struct fixture {
	char tmp[64];
	char path[PATH_MAX];
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	strcpy(fx->tmp, "/tmp/test_root.XXXXXX");
	assert_non_null(mkdtemp(fx->tmp));
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	nftw(fx->tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

static const char *at(struct fixture *fx, const char *rel)
{
	snprintf(fx->path, sizeof(fx->path), "%s/%s", fx->tmp, rel);
	return fx->path;
}

/* root_open(tmp/rel): -1 and that errno, or an fd of directory `want`. */
static void expect_open(struct fixture *fx, const char *rel, int err, const char *want)
{
	int fd = root_open(at(fx, rel));

	if (err != 0) {
		assert_int_equal(fd, -1);
		assert_int_equal(errno, err);
		return;
	}
	assert_true(fd >= 0);
	struct stat a, b;
	assert_int_equal(fstat(fd, &a), 0);
	assert_int_equal(stat(at(fx, want), &b), 0);
	assert_true(a.st_dev == b.st_dev && a.st_ino == b.st_ino);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
}

static void test_canonical_keys(void **state)
{
	(void)state;
	assert_true(root_canonical("/"));
	assert_true(root_canonical("/a"));
	assert_true(root_canonical("/a/b.c/..d/.e"));
	assert_false(root_canonical(""));
	assert_false(root_canonical("a/b"));
	assert_false(root_canonical("/a/"));
	assert_false(root_canonical("//a"));
	assert_false(root_canonical("/a//b"));
	assert_false(root_canonical("/a/./b"));
	assert_false(root_canonical("/a/.."));
	assert_false(root_canonical("/."));
}

static void test_a_plain_directory_opens(void **state)
{
	struct fixture *fx = *state;

	assert_int_equal(mkdir(at(fx, "d"), 0755), 0);
	assert_int_equal(mkdir(at(fx, "d/e"), 0755), 0);
	expect_open(fx, "d/e", 0, "d/e");
}

static void test_missing_and_non_directories_are_waited_for(void **state)
{
	struct fixture *fx = *state;

	expect_open(fx, "missing", ENOENT, NULL);
	expect_open(fx, "missing/deeper", ENOENT, NULL);
	assert_int_equal(close(open(at(fx, "file"), O_CREAT | O_WRONLY, 0644)), 0);
	expect_open(fx, "file", ENOTDIR, NULL);
	/* A symlink that leads nowhere is not there yet, either. */
	assert_int_equal(symlink("nowhere", at(fx, "dangling")), 0);
	expect_open(fx, "dangling", ENOENT, NULL);
	expect_open(fx, "dangling/ws", ENOENT, NULL);
}

static void test_a_symlink_anywhere_on_the_way_is_refused(void **state)
{
	struct fixture *fx = *state;
	char why[PATH_MAX * 2 + 64], want[PATH_MAX * 2 + 64];

	assert_int_equal(mkdir(at(fx, "real"), 0755), 0);
	assert_int_equal(mkdir(at(fx, "real/ws"), 0755), 0);
	assert_int_equal(symlink("real", at(fx, "link")), 0);
	expect_open(fx, "link", ELOOP, NULL);
	expect_open(fx, "link/ws", ELOOP, NULL);
	/* Even a symlink to the very directory: the key would resolve to
	 * another one, so it no longer names this one. */
	assert_int_equal(symlink("ws", at(fx, "real/self")), 0);
	expect_open(fx, "real/self", ELOOP, NULL);

	root_describe_change(at(fx, "link/ws"), why, sizeof(why));
	snprintf(want, sizeof(want),
		 "directory changed under the workspace: %s/link/ws now resolves to %s/real/ws", fx->tmp,
		 fx->tmp);
	assert_string_equal(why, want);
	assert_int_equal(symlink("loop", at(fx, "loop")), 0);
	expect_open(fx, "loop", ELOOP, NULL);
	root_describe_change(at(fx, "loop"), why, sizeof(why));
	assert_non_null(strstr(why, "now goes through a symlink"));
}

#define WITH_DIR(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_canonical_keys),
	    WITH_DIR(test_a_plain_directory_opens),
	    WITH_DIR(test_missing_and_non_directories_are_waited_for),
	    WITH_DIR(test_a_symlink_anywhere_on_the_way_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
