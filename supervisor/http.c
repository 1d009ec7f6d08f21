/*
 * http: routes and handlers of the v1 API. Handlers validate, then ask the
 * claims core; they never touch worker processes or streams directly.
 */
#include "supervisor/http.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/id.h"
#include "common/log.h"
#include "common/version.h"
#include "supervisor/body.h"
#include "supervisor/stream.h"

/* --- responses */

/* A JSON body already serialised (h2o copies it). */
static void send_text(h2o_req_t *req, int status, const char *reason, const char *text, size_t len)
{
	req->res.status = status;
	req->res.reason = reason;
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
		       H2O_STRLIT("application/json"));
	req->res.content_length = len;
	h2o_send_inline(req, text, len);
}

static void send_json(h2o_req_t *req, int status, const char *reason, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	send_text(req, status, reason, text ? text : "", text ? strlen(text) : 0);
	free(text);
}

static const char *reason_of(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Payload Too Large";
	case 500:
		return "Internal Server Error";
	default:
		return "Service Unavailable";
	}
}

/* The one error writer: {"message": "..."} as application/json. */
static int send_error(h2o_req_t *req, int status, const char *message)
{
	send_json(req, status, reason_of(status), json_pack("{s:s}", "message", message));
	return 0;
}

static void send_empty(h2o_req_t *req)
{
	req->res.status = 200;
	req->res.reason = "OK";
	req->res.content_length = 0;
	/* No body buffer at all: an empty one costs h2o a second write. */
	static h2o_generator_t none = {NULL, NULL};
	h2o_start_response(req, &none);
	h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
}

/*
 * The Workspace object. Its first creator's fields never change, so they
 * are serialised once (jansson does the escaping) and each answer only
 * formats pid, state and the counts: joins are the hot path.
 */
static const char *fixed_fields(sv_ws_t *sws)
{
	if (sws->fixed_json != NULL)
		return sws->fixed_json;
	const claims_ws_t *ws = sws->ws;
	char data_dir[PATH_MAX + 8];
	if (ws->data_dir[0] != '\0')
		snprintf(data_dir, sizeof(data_dir), "%s", ws->data_dir);
	else
		snprintf(data_dir, sizeof(data_dir), "%s/.crush", ws->key);
	json_t *env = json_array();
	for (size_t i = 0; i < ws->nenv; i++)
		json_array_append_new(env, json_string(ws->env[i]));
	json_t *j = json_pack("{s:s, s:s, s:s, s:b, s:b, s:s, s:s, s:o, s:s}", "id", ws->id, "path", ws->path,
			      "resolved_path", ws->key, "yolo", ws->yolo, "debug", ws->debug, "data_dir",
			      data_dir, "version", CRUSH_VERSION, "env", env, "created_at", sws->created_at);
	char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (text == NULL)
		abort();
	text[strlen(text) - 1] = '\0'; /* keep it open: the live fields follow */
	sws->fixed_json = text;
	return text;
}

static void workspace_text(buf_t *out, sv_ws_t *sws)
{
	const claims_ws_t *ws = sws->ws;
	buf_appendf(out, "%s,\"pid\":%d,\"state\":\"%s\",\"clients\":%zu,\"streams\":%u}", fixed_fields(sws),
		    (int)sws->pid, claims_state_name(ws->state), ws->clients.count, ws->streams);
}

static void send_workspace(h2o_req_t *req, sv_ws_t *sws)
{
	buf_t *b = &g_srv->scratch;
	buf_reset(b);
	workspace_text(b, sws);
	send_text(req, 200, "OK", buf_data(b), buf_size(b));
}

/* --- request parsing */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The value of `name` in the query string, percent-decoded into out.
 * Returns its length, or -1 when absent. */
static int query_param(h2o_req_t *req, const char *name, char *out, size_t outlen)
{
	if (req->query_at == SIZE_MAX)
		return -1;
	const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
	size_t nlen = strlen(name);
	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *stop = amp ? amp : end;
		if ((size_t)(stop - q) > nlen && memcmp(q, name, nlen) == 0 && q[nlen] == '=') {
			size_t n = 0;
			for (const char *p = q + nlen + 1; p < stop && n + 1 < outlen; p++) {
				int hi, lo;
				if (*p == '%' && stop - p >= 3 && (hi = hexval(p[1])) >= 0 &&
				    (lo = hexval(p[2])) >= 0) {
					out[n++] = (char)(hi << 4 | lo);
					p += 2;
				} else {
					out[n++] = *p == '+' ? ' ' : *p;
				}
			}
			out[n] = '\0';
			return (int)n;
		}
		q = stop + 1;
	}
	return -1;
}

