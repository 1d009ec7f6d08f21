/*
 * route: the v1 API's request targets, parsed without h2o so they can be
 * unit-tested and fuzzed: which route a path names, the {id} it carries,
 * query parameters, and the Last-Event-ID value. Pure functions.
 */
#ifndef CRUSH_ROUTE_H
#define CRUSH_ROUTE_H

#include <stddef.h>
#include <stdint.h>

typedef enum route_id {
	ROUTE_NONE,	       /* unknown path: 404 */
	ROUTE_HEALTH,	       /* /v1/health */
	ROUTE_VERSION,	       /* /v1/version */
	ROUTE_WORKSPACES,      /* /v1/workspaces */
	ROUTE_WORKSPACE,       /* /v1/workspaces/{id} */
	ROUTE_EVENTS,	       /* /v1/workspaces/{id}/events */
	ROUTE_CONTROL,	       /* /v1/control */
	ROUTE_CLIENT,	       /* /v1/clients/{id} */
	ROUTE_CURRENT_SESSION, /* /v1/workspaces/{id}/current-session */
	ROUTE_FORWARD,	       /* /v1/workspaces/{id}/<anything else>: the worker's */
	ROUTE_METRICS,	       /* /v1/metrics */
} route_id_t;

enum { ROUTE_GET = 1, ROUTE_POST = 2, ROUTE_DELETE = 4, ROUTE_PUT = 8, ROUTE_OTHER = 16 };
#define ROUTE_ANY (ROUTE_GET | ROUTE_POST | ROUTE_DELETE | ROUTE_PUT | ROUTE_OTHER)

#define ROUTE_ID_MAX 127 /* longest {id} copied out; longer ones are ROUTE_NONE */

typedef struct route {
	route_id_t id;
	unsigned methods;	      /* ROUTE_* bits the route answers */
	const char *allow;	      /* the same, as an Allow header value */
	char param[ROUTE_ID_MAX + 1]; /* {id}, as sent (not validated) */
	size_t rest;		      /* ROUTE_FORWARD: offset of the path below the workspace */
} route_t;

/* The ROUTE_* bit of an HTTP method: ROUTE_OTHER for any other token. */
unsigned route_method(const char *m, size_t len);

/* Matches a normalised path (no query). Always fills r; r->id is
 * ROUTE_NONE when nothing matches. */
void route_match(const char *path, size_t len, route_t *r);

/*
 * Copies the segment after `prefix` in p[0..len) (up to the next '/' or the
 * end) into id, NUL-terminated, and returns a pointer to what follows it.
 * NULL when p does not start with prefix, or the segment is empty, holds a
 * NUL byte or does not fit in idlen - 1 bytes.
 */
const char *route_segment(const char *p, size_t len, const char *prefix, char *id, size_t idlen);

/*
 * The value of `name` in query q[0..len) (the part after '?'), the first
 * `name=` pair, percent-decoded ('+' is a space) into out, NUL-terminated
 * and cut to outlen - 1 bytes. Returns the decoded length, or -1 when
 * absent.
 */
int route_query_param(const char *q, size_t len, const char *name, char *out, size_t outlen);

/* An event id as SSE and Last-Event-ID carry it: decimal digits only, no
 * sign or space, fits in 64 bits. 0, or -1 for anything else. */
int route_event_id(const char *s, size_t len, uint64_t *out);

#endif
