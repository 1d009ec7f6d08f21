/*
 * api: the workspace's routed requests (see api.h).
 */
#include "worker/api.h"

#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

struct api {
	json_t *presence; /* {"<sid>": attached clients}, from the supervisor */
	struct ev_loop *loop;
	char *data_dir;
	int test_routes;
};

static void get_config(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	(void)req, (void)params;
	json_t *cfg = api_config(a);
	char *text = json_dumps(cfg, JSON_COMPACT);
	json_decref(cfg);
	if (text == NULL)
		abort();
	calls_respond(c, 200, NULL, text, strlen(text));
	free(text);
}

/* Upstream's per-workspace routes (internal/server/server.go), in its
 * order; NULL handler: 501. events, current-session and the workspace
 * itself are the supervisor's. */
const api_route_t api_routes[] = {
    {"GET", "/config", get_config},
    {"GET", "/providers", NULL},
    {"GET", "/sessions", NULL},
    {"POST", "/sessions", NULL},
    {"GET", "/sessions/{sid}", NULL},
    {"PUT", "/sessions/{sid}", NULL},
    {"DELETE", "/sessions/{sid}", NULL},
    {"GET", "/sessions/{sid}/history", NULL},
    {"GET", "/sessions/{sid}/messages", NULL},
    {"GET", "/sessions/{sid}/messages/user", NULL},
    {"GET", "/messages/user", NULL},
    {"GET", "/sessions/{sid}/filetracker/files", NULL},
    {"POST", "/filetracker/read", NULL},
    {"GET", "/filetracker/lastread", NULL},
    {"GET", "/lsps", NULL},
    {"GET", "/lsps/{lsp}/diagnostics", NULL},
    {"POST", "/lsps/start", NULL},
    {"POST", "/lsps/stop", NULL},
    {"GET", "/permissions/skip", NULL},
    {"POST", "/permissions/skip", NULL},
    {"POST", "/permissions/grant", NULL},
    {"POST", "/questions/answer", NULL},
    {"POST", "/questions/cancel", NULL},
    {"GET", "/agent", NULL},
    {"POST", "/agent", NULL},
    {"POST", "/agent/init", NULL},
    {"POST", "/agent/update", NULL},
    {"GET", "/agent/sessions/{sid}", NULL},
    {"POST", "/agent/sessions/{sid}/cancel", NULL},
    {"GET", "/agent/sessions/{sid}/prompts/queued", NULL},
    {"GET", "/agent/sessions/{sid}/prompts/list", NULL},
    {"POST", "/agent/sessions/{sid}/prompts/clear", NULL},
    {"POST", "/agent/sessions/{sid}/summarize", NULL},
    {"POST", "/agent/sessions/{sid}/shell", NULL},
    {"GET", "/agent/default-small-model", NULL},
    {"POST", "/config/set", NULL},
    {"POST", "/config/remove", NULL},
    {"POST", "/config/model", NULL},
    {"POST", "/config/compact", NULL},
    {"POST", "/config/provider-key", NULL},
    {"POST", "/config/import-copilot", NULL},
    {"POST", "/config/refresh-oauth", NULL},
    {"GET", "/project/needs-init", NULL},
    {"POST", "/project/init", NULL},
    {"GET", "/project/init-prompt", NULL},
    {"GET", "/skills", NULL},
    {"POST", "/skills/read", NULL},
    {"POST", "/mcp/refresh-tools", NULL},
    {"POST", "/mcp/read-resource", NULL},
    {"GET", "/mcp/prompts", NULL},
    {"POST", "/mcp/get-prompt", NULL},
    {"GET", "/mcp/states", NULL},
    {"GET", "/mcp/pending-auth", NULL},
    {"GET", "/mcp/auth-url", NULL},
    {"POST", "/mcp/auth", NULL},
    {"POST", "/mcp/refresh-prompts", NULL},
    {"POST", "/mcp/refresh-resources", NULL},
    {"POST", "/mcp/docker/enable", NULL},
    {"POST", "/mcp/docker/disable", NULL},
};
const size_t api_nroutes = sizeof(api_routes) / sizeof(api_routes[0]);

#define MAX_PARAMS 2

/* Matches path against pattern: literal segments must be equal, "{x}"
 * takes one non-empty segment (copied into params, NUL-terminated, in
 * store). 1 on a match. */
static int match(const char *pattern, const char *path, char *store, size_t storelen, const char **params)
{
	size_t np = 0, used = 0;
	while (*pattern == '/' && *path == '/') {
		pattern++, path++;
		size_t pl = strcspn(pattern, "/"), sl = strcspn(path, "/");
		if (pattern[0] == '{') {
			if (sl == 0 || np == MAX_PARAMS || used + sl + 1 > storelen)
				return 0;
			memcpy(store + used, path, sl);
			store[used + sl] = '\0';
			params[np++] = store + used;
			used += sl + 1;
		} else if (pl != sl || memcmp(pattern, path, sl) != 0) {
			return 0;
		}
		pattern += pl, path += sl;
	}
	return *pattern == '\0' && *path == '\0';
}

