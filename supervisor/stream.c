/*
 * stream: SSE responses on h2o (see stream.h); the send state machine is
 * sse.c, this file is its glue to h2o and to the feeds.
 */
#include "supervisor/stream.h"

#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <h2o/http1.h>
#include <jansson.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/utf8.h"
#include "supervisor/conns.h"
#include "supervisor/metrics.h"

struct stream {
	h2o_generator_t gen;
	h2o_req_t *req;	    /* NULL once a raw stream's head went out */
	h2o_socket_t *sock; /* raw: the connection, ours once the head went out */
	int raw;	    /* HTTP/1.1: the body goes on the raw socket (see open_raw) */
	int writing;	    /* raw: a write is in flight (the head's, at first) */
	int finishing;	    /* raw: the last chunk is in flight; close once it went */
	size_t junk;	    /* raw: bytes the client sent after its request */
	char chunk[24];	    /* raw: the chunk header in flight */
	stream_hub_t *hub;
	stream_feed_t *feed;  /* NULL once detached from its workspace */
	h2o_linklist_t link;  /* feed->streams, while attached */
	h2o_linklist_t all;   /* hub->all */
	conns_watch_t *watch; /* HTTP/1.0 (raw streams read their own socket): EOF watch (on_gone) */
	int claimed;	      /* claims still counts this stream: detach at dispose */
	size_t accounted;     /* its bytes in hub->queued */
	sse_t sse;
	char ws_id[ID_LEN + 1];
	char client_id[ID_LEN + 1];
};

/* A client id's count of open streams (hub->clients); freed at 0. */
typedef struct stream_client {
	hmap_node_t node;
	unsigned n;
	char id[ID_LEN + 1];
} stream_client_t;

static void end_slow_reader(stream_t *st);
static void end_client_gone(stream_t *st);

/* HTTP/1.0: the client left (or piled up 64 KiB of pipelined requests)
 * while its stream was open (conns_watch; HTTP/1.1 streams read their
 * own socket, on_raw_read): end the stream now, so the
 * claim goes at once and not at the next keep-alive. */
static void on_gone(void *arg, int eof)
{
	(void)eof;
	stream_t *st = arg;
	st->watch = NULL;
	end_client_gone(st);
}

/*
 * Giving memory back. A burst's log blocks and a closed stream's h2o
 * buffers go back to malloc, but glibc keeps freed heap pages mapped
 * (the top of the heap is usually pinned by something still live), so a
 * burst would leave the process at its peak. malloc_trim(0) releases every
 * whole free page; it walks the heap, so it runs at quiet points only:
 * STREAM_TRIM_MS after the last release (a stream closed, a burst
 * drained, a log freed), or STREAM_TRIM_MAX_MS after the first one if
 * releases keep coming.
 */
#define STREAM_TRIM_MS	   200
#define STREAM_TRIM_MAX_MS 2000
/* A burst worth trimming after: bytes owed to all streams at once. */
#define STREAM_TRIM_BURST (1u << 20)

static void on_trim(h2o_timeout_entry_t *te)
{
	stream_hub_t *hub = H2O_STRUCT_FROM_MEMBER(stream_hub_t, trim_entry, te);
	hub->queued_peak = hub->queued;
	malloc_trim(0);
}

static void trim_soon(stream_hub_t *hub)
{
	if (hub->loop == NULL) /* a hub without a loop (unit tests): nothing to time */
		return;
	uint64_t now = h2o_now(hub->loop);
	if (h2o_timeout_is_linked(&hub->trim_entry)) {
		if (now - hub->trim_first >= STREAM_TRIM_MAX_MS)
			return;
		h2o_timeout_unlink(&hub->trim_entry);
	} else {
		hub->trim_first = now;
	}
	h2o_timeout_link(hub->loop, &hub->trim, &hub->trim_entry);
}

static replay_t *log_of(stream_t *st)
{
	return st->feed != NULL ? &st->feed->replay : NULL;
}

