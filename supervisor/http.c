/*
 * http: handlers of the v1 API (see http.h). Handlers validate, then ask
 * the claims core or the stream hub; they never touch worker processes.
 * Request targets are parsed by route.c.
 */
#include "supervisor/http.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/clock.h"
#include "common/id.h"
#include "common/log.h"
#include "common/path.h"
#include "common/utf8.h"
#include "common/version.h"
#include "supervisor/body.h"
#include "supervisor/forward.h"
#include "supervisor/reply.h"
#include "supervisor/route.h"

/* --- responses */

static void send_workspace(http_handler_t *h, h2o_req_t *req, workspace_t *w)
{
	buf_t *b = &h->scratch;
	buf_reset(b);
	workspace_json(b, w);
	reply_text(req, 200, buf_data(b), buf_size(b));
}

/* --- request parsing */

/* The value of `name` in the request's query (see route_query_param). */
static int query_param(h2o_req_t *req, const char *name, char *out, size_t outlen)
{
	if (req->query_at == SIZE_MAX)
		return -1;
	size_t at = req->query_at + 1;
	return route_query_param(req->path.base + at, req->path.len - at, name, out, outlen);
}

/* client_id from the query, canonical; -1 (after a 400) when bad. */
static int query_client_id(h2o_req_t *req, char out[ID_LEN + 1])
{
	char raw[128];
	int n = query_param(req, "client_id", raw, sizeof(raw));
	if (n < 0) {
		reply_error(req, 400, "client_id is required");
		return -1;
	}
	if (id_parse(raw, (size_t)n, out) != 0) {
		reply_error(req, 400, "invalid client_id");
		return -1;
	}
	return 0;
}

/* 429 for a limit: "too many <what> (limit N)", counted and logged. */
static int refuse(http_handler_t *h, h2o_req_t *req, limit_id_t id, const char *what)
{
	char msg[128];
	limits_t *l = h->env.limits;
	snprintf(msg, sizeof(msg), "too many %s (limit %llu)", what, (unsigned long long)l->max[id]);
	limits_refuse(l, id, clock_ms(), NULL);
	return reply_error(req, 429, msg);
}

/* --- waiting creates */

typedef struct waiter {
	h2o_linklist_t link; /* workspace.waiters; unlinked once answered */
	h2o_req_t *req;
	http_handler_t *h;
	workspace_t *w;
	char client_id[ID_LEN + 1];
} waiter_t;

static void waiter_dispose(void *p)
{
	waiter_t *wt = p;
	if (!h2o_linklist_is_linked(&wt->link))
		return;
	/* The client left before the worker was ready. */
	h2o_linklist_unlink(&wt->link);
	claims_unwait(wt->h->env.claims, wt->w->ws, wt->client_id, clock_ms());
}

void http_answer_waiters(http_handler_t *h, workspace_t *w, const char *err)
{
	while (!h2o_linklist_is_empty(&w->waiters)) {
		waiter_t *wt = H2O_STRUCT_FROM_MEMBER(waiter_t, link, w->waiters.next);
		h2o_linklist_unlink(&wt->link);
		if (err == NULL)
			send_workspace(h, wt->req, w);
		else if (claims_stopping(h->env.claims))
			reply_error(wt->req, 503, err);
		else
			reply_error(wt->req, w->fail_status ? w->fail_status : 500,
				    w->fail_message != NULL ? w->fail_message : err);
	}
}

/* --- handlers */

/* The live (not closing) workspace id names, or NULL after a 404. */
static claims_ws_t *live_workspace(http_handler_t *h, h2o_req_t *req, const char *id)
{
	claims_ws_t *ws = claims_find(h->env.claims, id);
	if (ws == NULL || ws->state == WS_CLOSING) {
		reply_error(req, 404, "workspace not found");
		return NULL;
	}
	return ws;
}

static int on_health(h2o_req_t *req)
{
	reply_empty(req);
	return 0;
}

/* build_id, as upstream derives it for builds without ldflags: the
 * executable's modification time (nanoseconds, base 36), which changes on
 * every rebuild; prefixed with the commit. Upstream clients compare it
 * with their own to spot a stale server (restartIfStale). Worked out once,
 * at start (http_register), never on the loop: the stat follows
 * /proc/self/exe to the binary's own filesystem, which may be slow. */
