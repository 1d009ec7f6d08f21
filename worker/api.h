/*
 * api: what a workspace answers to routed requests: upstream Crush's
 * per-workspace routes (charmbracelet/crush internal/server/server.go,
 * the paths below /v1/workspaces/{id}), each implemented here or answered
 * 501 "not implemented by this workspace host" (never 404: upstream
 * clients read 404 as "workspace gone"). Other paths are 404, a known
 * path with another method 405.
 */
#ifndef CRUSH_API_H
#define CRUSH_API_H

#include <ev.h>
#include <jansson.h>

#include "worker/calls.h"

typedef struct api api_t;

/* data_dir: absolute. test_routes: also serve /_test/... (bench, tests). */
api_t *api_new(struct ev_loop *loop, const char *data_dir, int test_routes);
void api_free(api_t *a);
/* The calls_dispatch_cb of the worker's calls. */
void api_dispatch(void *arg, call_t *c, const call_req_t *req);
/* The workspace's config as upstream's client reads it: never NULL, with
 * every object it dereferences. New reference. */
json_t *api_config(const api_t *a);

/* The supervisor's presence request ({"sessions":{"<sid>":n}}): how
 * many attached clients view each session. 0, or -1 when malformed. */
int api_set_presence(api_t *a, const json_t *req);
/* Upstream's attached_clients of a session (0 when none view it). */
int api_attached_clients(const api_t *a, const char *session_id);

/* The upstream route table, for tests and docs: each entry's method,
 * pattern ("{sid}" matches one segment) and whether it is implemented. */
typedef struct api_route {
	const char *verb;
	const char *pattern;
	void (*handler)(api_t *a, call_t *c, const call_req_t *req, const char *const *params);
} api_route_t;
extern const api_route_t api_routes[];
extern const size_t api_nroutes;

#endif