/* Keeps hub->queued (bytes owed to all streams) up to date with st. */
static void account(stream_t *st)
{
	stream_hub_t *hub = st->hub;
	size_t now = sse_backlog(&st->sse, log_of(st));
	hub->queued = hub->queued - st->accounted + now;
	st->accounted = now;
	if (hub->queued > hub->queued_peak)
		hub->queued_peak = hub->queued;
	else if (hub->queued == 0 && hub->queued_peak >= STREAM_TRIM_BURST)
		trim_soon(hub); /* a burst drained */
}

/* Past the global budget, a stream with a backlog of its own is the one
 * that does not read: it is ended like any slow reader. */
static int over_budget(stream_t *st)
{
	stream_hub_t *hub = st->hub;
	if (hub->limits == NULL || hub->queued <= hub->limits->max[LIMIT_QUEUED_BYTES] ||
	    st->accounted <= SSE_KEEP_BUF)
		return 0;
	limits_refuse(hub->limits, LIMIT_QUEUED_BYTES, clock_ms(), st->client_id);
	return 1;
}

static void on_raw_written(h2o_socket_t *sock, const char *err);

/* A raw stream's batch as one HTTP/1.1 chunk: iov gets the chunk header,
 * the spans and the chunk's CRLF (n + 2 entries). */
static size_t chunk_iov(stream_t *st, const replay_span_t *spans, size_t n, h2o_iovec_t *iov)
{
	size_t total = 0, k = 0;
	for (size_t i = 0; i < n; i++)
		total += spans[i].len;
	int m = snprintf(st->chunk, sizeof(st->chunk), "%zx\r\n", total);
	iov[k++] = h2o_iovec_init(st->chunk, (size_t)m);
	for (size_t i = 0; i < n; i++)
		iov[k++] = h2o_iovec_init(spans[i].base, spans[i].len);
	iov[k++] = h2o_iovec_init(H2O_STRLIT("\r\n"));
	return k;
}

/* Hands the transport the next batch, if st has one and nothing in
 * flight. The spans point into the workspace's log (or st's own buffer):
 * st's cursor keeps them alive until the transport took them (h2o's
 * proceed, or a raw stream's write callback). */
static void flush(stream_t *st)
{
	replay_span_t spans[SSE_BATCH_SPANS];
	h2o_iovec_t iov[SSE_BATCH_SPANS + 2];
	size_t n = 0;
	if (st->raw && (st->writing || st->sock == NULL)) {
		account(st);
		return;
	}
	switch (sse_next(&st->sse, spans, &n)) {
	case SSE_SEND:
		if (st->raw) {
			st->writing = 1;
			h2o_socket_write(st->sock, iov, chunk_iov(st, spans, n, iov), on_raw_written);
			break;
		}
		for (size_t i = 0; i < n; i++)
			iov[i] = h2o_iovec_init(spans[i].base, spans[i].len);
		h2o_send(st->req, iov, n, H2O_SEND_STATE_IN_PROGRESS);
		break;
	case SSE_FINISH:
		if (st->raw) {
			st->writing = st->finishing = 1;
			iov[0] = h2o_iovec_init(H2O_STRLIT("0\r\n\r\n"));
			h2o_socket_write(st->sock, iov, 1, on_raw_written);
			break;
		}
		h2o_send(st->req, NULL, 0, H2O_SEND_STATE_FINAL);
		break;
	case SSE_WAIT:
		break;
	}
	account(st);
}

/* Queues a line of st's own (not a workspace event) and sends what it can. */
static void push(stream_t *st, const char *data, size_t len)
{
	sse_push(&st->sse, data, len);
	flush(st);
}

static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
	(void)req;
	stream_t *st = H2O_STRUCT_FROM_MEMBER(stream_t, gen, gen);
	sse_sent(&st->sse);
	flush(st);
}

static void detach(stream_t *st)
{
	if (st->feed == NULL)
		return;
	h2o_linklist_unlink(&st->link);
	st->feed = NULL;
}

/* The client went away (or the connection broke): nothing may be sent. */
static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
	(void)req;
	sse_stop(&H2O_STRUCT_FROM_MEMBER(stream_t, gen, gen)->sse);
}

