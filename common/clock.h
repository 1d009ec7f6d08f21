/*
 * clock: the one monotonic clock of the supervisor, in milliseconds. Pure
 * modules (claims) never read it: the shell passes `now` in.
 */
#ifndef CRUSH_CLOCK_H
#define CRUSH_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#endif
