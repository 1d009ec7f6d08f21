/*
 * stream: Server-Sent Event streams. Each stream buffers what its client
 * has not taken yet and hands h2o one batch at a time (the next batch goes
 * out from the generator's proceed callback), so a slow reader never
 * blocks the loop or the other streams of its workspace.
 * Ownership: a stream lives in its request's memory pool; h2o frees it
 * when the request ends, and the dispose hook detaches its claim.
 */
#ifndef CRUSH_STREAM_H
#define CRUSH_STREAM_H

#include <h2o.h>

#include "common/buf.h"
#include "common/hmap.h"
#include "common/id.h"
#include "supervisor/server.h"

/* A stream whose unsent bytes pass this is ended by the server; the client
 * resumes with Last-Event-ID from the workspace's replay buffer, which is
 * kept larger (REPLAY_MAX_BYTES) so what was cut is still there. */
#define STREAM_MAX_PENDING (1u << 20)
/* Buffers larger than this are freed, not kept, once drained. */
#define STREAM_KEEP_BUF (16u << 10)

typedef struct stream {
	h2o_generator_t gen;
	h2o_req_t *req;
	h2o_linklist_t link; /* sv_ws.streams, while attached */
	h2o_linklist_t all;  /* server.all_streams */
	sv_ws_t *ws;	     /* NULL once detached from its workspace */
	int claimed;	     /* claims still counts this stream: detach at dispose */
	hmap_node_t by_conn; /* HTTP/1 only: in the EOF watch, key = conn_key */
	char conn_key[24];
	char ws_id[ID_LEN + 1];
	char client_id[ID_LEN + 1];
	buf_t pending;	       /* not yet handed to h2o */
	buf_t inflight;	       /* handed to h2o, kept until proceed */
	int sending;	       /* a send is in flight: wait for proceed */
	int ending;	       /* send FINAL once pending is out */
	int done;	       /* FINAL sent, or h2o stopped us */
	int replaying;	       /* resuming: events come from the replay buffer, */
	uint64_t replay_after; /* ... the next one after this id */
} stream_t;

/* Starts the response (headers go out at once) for a stream the claims
 * core already attached. With resume, first replays what followed event
 * `after` (preceded by a workspace "gap" event when some is gone). */
void stream_open(h2o_req_t *req, sv_ws_t *sws, const char *client_id, int resume, uint64_t after);
/* Queues bytes (already SSE-framed). */
void stream_push(stream_t *st, const char *data, size_t len);
/* Queues a workspace event, unless the stream is still replaying (it then
 * reaches the event in the replay buffer, in order). */
void stream_push_event(stream_t *st, const char *data, size_t len);
/* Detaches from the workspace without touching claims, then finishes the
 * response once what is queued has gone out. */
void stream_end(stream_t *st);
/* Ends every stream of a retired client; claims drops its entries. */
void stream_end_client(const char *client_id);
/* Comment line on every stream with nothing in flight (keep-alive). */
void stream_keepalive_all(void);

#endif
