/*
 * stream: Server-Sent Event streams and the per-workspace feeds they
 * read. A feed is a workspace's event log (ids, the replay buffer, its
 * attached streams); the hub owns every stream of the process and the
 * callback that gives a closed stream's claim back. The hub knows nothing of claims or workspaces.
 *
 * Two transports. HTTP/1.1: h2o writes the head and hands the socket
 * over (h2o_http1_upgrade); the stream frames its body as chunks itself,
 * owns the socket, and closes it when it ends. HTTP/2 (and 1.0): h2o
 * sends the body (h2o_send, proceed).
 * Ownership: an HTTP/1.1 stream is malloc'd and freed when its socket
 * closes; an HTTP/2 one lives in its request's memory pool and goes when
 * h2o disposes the request. Either way hub->detach runs from the loop,
 * never from inside another effect. A feed is embedded in its owner's
 * workspace state; stream_feed_end ends its streams before it goes.
 */
#ifndef CRUSH_STREAM_H
#define CRUSH_STREAM_H

#include <sys/types.h>

#include <h2o.h>

#include "common/buf.h"
#include "common/hmap.h"
#include "common/id.h"
#include "supervisor/limits.h"
#include "supervisor/replay.h"
#include "supervisor/sse.h"

typedef struct stream_hub {
	h2o_linklist_t all; /* stream_t.all */
	unsigned count;
	hmap_t clients; /* open streams per client id (stream_client_t) */
	buf_t scratch;	/* one event being formatted */
	/* Bytes owed to all streams: in flight, or published and not yet
	 * handed out. They are not copies: a workspace's events are held once,
	 * in its log, however many streams read them; this bounds how far
	 * behind the readers are altogether (LIMIT_QUEUED_BYTES). */
	size_t queued;
	size_t queued_peak; /* since the last trim */
	limits_t *limits;   /* queued-bytes budget and counters; NULL: none */
	h2o_loop_t *loop;
	h2o_timeout_t trim; /* memory goes back to the system at quiet points */
	h2o_timeout_entry_t trim_entry;
	uint64_t trim_first; /* when the pending trim was first asked for */
	/* Events published, gaps told; NULL: none. */
	struct metrics *metrics;
	/* A stream that claims still counted closed (client gone, slow
	 * reader, server end): give the claim back. */
	void (*detach)(void *arg, const char *ws_id, const char *client_id);
	void *arg;
} stream_hub_t;

/* One workspace's events. */
typedef struct stream_feed {
	stream_hub_t *hub;
	h2o_linklist_t streams; /* stream_t.link */
	uint64_t last_id;	/* ids increase per workspace, across restarts */
	replay_t replay;	/* its events, once: streams read and resume from it */
	pid_t pid;		/* current (or last) worker pid: in workspace events */
	char ws_id[ID_LEN + 1];
} stream_feed_t;

typedef struct stream stream_t;

/* The hub serves the streams of requests on ctx (one per context). */
void stream_hub_init(stream_hub_t *h, h2o_context_t *ctx,
		     void (*detach)(void *arg, const char *ws_id, const char *client_id), void *arg);
void stream_hub_dispose(stream_hub_t *h);
void stream_feed_init(stream_feed_t *f, stream_hub_t *h, const char *ws_id);
/* Ends every stream of f: the workspace is closing and claims dropped
 * their claims already. Each stream's last event says reason ("closing",
 * "failed"); a retired client's says "retired", a slow reader's
 * "slow_reader" (best effort: its connection is shut down). */
void stream_feed_end(stream_feed_t *f, const char *reason);
/* Frees f's log; f has no stream left. */
void stream_feed_free(stream_feed_t *f);

/* Publishes one event (payload JSON, one line) to every stream of f. */
void stream_publish(stream_feed_t *f, const char *json, size_t len);
/* Publishes a {"type":"workspace"} event. */
void stream_publish_workspace(stream_feed_t *f, const char *type, const char *reason);

/* Starts the response (headers go out at once) for a stream the claims
 * core already attached. With resume, first replays what followed event
 * `after` (preceded by a workspace "gap" event when some is gone). */
void stream_open(stream_feed_t *f, h2o_req_t *req, const char *client_id, int resume, uint64_t after);
/* Open streams of client_id, over every workspace. */
unsigned stream_client_count(const stream_hub_t *h, const char *client_id);
/* Ends every stream of a retired client; claims drops its entries. */
void stream_end_client(stream_hub_t *h, const char *client_id);
/* Comment line on every stream with nothing in flight (keep-alive). */
void stream_keepalive_all(stream_hub_t *h);

#endif