static const char *build_id(void)
{
	static char id[64];
	if (id[0] != '\0')
		return id;
	struct stat st;
	char b36[32], *p = b36 + sizeof(b36);
	*--p = '\0';
	if (stat("/proc/self/exe", &st) == 0) {
		unsigned long long v = (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
				       (unsigned long long)st.st_mtim.tv_nsec;
		do {
			*--p = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
			v /= 36;
		} while (v > 0);
	} else {
		p = "unknown";
	}
	snprintf(id, sizeof(id), "%s-%s", crush_commit, p);
	return id;
}

static int on_version(h2o_req_t *req)
{
	reply_json(req, 200,
		   json_pack("{s:s, s:s, s:s, s:s}", "version", CRUSH_VERSION, "commit", crush_commit,
			     "build_id", build_id(), "platform", crush_platform));
	return 0;
}

static void list_one(void *arg, claims_ws_t *ws)
{
	buf_t *b = arg;
	if (buf_size(b) > 1)
		buf_append(b, ",", 1);
	workspace_json(b, ws->shell);
}

static void lookup_submit(http_handler_t *h, h2o_req_t *req, const char *path);

/* Every path lookup (a create, a join, ?path=) resolves on an offload
 * thread, and a hung mount holds them: past the limit a lookup is refused
 * (429, answered here: 1) rather than queued. */
static int lookups_full(http_handler_t *h, h2o_req_t *req)
{
	if (offload_pending(h->env.offload) < h->env.limits->max[LIMIT_LOOKUPS])
		return 0;
	refuse(h, req, LIMIT_LOOKUPS, "path lookups waiting");
	return 1;
}

/* GET /v1/workspaces?path=P: the workspace P's dedup key names (resolved
 * as a create resolves it, off the loop), as a list of 0 or 1; no claim
 * is taken, so "is P served?" costs nothing. */
static void list_resolved(http_handler_t *h, h2o_req_t *req, const char *key)
{
	buf_t *b = &h->scratch;
	claims_ws_t *ws = claims_find_key(h->env.claims, key);
	buf_reset(b);
	buf_append(b, "[", 1);
	if (ws != NULL)
		workspace_json(b, ws->shell);
	buf_append(b, "]", 1);
	reply_text(req, 200, buf_data(b), buf_size(b));
}

static int on_list(http_handler_t *h, h2o_req_t *req)
{
	char path[PATH_MAX];
	int n = query_param(req, "path", path, sizeof(path));
	if (n >= 0) {
		/* query_param cuts at the buffer: a path that fills it may have
		 * been cut, and would name another directory. */
		if ((size_t)n >= sizeof(path) - 1)
			return reply_error(req, 400, "path is too long");
		if (n == 0 || path[0] != '/' || memchr(path, '\0', (size_t)n) != NULL)
			return reply_error(req, 400, "path must be absolute");
		if (lookups_full(h, req))
			return 0;
		lookup_submit(h, req, path);
		return 0;
	}
	buf_t *b = &h->scratch;
	buf_reset(b);
	buf_append(b, "[", 1);
	claims_foreach(h->env.claims, list_one, b);
	buf_append(b, "]", 1);
	reply_text(req, 200, buf_data(b), buf_size(b));
	return 0;
}

static int on_get(http_handler_t *h, h2o_req_t *req, const char *id)
{
	claims_ws_t *ws = claims_find(h->env.claims, id);
	if (ws == NULL)
		return reply_error(req, 404, "workspace not found");
	send_workspace(h, req, ws->shell);
	return 0;
}

/* The create, once its path is resolved (on the loop). */
static void create_resolved(http_handler_t *h, h2o_req_t *req, create_body_t *b)
{
	if (b->version != NULL && strcmp(b->version, CRUSH_VERSION) != 0)
		log_warn("Client and server versions differ", "client_version", b->version, "server_version",
			 CRUSH_VERSION, NULL);
	claims_create_t cr = {
	    .path = b->path,
	    .key = b->key,
	    .client_id = b->client_id,
	    .yolo = b->yolo,
	    .debug = b->debug,
	    .data_dir = b->data_dir,
	    .env = b->env,
	    .nenv = b->nenv,
	    .channels = b->channels,
	    .nchannels = b->nchannels,
	};
	claims_ws_t *ws;
	char err[256] = "", why[320];
	int r = claims_create(h->env.claims, &cr, clock_ms(), &ws, err, sizeof(err));
	switch (r) {
	case CLAIMS_OK:
		send_workspace(h, req, ws->shell);
		break;
	case CLAIMS_WAIT: {
		waiter_t *wt = h2o_mem_alloc_shared(&req->pool, sizeof(*wt), waiter_dispose);
		memset(wt, 0, sizeof(*wt));
		wt->req = req;
		wt->h = h;
		wt->w = ws->shell;
		snprintf(wt->client_id, sizeof(wt->client_id), "%s", b->client_id);
		h2o_linklist_insert(&wt->w->waiters, &wt->link);
		break;
	}
	case CLAIMS_ESTOPPING:
		reply_error(req, 503, "server is shutting down");
		break;
	case CLAIMS_ERETIRED:
		reply_error(req, 409, "client has been retired");
		break;
	case CLAIMS_ELIMIT:
		refuse(h, req, LIMIT_WORKSPACES, "workspaces");
		break;
	default:
		log_error("Worker failed to start", "path", b->key, "error", err, NULL);
		snprintf(why, sizeof(why), "worker failed to start: %s", err);
		reply_error(req, 500, why);
		break;
	}
}

/*
 * A create's path is resolved off the loop (invariant 9: a path on a hung
 * mount must not freeze every client). The job outlives its request if
 * the client leaves meanwhile: the request's pool holds a slot pointing at
 * the job, cleared by whichever of the two goes first.
 */
typedef struct create_job {
	offload_job_t job;
	http_handler_t *h;
	h2o_req_t *req; /* NULL once the client left */
	struct create_job **slot;
	create_body_t body;
	char *lookup; /* GET /v1/workspaces?path=: this path, not a create */
	int rc;
	const char *msg;
	conns_watch_t *watch; /* HTTP/1: its connection, read while the path resolves */
} create_job_t;

static void create_job_work(offload_job_t *j)
{
	create_job_t *cj = H2O_STRUCT_FROM_MEMBER(create_job_t, job, j);
	if (cj->h->resolve_delay_ms > 0) /* test-only: a slow filesystem */
		usleep((useconds_t)cj->h->resolve_delay_ms * 1000);
	if (cj->lookup != NULL) {
		cj->rc = path_resolve_key(cj->lookup, cj->body.key);
		cj->msg = errno == ENOTDIR ? "path is not a directory" : "failed to resolve workspace path";
	} else {
		cj->rc = create_body_resolve(&cj->body, &cj->msg);
	}
}

static void create_job_done(offload_job_t *j)
{
	create_job_t *cj = H2O_STRUCT_FROM_MEMBER(create_job_t, job, j);
	if (cj->req != NULL) {
		*cj->slot = NULL;
		conns_unwatch(cj->watch);
		if (cj->rc != 0)
			reply_error(cj->req, 400, cj->msg);
		else if (cj->lookup != NULL)
			list_resolved(cj->h, cj->req, cj->body.key);
		else
			create_resolved(cj->h, cj->req, &cj->body);
	}
	create_body_free(&cj->body);
	free(cj->lookup);
	free(cj);
}

static void create_slot_dispose(void *p)
{
	create_job_t **slot = p;
	if (*slot != NULL) {
		(*slot)->req = NULL; /* the client left while its path resolved */
		conns_unwatch((*slot)->watch);
	}
}

/* The watch keeps an HTTP/1 connection polled while its path resolves
 * (h2o would stop reading it, and start again after the answer: two
 * epoll_ctl calls per create). A client that leaves meanwhile changes
 * nothing: the claim is made and its grace runs, as for any create. */
static void on_create_gone(void *arg, int eof)
{
	(void)eof;
	((create_job_t *)arg)->watch = NULL;
}

static void resolve_submit(http_handler_t *h, h2o_req_t *req, create_job_t *cj)
{
	cj->h = h;
	cj->req = req;
	cj->slot = h2o_mem_alloc_shared(&req->pool, sizeof(*cj->slot), create_slot_dispose);
	*cj->slot = cj;
	cj->job.work = create_job_work;
	cj->job.done = create_job_done;
	cj->watch = conns_watch(req, on_create_gone, cj);
	offload_submit(h->env.offload, &cj->job);
}

static void lookup_submit(http_handler_t *h, h2o_req_t *req, const char *path)
{
	create_job_t *cj = calloc(1, sizeof(*cj));
	if (cj == NULL || (cj->lookup = strdup(path)) == NULL)
		abort();
	resolve_submit(h, req, cj);
}

static int on_create(http_handler_t *h, h2o_req_t *req)
{
	const char *msg;
	if (lookups_full(h, req))
		return 0;
	create_job_t *cj = calloc(1, sizeof(*cj));
	if (cj == NULL)
		return reply_error(req, 503, "out of memory");
	if (create_body_parse(&cj->body, req->entity.base, req->entity.len, &msg) != 0) {
		free(cj);
		return reply_error(req, 400, msg);
	}
	resolve_submit(h, req, cj);
	return 0;
}

static int on_delete(http_handler_t *h, h2o_req_t *req, const char *id)
{
	char client_id[ID_LEN + 1];
	if (query_client_id(req, client_id) != 0)
		return 0;
	claims_release(h->env.claims, id, client_id, clock_ms());
	reply_empty(req);
	return 0;
}

/* Last-Event-ID (header, or last_event_id in the query): 1 and *after
 * when given, 0 when not, -1 (after a 400) when not a number. */
static int last_event_id(h2o_req_t *req, uint64_t *after)
{
	char raw[32];
	const char *v = raw;
	int n;
	ssize_t h = h2o_find_header_by_str(&req->headers, H2O_STRLIT("last-event-id"), -1);
	if (h >= 0) {
		v = req->headers.entries[h].value.base;
		n = (int)req->headers.entries[h].value.len;
	} else if ((n = query_param(req, "last_event_id", raw, sizeof(raw))) < 0) {
		return 0;
	}
	if (n == 0) /* empty: absent, as browsers' EventSource may send it */
		return 0;
	if (route_event_id(v, (size_t)n, after) != 0) {
		reply_error(req, 400, "invalid last_event_id");
		return -1;
	}
	return 1;
}

static int on_events(http_handler_t *h, h2o_req_t *req, const char *id)
{
	char client_id[ID_LEN + 1];
	uint64_t after = 0;
	int resume;
	if (query_client_id(req, client_id) != 0)
		return 0;
	if ((resume = last_event_id(req, &after)) < 0)
		return 0;
	limits_t *l = h->env.limits;
	if (h->env.streams->count >= l->max[LIMIT_STREAMS])
		return refuse(h, req, LIMIT_STREAMS, "open event streams");
	if (stream_client_count(h->env.streams, client_id) >= l->max[LIMIT_CLIENT_STREAMS])
		return refuse(h, req, LIMIT_CLIENT_STREAMS, "open event streams of this client");
	claims_ws_t *ws;
	switch (claims_attach(h->env.claims, id, client_id, &ws)) {
	case CLAIMS_OK:
		break;
	case CLAIMS_ERETIRED:
		return reply_error(req, 409, "client has been retired");
	default:
		return reply_error(req, 404, "workspace not found");
	}
	log_debug("Stream attached", "workspace_id", ws->id, "client_id", client_id, NULL);
	stream_open(&((workspace_t *)ws->shell)->feed, req, client_id, resume, after);
	workspace_presence_update(ws->shell);
	return 0;
}

/* HEAD of an event stream: the GET's head for a live workspace, without
 * attaching (so neither the stream limits nor a retired client are
 * checked). */
static int on_events_head(http_handler_t *h, h2o_req_t *req, const char *id)
{
	char client_id[ID_LEN + 1];
	if (query_client_id(req, client_id) != 0)
		return 0;
	claims_ws_t *ws = live_workspace(h, req, id);
	if (ws == NULL)
		return 0;
	req->res.status = 200;
	req->res.reason = "OK";
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
		       H2O_STRLIT("text/event-stream"));
	h2o_send_inline(req, "", 0);
	return 0;
}

