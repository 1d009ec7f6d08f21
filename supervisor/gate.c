/*
 * gate: h2o glue of the guard (see gate.h). Everything it decides, it
 * asks guard_decide; this file only gathers the inputs and writes the
 * answers.
 */
#include "supervisor/gate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "common/clock.h"
#include "common/log.h"
#include "supervisor/conns.h"
#include "supervisor/token.h"

/* --- start */

static int any_tcp(const options_t *opts)
{
	for (int i = 0; i < opts->nhosts; i++)
		if (strncmp(opts->hosts[i], "tcp://", 6) == 0)
			return 1;
	return 0;
}

int gate_init(gate_t *g, const options_t *opts)
{
	char err[512], path[4200];
	memset(g, 0, sizeof(*g));
	g->conf.uid = geteuid();
	for (int i = 0; i < opts->norigins; i++)
		g->conf.origins[g->conf.norigins++] = opts->allow_origins[i];
	/* Not for workers, nor for the commands they run for clients. */
	unsetenv("CRUSH_SERVER_TOKEN");

	if (opts->token_file != NULL) {
		if (token_read_file(opts->token_file, g->token, err, sizeof(err)) != 0) {
			log_error("Cannot read the token", "error", err, NULL);
			return -1;
		}
		log_info("Bearer token from file", "path", opts->token_file, NULL);
	} else if (opts->token_env[0] != '\0') {
		snprintf(g->token, sizeof(g->token), "%s", opts->token_env);
		log_info("Bearer token from the environment", "variable", "CRUSH_SERVER_TOKEN", NULL);
	} else if (any_tcp(opts)) {
		int created = 0;
		if (token_default_path(path, sizeof(path)) != 0 ||
		    token_load_or_create(path, g->token, &created, err, sizeof(err)) != 0) {
			log_error("Cannot set up the token file", "error", err, NULL);
			return -1;
		}
		log_info(created ? "Bearer token generated" : "Bearer token reused", "path", path, NULL);
	}
	if (g->token[0] != '\0') {
		g->conf.token = g->token;
		g->conf.token_len = strlen(g->token);
	}
	for (int i = 0; i < g->conf.norigins; i++)
		log_info("Allowing browser origin", "origin", g->conf.origins[i], NULL);
	return 0;
}

/* --- connections */

/*
 * The peer of a unix connection: its uid, or -1 when the kernel cannot
 * say. *is_unix tells whether fd is a unix socket at all.
 */
static long peer_uid(int fd, int *is_unix)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	*is_unix = 0;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return -1;
	*is_unix = ss.ss_family == AF_UNIX;
	if (!*is_unix || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 || cl != sizeof(cred))
		return -1;
	return (long)cred.uid;
}

int gate_accept(gate_t *g, h2o_socket_t *sock, int *is_unix_out, long *peer_uid_out)
{
	int fd = h2o_socket_get_fd(sock), is_unix;
	long uid = peer_uid(fd, &is_unix);
	*is_unix_out = is_unix;
	*peer_uid_out = uid;
	if (!is_unix || guard_peer_allowed(&g->conf, uid))
		return 0;

	char body[128], resp[320];
	int bn = snprintf(body, sizeof(body),
			  "{\"message\":\"forbidden: peer uid %ld is not the daemon's user\"}", uid);
	int rn = snprintf(resp, sizeof(resp),
			  "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
			  "Connection: close\r\n\r\n%s",
			  bn, body);
	/* Read what the peer sent already, so that closing with unread bytes
	 * does not reset the connection before it reads the answer. Never
	 * blocks: the loop serves everyone else. */
	char sink[4096];
	for (int i = 0; i < 16 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
		;
	if (send(fd, resp, (size_t)rn, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		(void)errno; /* best effort: the peer is refused either way */
	shutdown(fd, SHUT_WR);
	h2o_socket_close(sock);

	/* One line per second at most: a flood of refused peers must not
	 * flood the log. */
	uint64_t now = clock_ms();
	if (g->refused_log_ms != 0 && now - g->refused_log_ms < 1000) {
		g->refused_quiet++;
		return -1;
	}
	char uidstr[24], quiet[16];
	snprintf(uidstr, sizeof(uidstr), "%ld", uid);
	snprintf(quiet, sizeof(quiet), "%u", g->refused_quiet);
	log_warn("Refused a unix peer of another user", "peer_uid", uidstr, "suppressed", quiet, NULL);
	g->refused_log_ms = now;
	g->refused_quiet = 0;
	return -1;
}

/* --- requests */

typedef struct gate_handler {
	h2o_handler_t super;
	gate_t *gate;
} gate_handler_t;

typedef struct gate_filter {
	h2o_filter_t super;
	gate_t *gate;
} gate_filter_t;

static guard_str_t str_of(h2o_iovec_t v)
{
	guard_str_t s = {v.base, v.len};
	return s;
}

/* The first value of header `name` (lower case) and how many there are. */
static guard_str_t header(h2o_req_t *req, const char *name, size_t len, int *count)
{
	guard_str_t s = {NULL, 0};
	int n = 0;
	for (ssize_t i = -1; (i = h2o_find_header_by_str(&req->headers, name, len, i)) >= 0; n++)
		if (n == 0)
			s = str_of(req->headers.entries[i].value);
	if (count != NULL)
		*count = n;
	return s;
}

/*
 * Which listener a request came in on. h2o 2.2.5 gives every HTTP/1 and
 * HTTP/2 connection a get_socket callback returning the connection's
 * h2o_socket_t. What it was at accept (transport, unix peer) is kept in
 * its conns record, so a request costs no syscall; a socket conns never
 * saw (none should reach h2o another way) is asked of the kernel again
 * (getsockname, SO_PEERCRED). A connection without a socket is treated as
 * tcp, the stricter side.
 */
static void transport_of(const gate_t *g, h2o_req_t *req, guard_req_t *r)
{
	h2o_socket_t *sock =
	    req->conn->callbacks->get_socket != NULL ? req->conn->callbacks->get_socket(req->conn) : NULL;
	int is_unix = 0;
	long uid = -1;
	if (sock != NULL && (g->conns == NULL || conns_peer(g->conns, sock, &is_unix, &uid) != 0))
		uid = peer_uid(h2o_socket_get_fd(sock), &is_unix);
	r->transport = is_unix ? GUARD_UNIX : GUARD_TCP;
	r->peer_uid = uid;
}

static void send_message(h2o_req_t *req, int status, const char *reason, const char *message)
{
	json_t *o = json_pack("{s:s}", "message", message);
	char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	req->res.status = status;
	req->res.reason = reason;
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
		       H2O_STRLIT("application/json"));
	if (status == 401)
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
			       H2O_STRLIT("Bearer"));
	size_t len = text != NULL ? strlen(text) : 0;
	req->res.content_length = len;
	h2o_send_inline(req, text != NULL ? text : "", len); /* copies */
	free(text);
}

static void send_preflight(h2o_req_t *req)
{
	static h2o_generator_t none = {NULL, NULL};
	req->res.status = 204;
	req->res.reason = "No Content";
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-methods"), 0,
			      NULL, H2O_STRLIT(GUARD_ALLOW_METHODS));
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-headers"), 0,
			      NULL, H2O_STRLIT(GUARD_ALLOW_HEADERS));
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-max-age"), 0, NULL,
			      H2O_STRLIT(GUARD_PREFLIGHT_MAX_AGE));
	/* Access-Control-Allow-Origin and Vary come from the filter. */
	req->res.content_length = 0;
	h2o_start_response(req, &none);
	h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
}