/* The stream is over: give the claim back if claims still counts it.
 * This is the only place a stream gives a claim back, and it runs only
 * from the loop (h2o disposes a request from it; a raw stream's socket
 * callbacks come from it), never inside a claims effect. */
static void gone(stream_t *st)
{
	stream_hub_t *hub = st->hub;
	detach(st);
	conns_unwatch(st->watch);
	h2o_linklist_unlink(&st->all);
	hub->count--;
	hmap_node_t *cn = hmap_get(&hub->clients, st->client_id);
	stream_client_t *sc = cn ? H2O_STRUCT_FROM_MEMBER(stream_client_t, node, cn) : NULL;
	if (sc != NULL && --sc->n == 0) {
		hmap_del(&hub->clients, cn);
		free(sc);
	}
	sse_free(&st->sse);
	account(st);
	trim_soon(hub);
	if (st->claimed)
		hub->detach(hub->arg, st->ws_id, st->client_id);
}

static void on_dispose(void *p)
{
	gone(*(stream_t **)p);
}

/* --- the raw transport (HTTP/1.1)
 *
 * An idle HTTP/1.1 event stream held by h2o keeps its connection, its
 * request (path, headers) and their buffers: about 10 KiB. Once the head
 * is written there is nothing more h2o has to do for it, so the stream
 * takes the socket over (h2o_http1_upgrade: h2o writes the head, frees the
 * connection and the request, and hands the socket over) and frames the
 * body as HTTP/1.1 chunks itself. What stays is the socket, st and its
 * cursor. The head says "Connection: upgrade" (h2o writes that in every
 * head it hands a socket over with; it names no Upgrade header, so HTTP/1.1
 * clients read a plain 200). When the stream ends, its last chunk goes
 * and the connection closes. */

static void raw_close(stream_t *st)
{
	if (st->sock != NULL) {
		conns_hold(st->sock, 0);
		h2o_socket_close(st->sock);
		st->sock = NULL;
	}
	gone(st);
	free(st);
}

/* The client went away: nothing more can be sent. */
static void raw_gone(stream_t *st)
{
	sse_stop(&st->sse);
	raw_close(st);
}

static void on_raw_written(h2o_socket_t *sock, const char *err)
{
	stream_t *st = sock->data;
	st->writing = 0;
	if (err != NULL) {
		raw_gone(st);
		return;
	}
	if (st->finishing) {
		raw_close(st);
		return;
	}
	sse_sent(&st->sse);
	flush(st);
}

/* Drops what the client sends (it has nothing to say on an event
 * stream); more than 64 KiB of it, or EOF, ends the stream. The input
 * buffer goes each time, so a stream holds none while idle. */
static void drop_input(stream_t *st)
{
	st->junk += st->sock->input->size;
	h2o_buffer_dispose(&st->sock->input);
	h2o_buffer_init(&st->sock->input, &h2o_socket_buffer_prototype);
}

static void on_raw_read(h2o_socket_t *sock, const char *err)
{
	stream_t *st = sock->data;
	if (err == NULL) {
		drop_input(st);
		if (st->junk < 65536)
			return;
	}
	raw_gone(st);
}

/* h2o wrote the head (and the first batch): the socket is ours, the
 * request and its connection are gone. */
static void on_upgraded(void *arg, h2o_socket_t *sock, size_t reqsize)
{
	stream_t *st = arg;
	st->req = NULL;
	st->writing = 0;
	if (sock == NULL) { /* the write failed: h2o closed the connection */
		raw_gone(st);
		return;
	}
	st->sock = sock;
	sock->data = st;
	conns_hold(sock, 1);
	drop_input(st);
	st->junk -= reqsize; /* the request's own bytes were in the input: not junk */
	if (st->junk >= 65536) {
		raw_gone(st);
		return;
	}
	h2o_socket_read_start(sock, on_raw_read);
	sse_sent(&st->sse);
	flush(st);
}

/* Writes the head with the first batch (the stream's ": connected" line,
 * at least) and hands the socket to st (on_upgraded). */
