/*
 * sse: one event stream's send state machine (see sse.h).
 */
#include "supervisor/sse.h"

static void attached(sse_t *s)
{
	s->stop = UINT64_MAX;
	s->replaying = !replay_cursor_at_end(&s->at);
}

void sse_attach(sse_t *s, replay_t *log)
{
	replay_cursor_end(log, &s->at);
	attached(s);
}

int sse_resume(sse_t *s, replay_t *log, uint64_t after)
{
	if (replay_cursor_after(log, after, &s->at) != 0)
		return -1;
	attached(s);
	return 0;
}

void sse_push(sse_t *s, const char *data, size_t len)
{
	if (!s->done && !s->ending)
		buf_append(&s->own, data, len);
}

/* Where the next batch starts. */
static const replay_cursor_t *next_at(const sse_t *s)
{
	return s->sending == SSE_EVENTS ? &s->upto : &s->at;
}

int sse_behind(const sse_t *s, const replay_t *log)
{
	if (s->done || s->ending || s->at.blk == NULL)
		return 0;
	const replay_cursor_t *c = next_at(s);
	if (s->replaying)
		return replay_cursor_id(c) + 1 < replay_oldest(log);
	return replay_end(log) - c->pos > SSE_MAX_PENDING;
}

sse_step_t sse_next(sse_t *s, replay_span_t *spans, size_t *n)
{
	if (s->sending != SSE_IDLE || s->done)
		return SSE_WAIT;
	if (buf_size(&s->own) > 0) {
		/* Swap: the bytes in flight must stay put until sse_sent. */
		buf_t t = s->own_inflight;
		s->own_inflight = s->own;
		s->own = t;
		buf_reset(&s->own);
		spans[0].base = buf_data(&s->own_inflight);
		spans[0].len = buf_size(&s->own_inflight);
		*n = 1;
		s->sending = SSE_OWN;
		return SSE_SEND;
	}
	if (s->at.blk != NULL) {
		*n = replay_cursor_read(&s->at, s->stop, SSE_BATCH_BYTES, spans, SSE_BATCH_SPANS, &s->upto);
		if (*n > 0) {
			/* Handed the newest event: live from now on, like a stream
			 * that never resumed (and bound by the same limit). */
			if (replay_cursor_at_end(&s->upto))
				s->replaying = 0;
			s->sending = SSE_EVENTS;
			return SSE_SEND;
		}
		s->replaying = 0; /* caught up */
	}
	if (s->ending && buf_size(&s->last) > 0) {
		buf_t t = s->own_inflight;
		s->own_inflight = s->last;
		s->last = t;
		buf_free(&s->last);
		spans[0].base = buf_data(&s->own_inflight);
		spans[0].len = buf_size(&s->own_inflight);
		*n = 1;
		s->sending = SSE_OWN;
		return SSE_SEND;
	}
	if (s->ending) {
		s->done = 1;
		s->sending = SSE_FINISHED;
		return SSE_FINISH;
	}
	return SSE_WAIT;
}

void sse_last(sse_t *s, const char *data, size_t len)
{
	if (s->done)
		return;
	buf_reset(&s->last);
	buf_append(&s->last, data, len);
}

void sse_sent(sse_t *s)
{
	if (s->sending == SSE_OWN) {
		buf_free(&s->own_inflight); /* an idle stream holds no buffer */
	} else if (s->sending == SSE_EVENTS) {
		replay_cursor_move(&s->at, &s->upto);
		if (replay_cursor_at_end(&s->at))
			s->replaying = 0;
	}
	if (s->sending != SSE_FINISHED)
		s->sending = SSE_IDLE;
}

void sse_end(sse_t *s, int drop_pending, const replay_t *log)
{
	uint64_t stop = next_at(s)->pos;
	if (drop_pending) {
		buf_free(&s->own);
		s->replaying = 0;
	} else if (log != NULL) {
		stop = replay_end(log);
	}
	if (stop < s->stop)
		s->stop = stop;
	s->ending = 1;
}

void sse_stop(sse_t *s)
{
	s->done = 1;
}

size_t sse_backlog(const sse_t *s, const replay_t *log)
{
	size_t n = buf_size(&s->own) + buf_size(&s->own_inflight);
	if (s->at.blk != NULL) {
		uint64_t end = log != NULL ? replay_end(log) : s->stop;
		/* A resuming stream reads the log's retention as it goes: only
		 * its batch in flight is owed yet. */
		if (end == UINT64_MAX || s->replaying)
			end = next_at(s)->pos;
		if (end > s->stop)
			end = s->stop;
		if (end > s->at.pos)
			n += (size_t)(end - s->at.pos);
	}
	return n;
}

int sse_idle(const sse_t *s)
{
	return s->sending == SSE_IDLE && buf_size(&s->own) == 0 &&
	       (s->at.blk == NULL || replay_cursor_at_end(&s->at));
}

void sse_free(sse_t *s)
{
	buf_free(&s->own);
	buf_free(&s->own_inflight);
	buf_free(&s->last);
	replay_cursor_release(&s->at);
}