/* First handler of every path: answers refusals and preflights, and
 * returns -1 (h2o then calls the next handler) for what guard allows. */
static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
	gate_handler_t *h = (gate_handler_t *)self;
	guard_req_t r;
	guard_verdict_t v;

	memset(&r, 0, sizeof(r));
	transport_of(h->gate, req, &r);
	r.method = str_of(req->method);
	if (req->query_at != SIZE_MAX) {
		r.query.p = req->path.base + req->query_at + 1;
		r.query.len = req->path.len - req->query_at - 1;
	}
	r.path = str_of(req->path_normalized);
	/* Host (HTTP/1) and :authority (HTTP/2) both land in input.authority;
	 * h2o fills it with its default host name when the request had none,
	 * which is not a loopback name, so a missing Host is refused too. */
	r.host = str_of(req->input.authority);
	r.origin = header(req, H2O_STRLIT("origin"), &r.norigin);
	r.authorization = header(req, H2O_STRLIT("authorization"), &r.nauthorization);
	r.acr_method = header(req, H2O_STRLIT("access-control-request-method"), NULL);

	guard_decide(&h->gate->conf, &r, &v);
	switch (v.action) {
	case GUARD_ALLOW:
		return -1;
	case GUARD_PREFLIGHT:
		send_preflight(req);
		return 0;
	default:
		log_debug("Request refused", "status", v.status == 401 ? "401" : "403", "reason", v.message,
			  NULL);
		send_message(req, v.status, v.status == 401 ? "Unauthorized" : "Forbidden", v.message);
		return 0;
	}
}

/* Every answer to an allowed origin (API answers, refusals, h2o's own
 * errors, event streams) names it, so the page may read the answer. */
static void cors_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
	gate_filter_t *f = (gate_filter_t *)self;
	int n;
	guard_str_t origin = header(req, H2O_STRLIT("origin"), &n);
	if (n == 1 && guard_origin_allowed(&f->gate->conf, origin) &&
	    h2o_find_header(&req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, -1) < 0) {
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL,
			       origin.p, origin.len);
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Origin"));
	}
	h2o_setup_next_ostream(req, slot);
}

static void guard_path(gate_t *g, h2o_pathconf_t *path)
{
	gate_handler_t *h = (gate_handler_t *)h2o_create_handler(path, sizeof(*h));
	h->super.on_req = on_req;
	h->gate = g;
	/* h2o appends handlers and tries them in order (call_handlers in
	 * lib/core/request.c); move ours to the front. */
	h2o_handler_t **e = path->handlers.entries;
	memmove(e + 1, e, (path->handlers.size - 1) * sizeof(*e));
	e[0] = &h->super;

	gate_filter_t *f = (gate_filter_t *)h2o_create_filter(path, sizeof(*f));
	f->super.on_setup_ostream = cors_setup;
	f->gate = g;
}

void gate_register(gate_t *g, h2o_globalconf_t *config)
{
	for (h2o_hostconf_t **host = config->hosts; *host != NULL; host++) {
		for (size_t i = 0; i < (*host)->paths.size; i++)
			guard_path(g, (*host)->paths.entries + i);
		guard_path(g, &(*host)->fallback_path);
	}
}
