/*
 * Unit tests for supervisor/route.c: which route a request target names,
 * the {id} it carries, query parameters and Last-Event-ID values, as the
 * API handlers see them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "supervisor/route.h"

static route_t match(const char *path)
{
	route_t r;

	route_match(path, strlen(path), &r);
	return r;
}

static void test_fixed_paths_name_their_routes_and_methods(void **state)
{
	(void)state;
	assert_int_equal(match("/v1/health").id, ROUTE_HEALTH);
	assert_int_equal(match("/v1/health").methods, ROUTE_GET);
	assert_int_equal(match("/v1/version").id, ROUTE_VERSION);
	assert_int_equal(match("/v1/metrics").id, ROUTE_METRICS);
	assert_int_equal(match("/v1/metrics").methods, ROUTE_GET);
	assert_int_equal(match("/v1/workspaces").id, ROUTE_WORKSPACES);
	assert_int_equal(match("/v1/workspaces").methods, ROUTE_GET | ROUTE_POST);
	assert_string_equal(match("/v1/workspaces").allow, "GET, POST");
	assert_int_equal(match("/v1/control").id, ROUTE_CONTROL);
	assert_int_equal(match("/v1/control").methods, ROUTE_POST);
}

static void test_workspace_paths_carry_their_id(void **state)
{
	route_t r = match("/v1/workspaces/abc");

	(void)state;
	assert_int_equal(r.id, ROUTE_WORKSPACE);
	assert_string_equal(r.param, "abc");
	assert_int_equal(r.methods, ROUTE_GET | ROUTE_DELETE);
	r = match("/v1/workspaces/abc/events");
	assert_int_equal(r.id, ROUTE_EVENTS);
	assert_string_equal(r.param, "abc");
	r = match("/v1/clients/c1");
	assert_int_equal(r.id, ROUTE_CLIENT);
	assert_string_equal(r.param, "c1");
	assert_int_equal(r.methods, ROUTE_DELETE);
}

/* Everything else below a workspace is the worker's, whatever the method;
 * rest is where the worker's path starts. */
static void test_other_workspace_paths_are_forwarded_with_their_rest(void **state)
{
	const char *p = "/v1/workspaces/abc/sessions/s1/messages";
	route_t r = match(p);

	(void)state;
	assert_int_equal(r.id, ROUTE_FORWARD);
	assert_string_equal(r.param, "abc");
	assert_string_equal(p + r.rest, "/sessions/s1/messages");
	assert_int_equal(r.methods, ROUTE_ANY);
	r = match("/v1/workspaces/abc/event");
	assert_int_equal(r.id, ROUTE_FORWARD);
	r = match("/v1/workspaces/abc/events/x");
	assert_int_equal(r.id, ROUTE_FORWARD);
	r = match("/v1/workspaces/abc/current-session");
	assert_int_equal(r.id, ROUTE_CURRENT_SESSION);
	assert_int_equal(r.methods, ROUTE_POST);
}

static void test_unknown_paths_match_nothing(void **state)
{
	static const char *const paths[] = {
	    "",
	    "/",
	    "/v1",
	    "/v1/healthz",
	    "/v1/health/",
	    "/v1/workspaces/",
	    "/v1/workspaces//events",
	    "/v1/workspaces/abc/",
	    "/v1/clients/",
	    "/v1/clients/a/b",
	    "/v2/workspaces",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		route_t r = match(paths[i]);

		assert_int_equal(r.id, ROUTE_NONE);
		assert_string_equal(r.param, "");
	}
}

static void test_an_id_longer_than_the_limit_matches_nothing(void **state)
{
	char path[64 + ROUTE_ID_MAX + 2] = "/v1/workspaces/";

	(void)state;
	memset(path + 15, 'a', ROUTE_ID_MAX);
	path[15 + ROUTE_ID_MAX] = '\0';
	assert_int_equal(match(path).id, ROUTE_WORKSPACE);
	strcat(path, "a");
	assert_int_equal(match(path).id, ROUTE_NONE);
}

static void test_methods_are_exact_and_case_sensitive(void **state)
{
	(void)state;
	assert_int_equal(route_method("GET", 3), ROUTE_GET);
	assert_int_equal(route_method("POST", 4), ROUTE_POST);
	assert_int_equal(route_method("DELETE", 6), ROUTE_DELETE);
	assert_int_equal(route_method("PUT", 3), ROUTE_PUT);
	assert_int_equal(route_method("get", 3), ROUTE_OTHER);
	assert_int_equal(route_method("GETS", 4), ROUTE_OTHER);
}

static int param(const char *q, const char *name, char *out, size_t outlen)
{
	return route_query_param(q, strlen(q), name, out, outlen);
}

static void test_query_params_are_found_and_decoded(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(param("client_id=abc", "client_id", out, sizeof(out)), 3);
	assert_string_equal(out, "abc");
	assert_int_equal(param("x=1&client_id=a%2Fb+c&y", "client_id", out, sizeof(out)), 5);
	assert_string_equal(out, "a/b c");
	assert_int_equal(param("client_id=", "client_id", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	/* The first pair wins; a prefix of another name is not the name. */
	assert_int_equal(param("client_id=1&client_id=2", "client_id", out, sizeof(out)), 1);
	assert_string_equal(out, "1");
	assert_int_equal(param("xclient_id=1", "client_id", out, sizeof(out)), -1);
	assert_int_equal(param("client_id", "client_id", out, sizeof(out)), -1);
	assert_int_equal(param("", "client_id", out, sizeof(out)), -1);
	/* Bad escapes stay as sent. */
	assert_int_equal(param("a=%zz%4", "a", out, sizeof(out)), 5);
	assert_string_equal(out, "%zz%4");
}

static void test_query_values_are_cut_to_the_buffer(void **state)
{
	char out[4];

	(void)state;
	assert_int_equal(param("a=123456", "a", out, sizeof(out)), 3);
	assert_string_equal(out, "123");
}

static int event_id(const char *s, uint64_t *v)
{
	return route_event_id(s, strlen(s), v);
}

static void test_event_ids_are_plain_decimal_in_64_bits(void **state)
{
	uint64_t v = 7;

	(void)state;
	assert_int_equal(event_id("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(event_id("0042", &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(event_id("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(event_id("18446744073709551616", &v), -1);
	assert_int_equal(event_id("", &v), -1);
	assert_int_equal(event_id("-1", &v), -1);
	assert_int_equal(event_id("+1", &v), -1);
	assert_int_equal(event_id(" 1", &v), -1);
	assert_int_equal(event_id("1 ", &v), -1);
	assert_int_equal(event_id("0x10", &v), -1);
	assert_int_equal(event_id("000000000000000000000000001", &v), 0); /* as strtoull */
	assert_int_equal(v, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fixed_paths_name_their_routes_and_methods),
	    cmocka_unit_test(test_workspace_paths_carry_their_id),
	    cmocka_unit_test(test_other_workspace_paths_are_forwarded_with_their_rest),
	    cmocka_unit_test(test_unknown_paths_match_nothing),
	    cmocka_unit_test(test_an_id_longer_than_the_limit_matches_nothing),
	    cmocka_unit_test(test_methods_are_exact_and_case_sensitive),
	    cmocka_unit_test(test_query_params_are_found_and_decoded),
	    cmocka_unit_test(test_query_values_are_cut_to_the_buffer),
	    cmocka_unit_test(test_event_ids_are_plain_decimal_in_64_bits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
