/*
 * api: the workspace's routed requests (see api.h).
 */
#include "worker/api.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/log.h"
#include "common/utf8.h"
#include "worker/cfgstore.h"

#define TEST_BYTES_MAX (64L << 20)

struct api {
	json_t *presence; /* {"<sid>": attached clients}, from the supervisor */
	char *test_bytes; /* /_test/bytes: TEST_BYTES_MAX, the first test_bytes_len filled */
	size_t test_bytes_len;
	struct ev_loop *loop;
	char *data_dir;
	int test_routes;
	cfgstore_t *cfg; /* the config service (cfgstore.c), not owned; NULL in tests */

	/* api_set_services: borrowed */
	store_t *store;
	shell_t *shell;
	char *root;
	api_emit_cb emit;
	void *emit_arg;
};

/* The config and project routes are the config service's (cfgstore.c). */
static void get_config(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	(void)params;
	if (a->cfg != NULL) {
		cfgstore_get(a->cfg, c, req);
		return;
	}
	calls_json(c, 200, api_config(a));
}

#define CFG_ROUTE(name, fn)                                                                                  \
	static void name(api_t *a, call_t *c, const call_req_t *req, const char *const *params)              \
	{                                                                                                    \
		(void)params;                                                                                \
		if (a->cfg == NULL)                                                                          \
			calls_error(c, 501, "not implemented by this workspace host");                       \
		else                                                                                         \
			fn(a->cfg, c, req);                                                                  \
	}
CFG_ROUTE(post_config_set, cfgstore_set)
CFG_ROUTE(post_config_remove, cfgstore_remove)
CFG_ROUTE(get_project_needs_init, cfgstore_needs_init)
CFG_ROUTE(post_project_init, cfgstore_init)
CFG_ROUTE(get_project_init_prompt, cfgstore_init_prompt)

/* --- sessions, messages, history, file tracker (store.c), shell runs
 * (shell.c). Shapes and statuses as upstream's internal/server/proto.go:
 * an unknown session is its 500 "sql: no rows in result set", a body
 * that does not decode 400 "failed to decode request". */

/* A listing larger than one step is produced over several loop turns. */
#define LIST_STEP_ROWS	256
#define LIST_STEP_BYTES (256u << 10)

typedef struct lister {
	ev_idle idle;
	api_t *a;
	call_t *c;
	store_cursor_t *cur;
	buf_t out;
} lister_t;

static void lister_free(lister_t *l)
{
	ev_idle_stop(l->a->loop, &l->idle);
	store_cursor_free(l->cur);
	buf_free(&l->out);
	free(l);
}

/* One step; 1 when the call was answered (and l freed). */
static int lister_step(lister_t *l)
{
	int r = store_cursor_step(l->cur, &l->out, LIST_STEP_ROWS, LIST_STEP_BYTES);
	if (r == 0)
		return 0;
	if (r < 0)
		calls_error(l->c, 500, "listing failed");
	else
		calls_respond(l->c, 200, NULL, buf_data(&l->out), buf_size(&l->out));
	lister_free(l);
	return 1;
}

static void on_list_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)loop, (void)revents;
	lister_step((lister_t *)w);
}

static void on_list_cancel(call_t *c, void *data)
{
	(void)c;
	lister_free(data);
}

static void list(api_t *a, call_t *c, enum store_list what, const char *arg)
{
	char err[256];
	store_cursor_t *cur = store_list(a->store, what, arg, a->root, err, sizeof(err));
	if (cur == NULL) {
		calls_error(c, 500, err);
		return;
	}
	lister_t *l = calloc(1, sizeof(*l));
	if (l == NULL)
		abort();
	l->a = a;
	l->c = c;
	l->cur = cur;
	if (lister_step(l))
		return;
	ev_idle_init(&l->idle, on_list_idle);
	ev_idle_start(a->loop, &l->idle);
	call_on_cancel(c, on_list_cancel, l);
}

/* Publishes {"type":type,"payload":{"type":kind,"payload":obj}} (obj
 * borrowed). */
static void publish(api_t *a, const char *type, const char *kind, json_t *obj)
{
	if (a->emit != NULL)
		a->emit(a->emit_arg, json_pack("{s:s, s:{s:s, s:O}}", "type", type, "payload", "type", kind,
					       "payload", obj));
}

