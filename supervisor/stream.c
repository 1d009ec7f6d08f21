/*
 * stream: SSE responses (see stream.h).
 */
#include "supervisor/stream.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"

/*
 * HTTP/1 connections: h2o stops reading the socket while a response is
 * being generated, so a client that goes away is only noticed at the next
 * write. We read it ourselves meanwhile (bytes are left for h2o: they are
 * a pipelined request) and end the stream at EOF, so the claim goes at
 * once and not at the next keep-alive. h2o re-arms its own reader when
 * the response is over.
 */
static hmap_t h1_streams = HMAP_INIT; /* stream_t.by_conn */

static void end_client_gone(stream_t *st);

static void on_h1_read(h2o_socket_t *sock, const char *err)
{
	if (err == NULL && sock->input->size < 65536)
		return;
	h2o_socket_read_stop(sock);
	char key[24];
	snprintf(key, sizeof(key), "%p", sock->data);
	hmap_node_t *n = hmap_get(&h1_streams, key);
	if (n != NULL)
		end_client_gone(H2O_STRUCT_FROM_MEMBER(stream_t, by_conn, n));
}

static void watch_h1_eof(stream_t *st, h2o_req_t *req)
{
	if (req->version >= 0x200 || req->conn->callbacks->get_socket == NULL)
		return;
	h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
	if (sock == NULL)
		return;
	snprintf(st->conn_key, sizeof(st->conn_key), "%p", sock->data);
	if (hmap_get(&h1_streams, st->conn_key) != NULL) {
		st->conn_key[0] = '\0';
		return;
	}
	hmap_put(&h1_streams, &st->by_conn, st->conn_key);
	h2o_socket_read_start(sock, on_h1_read);
}

#define REPLAY_CHUNK (64u << 10)

static void end_slow_reader(stream_t *st);

/* Resuming: the next chunk of held events, taken only once the previous
 * one is out, so a long replay never piles up in pending. */
static void refill(stream_t *st)
{
	sv_ws_t *sws = st->ws;
	uint64_t last = st->replay_after;
	if (sws == NULL || st->replay_after >= sws->last_event_id) {
		st->replaying = 0;
		return;
	}
	if (replay_gap(&sws->replay, st->replay_after, sws->last_event_id)) {
		end_slow_reader(st); /* what it still needs was dropped meanwhile */
		return;
	}
	replay_copy(&sws->replay, st->replay_after, REPLAY_CHUNK, &st->pending, &last);
	st->replay_after = last;
	if (last >= sws->last_event_id)
		st->replaying = 0; /* caught up: live events from now on */
}

static void flush(stream_t *st)
{
	if (st->sending || st->done)
		return;
	if (st->replaying && buf_size(&st->pending) == 0)
		refill(st);
	if (buf_size(&st->pending) > 0) {
		/* Swap: the batch in flight must stay put until proceed. */
		buf_t t = st->inflight;
		st->inflight = st->pending;
		st->pending = t;
		buf_reset(&st->pending);
		h2o_iovec_t iov = h2o_iovec_init(buf_data(&st->inflight), buf_size(&st->inflight));
		st->sending = 1;
		h2o_send(st->req, &iov, 1, H2O_SEND_STATE_IN_PROGRESS);
		return;
	}
	if (st->ending) {
		st->done = 1;
		st->sending = 1;
		h2o_send(st->req, NULL, 0, H2O_SEND_STATE_FINAL);
	}
}

static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
	(void)req;
	stream_t *st = H2O_STRUCT_FROM_MEMBER(stream_t, gen, gen);
	st->sending = 0;
	/* A burst must not leave an idle stream holding its peak. */
	if (st->inflight.cap > STREAM_KEEP_BUF)
		buf_free(&st->inflight);
	else
		buf_reset(&st->inflight);
	flush(st);
}

static void detach(stream_t *st)
{
	if (st->ws == NULL)
		return;
	h2o_linklist_unlink(&st->link);
	st->ws = NULL;
}

/* The client went away (or the connection broke): nothing may be sent. */
static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
	(void)req;
	stream_t *st = H2O_STRUCT_FROM_MEMBER(stream_t, gen, gen);
	st->done = 1;
}

/* The request is over: give the claim back if claims still counts it.
 * This is the only place a stream calls into claims, so no claims effect
 * ever runs inside another (h2o disposes from its own loop). */
