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
	return w;
}

typedef struct workspace_session {
	hmap_node_t node;
	char client_id[ID_LEN + 1];
	char *session_id;
} workspace_session_t;

#define SESSION_OF(n) ((workspace_session_t *)((char *)(n)-offsetof(workspace_session_t, node)))

void workspace_set_session(workspace_t *w, const char *client_id, const char *session_id)
{
	hmap_node_t *n = hmap_get(&w->sessions, client_id);
	workspace_session_t *s = n ? SESSION_OF(n) : NULL;
	if (s == NULL) {
		if (*session_id == '\0')
			return;
		if ((s = calloc(1, sizeof(*s))) == NULL)
			abort();
		snprintf(s->client_id, sizeof(s->client_id), "%s", client_id);
		hmap_put(&w->sessions, &s->node, s->client_id);
	}
	free(s->session_id);
	if ((s->session_id = strdup(session_id)) == NULL)
		abort();
}

const char *workspace_session(const workspace_t *w, const char *client_id)
{
	hmap_node_t *n = hmap_get(&w->sessions, client_id);
	return n ? SESSION_OF(n)->session_id : "";
}

void workspace_presence_update(workspace_t *w)
{
	/* Only clients with a live stream count, as upstream. */
	json_t *counts = json_object();
	hmap_node_t *n, *nxt;
	hmap_foreach (&w->sessions, n, nxt) {
		workspace_session_t *s = SESSION_OF(n);
		claims_client_t *cl = claims_find_client(w->ws, s->client_id);
		if (cl == NULL || cl->streams == 0 || s->session_id[0] == '\0')
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

static const char *fixed_fields(workspace_t *w)
{
	if (w->fixed_json != NULL)
		return w->fixed_json;
	const claims_ws_t *ws = w->ws;
	char data_dir[PATH_MAX + 8];
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
	buf_append(out, "}", 1);
}
