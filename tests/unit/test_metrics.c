/*
 * Unit tests for supervisor/metrics.c: requests land in their route class,
 * status and latency buckets, and the exposition names every family.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "supervisor/metrics.h"

static void test_requests_are_counted_by_route_status_and_bucket(void **state)
{
	static metrics_t m;
	(void)state;
	memset(&m, 0, sizeof(m));
	metrics_request(&m, ROUTE_HEALTH, 200, 0.003);
	metrics_request(&m, ROUTE_HEALTH, 200, 20);
	metrics_request(&m, ROUTE_EVENTS, 200, 100);  /* streams: no latency */
	metrics_request(&m, ROUTE_WORKSPACE, 0, 0.1); /* never answered */
	assert_int_equal(m.requests[ROUTE_HEALTH][200 - METRICS_STATUS_MIN], 2);
	assert_int_equal(m.requests[ROUTE_EVENTS][200 - METRICS_STATUS_MIN], 1);
	assert_int_equal(m.requests[ROUTE_WORKSPACE][499 - METRICS_STATUS_MIN], 1);
	assert_int_equal(m.lat_count[ROUTE_HEALTH], 2);
	assert_int_equal(m.lat_count[ROUTE_EVENTS], 0);
	assert_int_equal(m.lat_bucket[ROUTE_HEALTH][0], 0);		      /* 1 ms */
	assert_int_equal(m.lat_bucket[ROUTE_HEALTH][2], 1);		      /* 5 ms */
	assert_int_equal(m.lat_bucket[ROUTE_HEALTH][METRICS_BUCKETS - 1], 1); /* 10 s */
}

static void test_render_names_every_family(void **state)
{
	static metrics_t m;
	limits_t l;
	buf_t b = BUF_INIT;
	metrics_gauges_t g = {.ws_ready = 2, .streams = 3};
	(void)state;
	memset(&m, 0, sizeof(m));
	limits_init(&l);
	l.refused[LIMIT_STREAMS] = 7;
	m.workers_started = 5;
	metrics_request(&m, ROUTE_METRICS, 200, 0.0001);
	metrics_render(&m, &g, &l, &b);
	buf_append(&b, "", 1);
	const char *t = buf_data(&b);
	assert_non_null(strstr(t, "\ncrush_workspaces{state=\"ready\"} 2\n"));
	assert_non_null(strstr(t, "\ncrush_streams_open 3\n"));
	assert_non_null(strstr(t, "\ncrush_workers_started_total 5\n"));
	assert_non_null(strstr(t, "\ncrush_limit_refusals_total{limit=\"streams\"} 7\n"));
	assert_non_null(strstr(t, "\ncrush_http_requests_total{route=\"metrics\",code=\"200\"} 1\n"));
	assert_non_null(
	    strstr(t, "\ncrush_http_request_duration_seconds_bucket{route=\"metrics\",le=\"+Inf\"} 1\n"));
	assert_null(strstr(t, "route=\"health\""));
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_requests_are_counted_by_route_status_and_bucket),
	    cmocka_unit_test(test_render_names_every_family),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
