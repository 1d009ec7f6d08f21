/*
 * xalloc: allocation that cannot fail. Both programs abort on
 * out-of-memory rather than limp on (a daemon that cannot allocate a few
 * bytes cannot go on); these are the helpers for that.
 */
#ifndef CRUSH_XALLOC_H
#define CRUSH_XALLOC_H

#include <stdlib.h>
#include <string.h>

static inline void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (p == NULL)
		abort();
	return p;
}

static inline char *xstrdup(const char *s)
{
	return strcpy(xmalloc(strlen(s) + 1), s);
}

#endif