/* DELETE /v1/clients/{client_id}: retire the client (upstream-later). */
static int on_retire(http_handler_t *h, h2o_req_t *req, const char *raw)
{
	char client_id[ID_LEN + 1];
	if (id_parse(raw, strlen(raw), client_id) != 0)
		return reply_error(req, 400, "invalid client_id");
	log_info("Client retired", "client_id", client_id, NULL);
	stream_end_client(h->env.streams, client_id);
	claims_retire(h->env.claims, client_id, clock_ms());
	reply_empty(req);
	return 0;
}

static void count_state(void *arg, claims_ws_t *ws)
{
	metrics_gauges_t *g = arg;
	uint64_t *n[] = {[WS_STARTING] = &g->ws_starting,
			 [WS_READY] = &g->ws_ready,
			 [WS_RESTARTING] = &g->ws_restarting,
			 [WS_CLOSING] = &g->ws_closing};
	if ((unsigned)ws->state < sizeof(n) / sizeof(n[0]))
		(*n[ws->state])++;
}

/* GET /v1/metrics: Prometheus text (SPEC §9, metrics.h). */
static int on_metrics(http_handler_t *h, h2o_req_t *req)
{
	metrics_gauges_t g = {.streams = h->env.streams->count};
	claims_foreach(h->env.claims, count_state, &g);
	buf_reset(&h->scratch);
	metrics_render(h->env.metrics, &g, h->env.limits, &h->scratch);
	req->res.status = 200;
	req->res.reason = "OK";
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
		       H2O_STRLIT(METRICS_CONTENT_TYPE));
	req->res.content_length = buf_size(&h->scratch);
	h2o_send_inline(req, buf_data(&h->scratch), buf_size(&h->scratch));
	return 0;
}