/* client_id from the query, canonical; -1 (after a 400) when bad. */
static int query_client_id(h2o_req_t *req, char out[ID_LEN + 1])
{
	char raw[128];
	int n = query_param(req, "client_id", raw, sizeof(raw));
	if (n < 0) {
		send_error(req, 400, "client_id is required");
		return -1;
	}
	if (id_parse(raw, (size_t)n, out) != 0) {
		send_error(req, 400, "invalid client_id");
		return -1;
	}
	return 0;
}

/* --- waiting creates */

typedef struct waiter {
	h2o_linklist_t link; /* sv_ws.waiters; unlinked once answered */
	h2o_req_t *req;
	sv_ws_t *sws;
} waiter_t;

static void waiter_dispose(void *p)
{
	waiter_t *w = p;
	if (!h2o_linklist_is_linked(&w->link))
		return;
	/* The client left before the worker was ready. */
	h2o_linklist_unlink(&w->link);
	claims_unwait(g_srv->claims, w->sws->ws, server_now());
}

void http_answer_waiters(sv_ws_t *sws, const char *err)
{
	while (!h2o_linklist_is_empty(&sws->waiters)) {
		waiter_t *w = H2O_STRUCT_FROM_MEMBER(waiter_t, link, sws->waiters.next);
		h2o_linklist_unlink(&w->link);
		if (err == NULL)
			send_workspace(w->req, sws);
		else
			send_error(w->req, g_srv->claims->stopping ? 503 : 500, err);
	}
}

/* --- handlers */

static int on_health(h2o_req_t *req)
{
	send_empty(req);
	return 0;
}

static int on_version(h2o_req_t *req)
{
	send_json(req, 200, "OK",
		  json_pack("{s:s, s:s, s:s}", "version", CRUSH_VERSION, "commit", crush_commit, "platform",
			    crush_platform));
	return 0;
}

static int on_list(h2o_req_t *req)
{
	buf_t *b = &g_srv->scratch;
	hmap_node_t *n, *nxt;
	buf_reset(b);
	buf_append(b, "[", 1);
	hmap_foreach (&g_srv->claims->workspaces, n, nxt) {
		if (buf_size(b) > 1)
			buf_append(b, ",", 1);
		workspace_text(b, H2O_STRUCT_FROM_MEMBER(claims_ws_t, by_id, n)->shell);
	}
	buf_append(b, "]", 1);
	send_text(req, 200, "OK", buf_data(b), buf_size(b));
	return 0;
}

static int on_get(h2o_req_t *req, const char *id)
{
	claims_ws_t *ws = claims_find(g_srv->claims, id);
	if (ws == NULL)
		return send_error(req, 404, "workspace not found");
	send_workspace(req, ws->shell);
	return 0;
}

static int on_create(h2o_req_t *req)
{
	create_body_t b;
	const char *msg;
	if (create_body_parse(&b, req->entity.base, req->entity.len, &msg) != 0)
		return send_error(req, 400, msg);
	if (b.version != NULL && strcmp(b.version, CRUSH_VERSION) != 0)
		log_warn("Client and server versions differ", "client_version", b.version, "server_version",
			 CRUSH_VERSION, NULL);

	claims_create_t cr = {
	    .path = b.path,
	    .key = b.key,
	    .client_id = b.client_id,
	    .yolo = b.yolo,
	    .debug = b.debug,
	    .data_dir = b.data_dir,
	    .env = b.env,
	    .nenv = b.nenv,
	};
	claims_ws_t *ws;
	char err[256] = "", why[320];
	int r = claims_create(g_srv->claims, &cr, server_now(), &ws, err, sizeof(err));
	if (r == CLAIMS_EFAILED)
		log_error("Worker failed to start", "path", b.key, "error", err, NULL);
	create_body_free(&b);
	switch (r) {
	case CLAIMS_OK:
		send_workspace(req, ws->shell);
		return 0;
	case CLAIMS_WAIT: {
		waiter_t *w = h2o_mem_alloc_shared(&req->pool, sizeof(*w), waiter_dispose);
		memset(w, 0, sizeof(*w));
		w->req = req;
		w->sws = ws->shell;
		h2o_linklist_insert(&w->sws->waiters, &w->link);
		return 0;
	}
	case CLAIMS_ESTOPPING:
		return send_error(req, 503, "server is shutting down");
	case CLAIMS_ERETIRED:
		return send_error(req, 409, "client is retired");
	default:
		snprintf(why, sizeof(why), "worker failed to start: %s", err);
		return send_error(req, 500, why);
	}
}

