/*
 * server: the supervisor's imperative shell. It owns the event loop, the
 * listeners and signals, and one of each module (claims core, HTTP
 * handler, stream hub, worker processes), and wires them: it implements
 * the effects claims asks for and the callbacks the workers report
 * through. One server per process; single-threaded; no globals.
 */
#ifndef CRUSH_SERVER_H
#define CRUSH_SERVER_H

#include <h2o.h>

#include "supervisor/claims.h"
#include "supervisor/conns.h"
#include "supervisor/forward.h"
#include "supervisor/gate.h"
#include "supervisor/http.h"
#include "supervisor/limits.h"
#include "supervisor/listen.h"
#include "supervisor/metrics.h"
#include "supervisor/options.h"
#include "supervisor/proc.h"
#include "supervisor/stream.h"

/* Crashed workers restart after 100 ms, doubling to 5 s; 5 crashes within
 * 30 s mark the workspace failed. */
#define WORKER_RESTART_MIN_MS  100
#define WORKER_RESTART_MAX_MS  5000
#define WORKER_CRASH_WINDOW_MS 30000
#define WORKER_CRASH_LIMIT     5
#define STREAM_KEEPALIVE_MS    15000
/* Out of descriptors: stop accepting for this long. */
#define ACCEPT_PAUSE_MS 100

typedef struct server {
	options_t *opts;
	h2o_globalconf_t config;
	h2o_context_t ctx;
	h2o_accept_ctx_t accept_ctx;
	h2o_evloop_t *loop;
	claims_t *claims;
	limits_t limits;
	metrics_t metrics; /* GET /v1/metrics */
	conns_t conns;
	forwarder_t forwarder;
	offload_t *offload;
	http_handler_t *http;
	stream_hub_t hub;
	procs_t procs;
	gate_t gate; /* issue 8: who may talk (gate.h, guard.h) */
	listener_t listeners[OPTIONS_MAX_HOSTS];
	h2o_socket_t *listen_socks[OPTIONS_MAX_HOSTS];
	int nlisteners;
	h2o_socket_t *signal_sock; /* the signalfd */
	h2o_timeout_t keepalive;   /* event stream comment lines */
	h2o_timeout_entry_t keepalive_entry;
	h2o_timeout_t accept_pause; /* EMFILE: listeners rest, then resume */
	h2o_timeout_entry_t resume_accept_te;
	h2o_timeout_t between;		/* 0 ms: work due between two passes of the loop */
	h2o_timeout_entry_t between_te; /* (see server_run) */
	int stopping;			/* shutdown begun (signal) */
	int exiting;			/* exit effect fired: leave the loop */
} server_t;

int server_init(server_t *s, options_t *opts, const char *argv0);
/* Runs the loop until the exit effect; returns the exit status. */
int server_run(server_t *s);
/* Graceful stop; logged as key=why (signal=TERM, request=control). */
void server_begin_shutdown(server_t *s, const char *key, const char *why);

#endif