/* POST /v1/control {"command": "shutdown_if_idle" | "shutdown"}: both
 * are conditional, as upstream: 409 while any workspace is live. A pinned
 * daemon refuses (409 "server is pinned"), so an upstream client of
 * another version keeps using it instead of replacing it (restartIfStale). */
static int on_control(http_handler_t *h, h2o_req_t *req)
{
	json_t *body = json_loadb(req->entity.base, req->entity.len, 0, NULL);
	json_t *cmd = json_is_object(body) ? json_object_get(body, "command") : NULL;
	const char *c = json_is_string(cmd) ? json_string_value(cmd) : NULL;
	int known = c != NULL && (strcmp(c, "shutdown_if_idle") == 0 || strcmp(c, "shutdown") == 0);
	int obj = json_is_object(body);
	json_decref(body); /* c and cmd die with it */
	if (c == NULL)
		return reply_error(req, 400,
				   obj ? "failed to decode request: command must be a string"
				       : "failed to decode request");
	if (!known)
		return reply_error(req, 400, "unknown command");
	if (h->env.pinned)
		return reply_error(req, 409, "server is pinned");
	if (claims_live_count(h->env.claims) > 0)
		return reply_error(req, 409, "server is hosting live workspaces");
	reply_empty(req);
	h->env.shutdown(h->env.arg, "control");
	return 0;
}

