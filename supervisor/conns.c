/*
 * conns: per-connection abuse bounds (see conns.h).
 */
#include "supervisor/conns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/clock.h"
#include "common/log.h"

typedef struct conn {
	h2o_linklist_t link;
	conns_t *cs;
	h2o_socket_t *sock;
	uint64_t idle_since;		  /* no request in flight since then */
	uint64_t window_start;		  /* this second's abandoned requests ... */
	unsigned abandoned;		  /* ... counted here */
	unsigned inflight;		  /* requests whose pool is not disposed yet */
	int cut;			  /* shut down: nothing more is counted */
	int doomed;			  /* shut down at the next sweep (after its error answer) */
	int is_unix;			  /* its listener's transport, seen at accept */
	long peer_uid;			  /* unix: its peer, seen at accept; -1 unknown */
	void (*gone)(void *arg, int eof); /* conns_watch, while set */
	void *gone_arg;
	h2o_buffer_t *held; /* the watched request's input buffer, kept out of reads */
} conn_t;

/* One request's tie to its connection, in the request's pool. */
typedef struct conn_req {
	conn_t *c; /* outlives its socket while this request is in flight */
	h2o_req_t *req;
} conn_req_t;

static void cut(conn_t *c, limit_id_t why, uint64_t now, const char *detail)
{
	if (c->cut)
		return;
	c->cut = 1;
	limits_refuse(c->cs->limits, why, now, detail);
	shutdown(h2o_socket_get_fd(c->sock), SHUT_RDWR);
}

/*
 * The input buffer of a watched HTTP/1 request goes back to its socket,
 * with whatever the watch read meanwhile behind it (pipelined bytes, for
 * h2o to parse once the answer is over). Called as the request is
 * disposed: after h2o's loggers (which read its path from that buffer),
 * before h2o consumes the request from it. The buffer may move here: the
 * request is gone.
 */
static void give_back(conn_t *c)
{
	h2o_buffer_t *held = c->held;
	if (held == NULL)
		return;
	c->held = NULL;
	if (c->sock == NULL) {
		h2o_buffer_dispose(&held);
		return;
	}
	h2o_buffer_t *extra = c->sock->input;
	if (extra->size > 0) {
		h2o_iovec_t room = h2o_buffer_reserve(&held, extra->size);
		if (room.base == NULL)
			abort(); /* only for mmap-backed buffers, which sockets do not use */
		memcpy(room.base, extra->bytes, extra->size);
		held->size += extra->size;
	}
	h2o_buffer_dispose(&c->sock->input);
	c->sock->input = held;
}

/* h2o closes the socket: forget it. h2o 2.2.5 calls on_close from
 * h2o_socket_close, for HTTP/1 and HTTP/2 alike. */
static void on_close(void *data)
{
	conn_t *c = data;
	h2o_linklist_unlink(&c->link);
	c->cs->count--;
	if (c->inflight == 0)
		free(c);
	else
		c->sock = NULL; /* the last request's dispose frees it */
}

/* sock's record: on_close.data is ours (conns_add) while on_close is. */
static conn_t *conn_of(h2o_socket_t *sock)
{
	return sock != NULL && sock->on_close.cb == on_close ? sock->on_close.data : NULL;
}

/*
 * Relies on h2o 2.2.5 internals: its HTTP/1 handler leaves the socket
 * unread during an answer (so taking over the read callback is safe) and
 * restarts its own reader when the answer is over; and on_close.data is
 * ours (conns_add), so the socket leads to its record without a lookup.
 * The request's path, headers and body point into the socket's input
 * buffer, which a read may reallocate (h2o_buffer_reserve) or recycle for
 * another connection: the watch reads into a buffer of its own, and the
 * request's goes back at dispose (give_back).
 * A watcher's record outlives its request: the request is counted in
 * flight until its pool is disposed, and h2o disposes a pool's shared
 * entries newest first, so the watcher (made after conns_request) goes
 * first.
 */
static void on_watched_read(h2o_socket_t *sock, const char *err)
{
	if (err == NULL && sock->input->size < 65536)
		return;
	h2o_socket_read_stop(sock);
	conn_t *c = sock->on_close.data;
	if (c == NULL || c->gone == NULL)
		return;
	void (*gone)(void *, int) = c->gone;
	c->gone = NULL;
	gone(c->gone_arg, err != NULL);
}

conns_watch_t *conns_watch(h2o_req_t *req, void (*gone)(void *arg, int eof), void *arg)
{
	h2o_conn_t *hc = req->conn;
	if (req->version >= 0x200 || hc->callbacks->get_socket == NULL)
		return NULL;
	h2o_socket_t *sock = hc->callbacks->get_socket(hc);
	conn_t *c = conn_of(sock);
	if (c == NULL || c->gone != NULL)
		return NULL;
	c->gone = gone;
	c->gone_arg = arg;
	if (c->held == NULL) {
		c->held = sock->input;
		h2o_buffer_init(&sock->input,
				c->held->_prototype ? c->held->_prototype : &h2o_socket_buffer_prototype);
	}
	h2o_socket_read_start(sock, on_watched_read);
	return c;
}

