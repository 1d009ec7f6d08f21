/*
 * test_unwatched: the set of directories a watch could not watch
 * (worker/unwatched.c): oldest first, one entry per path, dropped with
 * what is under them, moved with a renamed parent, swept by epoch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "worker/unwatched.h"

/* The set's paths, oldest first, joined by ' '. */
static const char *listing(const unwatched_t *u)
{
	static char out[512];
	const char *s[16];
	size_t n = unwatched_sample(u, s, 16);

	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			strcat(out, " ");
		strcat(out, s[i]);
	}
	return out;
}

static void test_entries_keep_their_order_and_are_not_doubled(void **state)
{
	unwatched_t u;

	(void)state;
	unwatched_init(&u);
	assert_null(unwatched_first(&u));
	assert_int_equal(unwatched_add(&u, "b", 1), 1);
	assert_int_equal(unwatched_add(&u, "a", 1), 1);
	assert_int_equal(unwatched_add(&u, "b", 2), 0);
	assert_int_equal(unwatched_count(&u), 2);
	assert_string_equal(unwatched_first(&u), "b");
	assert_string_equal(listing(&u), "b a");
	assert_true(unwatched_has(&u, "a"));
	assert_false(unwatched_has(&u, "c"));
	unwatched_clear(&u);
	assert_int_equal(unwatched_count(&u), 0);
	unwatched_clear(&u); /* twice is fine */
}

static void test_dropping_a_directory_drops_what_is_under_it_only(void **state)
{
	unwatched_t u;

	(void)state;
	unwatched_init(&u);
	unwatched_add(&u, "src/a", 1);
	unwatched_add(&u, "src", 1);
	unwatched_add(&u, "srcx", 1);
	unwatched_add(&u, "doc/src", 1);
	assert_int_equal(unwatched_drop_under(&u, "src"), 2);
	assert_string_equal(listing(&u), "srcx doc/src");
	assert_int_equal(unwatched_drop_under(&u, "nothing"), 0);
	unwatched_clear(&u);
}

static void test_a_renamed_parent_moves_its_entries_and_merges_a_stale_one(void **state)
{
	unwatched_t u;

	(void)state;
	unwatched_init(&u);
	unwatched_add(&u, "old/x", 1);
	unwatched_add(&u, "new/y", 1); /* stale: "new" is replaced */
	unwatched_add(&u, "old/y", 1);
	unwatched_add(&u, "older", 1);
	unwatched_rename(&u, "old", "new");
	assert_string_equal(listing(&u), "new/x new/y older");
	assert_true(unwatched_has(&u, "new/x"));
	assert_false(unwatched_has(&u, "old/x"));
	assert_int_equal(unwatched_count(&u), 3);
	unwatched_clear(&u);
}

static void test_a_sweep_drops_what_the_walk_did_not_meet(void **state)
{
	unwatched_t u;

	(void)state;
	unwatched_init(&u);
	unwatched_add(&u, "a", 1);
	unwatched_add(&u, "b", 1);
	unwatched_add(&u, "c", 1);
	unwatched_add(&u, "b", 2); /* met again by walk 2 */
	unwatched_add(&u, "d", 2);
	assert_int_equal(unwatched_sweep(&u, 2), 2);
	assert_string_equal(listing(&u), "b d");
	unwatched_clear(&u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_entries_keep_their_order_and_are_not_doubled),
	    cmocka_unit_test(test_dropping_a_directory_drops_what_is_under_it_only),
	    cmocka_unit_test(test_a_renamed_parent_moves_its_entries_and_merges_a_stale_one),
	    cmocka_unit_test(test_a_sweep_drops_what_the_walk_did_not_meet),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
