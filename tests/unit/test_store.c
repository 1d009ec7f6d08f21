/*
 * Unit tests for worker/store.c: migrations and goose bookkeeping (fresh,
 * and reopened without migrating twice), sessions as upstream's JSON,
 * upstream's statuses for a missing session, a message for a session
 * that is gone, listings in bounded steps, stored parts to wire parts.
 * The two-way interop with a database upstream's own migrations made is
 * proved end to end by tests/integration/test_store.py.
 */
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
#include <sqlite3.h>

#include "worker/store.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/crush-store-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static store_t *open_in(const char *sub)
{
	char path[128], err[256] = "";
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	mkdir(path, 0700); /* the data dir is cfgstore's to make, not the store's */
	store_t *st = store_open(path, err, sizeof(err));
	if (st == NULL)
		fail_msg("store_open: %s", err);
	return st;
}

static long long scalar(const char *sub, const char *sql)
{
	char path[128];
	sqlite3 *db;
	sqlite3_stmt *s;
	long long v = -1;
	snprintf(path, sizeof(path), "%s/%s/crush.db", dir, sub);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static void test_a_fresh_store_records_every_goose_version_once(void **state)
{
	(void)state;
	store_t *st = open_in("data");
	store_close(st);
	/* goose's version-0 row, then one applied row per migration. */
	assert_int_equal(scalar("data", "select count(*) from goose_db_version"), 1 + store_nversions);
	assert_int_equal(scalar("data", "select min(version_id) from goose_db_version"), 0);
	assert_int_equal(scalar("data", "select max(version_id) from goose_db_version"),
			 store_versions[store_nversions - 1]);
	st = open_in("data"); /* reopened: nothing to migrate */
	store_close(st);
	assert_int_equal(scalar("data", "select count(*) from goose_db_version"), 1 + store_nversions);
	assert_int_equal(scalar("data", "select count(*) from pragma_table_info('sessions')"), 11);
}

static void test_sessions_come_out_as_upstreams_json(void **state)
{
	(void)state;
	store_t *st = open_in("s");
	int status = 0;
	char err[256];
	json_t *s = store_session_create(st, "hello", &status, err, sizeof(err));
	assert_non_null(s);
	const char *id = json_string_value(json_object_get(s, "id"));
	assert_int_equal(strlen(id), 36);
	assert_string_equal(json_string_value(json_object_get(s, "title")), "hello");
	assert_string_equal(json_string_value(json_object_get(s, "parent_session_id")), "");
	assert_null(json_object_get(s, "todos")); /* omitempty */
	assert_true(json_is_false(json_object_get(s, "is_busy")));

	json_t *in = json_pack("{s:s, s:s, s:i, s:f, s:[{s:s, s:s, s:s}]}", "ID", id, "title", "renamed",
			       "PromptTokens", 7, "cost", 1.25, "todos", "content", "c", "status", "pending",
			       "active_form", "a");
	json_t *u = store_session_save(st, in, &status, err, sizeof(err));
	json_decref(in);
	assert_non_null(u);
	assert_string_equal(json_string_value(json_object_get(u, "title")), "renamed");
	assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 7);
	assert_int_equal(json_array_size(json_object_get(u, "todos")), 1);

	json_t *d = store_session_delete(st, id, &status, err, sizeof(err));
	assert_non_null(d);
	assert_string_equal(json_string_value(json_object_get(d, "title")), "renamed");
	assert_null(store_session_get(st, id, &status, err, sizeof(err)));
	assert_int_equal(status, 500);
	assert_string_equal(err, "sql: no rows in result set");
	assert_null(store_session_delete(st, id, &status, err, sizeof(err)));
	assert_int_equal(status, 500);
	json_decref(s);
	json_decref(u);
	json_decref(d);
	store_close(st);
}

static void test_a_message_for_a_missing_session_is_404(void **state)
{
	(void)state;
	store_t *st = open_in("m");
	int status = 0;
	char err[256];
	json_t *parts = json_pack("[{s:s, s:{s:s}}]", "type", "text", "data", "text", "x");
	assert_null(store_message_create(st, "gone", "user", parts, &status, err, sizeof(err)));
	assert_int_equal(status, 404);
	json_decref(parts);
	store_close(st);
}

static void test_listings_come_in_bounded_steps(void **state)
{
	(void)state;
	store_t *st = open_in("l");
	int status;
	char err[256];
	for (int i = 0; i < 10; i++)
		json_decref(store_session_create(st, "t", &status, err, sizeof(err)));
	store_cursor_t *c = store_list(st, STORE_LIST_SESSIONS, NULL, NULL, err, sizeof(err));
	assert_non_null(c);
	buf_t out = BUF_INIT;
	int steps = 0, r;
	while ((r = store_cursor_step(c, &out, 3, 1 << 20)) == 0) {
		steps++;
		assert_true(steps < 10000); /* 10 rows, 3 a step: a cursor that never ends fails */
	}
	assert_int_equal(r, 1);
	assert_true(steps >= 3);
	json_t *arr = json_loadb(buf_data(&out), buf_size(&out), 0, NULL);
	assert_int_equal(json_array_size(arr), 10);
	json_decref(arr);
	store_cursor_free(c);
	buf_reset(&out);
	c = store_list(st, STORE_LIST_MESSAGES, "none", NULL, err, sizeof(err));
	assert_int_equal(store_cursor_step(c, &out, 3, 1 << 20), 1);
	assert_int_equal(buf_size(&out), 2);
	assert_memory_equal(buf_data(&out), "[]", 2);
	store_cursor_free(c);
	buf_free(&out);
	store_close(st);
}

static void test_stored_parts_become_wire_parts(void **state)
{
	(void)state;
	json_t *p = store_parts_to_proto(
	    "[{\"type\":\"tool_call\",\"data\":{\"id\":\"1\",\"name\":\"n\",\"input\":\"\","
	    "\"provider_executed\":true,\"finished\":false}},"
	    "{\"type\":\"finish\",\"data\":{\"reason\":\"stop\",\"time\":0}},"
	    "{\"type\":\"future\",\"data\":{\"k\":1}}]");
	char *text = json_dumps(p, JSON_COMPACT);
	assert_string_equal(text,
			    "[{\"type\":\"tool_call\",\"data\":{\"id\":\"1\",\"name\":\"n\",\"input\":\"\"}},"
			    "{\"type\":\"finish\",\"data\":{\"reason\":\"stop\",\"time\":0}},"
			    "{\"type\":\"future\",\"data\":{\"k\":1}}]");
	free(text);
	json_decref(p);
	p = store_parts_to_proto("not json");
	assert_int_equal(json_array_size(p), 0);
	json_decref(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_fresh_store_records_every_goose_version_once),
	    cmocka_unit_test(test_sessions_come_out_as_upstreams_json),
	    cmocka_unit_test(test_a_message_for_a_missing_session_is_404),
	    cmocka_unit_test(test_listings_come_in_bounded_steps),
	    cmocka_unit_test(test_stored_parts_become_wire_parts),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
