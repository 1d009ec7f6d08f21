/*
 * Unit tests for worker/config.c: the chain merged as upstream's
 * go-jsons merge does, the defaults upstream's client dereferences, the
 * redaction of secrets, and dotted-key set/remove as upstream's sjson
 * paths.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "worker/config.h"

static json_t *J(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	if (j == NULL)
		fail_msg("bad test JSON %s: %s", text, e.text);
	return j;
}

/* Compares got with the JSON text want, and frees got. */
static void assert_json(json_t *got, const char *want)
{
	json_t *w = J(want);
	if (!json_equal(got, w)) {
		char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
		fail_msg("got %s, want %s", g, want);
	}
	json_decref(w);
	json_decref(got);
}

static void test_merge_objects_recursively_and_later_scalars_win(void **state)
{
	(void)state;
	char err[128];
	json_t *a = J("{\"options\":{\"debug\":false,\"tui\":{\"compact_mode\":true}},\"x\":1}");
	json_t *b = J("{\"options\":{\"debug\":true,\"tui\":{\"theme\":\"dark\"}},\"x\":2.5}");
	assert_int_equal(config_merge(a, b, err, sizeof(err)), 0);
	assert_json(
	    a, "{\"options\":{\"debug\":true,\"tui\":{\"compact_mode\":true,\"theme\":\"dark\"}},\"x\":2.5}");
	json_decref(b);
}

static void test_merge_appends_arrays_and_null_keeps_the_earlier_value(void **state)
{
	(void)state;
	char err[128];
	json_t *a = J("{\"options\":{\"context_paths\":[\"A.md\"]},\"keep\":\"me\"}");
	json_t *b = J("{\"options\":{\"context_paths\":[\"B.md\"]},\"keep\":null,\"new\":null}");
	assert_int_equal(config_merge(a, b, err, sizeof(err)), 0);
	assert_json(a, "{\"options\":{\"context_paths\":[\"A.md\",\"B.md\"]},\"keep\":\"me\"}");
	json_decref(b);
}

static void test_merge_refuses_a_type_change_naming_the_field(void **state)
{
	(void)state;
	char err[128];
	json_t *a = J("{\"options\":{\"tui\":{}}}");
	json_t *b = J("{\"options\":{\"tui\":\"x\"}}");
	assert_int_equal(config_merge(a, b, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "options.tui"));
	json_decref(a);
	json_decref(b);
}

static void test_defaults_fill_what_the_client_dereferences(void **state)
{
	(void)state;
	json_t *c = J("{\"options\":{\"context_paths\":[\"zz.md\",\"AGENTS.md\"],\"data_directory\":\"x\"}}");
	config_defaults(c, "/w/.crush");
	json_t *o = json_object_get(c, "options");
	assert_string_equal(json_string_value(json_object_get(o, "data_directory")), "/w/.crush");
	assert_true(json_is_false(json_object_get(o, "disable_metrics")));
	assert_string_equal(json_string_value(json_object_get(o, "initialize_as")), "AGENTS.md");
	assert_true(json_is_object(json_object_get(o, "tui")));
	assert_true(json_is_object(json_object_get(c, "providers")));
	assert_true(json_is_object(json_object_get(c, "mcp")));
	json_t *cp = json_object_get(o, "context_paths");
	size_t agents = 0;
	for (size_t i = 0; i < json_array_size(cp); i++) {
		const char *s = json_string_value(json_array_get(cp, i));
		agents += strcmp(s, "AGENTS.md") == 0;
		if (i > 0)
			assert_true(strcmp(json_string_value(json_array_get(cp, i - 1)), s) < 0);
	}
	assert_int_equal(agents, 1);
	assert_string_equal(json_string_value(json_array_get(cp, json_array_size(cp) - 1)), "zz.md");
	json_decref(c);
}

static void test_secret_keys_by_word_not_by_substring(void **state)
{
	(void)state;
	static const char *const secret[] = {
	    "api_key", "apiKey",	"APIKEY",   "OPENAI_API_KEY", "access_token",  "refresh_token",
	    "token",   "client_secret", "password", "db-password",    "Authorization", "oauth_client_secret"};
	static const char *const plain[] = {"max_tokens", "tokens", "base_url",
					    "keyboard",	  "name",   "secretary"};
	for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
		assert_true(config_key_is_secret(secret[i]));
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		assert_false(config_key_is_secret(plain[i]));
}