/* Anything else under a workspace: its worker answers (forward.c). The
 * client id is optional there, checked when given. */
static int on_forward(http_handler_t *h, h2o_req_t *req, const char *id, const char *path, size_t pathlen)
{
	char raw[128], client_id[ID_LEN + 1] = "";
	int n = query_param(req, "client_id", raw, sizeof(raw));
	if (n >= 0 && id_parse(raw, (size_t)n, client_id) != 0)
		return reply_error(req, 400, "invalid client_id");
	claims_ws_t *ws = live_workspace(h, req, id);
	if (ws == NULL)
		return 0;
	forward_start(h->env.forwarder, req, ws->shell, client_id, path, pathlen);
	return 0;
}

/* POST /v1/workspaces/{id}/current-session?client_id= {"session_id"}
 * (upstream-later): which session a client shows. Only a client with an
 * open stream may set it: 409 "client not attached" otherwise, not 404,
 * which upstream clients read as "workspace gone". */
static int on_current_session(http_handler_t *h, h2o_req_t *req, const char *id)
{
	char client_id[ID_LEN + 1];
	if (query_client_id(req, client_id) != 0)
		return 0;
	claims_ws_t *ws = live_workspace(h, req, id);
	if (ws == NULL)
		return 0;
	json_t *body = json_loadb(req->entity.base, req->entity.len, 0, NULL);
	json_t *sid = json_is_object(body) ? json_object_get(body, "session_id") : NULL;
	/* Session ids are UUIDs upstream: bounded, so that every client's
	 * current session together fits the worker's presence frame. */
	if ((!json_is_string(sid) && !json_is_null(sid) && sid != NULL) ||
	    (json_is_string(sid) && json_string_length(sid) > HTTP_MAX_SESSION_ID)) {
		json_decref(body);
		return reply_error(
		    req, 400, "failed to decode request: session_id must be a string of at most 128 bytes");
	}
	if (!json_is_object(body)) {
		json_decref(body);
		return reply_error(req, 400, "failed to decode request");
	}
	claims_client_t *cl = claims_find_client(ws, client_id);
	if (cl == NULL || cl->streams == 0) {
		json_decref(body);
		return reply_error(req, 409, "client not attached");
	}
	workspace_set_session(ws->shell, client_id, json_is_string(sid) ? json_string_value(sid) : "");
	workspace_presence_update(ws->shell);
	json_decref(body);
	reply_empty(req);
	return 0;
}