static void open_raw(stream_t *st, h2o_req_t *req)
{
	replay_span_t spans[SSE_BATCH_SPANS];
	h2o_iovec_t iov[SSE_BATCH_SPANS + 2];
	size_t n = 0;
	/* The response filters still add their headers (CORS): h2o runs
	 * them at h2o_start_response. Its chunked encoder sees the
	 * Transfer-Encoding and stays out; nothing is sent through them. */
	static h2o_generator_t none = {NULL, NULL};
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_TRANSFER_ENCODING, NULL,
		       H2O_STRLIT("chunked"));
	h2o_start_response(req, &none);
	if (sse_next(&st->sse, spans, &n) != SSE_SEND)
		abort(); /* stream_open pushed its first line */
	st->writing = 1;
	h2o_http1_upgrade(req, iov, chunk_iov(st, spans, n, iov), on_upgraded, st);
}

/* The stream's last event says why the server ends it (retired,
 * slow_reader, closing, failed), so a client knows whether to resume:
 * {"type":"stream","payload":{"type":"ended","payload":{…}}}, with no id
 * (it is this stream's, not the workspace's). */
static void last_reason(stream_t *st, const char *reason)
{
	char line[256];
	int n = snprintf(line, sizeof(line),
			 "data: {\"type\":\"stream\",\"payload\":{\"type\":\"ended\",\"payload\":{"
			 "\"workspace_id\":\"%s\",\"reason\":\"%s\"}}}\n\n",
			 st->ws_id, reason);
	sse_last(&st->sse, line, (size_t)n);
}

/* The reader cannot keep up: end it rather than thin it, and close its
 * connection. Finishing the response alone would leave the batch in
 * flight (up to a megabyte, per stream) held for as long as the client
 * keeps the connection open without reading. shutdown(2) makes h2o (or a
 * raw stream's own write) see the connection end and free it the usual
 * way; HTTP/2 connections go whole (their other streams are stuck behind
 * the same reader anyway). */
static void end_slow_reader(stream_t *st)
{
	if (st->sse.done)
		return;
	log_warn("Ending event stream of a slow reader", "workspace_id", st->ws_id, "client_id",
		 st->client_id, NULL);
	if (st->hub->limits != NULL)
		st->hub->limits->refused[LIMIT_SLOW_READERS]++;
	detach(st); /* its claim goes at dispose */
	sse_end(&st->sse, 1, NULL);
	last_reason(st, "slow_reader");
	flush(st);
	h2o_socket_t *sock = st->sock;
	if (st->req != NULL) {
		h2o_conn_t *conn = st->req->conn;
		sock = conn->callbacks->get_socket ? conn->callbacks->get_socket(conn) : NULL;
	}
	if (sock != NULL)
		shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
}

/* The client is gone: finish the response; its claim goes at dispose. */
static void end_client_gone(stream_t *st)
{
	detach(st);
	sse_end(&st->sse, 1, NULL);
	flush(st);
}

/* The server ends it (workspace closing, client retired): what is queued
 * still goes out first. */
static void end_by_server(stream_t *st, const char *reason)
{
	sse_end(&st->sse, 0, log_of(st)); /* the events published so far still go */
	last_reason(st, reason);
	detach(st);
	st->claimed = 0; /* claims dropped the claim itself */
	flush(st);
}

/* The {"type":"workspace"} event into out, in upstream's nested envelope:
 * {"type":"workspace","payload":{"type":<type>,"payload":{"workspace_id",
 * "pid","reason"[,"rescan":true]}}}. A new worker (restarted) knows nothing
 * of what changed while none watched, and a gap lost events: both tell
 * clients to re-list what they care about (README, "Event schema"). */
static void format_workspace(buf_t *out, const stream_feed_t *f, const char *type, const char *reason)
{
	json_t *inner = json_pack("{s:s, s:I, s:s}", "workspace_id", f->ws_id, "pid", (json_int_t)f->pid,
				  "reason", reason ? reason : "");
	if (strcmp(type, "restarted") == 0 || strcmp(type, "gap") == 0)
		json_object_set_new(inner, "rescan", json_true());
	json_t *j =
	    json_pack("{s:s, s:{s:s, s:o}}", "type", "workspace", "payload", "type", type, "payload", inner);
	char *text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (text == NULL)
		abort(); /* our own ASCII fields: cannot fail but for memory */
	buf_append(out, text, strlen(text));
	free(text);
}