static void test_redaction_reaches_every_depth_and_leaves_the_input(void **state)
{
	(void)state;
	json_t *c = J(
	    "{\"providers\":{\"openai\":{\"api_key\":\"sk-1\",\"base_url\":\"u\","
	    "\"oauth\":{\"access_token\":\"a\",\"expires_in\":5},\"models\":[{\"max_tokens\":9}]}},"
	    "\"mcp\":{\"x\":{\"headers\":{\"Authorization\":\"Bearer z\"},\"env\":{\"GITHUB_TOKEN\":\"g\"}}},"
	    "\"secrets\":[\"s1\",{\"n\":\"s2\"}]}");
	assert_json(
	    config_redact(c),
	    "{\"providers\":{\"openai\":{\"api_key\":\"***\",\"base_url\":\"u\","
	    "\"oauth\":{\"access_token\":\"***\",\"expires_in\":5},\"models\":[{\"max_tokens\":9}]}},"
	    "\"mcp\":{\"x\":{\"headers\":{\"Authorization\":\"***\"},\"env\":{\"GITHUB_TOKEN\":\"***\"}}},"
	    "\"secrets\":[\"***\",{\"n\":\"***\"}]}");
	assert_string_equal(json_string_value(json_object_get(
				json_object_get(json_object_get(c, "providers"), "openai"), "api_key")),
			    "sk-1");
	json_decref(c);
}

static void test_set_walks_dotted_keys_making_objects_and_keeps_siblings(void **state)
{
	(void)state;
	json_t *c = J("{\"options\":{\"debug\":true},\"a\":1}");
	assert_int_equal(config_set(c, "options.tui.compact_mode", json_true()), 0);
	assert_int_equal(config_set(c, "a.b", json_integer(2)),
			 0); /* a scalar in the way becomes an object */
	assert_int_equal(config_set(c, "dotted\\.name", json_string("v")), 0);
	assert_json(c, "{\"options\":{\"debug\":true,\"tui\":{\"compact_mode\":true}},\"a\":{\"b\":2},"
		       "\"dotted.name\":\"v\"}");
}

static void test_set_indexes_and_appends_to_arrays(void **state)
{
	(void)state;
	json_t *c = J("{\"l\":[1,2]}");
	assert_int_equal(config_set(c, "l.0", json_integer(7)), 0);
	assert_int_equal(config_set(c, "l.-1", json_integer(3)), 0);
	assert_int_equal(config_set(c, "l.9", json_integer(3)), -1);
	assert_json(c, "{\"l\":[7,2,3]}");
}

static void test_set_refuses_empty_segments(void **state)
{
	(void)state;
	json_t *c = J("{}");
	assert_int_equal(config_set(c, "", json_true()), -1);
	assert_int_equal(config_set(c, "a..b", json_true()), -1);
	assert_int_equal(config_set(c, "a.", json_true()), -1);
	assert_json(c, "{}");
}

static void test_remove_deletes_one_key_and_a_missing_one_is_a_no_op(void **state)
{
	(void)state;
	json_t *c = J("{\"options\":{\"debug\":true,\"tui\":{\"x\":1}},\"l\":[1,2,3]}");
	assert_int_equal(config_remove(c, "options.tui.x"), 0);
	assert_int_equal(config_remove(c, "options.nope.deeper"), 0);
	assert_int_equal(config_remove(c, "l.1"), 0);
	assert_int_equal(config_remove(c, "gone"), 0);
	assert_json(c, "{\"options\":{\"debug\":true,\"tui\":{}},\"l\":[1,3]}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_merge_objects_recursively_and_later_scalars_win),
	    cmocka_unit_test(test_merge_appends_arrays_and_null_keeps_the_earlier_value),
	    cmocka_unit_test(test_merge_refuses_a_type_change_naming_the_field),
	    cmocka_unit_test(test_defaults_fill_what_the_client_dereferences),
	    cmocka_unit_test(test_secret_keys_by_word_not_by_substring),
	    cmocka_unit_test(test_redaction_reaches_every_depth_and_leaves_the_input),
	    cmocka_unit_test(test_set_walks_dotted_keys_making_objects_and_keeps_siblings),
	    cmocka_unit_test(test_set_indexes_and_appends_to_arrays),
	    cmocka_unit_test(test_set_refuses_empty_segments),
	    cmocka_unit_test(test_remove_deletes_one_key_and_a_missing_one_is_a_no_op),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
