/*
 * replay: bounded event history of one workspace (see replay.h).
 */
#include "supervisor/replay.h"

#include <string.h>

#define HDR (sizeof(uint64_t) + sizeof(uint32_t))

static void entry_at(const char *p, uint64_t *id, uint32_t *len)
{
	memcpy(id, p, sizeof(*id));
	memcpy(len, p + sizeof(*id), sizeof(*len));
}

void replay_add(replay_t *r, uint64_t id, const char *data, size_t len)
{
	size_t max_count = r->max_count ? r->max_count : REPLAY_MAX_EVENTS;
	size_t max_bytes = r->max_bytes ? r->max_bytes : REPLAY_MAX_BYTES;
	uint32_t l = (uint32_t)len;

	buf_append(&r->buf, &id, sizeof(id));
	buf_append(&r->buf, &l, sizeof(l));
	buf_append(&r->buf, data, len);
	r->count++;
	r->bytes += len;
	while (r->count > 1 && (r->count > max_count || r->bytes > max_bytes)) {
		uint64_t old;
		uint32_t olen;
		entry_at(buf_data(&r->buf), &old, &olen);
		buf_consume(&r->buf, HDR + olen);
		r->count--;
		r->bytes -= olen;
	}
}

uint64_t replay_oldest(const replay_t *r)
{
	uint64_t id = 0;
	uint32_t len;
	if (r->count > 0)
		entry_at(buf_data(&r->buf), &id, &len);
	return id;
}

int replay_gap(const replay_t *r, uint64_t after, uint64_t last)
{
	return after < last && (r->count == 0 || after + 1 < replay_oldest(r));
}

size_t replay_copy(const replay_t *r, uint64_t after, size_t max, buf_t *out, uint64_t *last)
{
	const char *p = buf_data(&r->buf), *end = p + buf_size(&r->buf);
	size_t n = 0, start = buf_size(out);
	while (p < end && buf_size(out) - start < max) {
		uint64_t id;
		uint32_t len;
		entry_at(p, &id, &len);
		if (id > after) {
			buf_append(out, p + HDR, len);
			*last = id;
			n++;
		}
		p += HDR + len;
	}
	return n;
}

void replay_free(replay_t *r)
{
	buf_free(&r->buf);
	r->count = r->bytes = 0;
}
