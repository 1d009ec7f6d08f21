/*
 * check: the harnesses' one assertion. On a violated invariant it says
 * which, then traps, so libFuzzer saves the input as a crash.
 */
#ifndef CRUSH_FUZZ_CHECK_H
#define CRUSH_FUZZ_CHECK_H

#include <stdio.h>

#define CHECK(c)                                                                                             \
	do {                                                                                                 \
		if (!(c)) {                                                                                  \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);                \
			__builtin_trap();                                                                    \
		}                                                                                            \
	} while (0)

#endif