/* The store answered obj (or NULL with status, err): the session as the
 * answer, and as a `kind` session event when kind is not NULL. */
static void session_answer(api_t *a, call_t *c, json_t *obj, const char *kind, int status, const char *err)
{
	if (obj == NULL) {
		calls_error(c, status, err);
		return;
	}
	if (kind != NULL)
		publish(a, "session", kind, obj);
	calls_json(c, 200, obj);
}

static json_t *decode_body(const call_req_t *req)
{
	json_t *j = json_loadb(req->body, req->body_len, JSON_DECODE_ANY, NULL);
	if (j == NULL || !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

/* The store lives in the data dir, which only its lock holder may
 * write (cfgstore): without the lock, 409 as for a config write. */
#define NEED_STORE(a, c)                                                                                     \
	do {                                                                                                 \
		if ((a)->store == NULL) {                                                                    \
			calls_error((c), 501, "not implemented by this workspace host");                     \
			return;                                                                              \
		}                                                                                            \
		if ((a)->cfg != NULL && !cfgstore_locked((a)->cfg)) {                                        \
			calls_error((c), 409,                                                                \
				    "data directory is not available: the workspace directory does not "     \
				    "exist yet or another process holds its lock");                          \
			return;                                                                              \
		}                                                                                            \
	} while (0)

static void get_sessions(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	(void)req, (void)params;
	NEED_STORE(a, c);
	list(a, c, STORE_LIST_SESSIONS, NULL);
}

static void post_sessions(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	(void)params;
	NEED_STORE(a, c);
	json_t *in = decode_body(req);
	if (in == NULL) {
		calls_error(c, 400, "failed to decode request");
		return;
	}
	/* upstream decodes into session.Session: "title" matches Title. */
	const char *k, *title = "";
	json_t *v;
	json_object_foreach(in, k, v)
	{
		if (strcasecmp(k, "title") == 0 && json_is_string(v))
			title = json_string_value(v);
	}
	int status = 500;
	char err[256];
	json_t *s = store_session_create(a->store, title, &status, err, sizeof(err));
	json_decref(in);
	session_answer(a, c, s, "created", status, err);
}

static void get_session(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	(void)req;
	NEED_STORE(a, c);
	int status = 500;
	char err[256];
	session_answer(a, c, store_session_get(a->store, params[0], &status, err, sizeof(err)), NULL, status,
		       err);
}

static void put_session(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	NEED_STORE(a, c);
	json_t *in = decode_body(req);
	if (in == NULL) {
		calls_error(c, 400, "failed to decode request");
		return;
	}
	/* Upstream saves the body's id; a body without one means the path's. */
	const char *k;
	json_t *v;
	int has_id = 0;
	json_object_foreach(in, k, v)
	{
		has_id |= strcasecmp(k, "id") == 0 && json_string_length(v) > 0;
	}
	if (!has_id)
		json_object_set_new(in, "id", json_string(params[0]));
	int status = 500;
	char err[256];
	json_t *s = store_session_save(a->store, in, &status, err, sizeof(err));
	json_decref(in);
	session_answer(a, c, s, "updated", status, err);
}

static void delete_session(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	(void)req;
	NEED_STORE(a, c);
	int status = 500;
	char err[256];
	json_t *s = store_session_delete(a->store, params[0], &status, err, sizeof(err));
	if (s == NULL) {
		calls_error(c, status, err);
		return;
	}
	publish(a, "session", "deleted", s);
	json_decref(s);
	calls_respond(c, 200, NULL, "", 0);
}

static void get_session_messages(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	(void)req;
	NEED_STORE(a, c);
	list(a, c, STORE_LIST_MESSAGES, params[0]);
}

static void get_session_user_messages(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	(void)req;
	NEED_STORE(a, c);
	list(a, c, STORE_LIST_USER_MESSAGES, params[0]);
}

static void get_user_messages(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	(void)req, (void)params;
	NEED_STORE(a, c);
	list(a, c, STORE_LIST_ALL_USER, NULL);
}

static void get_session_history(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	(void)req;
	NEED_STORE(a, c);
	list(a, c, STORE_LIST_HISTORY, params[0]);
}

static void get_read_files(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	(void)req;
	NEED_STORE(a, c);
	list(a, c, STORE_LIST_READ_FILES, params[0]);
}

/* A path as upstream's file tracker keeps it: relative to the workspace
 * root (upstream: to its process's cwd). Written to out. */
static void tracker_path(const api_t *a, const char *path, char *out, size_t outlen)
{
	size_t rl = strlen(a->root);
	if (strncmp(path, a->root, rl) == 0 && (path[rl] == '/' || path[rl] == '\0'))
		snprintf(out, outlen, "%s", path[rl] == '\0' || path[rl + 1] == '\0' ? "." : path + rl + 1);
	else if (strncmp(path, "./", 2) == 0 && path[2] != '\0')
		snprintf(out, outlen, "%s", path + 2);
	else
		snprintf(out, outlen, "%s", path);
}

static void post_tracker_read(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	(void)params;
	NEED_STORE(a, c);
	json_t *in = decode_body(req);
	const char *sid = json_string_value(json_object_get(in, "session_id")),
		   *path = json_string_value(json_object_get(in, "path"));
	if (in == NULL) {
		calls_error(c, 400, "failed to decode request");
		return;
	}
	char rel[4096], err[256];
	tracker_path(a, path ? path : "", rel, sizeof(rel));
	/* Upstream logs a failed record and answers 200 all the same. */
	if (store_read_record(a->store, sid ? sid : "", rel, err, sizeof(err)) != 0)
		log_error("Error recording file read", "file", path ? path : "", "err", err, NULL);
	json_decref(in);
	calls_respond(c, 200, NULL, "", 0);
}

/* The value of query parameter name, %-decoded into out; "" when absent. */
static void query_param(const char *q, const char *name, char *out, size_t outlen)
{
	size_t n = strlen(name), o = 0;
	out[0] = '\0';
	for (const char *p = q; p && *p;) {
		if (strncmp(p, name, n) == 0 && p[n] == '=') {
			for (p += n + 1; *p && *p != '&' && o + 1 < outlen; p++) {
				unsigned hi, lo;
				if (*p == '+') {
					out[o++] = ' ';
				} else if (*p == '%' && sscanf(p + 1, "%1x%1x", &hi, &lo) == 2) {
					out[o++] = (char)(hi << 4 | lo);
					p += 2;
				} else {
					out[o++] = *p;
				}
			}
			out[o] = '\0';
			return;
		}
		p = strchr(p, '&');
		p = p ? p + 1 : NULL;
	}
}

/* Go's time.Time JSON (RFC 3339, local zone), as upstream encodes a
 * time.Unix(t, 0); the zero time when never read. */
static void get_tracker_lastread(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	(void)params;
	NEED_STORE(a, c);
	char sid[512], path[4096], rel[4096], text[128];
	query_param(req->query, "session_id", sid, sizeof(sid));
	query_param(req->query, "path", path, sizeof(path));
	tracker_path(a, path, rel, sizeof(rel));
	int64_t t = store_read_last(a->store, sid, rel);
	if (t == 0) {
		snprintf(text, sizeof(text), "\"0001-01-01T00:00:00Z\"");
	} else {
		time_t tt = (time_t)t;
		struct tm tm;
		char stamp[32], zone[48];
		localtime_r(&tt, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		long off = tm.tm_gmtoff;
		if (off == 0)
			snprintf(zone, sizeof(zone), "Z");
		else
			snprintf(zone, sizeof(zone), "%c%02ld:%02ld", off < 0 ? '-' : '+', labs(off) / 3600,
				 labs(off) % 3600 / 60);
		snprintf(text, sizeof(text), "\"%s%s\"", stamp, zone);
	}
	calls_respond(c, 200, NULL, text, strlen(text));
}

static void post_shell(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	if (a->shell == NULL) {
		calls_error(c, 501, "not implemented by this workspace host");
		return;
	}
	NEED_STORE(a, c); /* a run is recorded in its session */
	shell_run(a->shell, c, params[0], req->client_id, req->body, req->body_len);
}

/* Upstream cancels the session's agent run; here that is its shell runs. */
static void post_agent_cancel(api_t *a, call_t *c, const call_req_t *req, const char *const *params)
{
	(void)req;
	if (a->shell != NULL)
		shell_cancel_session(a->shell, params[0]);
	calls_respond(c, 200, NULL, "", 0);
}

/* Upstream's per-workspace routes (internal/server/server.go), in its
 * order; NULL handler: 501. events, current-session and the workspace
 * itself are the supervisor's. */
const api_route_t api_routes[] = {
    {"GET", "/config", get_config},
    {"GET", "/providers", NULL},
    {"GET", "/sessions", get_sessions},
    {"POST", "/sessions", post_sessions},
    {"GET", "/sessions/{sid}", get_session},
    {"PUT", "/sessions/{sid}", put_session},
    {"DELETE", "/sessions/{sid}", delete_session},
    {"GET", "/sessions/{sid}/history", get_session_history},
    {"GET", "/sessions/{sid}/messages", get_session_messages},
    {"GET", "/sessions/{sid}/messages/user", get_session_user_messages},
    {"GET", "/messages/user", get_user_messages},
    {"GET", "/sessions/{sid}/filetracker/files", get_read_files},
    {"POST", "/filetracker/read", post_tracker_read},
    {"GET", "/filetracker/lastread", get_tracker_lastread},
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
    {"POST", "/agent/sessions/{sid}/cancel", post_agent_cancel},
    {"GET", "/agent/sessions/{sid}/prompts/queued", NULL},
    {"GET", "/agent/sessions/{sid}/prompts/list", NULL},
    {"POST", "/agent/sessions/{sid}/prompts/clear", NULL},
    {"POST", "/agent/sessions/{sid}/summarize", NULL},
    {"POST", "/agent/sessions/{sid}/shell", post_shell},
    {"GET", "/agent/default-small-model", NULL},
    {"POST", "/config/set", post_config_set},
    {"POST", "/config/remove", post_config_remove},
    {"POST", "/config/model", NULL},
    {"POST", "/config/compact", NULL},
    {"POST", "/config/provider-key", NULL},
    {"POST", "/config/import-copilot", NULL},
    {"POST", "/config/refresh-oauth", NULL},
    {"GET", "/project/needs-init", get_project_needs_init},
    {"POST", "/project/init", post_project_init},
    {"GET", "/project/init-prompt", get_project_init_prompt},
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
		/* n bytes of 'x' from one buffer filled as far as ever asked:
		 * the stand-in for a worker that has its answer at hand (the
		 * 16 MiB bench row measures the supervisor, not a memset). Its
		 * bytes never move or change, so calls may stream from it. */
		long n = query_long(req->query, "n");
		if (n < 0 || n > TEST_BYTES_MAX)
			n = 0;
		if (a->test_bytes == NULL && (a->test_bytes = malloc(TEST_BYTES_MAX)) == NULL)
			abort(); /* address space: pages are touched as they are filled */
		if ((size_t)n > a->test_bytes_len) {
			memset(a->test_bytes + a->test_bytes_len, 'x', (size_t)n - a->test_bytes_len);
			a->test_bytes_len = (size_t)n;
		}
		calls_respond_kept(c, 200, "application/octet-stream", a->test_bytes, (size_t)n);
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
	if (a->cfg != NULL)
		return cfgstore_config(a->cfg);
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

void api_set_cfgstore(api_t *a, cfgstore_t *cfg)
{
	a->cfg = cfg;
}

static int attached_of(void *arg, const char *session_id)
{
	return api_attached_clients(arg, session_id);
}

void api_set_services(api_t *a, store_t *store, shell_t *shell, const char *root, api_emit_cb emit, void *arg)
{
	if (store != NULL)
		store_set_attached(store, attached_of, a);
	free(a->root);
	if ((a->root = strdup(root)) == NULL)
		abort();
	a->store = store;
	a->shell = shell;
	a->emit = emit;
	a->emit_arg = arg;
}

void api_free(api_t *a)
{
	if (a == NULL)
		return;
	json_decref(a->presence);
	free(a->test_bytes);
	free(a->root);
	free(a->data_dir);
	free(a);
}
