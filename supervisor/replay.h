/*
 * replay: a workspace's bounded buffer of recent events, as the exact SSE
 * bytes its streams were sent, so a client reconnecting with Last-Event-ID
 * resumes with no gap and no duplicate while its events are still held.
 * Bounded by count and bytes; the oldest go first. The newest event is
 * always kept, whatever its size.
 */
#ifndef CRUSH_REPLAY_H
#define CRUSH_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define REPLAY_MAX_EVENTS 4096
#define REPLAY_MAX_BYTES  (2u << 20)

typedef struct replay {
	buf_t buf;	  /* entries: u64 id, u32 len, len bytes */
	size_t count;	  /* entries held */
	size_t bytes;	  /* their payload bytes */
	size_t max_count; /* 0: REPLAY_MAX_EVENTS */
	size_t max_bytes; /* 0: REPLAY_MAX_BYTES */
} replay_t;

/* Keeps a copy of one event (ids must increase). */
void replay_add(replay_t *r, uint64_t id, const char *data, size_t len);
/* The id of the oldest event held, 0 when empty. */
uint64_t replay_oldest(const replay_t *r);
/* 1 when a client that saw `after` (last being the newest id published)
 * missed events no longer held. */
int replay_gap(const replay_t *r, uint64_t after, uint64_t last);
/*
 * Appends to out the held events with id > after, oldest first, whole
 * events only, stopping once out has grown by max bytes or more. Sets
 * *last to the id of the last one appended; returns how many were.
 * Streams resume in such chunks, so a long replay goes out as the client
 * reads it instead of all at once.
 */
size_t replay_copy(const replay_t *r, uint64_t after, size_t max, buf_t *out, uint64_t *last);
void replay_free(replay_t *r);

#endif
