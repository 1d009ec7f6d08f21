/*
 * gate: guard.c's decisions applied to h2o (SPEC §7). It refuses unix
 * peers of another user at accept, before h2o sees the socket; runs as
 * the first handler of every path, so no request reaches the API (or
 * anything else) without guard_decide's say; answers CORS preflights;
 * and, through an h2o filter, puts Access-Control-Allow-Origin on every
 * answer to an allowed origin. The server owns one gate for its life.
 */
#ifndef CRUSH_GATE_H
#define CRUSH_GATE_H

#include <stdint.h>

#include <h2o.h>

#include "supervisor/guard.h"
#include "supervisor/options.h"

typedef struct gate {
	guard_conf_t conf;		 /* points into token[] and opts' argv */
	char token[GUARD_TOKEN_MAX + 1]; /* "" when no listener needs one */
	uint64_t refused_log_ms;	 /* rate limit of the peer-refused log line */
	unsigned refused_quiet;		 /* refusals not logged since */
	const struct conns *conns;	 /* what each connection was at accept; NULL: ask the kernel */
} gate_t;

/*
 * The policy from opts: the daemon's uid, the allowed origins, and, when a
 * tcp listener is configured (or a token was given), the bearer token from
 * --token-file, else $CRUSH_SERVER_TOKEN, else the generated file (logged
 * by path, never by value). Removes CRUSH_SERVER_TOKEN from the
 * environment. Returns 0, or -1 after printing why on stderr.
 */
int gate_init(gate_t *g, const options_t *opts);

/*
 * Puts the gate's handler first on every path of every host in config and
 * its CORS filter on each (fallback paths included). Call after every
 * other handler is registered and before h2o_context_init.
 */
void gate_register(gate_t *g, h2o_globalconf_t *config);

/*
 * For a socket just accepted: on a unix listener, the peer's uid
 * (SO_PEERCRED) must be ours or root's. Returns 0 to hand sock to h2o, or
 * -1 after writing a canned 403 to it (best effort, non-blocking) and
 * closing it. *is_unix and *peer_uid say what it found, for conns_add.
 */
int gate_accept(gate_t *g, h2o_socket_t *sock, int *is_unix, long *peer_uid);

#endif