void stream_hub_init(stream_hub_t *h, h2o_context_t *ctx,
		     void (*detach_cb)(void *, const char *, const char *), void *arg)
{
	memset(h, 0, sizeof(*h));
	h2o_linklist_init_anchor(&h->all);
	h->loop = ctx->loop;
	h2o_timeout_init(h->loop, &h->trim, STREAM_TRIM_MS);
	h->trim_entry.cb = on_trim;
	h->detach = detach_cb;
	h->arg = arg;
}

unsigned stream_client_count(const stream_hub_t *h, const char *client_id)
{
	hmap_node_t *n = hmap_get(&h->clients, client_id);
	return n ? H2O_STRUCT_FROM_MEMBER(stream_client_t, node, n)->n : 0;
}

void stream_hub_dispose(stream_hub_t *h)
{
	hmap_node_t *n, *nxt;
	hmap_foreach (&h->clients, n, nxt) {
		free(H2O_STRUCT_FROM_MEMBER(stream_client_t, node, n));
	}
	hmap_free(&h->clients);
	buf_free(&h->scratch);
	if (h2o_timeout_is_linked(&h->trim_entry))
		h2o_timeout_unlink(&h->trim_entry);
	h2o_timeout_dispose(h->loop, &h->trim);
}

void stream_feed_init(stream_feed_t *f, stream_hub_t *h, const char *ws_id)
{
	memset(f, 0, sizeof(*f));
	f->hub = h;
	h2o_linklist_init_anchor(&f->streams);
	snprintf(f->ws_id, sizeof(f->ws_id), "%s", ws_id);
}

void stream_feed_end(stream_feed_t *f, const char *reason)
{
	while (!h2o_linklist_is_empty(&f->streams))
		end_by_server(H2O_STRUCT_FROM_MEMBER(stream_t, link, f->streams.next), reason);
}

void stream_feed_free(stream_feed_t *f)
{
	replay_free(&f->replay); /* ended streams still hold what they send */
	trim_soon(f->hub);
}

void stream_publish(stream_feed_t *f, const char *json, size_t len)
{
	buf_t *b = &f->hub->scratch;
	buf_reset(b);
	buf_appendf(b, "id: %llu\ndata: ", (unsigned long long)++f->last_id);
	if (f->hub->metrics != NULL)
		f->hub->metrics->events_published++;
	buf_append(b, json, len);
	buf_append(b, "\n\n", 2);
	/* The one copy of the event: every stream reads it from the log, so
	 * they all get the same bytes in the same order. */
	replay_add(&f->replay, f->last_id, buf_data(b), buf_size(b));
	/* A stream may leave the list while we walk it (slow reader), never
	 * another one. */
	h2o_linklist_t *l = f->streams.next;
	while (l != &f->streams) {
		h2o_linklist_t *next = l->next;
		stream_t *st = H2O_STRUCT_FROM_MEMBER(stream_t, link, l);
		if (sse_behind(&st->sse, &f->replay)) {
			end_slow_reader(st);
		} else {
			flush(st);
			if (over_budget(st))
				end_slow_reader(st);
		}
		l = next;
	}
}

void stream_publish_workspace(stream_feed_t *f, const char *type, const char *reason)
{
	buf_t text = BUF_INIT;
	format_workspace(&text, f, type, reason);
	stream_publish(f, buf_data(&text), buf_size(&text));
	buf_free(&text);
}

/* Tells a resuming client that events it missed are gone: it must
 * resynchronise. No id: it is this stream's, not the workspace's. */
static void push_gap(stream_t *st, const stream_feed_t *f, uint64_t after)
{
	char reason[128];
	buf_t b = BUF_INIT;
	if (st->hub->metrics != NULL)
		st->hub->metrics->gaps++;
	snprintf(reason, sizeof(reason), "events after %llu are no longer buffered (oldest held: %llu)",
		 (unsigned long long)after, (unsigned long long)replay_oldest(&f->replay));
	buf_append(&b, "data: ", 6);
	format_workspace(&b, f, "gap", reason);
	buf_append(&b, "\n\n", 2);
	sse_push(&st->sse, buf_data(&b), buf_size(&b)); /* at open: before any send */
	buf_free(&b);
}

