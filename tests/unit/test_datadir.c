/*
 * Unit tests for worker/datadir.c: lexical cleaning, the data dir lookup
 * bounded by the git root (on a temp tree), the directory made 0700 with
 * its .gitignore, and crush.lock taken once with upstream's owner info.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "worker/datadir.h"

static char base[64];

static int setup(void **state)
{
	(void)state;
	snprintf(base, sizeof(base), "/tmp/test_datadir.XXXXXX");
	return mkdtemp(base) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	char cmd[128];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	return system(cmd) == 0 ? 0 : -1;
}

static void mk(const char *rel)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", base, rel);
	assert_int_equal(datadir_prepare(p), 0);
}

static void test_clean_joins_relative_paths_and_drops_dots(void **state)
{
	char out[256];
	(void)state;
	datadir_clean("/w/s", "x/../y/./z/", out, sizeof(out));
	assert_string_equal(out, "/w/s/y/z");
	datadir_clean("/w", "/abs//p/..", out, sizeof(out));
	assert_string_equal(out, "/abs");
	datadir_clean("/w", "../../..", out, sizeof(out));
	assert_string_equal(out, "/");
}

static void test_resolve_prefers_option_then_config_then_nearest_up_to_the_boundary(void **state)
{
	char root[200], boundary[256], out[256], want[256];
	(void)state;
	mk("repo/.git");
	mk("repo/.crush");
	mk("repo/a/b");
	snprintf(root, sizeof(root), "%s/repo/a/b", base);
	datadir_git_root(root, boundary, sizeof(boundary));
	snprintf(want, sizeof(want), "%s/repo", base);
	assert_string_equal(boundary, want);

	datadir_resolve(root, boundary, NULL, NULL, out, sizeof(out));
	snprintf(want, sizeof(want), "%s/repo/.crush", base);
	assert_string_equal(out, want);
	datadir_resolve(root, boundary, "state", "cfg", out, sizeof(out));
	snprintf(want, sizeof(want), "%s/state", root);
	assert_string_equal(out, want);
	datadir_resolve(root, boundary, "", "/cfg/dir", out, sizeof(out));
	assert_string_equal(out, "/cfg/dir");
	/* Bounded at the workspace itself: the repo's .crush is above it. */
	datadir_resolve(root, root, NULL, NULL, out, sizeof(out));
	snprintf(want, sizeof(want), "%s/.crush", root);
	assert_string_equal(out, want);
}

static void test_prepare_makes_0700_and_a_gitignore_once(void **state)
{
	char p[256], gi[300], buf[8] = {0};
	struct stat st;
	FILE *f;
	(void)state;
	snprintf(p, sizeof(p), "%s/fresh/.crush", base);
	assert_int_equal(datadir_prepare(p), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(gi, sizeof(gi), "%s/.gitignore", p);
	assert_non_null(f = fopen(gi, "r"));
	assert_int_equal(fread(buf, 1, sizeof(buf) - 1, f), 2);
	fclose(f);
	assert_string_equal(buf, "*\n");
	/* An existing .gitignore is the user's: kept. */
	assert_non_null(f = fopen(gi, "w"));
	fputs("mine\n", f);
	fclose(f);
	assert_int_equal(datadir_prepare(p), 0);
	assert_non_null(f = fopen(gi, "r"));
	assert_int_equal(fread(buf, 1, sizeof(buf) - 1, f), 5);
	fclose(f);
}

static void test_lock_writes_owner_info_and_a_second_taker_learns_the_pid(void **state)
{
	char p[256], lp[300];
	long owner = -1;
	(void)state;
	snprintf(p, sizeof(p), "%s/lk", base);
	assert_int_equal(datadir_prepare(p), 0);
	int fd = datadir_lock(p, "1.2.3", &owner);
	assert_true(fd >= 0);
	assert_int_equal(owner, 0);
	snprintf(lp, sizeof(lp), "%s/crush.lock", p);
	json_t *j = json_load_file(lp, 0, NULL);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "pid")), getpid());
	assert_string_equal(json_string_value(json_object_get(j, "version")), "1.2.3");
	assert_non_null(json_string_value(json_object_get(j, "started_at")));
	json_decref(j);
	/* flock is per open file description: a second open is a second taker. */
	assert_int_equal(datadir_lock(p, "x", &owner), -1);
	assert_int_equal(owner, getpid());
	close(fd);
	fd = datadir_lock(p, "x", &owner);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(access(lp, F_OK), 0); /* never unlinked */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_clean_joins_relative_paths_and_drops_dots),
	    cmocka_unit_test(test_resolve_prefers_option_then_config_then_nearest_up_to_the_boundary),
	    cmocka_unit_test(test_prepare_makes_0700_and_a_gitignore_once),
	    cmocka_unit_test(test_lock_writes_owner_info_and_a_second_taker_learns_the_pid),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
