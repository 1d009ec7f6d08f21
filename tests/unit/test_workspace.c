/*
 * Unit tests for supervisor/workspace.c: the Workspace object (SPEC §4),
 * its one data_dir default, that only its live fields change, and the
 * watch status it keeps from its worker's `watch` events.
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

#include "supervisor/workspace.h"

static claims_ws_t *fake_ws(const char *data_dir)
{
	static char *env[] = {"A=1", "B=two words"};
	claims_ws_t *ws = calloc(1, sizeof(*ws));

	assert_non_null(ws);
	snprintf(ws->id, sizeof(ws->id), "%s", "00000000-0000-4000-8000-000000000001");
	ws->path = "/tmp/../tmp/p";
	ws->key = "/tmp/p";
	ws->data_dir = (char *)data_dir;
	ws->env = env;
	ws->nenv = 2;
	ws->yolo = 1;
	ws->state = WS_READY;
	return ws;
}

static json_t *object_of(workspace_t *w)
{
	buf_t b = BUF_INIT;
	json_error_t err;

	workspace_json(&b, w);
	json_t *j = json_loadb(buf_data(&b), buf_size(&b), 0, &err);
	buf_free(&b);
	assert_non_null(j);
	return j;
}

static void test_the_object_has_every_field_with_its_type(void **state)
{
	stream_hub_t hub = {0};
	claims_ws_t *ws = fake_ws("");
	workspace_t *w = workspace_new(ws, &hub);
	json_t *j;

	(void)state;
	w->feed.pid = 4242;
	ws->streams = 3;
	j = object_of(w);
	assert_string_equal(json_string_value(json_object_get(j, "id")), ws->id);
	assert_string_equal(json_string_value(json_object_get(j, "path")), "/tmp/../tmp/p");
	assert_string_equal(json_string_value(json_object_get(j, "resolved_path")), "/tmp/p");
	assert_true(json_is_true(json_object_get(j, "yolo")));
	assert_true(json_is_false(json_object_get(j, "debug")));
	assert_string_equal(json_string_value(json_object_get(j, "data_dir")), "/tmp/p/.crush");
	assert_int_equal(json_array_size(json_object_get(j, "env")), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(j, "env"), 1)), "B=two words");
	assert_int_equal(json_integer_value(json_object_get(j, "pid")), 4242);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "ready");
	assert_int_equal(json_integer_value(json_object_get(j, "clients")), 0);
	assert_int_equal(json_integer_value(json_object_get(j, "streams")), 3);
	assert_int_equal(strlen(json_string_value(json_object_get(j, "created_at"))), 20);
	assert_true(json_is_string(json_object_get(j, "version")));
	json_decref(j);
	workspace_free(w);
	free(ws);
}

static void test_a_sent_data_dir_is_kept_as_sent(void **state)
{
	char out[64];
	claims_ws_t *ws = fake_ws("rel/dir");

	(void)state;
	workspace_data_dir(ws, out, sizeof(out));
	assert_string_equal(out, "rel/dir");
	ws->data_dir = "";
	workspace_data_dir(ws, out, sizeof(out));
	assert_string_equal(out, "/tmp/p/.crush");
	free(ws);
}

static void test_live_fields_follow_the_state(void **state)
{
	stream_hub_t hub = {0};
	claims_ws_t *ws = fake_ws("");
	workspace_t *w = workspace_new(ws, &hub);
	json_t *j = object_of(w);

	(void)state;
	json_decref(j);
	ws->state = WS_CLOSING;
	w->feed.pid = 7;
	j = object_of(w); /* fixed part reused, live part formatted anew */
	assert_string_equal(json_string_value(json_object_get(j, "state")), "closing");
	assert_int_equal(json_integer_value(json_object_get(j, "pid")), 7);
	json_decref(j);
	workspace_free(w);
	free(ws);
}

/* A watch event as the worker sends it, with status st (JSON text). */
static const char *watch_event(const char *st)
{
	static char text[16384];

	snprintf(text, sizeof(text),
		 "{\"type\":\"watch\",\"payload\":{\"type\":\"incomplete\",\"payload\":{\"path\":\"d1\","
		 "\"reason\":\"r\",\"watch\":%s}}}",
		 st);
	return text;
}

static int keep(workspace_t *w, const char *json)
{
	return workspace_watch_event(w, json, strlen(json));
}

