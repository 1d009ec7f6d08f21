/*
 * workspace: shell state and the Workspace object (see workspace.h).
 */
#include "supervisor/workspace.h"

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/utf8.h"
#include "common/version.h"
#include "supervisor/proc.h"

workspace_t *workspace_new(claims_ws_t *ws, stream_hub_t *hub)
{
	workspace_t *w = calloc(1, sizeof(*w));
	if (w == NULL)
		abort();
	w->ws = ws;
	stream_feed_init(&w->feed, hub, ws->id);
	h2o_linklist_init_anchor(&w->waiters);
	h2o_linklist_init_anchor(&w->fwd_waiting);
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(w->created_at, sizeof(w->created_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	ws->shell = w;
	workspace_watch_reset(w);
	return w;
}

typedef struct workspace_session {
	hmap_node_t node;
	char client_id[ID_LEN + 1];
	char *session_id;
} workspace_session_t;

#define SESSION_OF(n) ((workspace_session_t *)((char *)(n)-offsetof(workspace_session_t, node)))

static void session_free(workspace_t *w, workspace_session_t *s)
{
	hmap_del(&w->sessions, &s->node);
	free(s->session_id);
	free(s);
}

void workspace_set_session(workspace_t *w, const char *client_id, const char *session_id)
{
	hmap_node_t *n = hmap_get(&w->sessions, client_id);
	workspace_session_t *s = n ? SESSION_OF(n) : NULL;
	if (*session_id == '\0') { /* none: nothing kept */
		if (s != NULL)
			session_free(w, s);
		return;
	}
	if (s == NULL) {
		if ((s = calloc(1, sizeof(*s))) == NULL)
			abort();
		snprintf(s->client_id, sizeof(s->client_id), "%s", client_id);
		hmap_put(&w->sessions, &s->node, s->client_id);
	}
	free(s->session_id);
	if ((s->session_id = strdup(session_id)) == NULL)
		abort();
}

void workspace_presence_update(workspace_t *w)
{
	/* Only clients with a live stream count, as upstream. */
	json_t *counts = json_object();
	hmap_node_t *n, *nxt;
	hmap_foreach (&w->sessions, n, nxt) {
		workspace_session_t *s = SESSION_OF(n);
		claims_client_t *cl = claims_find_client(w->ws, s->client_id);
		if (cl == NULL) { /* the client left the workspace: its session goes too */
			session_free(w, s);
			continue;
		}
		if (cl->streams == 0)
			continue;
		json_t *c = json_object_get(counts, s->session_id);
		json_object_set_new(counts, s->session_id, json_integer(c ? json_integer_value(c) + 1 : 1));
	}
	json_t *j = json_pack("{s:s, s:o}", "method", "presence", "sessions", counts);
	char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	if (text == NULL)
		abort();
	if (w->presence_sent != NULL && strcmp(w->presence_sent, text) == 0) {
		free(text);
		return;
	}
	free(w->presence_sent);
	w->presence_sent = text;
	if (w->proc != NULL)
		proc_presence(w->proc, text);
}

void workspace_presence_reset(workspace_t *w)
{
	free(w->presence_sent);
	w->presence_sent = NULL;
}

void workspace_set_fail_message(workspace_t *w, const char *msg)
{
	free(w->fail_message);
	w->fail_message = msg != NULL ? strdup(msg) : NULL;
}

void workspace_set_config(workspace_t *w, const char *json, size_t len)
{
	char *copy = malloc(len + 1);
	if (copy == NULL)
		abort();
	memcpy(copy, json, len);
	copy[len] = '\0';
	free(w->config_json);
	w->config_json = copy;
}

void workspace_free(workspace_t *w)
{
	hmap_node_t *n, *nxt;
	hmap_foreach (&w->sessions, n, nxt) {
		free(SESSION_OF(n)->session_id);
		free(SESSION_OF(n));
	}
	hmap_free(&w->sessions);
	stream_feed_free(&w->feed);
	free(w->fixed_json);
	free(w->config_json);
	free(w->presence_sent);
	free(w->fail_message);
	free(w->data_dir);
	free(w->watch_json);
	w->ws->shell = NULL;
	free(w);
}

void workspace_data_dir(const claims_ws_t *ws, char *out, size_t len)
{
	if (ws->data_dir[0] != '\0')
		snprintf(out, len, "%s", ws->data_dir);
	else
		snprintf(out, len, "%s/.crush", ws->key);
}

void workspace_set_data_dir(workspace_t *w, const char *dir)
{
	if (w->data_dir != NULL && strcmp(w->data_dir, dir) == 0)
		return;
	free(w->data_dir);
	if ((w->data_dir = strdup(dir)) == NULL)
		abort();
	free(w->fixed_json); /* made again with it */
	w->fixed_json = NULL;
}

static const char *fixed_fields(workspace_t *w)
{
	if (w->fixed_json != NULL)
		return w->fixed_json;
	const claims_ws_t *ws = w->ws;
	char data_dir[PATH_MAX + 8];
	if (w->data_dir != NULL)
		snprintf(data_dir, sizeof(data_dir), "%s", w->data_dir);
	else
		workspace_data_dir(ws, data_dir, sizeof(data_dir));
	/* The resolved path (and a data_dir made from it) are filesystem bytes:
	 * made valid UTF-8 here, the one place they enter JSON. */
	json_t *env = json_array();
	for (size_t i = 0; i < ws->nenv; i++)
		json_array_append_new(env, utf8_json_string(ws->env[i]));
	json_t *channels = json_array();
	for (size_t i = 0; i < ws->nchannels; i++)
		json_array_append_new(channels, utf8_json_string(ws->channels[i]));
	json_t *j =
	    json_pack("{s:s, s:o, s:o, s:b, s:b, s:o, s:s, s:o, s:o, s:[], s:s}", "id", ws->id, "path",
		      utf8_json_string(ws->path), "resolved_path", utf8_json_string(ws->key), "yolo",
		      ws->yolo, "debug", ws->debug, "data_dir", utf8_json_string(data_dir), "version",
		      CRUSH_VERSION, "env", env, "channels", channels, "skills", "created_at", w->created_at);
	char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (text == NULL)
		abort();
	text[strlen(text) - 1] = '\0'; /* keep it open: the live fields follow */
	w->fixed_json = text;
	return text;
}

static void set_watch(workspace_t *w, char *text)
{
	if (text == NULL)
		abort();
	free(w->watch_json);
	w->watch_json = text;
}

/* No worker status to show: an incomplete watch, for reason (a literal
 * that needs no escaping). */
static void set_watch_incomplete(workspace_t *w, int scanning, const char *reason)
{
	char text[160];
	snprintf(
	    text, sizeof(text),
	    "{\"complete\":false,\"scanning\":%s,\"unwatched\":[],\"unwatched_count\":0,\"reason\":\"%s\"}",
	    scanning ? "true" : "false", reason);
	set_watch(w, strdup(text));
}

void workspace_watch_reset(workspace_t *w)
{
	set_watch_incomplete(w, 1, "scanning");
}

void workspace_watch_lost(workspace_t *w)
{
	set_watch_incomplete(w, 0, "worker restarting");
}

/* The status, rebuilt from its known fields only, or NULL. */
static json_t *checked_status(const json_t *st)
{
	const json_t *complete = json_object_get(st, "complete"), *scanning = json_object_get(st, "scanning");
	const json_t *sample = json_object_get(st, "unwatched"),
		     *count = json_object_get(st, "unwatched_count");
	const json_t *reason = json_object_get(st, "reason");
	size_t bytes = 0;

	if (!json_is_boolean(complete) || !json_is_boolean(scanning) || !json_is_array(sample) ||
	    json_array_size(sample) > WORKSPACE_WATCH_SAMPLE || !json_is_integer(count) ||
	    json_integer_value(count) < 0 || !json_is_string(reason) ||
	    json_string_length(reason) > WORKSPACE_WATCH_REASON)
		return NULL;
	json_t *out = json_pack("{s:O, s:O, s:[], s:O, s:O}", "complete", complete, "scanning", scanning,
				"unwatched", "unwatched_count", count, "reason", reason);
	for (size_t i = 0; i < json_array_size(sample); i++) {
		const json_t *p = json_array_get(sample, i);
		bytes += json_is_string(p) ? json_string_length(p) : WORKSPACE_WATCH_BYTES + 1;
		if (bytes > WORKSPACE_WATCH_BYTES) {
			json_decref(out);
			return NULL;
		}
		json_array_append(json_object_get(out, "unwatched"), (json_t *)p);
	}
	return out;
}

int workspace_watch_event(workspace_t *w, const char *json, size_t len)
{
	/* Our worker writes the type first; anything else is relayed only. */
	static const char prefix[] = "{\"type\":\"watch\",";
	if (len < sizeof(prefix) - 1 || memcmp(json, prefix, sizeof(prefix) - 1) != 0)
		return 0;
	json_t *j = json_loadb(json, len, 0, NULL);
	json_t *st = checked_status(
	    json_object_get(json_object_get(json_object_get(j, "payload"), "payload"), "watch"));
	json_decref(j);
	if (st == NULL)
		return 0;
	set_watch(w, json_dumps(st, JSON_COMPACT | JSON_PRESERVE_ORDER));
	json_decref(st);
	return 1;
}

void workspace_json(buf_t *out, workspace_t *w)
{
	const claims_ws_t *ws = w->ws;
	buf_appendf(
	    out, "%s,\"pid\":%d,\"state\":\"%s\",\"clients\":%zu,\"streams\":%u,\"config\":", fixed_fields(w),
	    (int)w->feed.pid, claims_state_name(ws->state), claims_ws_clients(ws), ws->streams);
	if (w->config_json != NULL) {
		buf_append(out, w->config_json, strlen(w->config_json));
	} else {
		/* Before the worker's: what upstream's client dereferences. */
		char data_dir[PATH_MAX + 8];
		workspace_data_dir(ws, data_dir, sizeof(data_dir));
		json_t *j = json_pack("{s:{s:o}, s:{}}", "options", "data_directory",
				      utf8_json_string(data_dir), "providers");
		char *text = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		if (text == NULL)
			abort();
		buf_append(out, text, strlen(text));
		free(text);
	}
	buf_appendf(out, ",\"watch\":%s}", w->watch_json);
}
