/*
 * replay: a workspace's log of formatted events (the exact SSE bytes), kept
 * once for all its streams. Each stream reads it through a cursor; a client
 * reconnecting with Last-Event-ID resumes from it with no gap and no
 * duplicate while its events are still held.
 *
 * The log is a chain of fixed-capacity blocks, each holding whole events
 * back to back, so a run of events is one contiguous span a transport can
 * write without a copy. Blocks are reference counted: the log holds its
 * oldest block, every block holds the next, and a cursor holds the block
 * it points into, so a cursor keeps exactly what is still ahead of it
 * alive (also after the log itself is freed) and a block goes back to
 * malloc once neither the log nor any cursor reaches it.
 *
 * Retention for resume is bounded by count and bytes (oldest first; the
 * newest event is always kept): replay_oldest/replay_gap answer for that.
 * A cursor may still read older events it already holds; bounding how far
 * behind a cursor may fall is the reader's policy (sse.c).
 * Ownership: the log owns its reference; a cursor owns one reference
 * (released by replay_cursor_release); spans borrow block memory, valid
 * while a cursor at or before them is held.
 */
#ifndef CRUSH_REPLAY_H
#define CRUSH_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#define REPLAY_MAX_EVENTS 4096
#define REPLAY_MAX_BYTES  (2u << 20)
/* Block capacities grow from MIN to MAX (a quiet workspace stays small); an
 * event larger than that gets a block of its own. */
#define REPLAY_BLOCK_MIN (4u << 10)
#define REPLAY_BLOCK_MAX (64u << 10)

typedef struct replay_block replay_block_t;

typedef struct replay {
	replay_block_t *head; /* oldest block held: the log's reference */
	replay_block_t *tail; /* newest block, appended to */
	uint32_t head_idx;    /* oldest event held, its index in head */
	uint64_t last;	      /* id of the newest event added */
	size_t count;	      /* events held for resume */
	size_t bytes;	      /* their bytes */
	size_t max_count;     /* 0: REPLAY_MAX_EVENTS */
	size_t max_bytes;     /* 0: REPLAY_MAX_BYTES */
} replay_t;

/* A position between two events of a log. pos counts the log's bytes
 * from its start, so two cursors of one log subtract to a byte distance. */
typedef struct replay_cursor {
	replay_block_t *blk; /* NULL: not placed */
	uint32_t off;	     /* byte offset in blk */
	uint64_t pos;
} replay_cursor_t;

/* A run of whole events, borrowed from the log. */
typedef struct replay_span {
	const char *base;
	size_t len;
} replay_span_t;

/* Keeps one event (ids must increase). */
void replay_add(replay_t *r, uint64_t id, const char *data, size_t len);
/* The id of the oldest event held, 0 when empty. */
uint64_t replay_oldest(const replay_t *r);
/* 1 when a client that saw `after` (last being the newest id published)
 * missed events no longer held. */
int replay_gap(const replay_t *r, uint64_t after, uint64_t last);
/* The log position after its newest byte. */
uint64_t replay_end(const replay_t *r);
/* Drops the log's reference: blocks that cursors still hold stay. */
void replay_free(replay_t *r);

/* Places c (unplaced) after the newest event: it reads what comes next. */
void replay_cursor_end(replay_t *r, replay_cursor_t *c);
/* Places c (unplaced) before the first held event with id > after; -1 (c
 * unplaced) when some event after `after` is no longer held. */
int replay_cursor_after(replay_t *r, uint64_t after, replay_cursor_t *c);
/*
 * The events from c on, as at most max_spans spans, stopping at log
 * position stop, and once they add up to max_bytes (a first span may be
 * larger: one block). *end is where they end (no reference: it stays valid
 * while c is held). Returns the number of spans, 0 when c is at the end.
 */
size_t replay_cursor_read(const replay_cursor_t *c, uint64_t stop, size_t max_bytes, replay_span_t *spans,
			  size_t max_spans, replay_cursor_t *end);
/* 1 when nothing follows c yet. */
int replay_cursor_at_end(const replay_cursor_t *c);
/* The id of the last event before c (0 when none). */
uint64_t replay_cursor_id(const replay_cursor_t *c);
/* Moves c to `to` (a position at or after it, from replay_cursor_read). */
void replay_cursor_move(replay_cursor_t *c, const replay_cursor_t *to);
void replay_cursor_release(replay_cursor_t *c);

#endif
