/*
 * Unit tests for common/path.c: the workspace dedup key. Each test builds
 * on one tree under a fresh temporary directory (real/sub, link -> real,
 * deep -> real/sub, a regular file) and checks path_resolve_key against it.
 */
#include <errno.h>
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

#include "common/path.h"

typedef struct tree {
	char root[PATH_MAX]; /* realpath of the temp dir */
	char tmpl[PATH_MAX]; /* the temp dir as made */
} tree_t;

static void join(char *out, const char *a, const char *b)
{
	int n = snprintf(out, PATH_MAX, "%s%s", a, b);

	assert_true(n > 0 && n < PATH_MAX);
}

static int setup(void **state)
{
	tree_t *t = calloc(1, sizeof(*t));
	char p[PATH_MAX], q[PATH_MAX];
	FILE *f;

	if (t == NULL)
		return -1;
	snprintf(t->tmpl, sizeof(t->tmpl), "/tmp/crush-test-path-XXXXXX");
	if (mkdtemp(t->tmpl) == NULL || realpath(t->tmpl, t->root) == NULL)
		return -1;
	join(p, t->root, "/real");
	if (mkdir(p, 0700) != 0)
		return -1;
	join(p, t->root, "/real/sub");
	if (mkdir(p, 0700) != 0)
		return -1;
	join(p, t->root, "/real");
	join(q, t->root, "/link");
	if (symlink(p, q) != 0)
		return -1;
	join(p, t->root, "/real/sub");
	join(q, t->root, "/deep");
	if (symlink(p, q) != 0)
		return -1;
	join(p, t->root, "/file");
	if ((f = fopen(p, "w")) == NULL)
		return -1;
	fclose(f);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	tree_t *t = *state;
	char p[PATH_MAX];

	join(p, t->root, "/file");
	unlink(p);
	join(p, t->root, "/link");
	unlink(p);
	join(p, t->root, "/deep");
	unlink(p);
	join(p, t->root, "/real/sub");
	rmdir(p);
	join(p, t->root, "/real");
	rmdir(p);
	rmdir(t->root);
	free(t);
	return 0;
}

/* Resolves root+suffix and returns the key (static buffer), or NULL. */
static const char *key_of(const tree_t *t, const char *suffix)
{
	static char out[PATH_MAX];
	char in[PATH_MAX];

	join(in, t->root, suffix);
	if (path_resolve_key(in, out) != 0)
		return NULL;
	return out;
}

static void assert_key(const tree_t *t, const char *suffix, const char *want_suffix)
{
	char want[PATH_MAX];
	const char *got = key_of(t, suffix);

	join(want, t->root, want_suffix);
	assert_non_null(got);
	assert_string_equal(got, want);
}

static void test_existing_dir_resolves_to_itself(void **state)
{
	tree_t *t = *state;

	assert_key(t, "/real", "/real");
	assert_key(t, "", "");
}

static void test_unresolved_tempdir_spelling_gives_its_realpath(void **state)
{
	tree_t *t = *state;
	char out[PATH_MAX];

	/* /tmp may itself be a symlink; the key is the physical path. */
	assert_int_equal(path_resolve_key(t->tmpl, out), 0);
	assert_string_equal(out, t->root);
}

static void test_symlinked_dir_resolves_to_target(void **state)
{
	assert_key(*state, "/link", "/real");
}

static void test_missing_under_symlink_equals_missing_under_real(void **state)
{
	tree_t *t = *state;
	char a[PATH_MAX], b[PATH_MAX];

	strcpy(a, key_of(t, "/link/missing/deeper"));
	strcpy(b, key_of(t, "/real/missing/deeper"));
	assert_string_equal(a, b);
	assert_key(t, "/link/missing/deeper", "/real/missing/deeper");
}

static void test_missing_tail_is_cleaned_lexically(void **state)
{
	tree_t *t = *state;

	assert_key(t, "/real/a/./b/../c", "/real/a/c");
	assert_key(t, "/real/a//b/", "/real/a/b");
	assert_key(t, "/link/a/../../real/sub/x", "/real/sub/x");
	assert_key(t, "/real/sub/../missing/./x/..", "/real/missing");
}

static void test_dotdot_in_existing_part_follows_the_physical_tree(void **state)
{
	/* deep/.. is real (the target's parent), not root (the link's dir). */
	assert_key(*state, "/deep/../new", "/real/new");
	assert_key(*state, "/deep/../sub/../../gone/x", "/gone/x");
}

/* Found by fuzz_path: ".." after a missing name climbs back into what
 * exists, where names are files and symlinks again. */
static void test_dotdot_after_missing_resolves_what_exists_again(void **state)
{
	tree_t *t = *state;

	assert_key(t, "/missing/../link", "/real");
	assert_key(t, "/missing/../link/new", "/real/new");
	assert_key(t, "/a/b/../../deep/x", "/real/sub/x");
	errno = 0;
	assert_null(key_of(t, "/missing/../file"));
	assert_int_equal(errno, ENOTDIR);
	errno = 0;
	assert_null(key_of(t, "/missing/../file/x"));
	assert_int_equal(errno, ENOTDIR);
}