void stream_open(stream_feed_t *f, h2o_req_t *req, const char *client_id, int resume, uint64_t after)
{
	stream_hub_t *hub = f->hub;
	stream_t *st;
	if (req->version == 0x101) {
		/* Raw: outlives its request (open_raw). */
		if ((st = calloc(1, sizeof(*st))) == NULL)
			abort();
		st->raw = 1;
	} else {
		/* HTTP/2 (and 1.0): the stream lives in the request's pool,
		 * whose first chunk (4 KiB, h2o's) is mostly empty for an
		 * event stream: a separate allocation would cost an idle
		 * stream its size again. The pool runs dispose hooks before it
		 * frees its chunks, so st is still there then. */
		st = h2o_mem_alloc_pool(&req->pool, sizeof(*st));
		*(stream_t **)h2o_mem_alloc_shared(&req->pool, sizeof(st), on_dispose) = st;
		memset(st, 0, sizeof(*st));
	}
	st->gen.proceed = on_proceed;
	st->gen.stop = on_stop;
	st->req = req;
	st->hub = hub;
	st->feed = f;
	st->claimed = 1;
	snprintf(st->ws_id, sizeof(st->ws_id), "%s", f->ws_id);
	snprintf(st->client_id, sizeof(st->client_id), "%s", client_id);
	h2o_linklist_insert(&f->streams, &st->link);
	h2o_linklist_insert(&hub->all, &st->all);
	hub->count++;
	hmap_node_t *cn = hmap_get(&hub->clients, client_id);
	stream_client_t *sc = cn ? H2O_STRUCT_FROM_MEMBER(stream_client_t, node, cn) : NULL;
	if (sc == NULL) {
		if ((sc = calloc(1, sizeof(*sc))) == NULL)
			abort();
		snprintf(sc->id, sizeof(sc->id), "%s", client_id);
		hmap_put(&hub->clients, &sc->node, sc->id);
	}
	sc->n++;

	req->res.status = 200;
	req->res.reason = "OK";
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
		       H2O_STRLIT("text/event-stream"));
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
	/* A quiet workspace must not leave the client without headers: a
	 * first comment line goes with them. Nothing is sent before the
	 * stream is attached (flush waits for a transport). */
	sse_push(&st->sse, "retry: 1000\n: connected\n\n", 25); /* reconnect after 1 s */
	if (resume && replay_gap(&f->replay, after, f->last_id)) {
		push_gap(st, f, after);
		after = f->replay.count ? replay_oldest(&f->replay) - 1 : f->last_id;
	}
	if (!resume || sse_resume(&st->sse, &f->replay, after) != 0)
		sse_attach(&st->sse, &f->replay);
	if (st->raw) {
		open_raw(st, req);
		account(st);
		return;
	}
	h2o_start_response(req, &st->gen);
	st->watch = conns_watch(req, on_gone, st);
	flush(st);
}

/* Ending a stream never unlinks it from hub->all here: what unlinks one
 * runs later, from the loop, never inside flush (h2o 2.2.5 disposes a
 * finished request's pool from its own loop, and an HTTP/1.1 stream's
 * raw socket callbacks are called from run_pending, not from
 * h2o_socket_write), so the walk below stays valid. */
void stream_end_client(stream_hub_t *h, const char *client_id)
{
	for (h2o_linklist_t *l = h->all.next; l != &h->all; l = l->next) {
		stream_t *st = H2O_STRUCT_FROM_MEMBER(stream_t, all, l);
		if (st->feed != NULL && strcmp(st->client_id, client_id) == 0)
			end_by_server(st, "retired");
	}
}

void stream_keepalive_all(stream_hub_t *h)
{
	for (h2o_linklist_t *l = h->all.next; l != &h->all; l = l->next) {
		stream_t *st = H2O_STRUCT_FROM_MEMBER(stream_t, all, l);
		if (sse_idle(&st->sse))
			push(st, ":\n\n", 3);
	}
}
