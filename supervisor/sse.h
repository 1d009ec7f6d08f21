/*
 * sse: the send state of one event stream, without h2o, so that every
 * order of publish, send-complete, resume and end is a unit test. Events
 * are not copied per stream: the stream reads its workspace's log
 * (replay.h) through a cursor and hands the transport spans of the log
 * itself, one batch at a time; the cursor keeps those bytes alive until
 * the transport says it took them (sse_sent). Only the stream's own lines
 * (": connected", keep-alives, a gap notice) are buffered here.
 * Ownership: the sse owns its two small buffers and its cursor's
 * reference; sse_free releases them (after the transport let go).
 */
#ifndef CRUSH_SSE_H
#define CRUSH_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "supervisor/replay.h"

/* A live stream whose unsent events pass this is ended by the server; the
 * client resumes with Last-Event-ID from the workspace's log, whose resume
 * retention is larger (REPLAY_MAX_BYTES) so what was cut is still there. */
#define SSE_MAX_PENDING (1u << 20)
/* A stream's backlog under this is not its own (see stream.c's budget). */
#define SSE_KEEP_BUF (16u << 10)
/* One batch: at most this many bytes (a larger event goes alone) in at
 * most SSE_BATCH_SPANS spans of the log. */
#define SSE_BATCH_BYTES (256u << 10)
#define SSE_BATCH_SPANS 8

typedef enum sse_sending {
	SSE_IDLE,     /* nothing in flight */
	SSE_OWN,      /* own_inflight is in flight */
	SSE_EVENTS,   /* the log from at to upto is in flight */
	SSE_FINISHED, /* the final part went */
} sse_sending_t;

typedef struct sse {
	buf_t own;	      /* own lines not yet handed out: they go before any event */
	buf_t own_inflight;   /* handed out, kept until sse_sent */
	buf_t last;	      /* the stream's last line (why it ends): after every event */
	replay_cursor_t at;   /* what precedes it was taken by the transport; holds the log from here */
	replay_cursor_t upto; /* SSE_EVENTS: the end of the batch in flight */
	uint64_t stop;	      /* log position not read past (ending); UINT64_MAX: none */
	sse_sending_t sending;
	int ending;    /* finish once the backlog up to stop is out */
	int done;      /* finished, or the transport stopped */
	int replaying; /* resumed and not yet caught up with the log's newest event */
} sse_t;

typedef enum sse_step {
	SSE_WAIT,   /* nothing to do until more is published or sse_sent */
	SSE_SEND,   /* hand the spans to the transport (in progress) */
	SSE_FINISH, /* send the final (empty) part: the stream is over */
} sse_step_t;

/* Reads log from its newest event on (a live stream). */
void sse_attach(sse_t *s, replay_t *log);
/* Reads log from the first event after `after`. -1 (not attached) when
 * some of those are gone: the caller tells the client, then attaches. */
int sse_resume(sse_t *s, replay_t *log, uint64_t after);
/* Queues the stream's own bytes (already SSE-framed). Only at open or
 * while the stream is idle (sse_idle): they go before any event. Dropped
 * when the stream is ending or done. */
void sse_push(sse_t *s, const char *data, size_t len);
/* After an event was added to log: 1 when this stream must be ended as a
 * slow reader. A live stream: its unsent events pass SSE_MAX_PENDING. A
 * resuming one: the log's resume retention dropped what it still needs
 * (it falls off the tail; the client gets a gap when it comes back). */
int sse_behind(const sse_t *s, const replay_t *log);
/* The next step; SSE_SEND fills spans[0..*n) (at most SSE_BATCH_SPANS),
 * valid until sse_sent. */
sse_step_t sse_next(sse_t *s, replay_span_t *spans, size_t *n);
/* The transport took the batch in flight (h2o's proceed). */
void sse_sent(sse_t *s);
/* Finish after the backlog (the events published so far in log, which
 * may be NULL once detached); drop_pending: after what is in flight. */
void sse_end(sse_t *s, int drop_pending, const replay_t *log);
/* The stream's last line (already SSE-framed): sent once everything else
 * is out, right before the final part. */
void sse_last(sse_t *s, const char *data, size_t len);
/* The transport is gone: nothing more may be handed out. */
void sse_stop(sse_t *s);
/* Bytes owed to the stream: in flight, own lines and, once live, unsent
 * events of log (NULL once detached: up to where it stops). A resuming
 * stream owes only its batch in flight: the rest is the log's retention. */
size_t sse_backlog(const sse_t *s, const replay_t *log);
/* Nothing in flight and nothing to send. */
int sse_idle(const sse_t *s);
void sse_free(sse_t *s);

#endif