void conns_hold(h2o_socket_t *sock, int hold)
{
	conn_t *c = conn_of(sock);
	if (c == NULL)
		return;
	if (hold)
		c->inflight++;
	else if (--c->inflight == 0)
		c->idle_since = clock_ms();
}

void conns_unwatch(conns_watch_t *w)
{
	if (w != NULL)
		w->gone = NULL;
}

static void on_req_dispose(void *p)
{
	conn_req_t *r = p;
	conn_t *c = r->c;
	uint64_t now = clock_ms();
	give_back(c);
	if (--c->inflight == 0)
		c->idle_since = now;
	if (c->sock == NULL) {
		if (c->inflight == 0)
			free(c);
		return;
	}
	/* Abandoned before any answer began: a reset (or a client gone). */
	if (r->req->res.status == 0) {
		if (now - c->window_start >= 1000) {
			c->window_start = now;
			c->abandoned = 0;
		}
		if (++c->abandoned > c->cs->limits->max[LIMIT_RESETS])
			cut(c, LIMIT_RESETS, now, "requests abandoned before their answer");
	}
}

int conns_request(conns_t *cs, h2o_req_t *req, uint64_t now)
{
	h2o_conn_t *hc = req->conn;
	conn_t *c = conn_of(hc->callbacks->get_socket ? hc->callbacks->get_socket(hc) : NULL);
	if (c == NULL)
		return 0;
	conn_req_t *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), on_req_dispose);
	r->c = c;
	r->req = req;
	c->inflight++;
	size_t bytes = 0;
	for (size_t i = 0; i < req->headers.size; i++)
		bytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len;
	if (req->headers.size > cs->limits->max[LIMIT_HEADERS] || bytes > LIMIT_DEFAULT_HEADER_BYTES) {
		/* The error answer goes out first: HTTP/1 closes after it, and
		 * the next sweep shuts down whatever is still open. */
		limits_refuse(cs->limits, LIMIT_HEADERS, now, "too many or too large request headers");
		req->http1_is_persistent = 0;
		c->doomed = 1;
		return -1;
	}
	return c->cut ? -2 : 0;
}

/* Every second: a connection with nothing in flight for longer than the
 * header timeout is not waiting for us; if it is still open it is
 * trickling (h2o's own idle timeouts restart on every frame). */
static void on_sweep(h2o_timeout_entry_t *te)
{
	conns_t *cs = H2O_STRUCT_FROM_MEMBER(conns_t, sweep_te, te);
	uint64_t now = clock_ms();
	for (h2o_linklist_t *l = cs->all.next; l != &cs->all; l = l->next) {
		conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, link, l);
		if (c->doomed && !c->cut) {
			c->cut = 1;
			shutdown(h2o_socket_get_fd(c->sock), SHUT_RDWR);
		} else if (c->inflight == 0 && !c->cut && cs->limits->max[LIMIT_IDLE] > 0 &&
			   now - c->idle_since > cs->limits->max[LIMIT_IDLE]) {
			cut(c, LIMIT_IDLE, now, "no complete request within the header timeout");
		}
	}
	h2o_timeout_link(cs->loop, &cs->sweep, &cs->sweep_te);
}

void conns_init(conns_t *cs, h2o_evloop_t *loop, limits_t *limits)
{
	memset(cs, 0, sizeof(*cs));
	h2o_linklist_init_anchor(&cs->all);
	cs->limits = limits;
	cs->loop = loop;
	h2o_timeout_init(loop, &cs->sweep, CONNS_SWEEP_MS);
	cs->sweep_te.cb = on_sweep;
	h2o_timeout_link(loop, &cs->sweep, &cs->sweep_te);
}

void conns_dispose(conns_t *cs)
{
	if (h2o_timeout_is_linked(&cs->sweep_te))
		h2o_timeout_unlink(&cs->sweep_te);
	while (!h2o_linklist_is_empty(&cs->all)) {
		conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, link, cs->all.next);
		c->sock->on_close.cb = NULL;
		on_close(c);
	}
}

int conns_peer(const conns_t *cs, h2o_socket_t *sock, int *is_unix, long *peer_uid)
{
	conn_t *c = conn_of(sock);
	if (c == NULL || c->cs != cs)
		return -1;
	*is_unix = c->is_unix;
	*peer_uid = c->peer_uid;
	return 0;
}

void conns_add(conns_t *cs, h2o_socket_t *sock, uint64_t now, int is_unix, long peer_uid)
{
	conn_t *c = calloc(1, sizeof(*c));
	if (c == NULL)
		abort();
	c->cs = cs;
	c->sock = sock;
	c->is_unix = is_unix;
	c->peer_uid = peer_uid;
	c->idle_since = now;
	c->window_start = now;
	h2o_linklist_insert(&cs->all, &c->link);
	cs->count++;
	sock->on_close.cb = on_close;
	sock->on_close.data = c;
}