static void on_dispose(void *p)
{
	stream_t *st = p;
	detach(st);
	if (st->conn_key[0] != '\0')
		hmap_del(&h1_streams, &st->by_conn);
	h2o_linklist_unlink(&st->all);
	g_srv->nstreams--;
	buf_free(&st->pending);
	buf_free(&st->inflight);
	if (st->claimed)
		claims_detach(g_srv->claims, st->ws_id, st->client_id, server_now());
}

/* Tells a resuming client that events it missed are gone: it must
 * resynchronise. No id: it is this stream's, not the workspace's. */
static void push_gap(stream_t *st, sv_ws_t *sws, uint64_t after)
{
	char buf[512];
	int n = snprintf(
	    buf, sizeof(buf),
	    "data: {\"type\":\"workspace\",\"payload\":{\"type\":\"gap\",\"workspace_id\":\"%s\","
	    "\"pid\":%d,\"reason\":\"events after %llu are no longer buffered (oldest held: %llu)\"}}\n\n",
	    sws->ws->id, (int)sws->pid, (unsigned long long)after,
	    (unsigned long long)replay_oldest(&sws->replay));
	stream_push(st, buf, (size_t)n);
}

void stream_open(h2o_req_t *req, sv_ws_t *sws, const char *client_id, int resume, uint64_t after)
{
	stream_t *st = h2o_mem_alloc_shared(&req->pool, sizeof(*st), on_dispose);
	memset(st, 0, sizeof(*st));
	st->gen.proceed = on_proceed;
	st->gen.stop = on_stop;
	st->req = req;
	st->ws = sws;
	st->claimed = 1;
	snprintf(st->ws_id, sizeof(st->ws_id), "%s", sws->ws->id);
	snprintf(st->client_id, sizeof(st->client_id), "%s", client_id);
	h2o_linklist_insert(&sws->streams, &st->link);
	h2o_linklist_insert(&g_srv->all_streams, &st->all);
	g_srv->nstreams++;

	req->res.status = 200;
	req->res.reason = "OK";
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
		       H2O_STRLIT("text/event-stream"));
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
	h2o_start_response(req, &st->gen);
	watch_h1_eof(st, req);
	/* A quiet workspace must not leave the client without headers: a
	 * first comment line pushes them out now. */
	stream_push(st, ": connected\n\n", 13);
	if (resume) {
		if (replay_gap(&sws->replay, after, sws->last_event_id)) {
			push_gap(st, sws, after);
			after = sws->replay.count ? replay_oldest(&sws->replay) - 1 : sws->last_event_id;
		}
		st->replaying = after < sws->last_event_id;
		st->replay_after = after;
		flush(st);
	}
}

void stream_push(stream_t *st, const char *data, size_t len)
{
	if (st->done || st->ending)
		return;
	if (buf_size(&st->pending) + len > STREAM_MAX_PENDING) {
		end_slow_reader(st);
		return;
	}
	buf_append(&st->pending, data, len);
	flush(st);
}

void stream_push_event(stream_t *st, const char *data, size_t len)
{
	if (!st->replaying)
		stream_push(st, data, len);
}

/* The reader cannot keep up: end it rather than thin it. */
static void end_slow_reader(stream_t *st)
{
	log_warn("Ending event stream of a slow reader", "workspace_id", st->ws_id, "client_id",
		 st->client_id, NULL);
	buf_reset(&st->pending);
	st->replaying = 0;
	detach(st); /* its claim goes at dispose */
	st->ending = 1;
	flush(st);
}

/* The client is gone: finish the response; its claim goes at dispose. */
static void end_client_gone(stream_t *st)
{
	detach(st);
	buf_reset(&st->pending);
	if (st->ending || st->done)
		return;
	st->ending = 1;
	flush(st);
}

void stream_end(stream_t *st)
{
	detach(st);
	st->claimed = 0; /* claims dropped every claim of a closing workspace */
	if (st->ending || st->done)
		return;
	st->ending = 1;
	flush(st);
}

void stream_end_client(const char *client_id)
{
	server_t *s = g_srv;
	for (h2o_linklist_t *l = s->all_streams.next; l != &s->all_streams; l = l->next) {
		stream_t *st = H2O_STRUCT_FROM_MEMBER(stream_t, all, l);
		if (st->ws != NULL && strcmp(st->client_id, client_id) == 0)
			stream_end(st);
	}
}

void stream_keepalive_all(void)
{
	server_t *s = g_srv;
	for (h2o_linklist_t *l = s->all_streams.next; l != &s->all_streams; l = l->next) {
		stream_t *st = H2O_STRUCT_FROM_MEMBER(stream_t, all, l);
		if (!st->sending && buf_size(&st->pending) == 0)
			stream_push(st, ":\n\n", 3);
	}
}
