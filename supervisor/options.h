/*
 * options: the command line and its environment fallbacks (SPEC §3).
 */
#ifndef CRUSH_OPTIONS_H
#define CRUSH_OPTIONS_H

#include <stdint.h>
#include <stdio.h>

#include "common/log.h"
#include "supervisor/guard.h"

#define OPTIONS_MAX_HOSTS   16
#define OPTIONS_MAX_ORIGINS GUARD_MAX_ORIGINS

typedef struct options {
	const char *hosts[OPTIONS_MAX_HOSTS]; /* unix:///path or tcp://host:port */
	int nhosts;
	char default_host[256];
	const char *worker; /* NULL: crush-worker beside our executable */
	uint64_t create_grace_ms, detach_grace_ms, idle_ms, kill_ms;
	uint64_t ping_ms; /* CRUSH_SERVER_PING_INTERVAL only: worker liveness */
	enum log_level log_level;
	/* Security (SPEC §7; decided by guard.c). The env token is copied out
	 * here; gate_init removes it from the environment so that workers and
	 * the commands they run never inherit it. */
	const char *token_file;				/* --token-file */
	char token_env[GUARD_TOKEN_MAX + 1];		/* $CRUSH_SERVER_TOKEN, "" when unset */
	const char *allow_origins[OPTIONS_MAX_ORIGINS]; /* --allow-origin, validated */
	int norigins;
	/* Limits (enforced by the server, not here). */
	unsigned max_workspaces;     /* --max-workspaces, $CRUSH_SERVER_MAX_WORKSPACES, 512 */
	unsigned max_streams;	     /* --max-streams, $CRUSH_SERVER_MAX_STREAMS, 4096 */
	uint64_t request_timeout_ms; /* --request-timeout, $CRUSH_SERVER_REQUEST_TIMEOUT, 30 s */
	uint64_t header_timeout_ms;  /* $CRUSH_SERVER_HEADER_TIMEOUT, 15 s (LIMIT_DEFAULT_IDLE_MS) */
	int pinned;		     /* --pinned: shutdown_if_idle is refused */
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

/* "512" -> 512. Returns 0, or -1 for anything not a decimal count in
 * [1, OPTIONS_MAX_COUNT]. */
#define OPTIONS_MAX_COUNT 1000000
int options_parse_count(const char *s, unsigned *out);

/* A token was given (--token-file or $CRUSH_SERVER_TOKEN): only then may a
 * TCP listener bind a non-loopback address. */
static inline int options_token_given(const options_t *o)
{
	return o->token_file != NULL || o->token_env[0] != '\0';
}

#endif