/* The Workspace's watch field, as text (compact, keys in order). */
static char *watch_of(workspace_t *w)
{
	json_t *j = object_of(w);
	char *t = json_dumps(json_object_get(j, "watch"), JSON_COMPACT | JSON_PRESERVE_ORDER);

	json_decref(j);
	assert_non_null(t);
	return t;
}

static void test_the_watch_status_is_scanning_until_the_worker_says_more(void **state)
{
	stream_hub_t hub = {0};
	claims_ws_t *ws = fake_ws("");
	workspace_t *w = workspace_new(ws, &hub);
	char *t = watch_of(w);

	(void)state;
	assert_string_equal(t, "{\"complete\":false,\"scanning\":true,\"unwatched\":[],\"unwatched_count\":0,"
			       "\"reason\":\"scanning\"}");
	free(t);
	assert_int_equal(keep(w, watch_event("{\"complete\":false,\"scanning\":false,\"unwatched\":[\"d1\","
					     "\"d\\u00e9\"],\"unwatched_count\":9,\"reason\":\"fs.inotify."
					     "max_user_watches reached\",\"later\":1}")),
			 1);
	t = watch_of(w);
	/* Kept, rebuilt from the fields it knows (no "later"). */
	assert_string_equal(t, "{\"complete\":false,\"scanning\":false,\"unwatched\":[\"d1\",\"d\xc3\xa9\"],"
			       "\"unwatched_count\":9,\"reason\":\"fs.inotify.max_user_watches reached\"}");
	free(t);
	/* A new worker walks again. */
	workspace_watch_reset(w);
	t = watch_of(w);
	assert_non_null(strstr(t, "\"scanning\":true"));
	free(t);
	workspace_free(w);
	free(ws);
}

static void test_a_bad_or_oversized_status_is_not_kept(void **state)
{
	stream_hub_t hub = {0};
	claims_ws_t *ws = fake_ws("");
	workspace_t *w = workspace_new(ws, &hub);
	static char big[8192], many[1024];
	const char *ok = "{\"complete\":true,\"scanning\":false,\"unwatched\":[],\"unwatched_count\":0,"
			 "\"reason\":\"\"}";
	char *before, *after;

	(void)state;
	assert_int_equal(keep(w, watch_event(ok)), 1);
	before = watch_of(w);
	memset(many, 0, sizeof(many));
	strcpy(many, "{\"complete\":true,\"scanning\":false,\"unwatched\":[");
	for (int i = 0; i < 9; i++)
		strcat(many, i ? ",\"x\"" : "\"x\"");
	strcat(many, "],\"unwatched_count\":9,\"reason\":\"\"}");
	snprintf(big, sizeof(big),
		 "{\"complete\":true,\"scanning\":false,\"unwatched\":[\"%04100d\"],\"unwatched_count\":1,"
		 "\"reason\":\"\"}",
		 0);
	const char *bad[] = {
	    "{\"complete\":1,\"scanning\":false,\"unwatched\":[],\"unwatched_count\":0,\"reason\":\"\"}",
	    "{\"complete\":true,\"scanning\":false,\"unwatched\":[1],\"unwatched_count\":0,\"reason\":\"\"}",
	    "{\"complete\":true,\"scanning\":false,\"unwatched\":[],\"unwatched_count\":-1,\"reason\":\"\"}",
	    "{\"complete\":true,\"scanning\":false,\"unwatched\":[]}",
	    "[]",
	    many,
	    big,
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(keep(w, watch_event(bad[i])), 0);
	/* Not a watch event, or not JSON: relayed, never kept. */
	assert_int_equal(
	    keep(w, "{\"type\":\"fs\",\"payload\":{\"type\":\"created\",\"payload\":{\"watch\":{}}}}"), 0);
	assert_int_equal(keep(w, "{\"type\":\"watch\",\"payload\":"), 0);
	after = watch_of(w);
	assert_string_equal(after, before);
	free(before);
	free(after);
	workspace_free(w);
	free(ws);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_the_object_has_every_field_with_its_type),
	    cmocka_unit_test(test_a_sent_data_dir_is_kept_as_sent),
	    cmocka_unit_test(test_live_fields_follow_the_state),
	    cmocka_unit_test(test_the_watch_status_is_scanning_until_the_worker_says_more),
	    cmocka_unit_test(test_a_bad_or_oversized_status_is_not_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
