/*
 * fuzz_proto: the incremental frame decoder (proto/proto.c), fed in chunks
 * whose sizes come from the input's first bytes. Each frame must be exactly
 * the bytes at its place in the stream (so chunking cannot matter), within
 * PROTO_MAX_PAYLOAD and '\n'-free, must re-encode to those same bytes and
 * decode again to itself; errors are sticky; a frame's payload stays
 * readable until the next feed (proto.h); at most one frame stays buffered.
 *
 * Input: byte 0 = k (low 3 bits: how many chunk-size bytes follow, 0 = feed
 * everything at once); bytes 1..k = chunk sizes minus one, used in turn;
 * the rest is the byte stream.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

#include "fuzz/check.h"

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The frame at s[0..n) per PROTOCOL.md: 1 whole and valid, 0 incomplete
 * (but valid so far), -1 invalid. */
static int oracle(const uint8_t *s, size_t n)
{
	if (n < PROTO_HDR_SIZE)
		return 0;
	if (s[4] != PROTO_VERSION || s[5] < 1 || s[5] > PROTO_TYPE_MAX || s[6] || s[7] ||
	    be32(s) > PROTO_MAX_PAYLOAD)
		return -1;
	int empty = s[5] == PROTO_END || s[5] == PROTO_CANCEL || s[5] == PROTO_ACK;
	if (empty && be32(s) > 0)
		return -1;
	if (n - PROTO_HDR_SIZE < be32(s))
		return 0;
	return s[5] != PROTO_DATA && memchr(s + PROTO_HDR_SIZE, '\n', be32(s)) ? -1 : 1;
}

/* f is the frame found at s (the whole frame): fields, bytes, round trip. */
static void check_frame(const proto_frame_t *f, const uint8_t *s)
{
	proto_decoder_t d = PROTO_DECODER_INIT;
	proto_frame_t g;
	buf_t out = BUF_INIT;

	CHECK(f->len <= PROTO_MAX_PAYLOAD && f->len == be32(s));
	CHECK(f->type == s[5] && f->id == be32(s + 8));
	CHECK(memcmp(f->payload, s + PROTO_HDR_SIZE, f->len) == 0);
	CHECK(f->type == PROTO_DATA || memchr(f->payload, '\n', f->len) == NULL);

	CHECK(proto_encode(&out, f->type, f->id, f->payload, f->len) == 0);
	CHECK(buf_size(&out) == PROTO_HDR_SIZE + f->len);
	CHECK(memcmp(buf_data(&out), s, PROTO_HDR_SIZE + f->len) == 0);
	proto_feed(&d, buf_data(&out), buf_size(&out));
	CHECK(proto_next(&d, &g) == 1);
	CHECK(g.type == f->type && g.id == f->id && g.len == f->len);
	CHECK(memcmp(g.payload, f->payload, f->len) == 0);
	CHECK(proto_next(&d, &g) == 0);
	proto_decoder_free(&d);
	buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	proto_decoder_t d = PROTO_DECODER_INIT;
	proto_frame_t f, last = {0};
	size_t nsizes, fed = 0, pos = 0, last_pos = 0, chunk = 0;
	int r = 0, have_last = 0;

	if (size < 1)
		return 0;
	nsizes = data[0] & 7;
	if (size < 1 + nsizes)
		return 0;
	const uint8_t *sizes = data + 1, *s = data + 1 + nsizes;
	size_t n = size - 1 - nsizes;

	while (fed < n) {
		size_t c = nsizes ? (size_t)sizes[chunk++ % nsizes] + 1 : n;
		if (c > n - fed)
			c = n - fed;
		proto_feed(&d, s + fed, c);
		fed += c;
		have_last = 0; /* payloads of earlier feeds may move now */
		if (r < 0) {
			/* Sticky: a dead decoder keeps nothing and stays dead. */
			CHECK(proto_next(&d, &f) == -1 && d.err != NULL && buf_size(&d.in) == 0);
			continue;
		}
		while ((r = proto_next(&d, &f)) == 1) {
			CHECK(oracle(s + pos, fed - pos) == 1);
			check_frame(&f, s + pos);
			if (have_last) /* still valid: no feed since */
				CHECK(memcmp(last.payload, s + last_pos + PROTO_HDR_SIZE, last.len) == 0);
			last = f, last_pos = pos, have_last = 1;
			pos += PROTO_HDR_SIZE + f.len;
		}
		if (have_last) /* also after a 0 or a -1 */
			CHECK(memcmp(last.payload, s + last_pos + PROTO_HDR_SIZE, last.len) == 0);
		CHECK(r == oracle(s + pos, fed - pos));
		if (r == 0)
			CHECK(buf_size(&d.in) == fed - pos && buf_size(&d.in) < PROTO_MAX_FRAME);
		else
			CHECK(d.err != NULL && proto_next(&d, &f) == -1);
	}
	proto_decoder_free(&d);
	return 0;
}