/* --- test-only routes (CRUSH_TEST_ROUTES=1): sizes, echo, delays */

static long query_long(const char *q, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = q; p && *p;) {
		if (strncmp(p, name, n) == 0 && p[n] == '=')
			return strtol(p + n + 1, NULL, 10);
		p = strchr(p, '&');
		p = p ? p + 1 : NULL;
	}
	return -1;
}

typedef struct sleeper {
	ev_timer t;
	call_t *c;
	struct ev_loop *loop;
} sleeper_t;

static void on_sleep_done(struct ev_loop *loop, ev_timer *t, int revents)
{
	sleeper_t *s = (sleeper_t *)t;
	(void)loop, (void)revents;
	calls_respond(s->c, 200, NULL, "{\"slept\":true}", 14);
	free(s);
}

static void on_sleep_cancel(call_t *c, void *data)
{
	sleeper_t *s = data;
	(void)c;
	ev_timer_stop(s->loop, &s->t);
	free(s);
}

static int test_route(api_t *a, call_t *c, const call_req_t *req)
{
	if (strcmp(req->path, "/_test/bytes") == 0) {
		long n = query_long(req->query, "n");
		if (n < 0 || n > (64L << 20))
			n = 0;
		char *body = malloc((size_t)n + 1);
		if (body == NULL)
			abort();
		memset(body, 'x', (size_t)n);
		calls_respond(c, 200, "application/octet-stream", body, (size_t)n);
		free(body);
	} else if (strcmp(req->path, "/_test/presence") == 0) {
		/* attached_clients of the session in ?sid= (query value as sent). */
		const char *sid = strstr(req->query, "sid=");
		char out[64];
		int n = snprintf(out, sizeof(out), "{\"attached_clients\":%d}",
				 sid ? api_attached_clients(a, sid + 4) : 0);
		calls_respond(c, 200, NULL, out, (size_t)n);
	} else if (strcmp(req->path, "/_test/echo") == 0) {
		calls_respond(c, 200, "application/octet-stream", req->body, req->body_len);
	} else if (strcmp(req->path, "/_test/sleep") == 0) {
		sleeper_t *s = calloc(1, sizeof(*s));
		if (s == NULL)
			abort();
		long ms = query_long(req->query, "ms");
		s->c = c;
		s->loop = a->loop;
		ev_timer_init(&s->t, on_sleep_done, ms > 0 ? (double)ms / 1000.0 : 0.0, 0.0);
		ev_timer_start(a->loop, &s->t);
		call_on_cancel(c, on_sleep_cancel, s);
	} else {
		return 0;
	}
	return 1;
}

void api_dispatch(void *arg, call_t *c, const call_req_t *req)
{
	api_t *a = arg;
	char store[512];
	const char *params[MAX_PARAMS] = {NULL, NULL};
	int path_known = 0;

	if (a->test_routes && strncmp(req->path, "/_test/", 7) == 0 && test_route(a, c, req))
		return;
	for (size_t i = 0; i < api_nroutes; i++) {
		const api_route_t *r = &api_routes[i];
		if (!match(r->pattern, req->path, store, sizeof(store), params))
			continue;
		path_known = 1;
		if (strcmp(r->verb, req->verb) != 0)
			continue;
		if (r->handler == NULL)
			calls_error(c, 501, "not implemented by this workspace host");
		else
			r->handler(a, c, req, params);
		return;
	}
	calls_error(c, path_known ? 405 : 404, path_known ? "method not allowed" : "not found");
}

json_t *api_config(const api_t *a)
{
	/* Upstream's client dereferences cfg.Options (DisableMetrics,
	 * DataDirectory) and cfg.Providers without checks: both are always
	 * here. The config service (the next issue) fills the rest. */
	return json_pack("{s:{s:o, s:b, s:{}, s:[], s:[]}, s:{}, s:{}, s:{}, s:{}, s:{}, s:{}}", "options",
			 "data_directory", utf8_json_string(a->data_dir), "disable_metrics", 0, "tui",
			 "context_paths", "disabled_tools", "providers", "models", "mcp", "lsp",
			 "permissions", "tools");
}

api_t *api_new(struct ev_loop *loop, const char *data_dir, int test_routes)
{
	api_t *a = calloc(1, sizeof(*a));
	if (a == NULL || (a->data_dir = strdup(data_dir)) == NULL)
		abort();
	a->loop = loop;
	a->test_routes = test_routes;
	return a;
}

int api_set_presence(api_t *a, const json_t *req)
{
	json_t *sessions = json_object_get(req, "sessions");
	const char *k;
	json_t *v;
	if (!json_is_object(sessions))
		return -1;
	json_object_foreach(sessions, k, v) if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
	json_decref(a->presence);
	a->presence = json_incref(sessions);
	return 0;
}

int api_attached_clients(const api_t *a, const char *session_id)
{
	json_t *n = a->presence ? json_object_get(a->presence, session_id) : NULL;
	return n ? (int)json_integer_value(n) : 0;
}

void api_free(api_t *a)
{
	if (a == NULL)
		return;
	json_decref(a->presence);
	free(a->data_dir);
	free(a);
}
