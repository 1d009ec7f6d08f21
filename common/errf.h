/*
 * errf: the one way a function reports why it failed into a caller's
 * buffer: formats the message and returns -1 for the caller to return.
 */
#ifndef CRUSH_ERRF_H
#define CRUSH_ERRF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

static inline int errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static inline int errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

#endif