/* --- routing */

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
	http_handler_t *h = (http_handler_t *)self;
	switch (conns_request(h->env.conns, req, clock_ms())) {
	case -1:
		return reply_error(req, 431, "request headers too many or too large");
	case -2:
		return reply_error(req, 429, "connection closed for abuse");
	}
	route_t r;
	route_match(req->path_normalized.base, req->path_normalized.len, &r);
	/* Ids are UUIDs, matched in any case (stored lower-cased), as client
	 * ids always were. */
	char canon[ID_LEN + 1];
	if (r.param[0] != '\0' && id_parse(r.param, strlen(r.param), canon) == 0)
		memcpy(r.param, canon, sizeof(canon));
	unsigned m = route_method(req->method.base, req->method.len);
	/* HEAD wherever GET is: the GET handler runs, h2o sends no body. */
	int head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
	if (head && r.id != ROUTE_FORWARD && (r.methods & ROUTE_GET))
		m = ROUTE_GET;
	/* Only a workspace's worker takes bodies past 1 MiB. */
	size_t max = r.id == ROUTE_FORWARD ? HTTP_MAX_FORWARD_BODY : HTTP_MAX_BODY;
	if (req->entity.base != NULL && req->entity.len > max)
		return reply_error(req, 413, "request body too large");
	if (r.id == ROUTE_NONE)
		return reply_error(req, 404, "not found");
	if ((r.methods & m) == 0) {
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, r.allow,
			       strlen(r.allow));
		return reply_error(req, 405, "method not allowed");
	}
	switch (r.id) {
	case ROUTE_HEALTH:
		return on_health(req);
	case ROUTE_VERSION:
		return on_version(req);
	case ROUTE_WORKSPACES:
		return m == ROUTE_GET ? on_list(h, req) : on_create(h, req);
	case ROUTE_WORKSPACE:
		return m == ROUTE_GET ? on_get(h, req, r.param) : on_delete(h, req, r.param);
	case ROUTE_EVENTS:
		return head ? on_events_head(h, req, r.param) : on_events(h, req, r.param);
	case ROUTE_CONTROL:
		return on_control(h, req);
	case ROUTE_METRICS:
		return on_metrics(h, req);
	case ROUTE_CLIENT:
		return on_retire(h, req, r.param);
	case ROUTE_CURRENT_SESSION:
		return on_current_session(h, req, r.param);
	case ROUTE_FORWARD:
		return on_forward(h, req, r.param, req->path_normalized.base + r.rest,
				  req->path_normalized.len - r.rest);
	default:
		return reply_error(req, 404, "not found");
	}
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
		int n = snprintf(body, sizeof(body), "{\"message\":\"%s\"}\n",
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

http_handler_t *http_register(h2o_globalconf_t *config, const http_env_t *env)
{
	(void)build_id();
	h2o_hostconf_t *host = h2o_config_register_host(config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
	h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
	http_handler_t *h = (http_handler_t *)h2o_create_handler(path, sizeof(*h));
	h->super.on_req = on_req;
	h->env = *env;
	metrics_register_logger(env->metrics, path);
	buf_t empty = BUF_INIT;
	h->scratch = empty;
	h2o_filter_t *f = h2o_create_filter(path, sizeof(*f));
	f->on_setup_ostream = json_error_setup;
	h2o_filter_t *f2 = h2o_create_filter(&host->fallback_path, sizeof(*f2));
	f2->on_setup_ostream = json_error_setup;
	return h;
}

void http_dispose(http_handler_t *h)
{
	buf_free(&h->scratch);
}
