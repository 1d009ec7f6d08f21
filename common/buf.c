/*
 * buf: growable byte buffer (see buf.h).
 */
#include "common/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *buf_reserve(buf_t *b, size_t n)
{
	if (b->cap - b->len >= n)
		return b->base + b->len;
	/* Reclaim the consumed prefix before growing. */
	if (b->off > 0) {
		memmove(b->base, b->base + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		if (b->cap - b->len >= n)
			return b->base + b->len;
	}
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < n)
		cap *= 2;
	char *p = realloc(b->base, cap);
	if (p == NULL)
		abort();
	b->base = p;
	b->cap = cap;
	return b->base + b->len;
}

void buf_append(buf_t *b, const void *data, size_t n)
{
	if (n == 0)
		return;
	memcpy(buf_reserve(b, n), data, n);
	b->len += n;
}

void buf_appendf(buf_t *b, const char *fmt, ...)
{
	va_list ap;
	char *p = buf_reserve(b, 128);
	va_start(ap, fmt);
	int n = vsnprintf(p, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= b->cap - b->len) {
		p = buf_reserve(b, (size_t)n + 1);
		va_start(ap, fmt);
		vsnprintf(p, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

void buf_consume(buf_t *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len)
		b->off = b->len = 0;
}

void buf_reset(buf_t *b)
{
	b->off = b->len = 0;
}

void buf_free(buf_t *b)
{
	free(b->base);
	*b = (buf_t)BUF_INIT;
}