static void test_regular_file_is_enotdir(void **state)
{
	tree_t *t = *state;

	errno = 0;
	assert_null(key_of(t, "/file"));
	assert_int_equal(errno, ENOTDIR);
}

static void test_missing_under_a_file_is_enotdir(void **state)
{
	tree_t *t = *state;

	errno = 0;
	assert_null(key_of(t, "/file/missing"));
	assert_int_equal(errno, ENOTDIR);
	errno = 0;
	assert_null(key_of(t, "/file/missing/more/../x"));
	assert_int_equal(errno, ENOTDIR);
}

static void test_relative_path_is_einval(void **state)
{
	char out[PATH_MAX];

	(void)state;
	errno = 0;
	assert_int_equal(path_resolve_key("relative/dir", out), -1);
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_int_equal(path_resolve_key("./x", out), -1);
	assert_int_equal(errno, EINVAL);
}

static void test_empty_path_is_einval(void **state)
{
	char out[PATH_MAX];

	(void)state;
	errno = 0;
	assert_int_equal(path_resolve_key("", out), -1);
	assert_int_equal(errno, EINVAL);
}

static void test_root_is_slash(void **state)
{
	char out[PATH_MAX];

	(void)state;
	assert_int_equal(path_resolve_key("/", out), 0);
	assert_string_equal(out, "/");
	assert_int_equal(path_resolve_key("///", out), 0);
	assert_string_equal(out, "/");
	assert_int_equal(path_resolve_key("/..", out), 0);
	assert_string_equal(out, "/");
}

static void test_missing_directly_under_root(void **state)
{
	char out[PATH_MAX];

	(void)state;
	assert_int_equal(path_resolve_key("/crush-no-such-dir-x7/a/../b", out), 0);
	assert_string_equal(out, "/crush-no-such-dir-x7/b");
}

static void test_trailing_slashes_are_dropped(void **state)
{
	tree_t *t = *state;

	assert_key(t, "/real/", "/real");
	assert_key(t, "/real///", "/real");
	assert_key(t, "/link/", "/real");
	assert_key(t, "/real/missing/", "/real/missing");
}

static void test_input_too_long_is_enametoolong(void **state)
{
	char *in = malloc(PATH_MAX + 16);
	char out[PATH_MAX];

	(void)state;
	assert_non_null(in);
	in[0] = '/';
	for (size_t i = 1; i < PATH_MAX + 8; i++)
		in[i] = (i % 64 == 0) ? '/' : 'a';
	in[PATH_MAX + 8] = '\0';
	errno = 0;
	assert_int_equal(path_resolve_key(in, out), -1);
	assert_int_equal(errno, ENAMETOOLONG);
	free(in);
}

static void test_result_too_long_is_enametoolong(void **state)
{
	tree_t *t = *state;
	char *in = malloc(PATH_MAX);
	char out[PATH_MAX];
	size_t n;

	/*
	 * The input fits but the key does not: "deep" expands to the longer
	 * "real/sub" on resolution, so fill up to just below PATH_MAX.
	 */
	assert_non_null(in);
	n = (size_t)snprintf(in, PATH_MAX, "%s/deep/", t->root);
	for (; n < PATH_MAX - 2; n++)
		in[n] = (n % 100 == 0) ? '/' : 'b';
	in[n] = '\0';
	assert_true(strlen(in) < PATH_MAX);
	errno = 0;
	assert_int_equal(path_resolve_key(in, out), -1);
	assert_int_equal(errno, ENAMETOOLONG);
	free(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_existing_dir_resolves_to_itself),
	    cmocka_unit_test(test_unresolved_tempdir_spelling_gives_its_realpath),
	    cmocka_unit_test(test_symlinked_dir_resolves_to_target),
	    cmocka_unit_test(test_missing_under_symlink_equals_missing_under_real),
	    cmocka_unit_test(test_missing_tail_is_cleaned_lexically),
	    cmocka_unit_test(test_dotdot_in_existing_part_follows_the_physical_tree),
	    cmocka_unit_test(test_dotdot_after_missing_resolves_what_exists_again),
	    cmocka_unit_test(test_regular_file_is_enotdir),
	    cmocka_unit_test(test_missing_under_a_file_is_enotdir),
	    cmocka_unit_test(test_relative_path_is_einval),
	    cmocka_unit_test(test_empty_path_is_einval),
	    cmocka_unit_test(test_root_is_slash),
	    cmocka_unit_test(test_missing_directly_under_root),
	    cmocka_unit_test(test_trailing_slashes_are_dropped),
	    cmocka_unit_test(test_input_too_long_is_enametoolong),
	    cmocka_unit_test(test_result_too_long_is_enametoolong),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
