/*
 * Unit tests for worker/relpath.c: the lexical helpers that make the
 * paths of fs events and decide which data dir the watch ignores. The
 * fuzzer (fuzz/fuzz_watch.c) checks their invariants on random input;
 * these pin the exact answers for the cases the watch relies on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "worker/relpath.h"

/* Compares and frees: got is NULL or malloc'ed. */
static void assert_path(char *got, const char *want)
{
	if (want == NULL)
		assert_null(got);
	else
		assert_string_equal(got, want);
	free(got);
}

static void test_join_puts_one_slash_and_none_after_the_root(void **state)
{
	(void)state;
	assert_path(relpath_join("src", "main.c"), "src/main.c");
	assert_path(relpath_join("", "main.c"), "main.c");
	assert_path(relpath_join("/tmp/ws", "a/b"), "/tmp/ws/a/b");
}

static void test_squeeze_makes_each_run_of_slashes_one(void **state)
{
	(void)state;
	assert_path(relpath_squeeze("//a///b/"), "/a/b/");
	assert_path(relpath_squeeze("a/b"), "a/b");
	assert_path(relpath_squeeze(""), "");
}

static void test_under_matches_whole_components_only(void **state)
{
	(void)state;
	assert_true(relpath_under(".git", ".git"));
	assert_true(relpath_under(".git/objects/ab", ".git"));
	assert_false(relpath_under(".github", ".git"));
	assert_false(relpath_under("src/.git", ".git"));
}

static void test_clean_drops_empty_and_dot_and_refuses_dotdot(void **state)
{
	(void)state;
	assert_path(relpath_clean("./a//b/./c/"), "a/b/c");
	assert_path(relpath_clean("/a"), "a");
	assert_path(relpath_clean("..."), "...");
	assert_path(relpath_clean("a/.."), NULL);
	assert_path(relpath_clean("../a"), NULL);
	assert_path(relpath_clean("./"), NULL);
	assert_path(relpath_clean(""), NULL);
}

static void test_inside_is_strict_and_component_wise(void **state)
{
	(void)state;
	assert_path(relpath_inside("/ws", "/ws/.crush"), ".crush");
	assert_path(relpath_inside("/ws", "/ws//x/./y"), "x/y");
	assert_path(relpath_inside("/ws", "/ws"), NULL);
	assert_path(relpath_inside("/ws", "/ws/"), NULL);
	assert_path(relpath_inside("/ws", "/wsx/a"), NULL);
	assert_path(relpath_inside("/ws", "/ws/../etc"), NULL);
	assert_path(relpath_inside("/", "/etc/x"), "etc/x");
}

static void test_data_dir_defaults_to_dot_crush(void **state)
{
	(void)state;
	assert_path(relpath_data_dir("/ws", "/ws", NULL), ".crush");
	assert_path(relpath_data_dir("/ws", "/ws", ""), ".crush");
}

static void test_data_dir_relative_or_absolute_inside_or_outside(void **state)
{
	(void)state;
	assert_path(relpath_data_dir("/ws", "/ws", "./state//db"), "state/db");
	assert_path(relpath_data_dir("/ws", "/ws", "../elsewhere"), NULL);
	assert_path(relpath_data_dir("/ws", "/ws", "/ws/.data"), ".data");
	assert_path(relpath_data_dir("/ws", "/ws", "/var/crush-test-missing/data"), NULL);
	/* The root as written differs from its key; the data dir as written
	 * is inside the key: found once both are resolved. */
	assert_path(relpath_data_dir("/crush-test-missing/../ws", "/ws", "/ws/.d"), ".d");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_join_puts_one_slash_and_none_after_the_root),
	    cmocka_unit_test(test_squeeze_makes_each_run_of_slashes_one),
	    cmocka_unit_test(test_under_matches_whole_components_only),
	    cmocka_unit_test(test_clean_drops_empty_and_dot_and_refuses_dotdot),
	    cmocka_unit_test(test_inside_is_strict_and_component_wise),
	    cmocka_unit_test(test_data_dir_defaults_to_dot_crush),
	    cmocka_unit_test(test_data_dir_relative_or_absolute_inside_or_outside),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
