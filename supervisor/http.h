/*
 * http: the v1 API (SPEC §4): routing, request parsing, the one JSON
 * error writer, Workspace objects, and creates that wait for a worker.
 */
#ifndef CRUSH_HTTP_H
#define CRUSH_HTTP_H

#include <h2o.h>

#include "supervisor/server.h"

/* Bodies over HTTP_MAX_BODY get a JSON 413 from the handler. h2o itself
 * refuses bodies over HTTP_HARD_MAX_BODY before buffering them (a 413 on
 * HTTP/1.1, a stream reset on HTTP/2), which bounds what one request can
 * make us hold. */
#define HTTP_MAX_BODY	   (1024 * 1024)
#define HTTP_HARD_MAX_BODY (2 * HTTP_MAX_BODY)

/* Registers the API handler (and the JSON error filter) on the config. */
void http_register(h2o_globalconf_t *config);
/* Answers every create waiting on sws: err NULL = the workspace. */
void http_answer_waiters(sv_ws_t *sws, const char *err);

#endif
