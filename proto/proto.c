/*
 * proto: the frame codec of the worker socketpair (see proto.h and
 * PROTOCOL.md). The encoder appends header + payload to a buf; the decoder
 * buffers whatever was read and hands out whole frames, validating every
 * header field before it waits for the payload behind it.
 */
#include "proto/proto.h"

#include <string.h>

static void put_u16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static void put_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint16_t get_u16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int type_known(unsigned type)
{
	return type >= PROTO_HELLO && type <= PROTO_TYPE_MAX;
}

/* END, CANCEL and ACK say everything with their type and id. */
static int type_empty(unsigned type)
{
	return type == PROTO_END || type == PROTO_CANCEL || type == PROTO_ACK;
}

int proto_encode(buf_t *out, uint8_t type, uint32_t id, const void *payload, size_t len)
{
	unsigned char *h;

	if (len > PROTO_MAX_PAYLOAD || !type_known(type) || (len > 0 && type_empty(type)) ||
	    (len > 0 && type != PROTO_DATA && memchr(payload, '\n', len) != NULL))
		return -1;
	h = (unsigned char *)buf_reserve(out, PROTO_HDR_SIZE + len);
	put_u32(h, (uint32_t)len);
	h[4] = PROTO_VERSION;
	h[5] = type;
	put_u16(h + 6, 0);
	put_u32(h + 8, id);
	if (len > 0)
		memcpy(h + PROTO_HDR_SIZE, payload, len);
	out->len += PROTO_HDR_SIZE + len;
	return 0;
}

void proto_feed(proto_decoder_t *d, const void *data, size_t len)
{
	/* After an error the stream is dead: keep nothing more of it. The
	 * buffer is released here, not in fail(), so the last frame handed
	 * out stays valid until this feed, as proto.h promises. */
	if (d->err != NULL) {
		buf_free(&d->in);
		return;
	}
	buf_append(&d->in, data, len);
}

/* Sets the sticky error and returns -1. */
static int fail(proto_decoder_t *d, const char *err)
{
	d->err = err;
	return -1;
}

int proto_next(proto_decoder_t *d, proto_frame_t *f)
{
	const unsigned char *h;
	uint32_t len;

	if (d->err != NULL)
		return -1;
	if (buf_size(&d->in) < PROTO_HDR_SIZE)
		return 0;
	/* The header alone decides: a bad or oversize frame is refused before
	 * a single payload byte is waited for, so a peer cannot make us buffer
	 * more than one maximal frame. */
	h = (const unsigned char *)buf_data(&d->in);
	len = get_u32(h);
	if (h[4] != PROTO_VERSION)
		return fail(d, "bad protocol version");
	if (!type_known(h[5]))
		return fail(d, "unknown frame type");
	if (get_u16(h + 6) != 0)
		return fail(d, "non-zero frame flags");
	if (len > PROTO_MAX_PAYLOAD)
		return fail(d, "frame too large");
	if (len > 0 && type_empty(h[5]))
		return fail(d, "payload on an empty frame type");
	if (buf_size(&d->in) - PROTO_HDR_SIZE < len)
		return 0;
	if (h[5] != PROTO_DATA && memchr(h + PROTO_HDR_SIZE, '\n', len) != NULL)
		return fail(d, "newline in payload");
	f->type = h[5];
	f->id = get_u32(h + 8);
	f->payload = (const char *)h + PROTO_HDR_SIZE;
	f->len = len;
	/* Consuming only moves offsets; the bytes stay put until the next
	 * feed, which is what keeps f->payload valid until then. */
	buf_consume(&d->in, PROTO_HDR_SIZE + len);
	return 1;
}

void proto_decoder_free(proto_decoder_t *d)
{
	buf_free(&d->in);
}
