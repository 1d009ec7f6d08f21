/*
 * conns: every accepted connection, watched for abuse that h2o 2.2.5 does
 * not bound itself (SPEC §7): requests a connection abandons before their
 * answer (HTTP/2 rapid reset, CVE-2023-44487), a connection that keeps
 * sending bytes without ever completing a request (header or CONTINUATION
 * trickling), and requests with too many or too large headers. An abuser's
 * connection is shut down: h2o sees it end and frees it the usual way.
 * Ownership: one record per accepted socket, made at accept and freed
 * when h2o closes the socket (its on_close hook).
 */
#ifndef CRUSH_CONNS_H
#define CRUSH_CONNS_H

#include <stdint.h>

#include <h2o.h>

#include "supervisor/limits.h"

#define CONNS_SWEEP_MS 1000

typedef struct conns {
	h2o_linklist_t all; /* conn_t.link, oldest first */
	unsigned count;
	limits_t *limits;
	h2o_evloop_t *loop;
	h2o_timeout_t sweep;
	h2o_timeout_entry_t sweep_te;
} conns_t;

/* The header timeout is limits->max[LIMIT_IDLE] (ms; 0: none). */
void conns_init(conns_t *cs, h2o_evloop_t *loop, limits_t *limits);
void conns_dispose(conns_t *cs);
/* A socket was accepted (before h2o_accept): its transport and, on unix,
 * its peer's uid (-1 when unknown), as the gate saw them at accept. */
void conns_add(conns_t *cs, h2o_socket_t *sock, uint64_t now, int is_unix, long peer_uid);
/*
 * HTTP/1: h2o stops reading a connection while a request is answered, so
 * a client that goes away is seen only at the next write. While a long
 * answer is under way (an event stream, a routed request) conns reads the
 * socket itself and calls gone(arg, 1) at EOF or error, or gone(arg, 0)
 * when the client has sent 64 KiB more meanwhile (pipelined requests: it
 * then stops reading, and h2o reads them after the answer). One watcher
 * per connection (HTTP/1 answers one request at a time); the handle goes
 * to conns_unwatch when the request is disposed. NULL for HTTP/2, or a
 * connection conns never saw.
 */
typedef struct conn conns_watch_t;
conns_watch_t *conns_watch(h2o_req_t *req, void (*gone)(void *arg, int eof), void *arg);
void conns_unwatch(conns_watch_t *w);
/* sock's HTTP/1 connection carries an event stream on the raw socket
 * (stream.c): held, it is busy, not idle, though no h2o request is in
 * flight. Released before the stream closes it. */
void conns_hold(h2o_socket_t *sock, int hold);

/* What conns_add was told of sock: 0, or -1 for a socket it never saw. */
int conns_peer(const conns_t *cs, h2o_socket_t *sock, int *is_unix, long *peer_uid);
/*
 * A request reached the handler: counts it in flight until its pool is
 * disposed, and checks its headers. -1 when its headers are too many or
 * too large, -2 when its connection was cut for abuse earlier: either way
 * the connection is shut down and the caller answers an error at most.
 */
int conns_request(conns_t *cs, h2o_req_t *req, uint64_t now);

#endif
