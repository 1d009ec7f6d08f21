/*
 * metrics: the supervisor's counters in one place, and their Prometheus
 * text exposition (GET /v1/metrics, SPEC §9). The server owns one
 * metrics_t; code paths bump it with one-line hooks. Rendering is pure:
 * gauges that are state elsewhere (workspaces by state, open streams) and
 * the limit refusals are passed in at scrape time, never copied here.
 */
#ifndef CRUSH_METRICS_H
#define CRUSH_METRICS_H

#include <stdint.h>

#include <h2o.h>

#include "common/buf.h"
#include "supervisor/limits.h"
#include "supervisor/route.h"

#define METRICS_ROUTES	   (ROUTE_METRICS + 1) /* every route_id_t */
#define METRICS_STATUS_MIN 100
#define METRICS_STATUS_N   500 /* 100..599 */
#define METRICS_BUCKETS	   12  /* finite latency buckets; +Inf is the count */

typedef struct metrics {
	uint64_t workers_started;   /* spawned */
	uint64_t workers_restarted; /* crashed and respawned */
	uint64_t workers_failed;    /* spawn failed, or exited without being asked */
	uint64_t events_published;  /* events given ids on any feed */
	uint64_t gaps;		    /* resumes told that events were lost */
	uint64_t requests[METRICS_ROUTES][METRICS_STATUS_N];
	/* Latency of finished requests (not event streams: their length is
	 * the client's), per route class: bucket counts, sum, count. */
	uint64_t lat_bucket[METRICS_ROUTES][METRICS_BUCKETS];
	double lat_sum[METRICS_ROUTES];
	uint64_t lat_count[METRICS_ROUTES];
} metrics_t;

/* Gauges read from their owners at scrape time. */
typedef struct metrics_gauges {
	uint64_t ws_starting, ws_ready, ws_restarting, ws_closing;
	uint64_t streams;
} metrics_gauges_t;

/* Upper bounds (seconds) of the finite latency buckets. */
extern const double metrics_buckets[METRICS_BUCKETS];

/* The route-class label of a route id ("health", "events", ...). */
const char *metrics_route_name(unsigned route);
/* Counts one finished request: its route class, status, and latency. */
void metrics_request(metrics_t *m, unsigned route, int status, double seconds);
/* Appends the whole exposition (text format 0.0.4) to out. */
void metrics_render(const metrics_t *m, const metrics_gauges_t *g, const limits_t *l, buf_t *out);
/* Registers an h2o logger on path that counts every request it serves
 * (metrics_request), once the request is over. */
void metrics_register_logger(metrics_t *m, h2o_pathconf_t *path);

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
