/*
 * replay: a workspace's event log of reference-counted blocks (see
 * replay.h).
 */
#include "supervisor/replay.h"

#include <stdlib.h>
#include <string.h>

/*
 * A block: events' bytes from the front of data, their offsets (u32, event
 * k at slot k) from the back. Ids are consecutive within a block (an id
 * that is not starts a new block).
 */
struct replay_block {
	replay_block_t *next; /* holds a reference */
	unsigned refs;	      /* the log (head only), the previous block, cursors */
	uint32_t len;	      /* data bytes used: always whole events */
	uint32_t cap;	      /* a multiple of 4 */
	uint32_t n;	      /* events */
	uint64_t first_id;    /* of event 0 (of a block without events: the next id) */
	uint64_t pos;	      /* log position of data[0] */
	char data[];
};

static uint32_t slot(const replay_block_t *b, uint32_t k)
{
	uint32_t off;
	memcpy(&off, b->data + b->cap - sizeof(off) * (k + 1), sizeof(off));
	return off;
}

static uint32_t event_len(const replay_block_t *b, uint32_t k)
{
	return (k + 1 < b->n ? slot(b, k + 1) : b->len) - slot(b, k);
}

static void retain(replay_block_t *b)
{
	b->refs++;
}

/* Frees b once unreferenced, and every later block that only b held. */
static void release(replay_block_t *b)
{
	while (b != NULL && --b->refs == 0) {
		replay_block_t *next = b->next;
		free(b);
		b = next;
	}
}

static replay_block_t *block_new(uint32_t cap, uint64_t first_id, uint64_t pos)
{
	replay_block_t *b = malloc(sizeof(*b) + cap);
	if (b == NULL)
		abort(); /* as buf.c: a daemon that cannot allocate cannot go on */
	memset(b, 0, sizeof(*b));
	b->cap = cap;
	b->first_id = first_id;
	b->pos = pos;
	return b;
}

/* Appends b after the tail (the tail's reference), or as the first block
 * (the log's). */
static void link_tail(replay_t *r, replay_block_t *b)
{
	b->refs = 1;
	if (r->tail == NULL)
		r->head = b;
	else
		r->tail->next = b;
	r->tail = b;
}

/* The log's reference moves past blocks whose events all left retention. */
static void advance_head(replay_t *r)
{
	while (r->head != r->tail && r->head_idx >= r->head->n) {
		replay_block_t *old = r->head;
		r->head = old->next;
		retain(r->head);
		r->head_idx = 0;
		release(old);
	}
}

static int fits(const replay_block_t *b, uint64_t id, size_t len)
{
	if (b->n > 0 && id != b->first_id + b->n)
		return 0;
	return (size_t)b->cap - b->len >= len + sizeof(uint32_t) * (b->n + 1);
}

void replay_add(replay_t *r, uint64_t id, const char *data, size_t len)
{
	size_t max_count = r->max_count ? r->max_count : REPLAY_MAX_EVENTS;
	size_t max_bytes = r->max_bytes ? r->max_bytes : REPLAY_MAX_BYTES;
	replay_block_t *b = r->tail;

	if (b == NULL || !fits(b, id, len)) {
		size_t want = b && b->cap >= REPLAY_BLOCK_MIN ? (size_t)b->cap * 2 : REPLAY_BLOCK_MIN;
		if (want > REPLAY_BLOCK_MAX)
			want = REPLAY_BLOCK_MAX;
		if (want < len + sizeof(uint32_t))
			want = (len + sizeof(uint32_t) + 3) & ~(size_t)3;
		if (want > UINT32_MAX)
			abort(); /* events are bounded by the 1 MiB frame limit */
		b = block_new((uint32_t)want, id, b ? b->pos + b->len : 0);
		link_tail(r, b);
	}
	if (b->n == 0)
		b->first_id = id;
	uint32_t off = b->len;
	memcpy(b->data + b->len, data, len);
	memcpy(b->data + b->cap - sizeof(off) * (b->n + 1), &off, sizeof(off));
	b->len += (uint32_t)len;
	b->n++;
	r->last = id;
	r->count++;
	r->bytes += len;
	advance_head(r);
	while (r->count > 1 && (r->count > max_count || r->bytes > max_bytes)) {
		r->bytes -= event_len(r->head, r->head_idx);
		r->head_idx++;
		r->count--;
		advance_head(r);
	}
}

