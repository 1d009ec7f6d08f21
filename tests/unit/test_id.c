/*
 * Unit tests for common/id.c: minted workspace ids are random v4 UUIDs in
 * canonical lower case, and id_parse accepts only the canonical 8-4-4-4-12
 * form (folding upper case) so one client id has exactly one spelling.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/id.h"

static int parse(const char *s, char out[ID_LEN + 1])
{
	return id_parse(s, strlen(s), out);
}

static void test_fresh_ids_are_lowercase_v4_and_parse(void **state)
{
	(void)state;
	for (int i = 0; i < 64; i++) {
		char id[ID_LEN + 1], back[ID_LEN + 1];

		memset(id, 'x', sizeof(id));
		id_new(id);
		assert_int_equal(strlen(id), ID_LEN);
		assert_int_equal(id[14], '4');		 /* version 4 */
		assert_non_null(strchr("89ab", id[19])); /* RFC 4122 variant */
		for (size_t k = 0; k < ID_LEN; k++)
			assert_true(id[k] == '-' || (id[k] >= '0' && id[k] <= '9') ||
				    (id[k] >= 'a' && id[k] <= 'f'));
		assert_int_equal(parse(id, back), 0);
		assert_string_equal(back, id);
	}
}

static void test_fresh_ids_differ(void **state)
{
	char a[ID_LEN + 1], b[ID_LEN + 1];

	(void)state;
	id_new(a);
	id_new(b);
	assert_string_not_equal(a, b);
}

static void test_canonical_id_is_accepted_unchanged(void **state)
{
	char out[ID_LEN + 1];

	(void)state;
	assert_int_equal(parse("123e4567-e89b-42d3-a456-426614174000", out), 0);
	assert_string_equal(out, "123e4567-e89b-42d3-a456-426614174000");
	/* Any version is a valid client id, not just v4. */
	assert_int_equal(parse("00000000-0000-0000-0000-000000000000", out), 0);
	assert_string_equal(out, "00000000-0000-0000-0000-000000000000");
}

static void test_upper_case_is_normalised_to_lower(void **state)
{
	char out[ID_LEN + 1];

	(void)state;
	assert_int_equal(parse("123E4567-E89B-42D3-A456-42661417400F", out), 0);
	assert_string_equal(out, "123e4567-e89b-42d3-a456-42661417400f");
}

static void test_len_bounds_the_input_without_a_nul(void **state)
{
	const char *s = "123e4567-e89b-42d3-a456-426614174000trailing";
	char out[ID_LEN + 1];

	(void)state;
	assert_int_equal(id_parse(s, ID_LEN, out), 0);
	assert_string_equal(out, "123e4567-e89b-42d3-a456-426614174000");
	assert_int_equal(id_parse(s, strlen(s), out), -1);
}

static void test_wrong_length_is_rejected(void **state)
{
	char out[ID_LEN + 1];

	(void)state;
	assert_int_equal(parse("", out), -1);
	assert_int_equal(parse("not-a-uuid", out), -1);
	assert_int_equal(parse("123e4567-e89b-42d3-a456-42661417400", out), -1);
	assert_int_equal(parse("123e4567-e89b-42d3-a456-4266141740000", out), -1);
	/* The 32-digit form without hyphens is not canonical. */
	assert_int_equal(parse("123e4567e89b42d3a456426614174000", out), -1);
}

static void test_misplaced_hyphens_are_rejected(void **state)
{
	char out[ID_LEN + 1];

	(void)state;
	assert_int_equal(parse("123e456-7e89b-42d3-a456-426614174000", out), -1);
	assert_int_equal(parse("123e4567-e89b-42d3-a4564-26614174000", out), -1);
	assert_int_equal(parse("123e4567xe89b-42d3-a456-426614174000", out), -1);
	assert_int_equal(parse("123e4567-e89b-42d3-a456-42661417400-", out), -1);
}

static void test_non_hex_digits_are_rejected(void **state)
{
	char out[ID_LEN + 1];

	(void)state;
	assert_int_equal(parse("123e4567-e89b-42d3-a456-42661417400g", out), -1);
	assert_int_equal(parse("z23e4567-e89b-42d3-a456-426614174000", out), -1);
	assert_int_equal(parse("123e4567-e89b-42d3-a456-42661417 000", out), -1);
	assert_int_equal(id_parse("123e4567-e89b-42d3-a456-42661417\0"
				  "000",
				  ID_LEN, out),
			 -1);
}

static void test_braces_and_urn_prefix_are_rejected(void **state)
{
	char out[ID_LEN + 1];

	(void)state;
	assert_int_equal(parse("{123e4567-e89b-42d3-a456-426614174000}", out), -1);
	assert_int_equal(parse("{23e4567-e89b-42d3-a456-42661417400}", out), -1);
	assert_int_equal(parse("urn:uuid:123e4567-e89b-42d3-a456-426614174000", out), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fresh_ids_are_lowercase_v4_and_parse),
	    cmocka_unit_test(test_fresh_ids_differ),
	    cmocka_unit_test(test_canonical_id_is_accepted_unchanged),
	    cmocka_unit_test(test_upper_case_is_normalised_to_lower),
	    cmocka_unit_test(test_len_bounds_the_input_without_a_nul),
	    cmocka_unit_test(test_wrong_length_is_rejected),
	    cmocka_unit_test(test_misplaced_hyphens_are_rejected),
	    cmocka_unit_test(test_non_hex_digits_are_rejected),
	    cmocka_unit_test(test_braces_and_urn_prefix_are_rejected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
