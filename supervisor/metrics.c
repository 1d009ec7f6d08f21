/*
 * metrics: counters and their Prometheus text exposition (see metrics.h).
 * Names follow Prometheus conventions: crush_ prefix, _total on counters,
 * base units (seconds).
 */
#include "supervisor/metrics.h"

#include <string.h>
#include <sys/time.h>

const double metrics_buckets[METRICS_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
						 0.1,	0.25,	0.5,   1,    2.5,   10};

static const char *const route_names[METRICS_ROUTES] = {
    [ROUTE_NONE] = "none",
    [ROUTE_HEALTH] = "health",
    [ROUTE_VERSION] = "version",
    [ROUTE_WORKSPACES] = "workspaces",
    [ROUTE_WORKSPACE] = "workspace",
    [ROUTE_EVENTS] = "events",
    [ROUTE_CONTROL] = "control",
    [ROUTE_CLIENT] = "client",
    [ROUTE_CURRENT_SESSION] = "current_session",
    [ROUTE_FORWARD] = "forward",
    [ROUTE_METRICS] = "metrics",
};

const char *metrics_route_name(unsigned route)
{
	return route < METRICS_ROUTES ? route_names[route] : "none";
}

void metrics_request(metrics_t *m, unsigned route, int status, double seconds)
{
	if (route >= METRICS_ROUTES)
		route = ROUTE_NONE;
	if (status < METRICS_STATUS_MIN || status >= METRICS_STATUS_MIN + METRICS_STATUS_N)
		status = 499; /* never answered: the client went away first */
	m->requests[route][status - METRICS_STATUS_MIN]++;
	if (route == ROUTE_EVENTS)
		return;
	if (seconds < 0)
		seconds = 0;
	for (int i = 0; i < METRICS_BUCKETS; i++)
		if (seconds <= metrics_buckets[i])
			m->lat_bucket[route][i]++;
	m->lat_sum[route] += seconds;
	m->lat_count[route]++;
}

static void help(buf_t *o, const char *name, const char *type, const char *text)
{
	buf_appendf(o, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

static void one(buf_t *o, const char *name, const char *type, const char *text, uint64_t v)
{
	help(o, name, type, text);
	buf_appendf(o, "%s %llu\n", name, (unsigned long long)v);
}

void metrics_render(const metrics_t *m, const metrics_gauges_t *g, const limits_t *l, buf_t *o)
{
	help(o, "crush_workspaces", "gauge", "Workspaces by state.");
	buf_appendf(o,
		    "crush_workspaces{state=\"starting\"} %llu\ncrush_workspaces{state=\"ready\"} %llu\n"
		    "crush_workspaces{state=\"restarting\"} %llu\ncrush_workspaces{state=\"closing\"} %llu\n",
		    (unsigned long long)g->ws_starting, (unsigned long long)g->ws_ready,
		    (unsigned long long)g->ws_restarting, (unsigned long long)g->ws_closing);
	one(o, "crush_workers_started_total", "counter", "Worker processes spawned.", m->workers_started);
	one(o, "crush_workers_restarted_total", "counter", "Crashed workers respawned.",
	    m->workers_restarted);
	one(o, "crush_workers_failed_total", "counter",
	    "Workers that failed to spawn or exited without being asked to.", m->workers_failed);
	one(o, "crush_streams_open", "gauge", "Open event streams.", g->streams);
	one(o, "crush_events_published_total", "counter", "Events published to workspace feeds.",
	    m->events_published);
	one(o, "crush_stream_slow_reader_cuts_total", "counter",
	    "Event streams ended because their reader could not keep up.", l->refused[LIMIT_SLOW_READERS]);
	one(o, "crush_stream_gaps_total", "counter",
	    "Resumed streams told that events after their Last-Event-ID were lost.", m->gaps);

	help(o, "crush_limit_refusals_total", "counter", "Refusals by limit (SPEC 7, Limits).");
	for (int i = 0; i < LIMIT_N; i++)
		buf_appendf(o, "crush_limit_refusals_total{limit=\"%s\"} %llu\n", limit_name((limit_id_t)i),
			    (unsigned long long)l->refused[i]);

	help(o, "crush_http_requests_total", "counter", "Finished HTTP requests by route class and status.");
	for (int r = 0; r < METRICS_ROUTES; r++)
		for (int s = 0; s < METRICS_STATUS_N; s++)
			if (m->requests[r][s] != 0)
				buf_appendf(o, "crush_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
					    route_names[r], s + METRICS_STATUS_MIN,
					    (unsigned long long)m->requests[r][s]);

	help(o, "crush_http_request_duration_seconds", "histogram",
	     "Time from request start to the end of its answer, by route class (event streams excluded).");
	for (int r = 0; r < METRICS_ROUTES; r++) {
		if (m->lat_count[r] == 0)
			continue;
		for (int i = 0; i < METRICS_BUCKETS; i++)
			buf_appendf(
			    o, "crush_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
			    route_names[r], metrics_buckets[i], (unsigned long long)m->lat_bucket[r][i]);
		buf_appendf(o,
			    "crush_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
			    "crush_http_request_duration_seconds_sum{route=\"%s\"} %.9g\n"
			    "crush_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
			    route_names[r], (unsigned long long)m->lat_count[r], route_names[r],
			    m->lat_sum[r], route_names[r], (unsigned long long)m->lat_count[r]);
	}
}

/* --- the h2o logger: called as each request is disposed */

typedef struct metrics_logger {
	h2o_logger_t super;
	metrics_t *m;
} metrics_logger_t;

static void log_access(h2o_logger_t *self, h2o_req_t *req)
{
	metrics_logger_t *ml = (metrics_logger_t *)self;
	route_t r;
	struct timeval now;
	route_match(req->path_normalized.base, req->path_normalized.len, &r);
	gettimeofday(&now, NULL);
	double secs = (double)(now.tv_sec - req->timestamps.request_begin_at.tv_sec) +
		      (double)(now.tv_usec - req->timestamps.request_begin_at.tv_usec) / 1e6;
	metrics_request(ml->m, r.id, req->res.status, secs);
}

void metrics_register_logger(metrics_t *m, h2o_pathconf_t *path)
{
	metrics_logger_t *ml = (metrics_logger_t *)h2o_create_logger(path, sizeof(*ml));
	ml->super.log_access = log_access;
	ml->m = m;
}