static int on_delete(h2o_req_t *req, const char *id)
{
	char client_id[ID_LEN + 1];
	if (query_client_id(req, client_id) != 0)
		return 0;
	claims_release(g_srv->claims, id, client_id, server_now());
	send_empty(req);
	return 0;
}

/* Last-Event-ID (header, or last_event_id in the query): 1 and *after
 * when given, 0 when not, -1 (after a 400) when not a number. */
static int last_event_id(h2o_req_t *req, uint64_t *after)
{
	char raw[32];
	int n = -1;
	ssize_t h = h2o_find_header_by_str(&req->headers, H2O_STRLIT("last-event-id"), -1);
	if (h >= 0) {
		h2o_iovec_t v = req->headers.entries[h].value;
		if (v.len < sizeof(raw)) {
			memcpy(raw, v.base, v.len);
			n = (int)v.len;
			raw[n] = '\0';
		} else {
			n = 0, raw[0] = 'x', raw[1] = '\0';
		}
	} else {
		n = query_param(req, "last_event_id", raw, sizeof(raw));
	}
	if (n < 0)
		return 0;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(raw, &end, 10);
	if (raw[0] < '0' || raw[0] > '9' || *end != '\0' || errno != 0) {
		send_error(req, 400, "invalid last_event_id");
		return -1;
	}
	*after = v;
	return 1;
}

static int on_events(h2o_req_t *req, const char *id)
{
	char client_id[ID_LEN + 1];
	uint64_t after = 0;
	int resume;
	if (query_client_id(req, client_id) != 0)
		return 0;
	if ((resume = last_event_id(req, &after)) < 0)
		return 0;
	claims_ws_t *ws;
	switch (claims_attach(g_srv->claims, id, client_id, &ws)) {
	case CLAIMS_OK:
		break;
	case CLAIMS_ERETIRED:
		return send_error(req, 409, "client is retired");
	default:
		return send_error(req, 404, "workspace not found");
	}
	stream_open(req, ws->shell, client_id, resume, after);
	return 0;
}

/* DELETE /v1/clients/{client_id}: retire the client (upstream-later). */
static int on_retire(h2o_req_t *req, const char *raw)
{
	char client_id[ID_LEN + 1];
	if (id_parse(raw, strlen(raw), client_id) != 0)
		return send_error(req, 400, "invalid client_id");
	log_info("Client retired", "client_id", client_id, NULL);
	stream_end_client(client_id);
	claims_retire(g_srv->claims, client_id, server_now());
	send_empty(req);
	return 0;
}

/* POST /v1/control {"command": "shutdown_if_idle" | "shutdown"}: both
 * are conditional, as upstream: 409 while any workspace is live. */
static int on_control(h2o_req_t *req)
{
	json_t *body = json_loadb(req->entity.base, req->entity.len, 0, NULL);
	json_t *cmd = json_is_object(body) ? json_object_get(body, "command") : NULL;
	const char *c = json_is_string(cmd) ? json_string_value(cmd) : NULL;
	int known = c != NULL && (strcmp(c, "shutdown_if_idle") == 0 || strcmp(c, "shutdown") == 0);
	json_decref(body); /* c and cmd die with it */
	if (c == NULL)
		return send_error(req, 400, "failed to decode request");
	if (!known)
		return send_error(req, 400, "unknown command");
	if (g_srv->claims->index.count > 0)
		return send_error(req, 409, "workspaces are live");
	send_empty(req);
	server_begin_shutdown(g_srv, "control");
	return 0;
}

/* --- routing */

enum { M_GET = 1, M_POST = 2, M_DELETE = 4 };

static int method_bit(h2o_req_t *req)
{
	if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")))
		return M_GET;
	if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST")))
		return M_POST;
	if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("DELETE")))
		return M_DELETE;
	return 0;
}

static int not_allowed(h2o_req_t *req, const char *allow)
{
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
	return send_error(req, 405, "method not allowed");
}

/* Splits "/v1/workspaces/{id}[/events]" style paths: copies the segment
 * after prefix into id (NUL-terminated) and returns the rest. */
