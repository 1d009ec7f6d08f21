/*
 * options: the command line and its environment fallbacks (SPEC §3).
 */
#ifndef CRUSH_OPTIONS_H
#define CRUSH_OPTIONS_H

#include <stdint.h>
#include <stdio.h>

#include "common/log.h"

#define OPTIONS_MAX_HOSTS 16

typedef struct options {
	const char *hosts[OPTIONS_MAX_HOSTS]; /* unix:///path or tcp://host:port */
	int nhosts;
	char default_host[256];
	const char *worker; /* NULL: crush-worker beside our executable */
	uint64_t create_grace_ms, detach_grace_ms, idle_ms, kill_ms;
	uint64_t ping_ms; /* CRUSH_SERVER_PING_INTERVAL only: worker liveness */
	enum log_level log_level;
} options_t;

enum { OPTIONS_RUN = 0, OPTIONS_EXIT_OK = 1, OPTIONS_EXIT_USAGE = 2 };

/*
 * Fills o from argv and the environment. Returns OPTIONS_RUN, or
 * OPTIONS_EXIT_OK after printing --help/--version to out, or
 * OPTIONS_EXIT_USAGE after printing the error and usage to err.
 */
int options_parse(options_t *o, int argc, char **argv, FILE *out, FILE *err);

/* "1.5" -> 1500. Returns 0, or -1 for anything not a finite number of
 * seconds in [0, 1e6]. */
int options_parse_secs(const char *s, uint64_t *ms);

#endif