uint64_t replay_oldest(const replay_t *r)
{
	return r->count ? r->head->first_id + r->head_idx : 0;
}

int replay_gap(const replay_t *r, uint64_t after, uint64_t last)
{
	return after < last && (r->count == 0 || after + 1 < replay_oldest(r));
}

uint64_t replay_end(const replay_t *r)
{
	return r->tail ? r->tail->pos + r->tail->len : 0;
}

void replay_free(replay_t *r)
{
	release(r->head);
	r->head = r->tail = NULL;
	r->head_idx = 0;
	r->count = r->bytes = 0;
}

static void place(replay_cursor_t *c, replay_block_t *b, uint32_t off)
{
	retain(b);
	c->blk = b;
	c->off = off;
	c->pos = b->pos + off;
}

void replay_cursor_end(replay_t *r, replay_cursor_t *c)
{
	if (r->tail == NULL) /* an empty block to hold on to: the next one links after it */
		link_tail(r, block_new(0, r->last + 1, 0));
	place(c, r->tail, r->tail->len);
}

int replay_cursor_after(replay_t *r, uint64_t after, replay_cursor_t *c)
{
	c->blk = NULL;
	if (r->count == 0 || after >= r->last) {
		replay_cursor_end(r, c);
		return 0;
	}
	if (after + 1 < replay_oldest(r))
		return -1;
	for (replay_block_t *b = r->head; b != NULL; b = b->next) {
		if (b->n == 0 || b->first_id + b->n - 1 <= after)
			continue;
		uint32_t k = after >= b->first_id ? (uint32_t)(after + 1 - b->first_id) : 0;
		place(c, b, slot(b, k));
		return 0;
	}
	replay_cursor_end(r, c); /* not reached: r->last > after is held */
	return 0;
}

size_t replay_cursor_read(const replay_cursor_t *c, uint64_t stop, size_t max_bytes, replay_span_t *spans,
			  size_t max_spans, replay_cursor_t *end)
{
	replay_block_t *b = c->blk;
	uint32_t off = c->off;
	size_t n = 0, total = 0;

	*end = *c;
	while (b != NULL && n < max_spans) {
		if (off == b->len) {
			if (b->next == NULL)
				break;
			b = b->next;
			off = 0;
			continue;
		}
		uint64_t at = b->pos + off;
		if (at >= stop)
			break;
		size_t len = b->len - off;
		if (at + len > stop)
			len = (size_t)(stop - at); /* stop is between events */
		if (n > 0 && total + len > max_bytes)
			break;
		spans[n].base = b->data + off;
		spans[n].len = len;
		n++;
		total += len;
		off += (uint32_t)len;
		end->blk = b;
		end->off = off;
		end->pos = b->pos + off;
		if (total >= max_bytes)
			break;
	}
	return n;
}

int replay_cursor_at_end(const replay_cursor_t *c)
{
	/* Blocks are linked only with an event in them: a non-empty next. */
	return c->blk == NULL || (c->off == c->blk->len && c->blk->next == NULL);
}

uint64_t replay_cursor_id(const replay_cursor_t *c)
{
	const replay_block_t *b = c->blk;
	if (b == NULL)
		return 0;
	if (c->off >= b->len) /* after the block's events (or before any) */
		return b->first_id + b->n - 1;
	uint32_t lo = 0, hi = b->n - 1; /* the event starting at c->off */
	while (lo < hi) {
		uint32_t mid = (lo + hi + 1) / 2;
		if (slot(b, mid) <= c->off)
			lo = mid;
		else
			hi = mid - 1;
	}
	return b->first_id + lo - 1;
}

void replay_cursor_move(replay_cursor_t *c, const replay_cursor_t *to)
{
	if (to->blk != c->blk) {
		retain(to->blk);
		release(c->blk);
	}
	*c = *to;
}

void replay_cursor_release(replay_cursor_t *c)
{
	release(c->blk);
	c->blk = NULL;
}
