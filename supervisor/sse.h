/*
 * sse: the send state of one event stream, without h2o, so that every
 * order of push, send-complete, replay and end is a unit test. A stream
 * has at most one batch in flight (h2o holds it until its proceed
 * callback); what arrives meanwhile waits in pending. A resuming stream
 * refills pending from the workspace's replay log one chunk at a time, so
 * a long replay goes out as the client reads it.
 * Ownership: the sse owns both buffers; sse_free releases them.
 */
#ifndef CRUSH_SSE_H
#define CRUSH_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "supervisor/replay.h"

/* A stream whose unsent bytes pass this is ended by the server; the client
 * resumes with Last-Event-ID from the workspace's replay buffer, which is
 * kept larger (REPLAY_MAX_BYTES) so what was cut is still there. */
#define SSE_MAX_PENDING (1u << 20)
/* Buffers larger than this are freed, not kept, once drained. */
#define SSE_KEEP_BUF (16u << 10)
/* Replay goes out in chunks of about this size. */
#define SSE_REPLAY_CHUNK (64u << 10)

typedef struct sse {
	buf_t pending;	       /* not yet handed out */
	buf_t inflight;	       /* handed out, kept until sse_sent */
	int sending;	       /* a batch is in flight */
	int ending;	       /* finish once pending is out */
	int done;	       /* finished, or the transport stopped */
	int replaying;	       /* events come from the replay log, ... */
	uint64_t replay_after; /* ... the next one after this id */
} sse_t;

typedef enum sse_step {
	SSE_WAIT,   /* nothing to do until more is pushed or sse_sent */
	SSE_SEND,   /* hand *data, *len to the transport (in progress) */
	SSE_FINISH, /* send the final (empty) part: the stream is over */
	SSE_BEHIND, /* the replay log dropped what this stream still needs */
} sse_step_t;

/* Queues bytes (already SSE-framed). -1 when the stream is over its
 * pending limit (a slow reader: the caller ends it); 0 otherwise, also
 * when the stream is ending or done and the bytes are dropped. */
int sse_push(sse_t *s, const char *data, size_t len);
/* A live event: queued unless the stream is replaying (it then reaches
 * the event through the log, in order). Result as sse_push. */
int sse_push_event(sse_t *s, const char *data, size_t len);
/* Starts replaying the events of log after `after` (last: the newest id
 * published). */
void sse_resume(sse_t *s, uint64_t after, uint64_t last);
/* The next step. log may be NULL once the stream left its workspace (a
 * replay then stops). */
sse_step_t sse_next(sse_t *s, const replay_t *log, uint64_t last, const char **data, size_t *len);
/* The transport took the batch in flight (h2o's proceed). */
void sse_sent(sse_t *s);
/* Finish after what is pending; drop_pending drops that too (and any
 * replay). */
void sse_end(sse_t *s, int drop_pending);
/* The transport is gone: nothing more may be handed out. */
void sse_stop(sse_t *s);
void sse_free(sse_t *s);

#endif
