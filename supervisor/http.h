/*
 * http: the v1 API (SPEC §4): handlers, the one JSON error writer, and
 * creates that wait for a worker. The handler is an h2o handler struct
 * that carries what it needs from its owner (http_env_t), in h2o's own
 * manner; it reaches nothing else.
 */
#ifndef CRUSH_HTTP_H
#define CRUSH_HTTP_H

#include <stdint.h>

#include <h2o.h>

#include "common/buf.h"
#include "supervisor/claims.h"
#include "supervisor/conns.h"
#include "supervisor/forward.h"
#include "supervisor/limits.h"
#include "supervisor/metrics.h"
#include "supervisor/offload.h"
#include "supervisor/stream.h"
#include "supervisor/workspace.h"

/* Bodies over HTTP_MAX_BODY get a JSON 413 from the handler. h2o itself
 * refuses bodies over HTTP_HARD_MAX_BODY before buffering them (a 413 on
 * HTTP/1.1, a stream reset on HTTP/2), which bounds what one request can
 * make us hold. */
#define HTTP_MAX_BODY	      (1024 * 1024)
#define HTTP_MAX_FORWARD_BODY (64u << 20) /* a routed request's body (SPEC §8) */
/* Longest session id a client may name as its current session: 4096
 * streams' worth of them stay well under one 1 MiB presence frame. */
#define HTTP_MAX_SESSION_ID 128
#define HTTP_HARD_MAX_BODY  (HTTP_MAX_FORWARD_BODY + HTTP_MAX_BODY)

/* What the API needs from its owner. */
typedef struct http_env {
	claims_t *claims;
	stream_hub_t *streams;
	limits_t *limits;
	metrics_t *metrics; /* counted by a logger; GET /v1/metrics */
	conns_t *conns;
	forwarder_t *forwarder;
	int pinned;	    /* --pinned: shutdown_if_idle is 409 */
	offload_t *offload; /* where create paths are resolved */
	/* POST /v1/control asked the server to stop. */
	void (*shutdown)(void *arg, const char *why);
	void *arg;
} http_env_t;

typedef struct http_handler {
	h2o_handler_t super;
	http_env_t env;
	buf_t scratch;		   /* one answer being formatted */
	unsigned resolve_delay_ms; /* test-only: CRUSH_TEST_RESOLVE_DELAY_MS */
} http_handler_t;

/* Registers the API handler (and the JSON error filter) on config. */
http_handler_t *http_register(h2o_globalconf_t *config, const http_env_t *env);
void http_dispose(http_handler_t *h);
/* Answers every create waiting on w: err NULL = the workspace. */
void http_answer_waiters(http_handler_t *h, workspace_t *w, const char *err);

#endif
