/*
 * buf: the one growable byte buffer of the tree. A window [off, len) of
 * base holds the unconsumed bytes; appends go at len, consumers advance
 * off. Ownership: the buf owns base; buf_free releases it.
 */
#ifndef CRUSH_BUF_H
#define CRUSH_BUF_H

#include <stddef.h>

typedef struct buf {
	char *base;
	size_t off; /* first unconsumed byte */
	size_t len; /* end of data */
	size_t cap;
} buf_t;

#define BUF_INIT                                                                                             \
	{                                                                                                    \
		NULL, 0, 0, 0                                                                                \
	}

/* Makes room for n more bytes at base + len; returns that pointer. Aborts
 * on out-of-memory (a daemon that cannot allocate 1 MiB cannot go on). */
char *buf_reserve(buf_t *b, size_t n);
void buf_append(buf_t *b, const void *data, size_t n);
void buf_appendf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Unconsumed bytes. */
static inline size_t buf_size(const buf_t *b)
{
	return b->len - b->off;
}
static inline char *buf_data(const buf_t *b)
{
	return b->base + b->off;
}
/* Marks n bytes consumed; resets to empty when all are. */
void buf_consume(buf_t *b, size_t n);
void buf_reset(buf_t *b);
void buf_free(buf_t *b);

#endif
