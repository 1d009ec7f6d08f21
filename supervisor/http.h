/*
 * http: the v1 API (SPEC §4): routing, request parsing, the one JSON
 * error writer, Workspace objects, and creates that wait for a worker.
 */
#ifndef CRUSH_HTTP_H
#define CRUSH_HTTP_H

#include <h2o.h>

#include "supervisor/server.h"

#define HTTP_MAX_BODY (1024 * 1024)

/* Registers the API handler (and the JSON error filter) on the config. */
void http_register(h2o_globalconf_t *config);
/* Answers every create waiting on sws: err NULL = the workspace. */
void http_answer_waiters(sv_ws_t *sws, const char *err);

#endif
