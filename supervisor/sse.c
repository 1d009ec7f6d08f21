/*
 * sse: one event stream's send state machine (see sse.h).
 */
#include "supervisor/sse.h"

int sse_push(sse_t *s, const char *data, size_t len)
{
	if (s->done || s->ending)
		return 0;
	if (buf_size(&s->pending) + len > SSE_MAX_PENDING)
		return -1;
	buf_append(&s->pending, data, len);
	return 0;
}

int sse_push_event(sse_t *s, const char *data, size_t len)
{
	return s->replaying ? 0 : sse_push(s, data, len);
}

void sse_resume(sse_t *s, uint64_t after, uint64_t last)
{
	s->replaying = after < last;
	s->replay_after = after;
}

/* The next chunk of held events, taken only once the previous one is out.
 * -1 when the log no longer holds what follows replay_after. */
static int refill(sse_t *s, const replay_t *log, uint64_t last)
{
	uint64_t upto = s->replay_after;
	if (log == NULL || s->replay_after >= last) {
		s->replaying = 0;
		return 0;
	}
	if (replay_gap(log, s->replay_after, last))
		return -1;
	replay_copy(log, s->replay_after, SSE_REPLAY_CHUNK, &s->pending, &upto);
	s->replay_after = upto;
	if (upto >= last)
		s->replaying = 0; /* caught up: live events from now on */
	return 0;
}

sse_step_t sse_next(sse_t *s, const replay_t *log, uint64_t last, const char **data, size_t *len)
{
	if (s->sending || s->done)
		return SSE_WAIT;
	if (s->replaying && buf_size(&s->pending) == 0 && refill(s, log, last) != 0)
		return SSE_BEHIND;
	if (buf_size(&s->pending) > 0) {
		/* Swap: the batch in flight must stay put until sse_sent. */
		buf_t t = s->inflight;
		s->inflight = s->pending;
		s->pending = t;
		buf_reset(&s->pending);
		*data = buf_data(&s->inflight);
		*len = buf_size(&s->inflight);
		s->sending = 1;
		return SSE_SEND;
	}
	if (s->ending) {
		s->done = 1;
		s->sending = 1;
		return SSE_FINISH;
	}
	return SSE_WAIT;
}

void sse_sent(sse_t *s)
{
	s->sending = 0;
	/* A burst must not leave an idle stream holding its peak. */
	if (s->inflight.cap > SSE_KEEP_BUF)
		buf_free(&s->inflight);
	else
		buf_reset(&s->inflight);
}

void sse_end(sse_t *s, int drop_pending)
{
	if (drop_pending) {
		buf_reset(&s->pending);
		s->replaying = 0;
	}
	s->ending = 1;
}

void sse_stop(sse_t *s)
{
	s->done = 1;
}

void sse_free(sse_t *s)
{
	buf_free(&s->pending);
	buf_free(&s->inflight);
}