static const char *segment(const char *p, size_t len, const char *prefix, char *id, size_t idlen)
{
	size_t plen = strlen(prefix);
	if (len <= plen || memcmp(p, prefix, plen) != 0)
		return NULL;
	const char *start = p + plen, *end = p + len;
	const char *slash = memchr(start, '/', (size_t)(end - start));
	const char *stop = slash ? slash : end;
	if (stop == start || (size_t)(stop - start) >= idlen)
		return NULL;
	memcpy(id, start, (size_t)(stop - start));
	id[stop - start] = '\0';
	return stop;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
	(void)self;
	if (req->entity.base != NULL && req->entity.len > HTTP_MAX_BODY)
		return send_error(req, 413, "request body too large");
	const char *p = req->path_normalized.base;
	size_t len = req->path_normalized.len;
	int m = method_bit(req);
	char id[128];
	const char *rest;

	if (h2o_memis(p, len, H2O_STRLIT("/v1/health")))
		return m == M_GET ? on_health(req) : not_allowed(req, "GET");
	if (h2o_memis(p, len, H2O_STRLIT("/v1/version")))
		return m == M_GET ? on_version(req) : not_allowed(req, "GET");
	if (h2o_memis(p, len, H2O_STRLIT("/v1/workspaces"))) {
		if (m == M_GET)
			return on_list(req);
		return m == M_POST ? on_create(req) : not_allowed(req, "GET, POST");
	}
	if ((rest = segment(p, len, "/v1/workspaces/", id, sizeof(id))) != NULL) {
		size_t rlen = (size_t)(p + len - rest);
		if (rlen == 0) {
			if (m == M_GET)
				return on_get(req, id);
			return m == M_DELETE ? on_delete(req, id) : not_allowed(req, "GET, DELETE");
		}
		if (h2o_memis(rest, rlen, H2O_STRLIT("/events")))
			return m == M_GET ? on_events(req, id) : not_allowed(req, "GET");
	}
	if (h2o_memis(p, len, H2O_STRLIT("/v1/control")))
		return m == M_POST ? on_control(req) : not_allowed(req, "POST");
	if ((rest = segment(p, len, "/v1/clients/", id, sizeof(id))) != NULL && rest == p + len)
		return m == M_DELETE ? on_retire(req, id) : not_allowed(req, "DELETE");
	return send_error(req, 404, "not found");
}

/* --- h2o's own errors (413 from the body limit, 400 on bad framing) come
 * as text/plain; this filter swaps their body for the JSON error shape. */

typedef struct json_error_ostream {
	h2o_ostream_t super;
	int sent;
} json_error_ostream_t;

static void json_error_do_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t cnt,
			       h2o_send_state_t state)
{
	json_error_ostream_t *os = (json_error_ostream_t *)self;
	(void)bufs, (void)cnt;
	if (!h2o_send_state_is_in_progress(state) && !os->sent) {
		os->sent = 1;
		char body[160];
		int n = snprintf(body, sizeof(body), "{\"message\":\"%s\"}",
				 req->res.status == 413 ? "request body too large" : req->res.reason);
		h2o_iovec_t out = h2o_strdup(&req->pool, body, (size_t)n);
		h2o_ostream_send_next(self, req, &out, 1, state);
		return;
	}
	h2o_ostream_send_next(self, req, NULL, 0, state);
}

static void json_error_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
	(void)self;
	ssize_t ct = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
	int plain =
	    ct < 0 || !h2o_memis(req->res.headers.entries[ct].value.base,
				 req->res.headers.entries[ct].value.len, H2O_STRLIT("application/json"));
	if (req->res.status >= 400 && plain) {
		if (ct >= 0)
			h2o_delete_header(&req->res.headers, ct);
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
			       H2O_STRLIT("application/json"));
		req->res.content_length = SIZE_MAX;
		json_error_ostream_t *os = (json_error_ostream_t *)h2o_add_ostream(req, sizeof(*os), slot);
		os->super.do_send = json_error_do_send;
		os->sent = 0;
		slot = &os->super.next;
	}
	h2o_setup_next_ostream(req, slot);
}

void http_register(h2o_globalconf_t *config)
{
	h2o_hostconf_t *host = h2o_config_register_host(config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
	h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
	h2o_handler_t *h = h2o_create_handler(path, sizeof(*h));
	h->on_req = on_req;
	h2o_filter_t *f = h2o_create_filter(path, sizeof(*f));
	f->on_setup_ostream = json_error_setup;
	h2o_filter_t *f2 = h2o_create_filter(&host->fallback_path, sizeof(*f2));
	f2->on_setup_ostream = json_error_setup;
}
