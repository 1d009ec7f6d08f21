/*
 * Unit tests for supervisor/sse.c, one event stream's send state: one
 * batch in flight at a time, events read from the workspace's one log
 * (never copied per stream), the slow-reader rules, ending with and
 * without the backlog, and resuming from the log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "supervisor/sse.h"

/* The next step; a batch's bytes, concatenated, into out. */
static sse_step_t next(sse_t *s, char *out, size_t outlen)
{
	replay_span_t sp[SSE_BATCH_SPANS];
	size_t n = 0, len = 0;
	sse_step_t st = sse_next(s, sp, &n);
	if (out != NULL) {
		out[0] = '\0';
		for (size_t i = 0; st == SSE_SEND && i < n; i++) {
			assert_true(len + sp[i].len < outlen);
			memcpy(out + len, sp[i].base, sp[i].len);
			len += sp[i].len;
			out[len] = '\0';
		}
	}
	return st;
}

static void add(replay_t *r, uint64_t id, size_t size)
{
	char ev[256];
	memset(ev, 'x', sizeof(ev));
	snprintf(ev, sizeof(ev), "id: %llu\n", (unsigned long long)id);
	ev[strlen(ev)] = 'x';
	replay_add(r, id, ev, size);
}

static void publish(replay_t *r, const char *ev)
{
	replay_add(r, r->last + 1, ev, strlen(ev));
}

static void test_one_batch_in_flight_the_rest_waits(void **state)
{
	replay_t log = {0};
	sse_t s = {0};
	char out[64];
	(void)state;
	sse_attach(&s, &log);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_WAIT);
	publish(&log, "a");
	assert_int_equal(next(&s, out, sizeof(out)), SSE_SEND);
	assert_string_equal(out, "a");
	publish(&log, "b");
	publish(&log, "c");
	assert_int_equal(next(&s, out, sizeof(out)), SSE_WAIT); /* a still in flight */
	sse_sent(&s);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_SEND);
	assert_string_equal(out, "bc"); /* what waited goes as one batch, in order */
	sse_sent(&s);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_WAIT);
	assert_int_equal(sse_idle(&s), 1);
	sse_free(&s);
	replay_free(&log);
}

/* The point: a burst costs one copy whatever the number of
 * streams. Two streams are handed the very same bytes of the log. */
static void test_streams_are_handed_the_log_itself_not_copies(void **state)
{
	replay_t log = {0};
	sse_t a = {0}, b = {0};
	replay_span_t sa[SSE_BATCH_SPANS], sb[SSE_BATCH_SPANS];
	size_t na, nb;
	(void)state;
	sse_attach(&a, &log);
	sse_attach(&b, &log);
	for (uint64_t id = 1; id <= 100; id++)
		add(&log, id, 60);
	assert_int_equal(sse_next(&a, sa, &na), SSE_SEND);
	assert_int_equal(sse_next(&b, sb, &nb), SSE_SEND);
	assert_int_equal(na, nb);
	assert_ptr_equal(sa[0].base, sb[0].base);
	assert_int_equal(sse_backlog(&a, &log), 100 * 60); /* in flight counts until sent */
	sse_sent(&a);
	assert_int_equal(sse_backlog(&a, &log), 0);
	sse_free(&a);
	sse_free(&b);
	replay_free(&log);
}

static void test_own_lines_go_before_events(void **state)
{
	replay_t log = {0};
	sse_t s = {0};
	char out[64];
	(void)state;
	sse_attach(&s, &log);
	publish(&log, "e1");
	sse_push(&s, ": connected\n", 12);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_SEND);
	assert_string_equal(out, ": connected\n");
	sse_sent(&s);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_SEND);
	assert_string_equal(out, "e1");
	sse_sent(&s);
	assert_int_equal(s.own_inflight.cap, 0); /* an idle stream holds no buffer */
	sse_free(&s);
	replay_free(&log);
}

static void test_a_live_stream_too_far_behind_is_a_slow_reader(void **state)
{
	static char ev[512];
	replay_t log = {0};
	sse_t s = {0};
	replay_span_t sp[SSE_BATCH_SPANS];
	size_t n;
	uint64_t id = 0;
	(void)state;
	memset(ev, 'x', sizeof(ev));
	sse_attach(&s, &log);
	replay_add(&log, ++id, ev, sizeof(ev));
	assert_int_equal(sse_next(&s, sp, &n), SSE_SEND); /* and never sent */
	while (replay_end(&log) - sizeof(ev) <= SSE_MAX_PENDING) {
		assert_int_equal(sse_behind(&s, &log), 0);
		replay_add(&log, ++id, ev, sizeof(ev));
	}
	/* Past the limit (not counting what is in flight), before the log's
	 * resume retention drops any of it: the client loses nothing. */
	assert_int_equal(sse_behind(&s, &log), 1);
	assert_int_equal(replay_gap(&log, 1, id), 0);
	sse_free(&s);
	replay_free(&log);
}

static void test_end_sends_the_backlog_then_finishes(void **state)
{
	replay_t log = {0};
	sse_t s = {0};
	char out[64];
	(void)state;
	sse_attach(&s, &log);
	publish(&log, "a");
	sse_end(&s, 0, &log);
	publish(&log, "late"); /* after the end: not for this stream */
	sse_push(&s, "x", 1);  /* dropped: ending */
	assert_int_equal(next(&s, out, sizeof(out)), SSE_SEND);
	assert_string_equal(out, "a");
	assert_int_equal(next(&s, out, sizeof(out)), SSE_WAIT);
	sse_sent(&s);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_FINISH);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_WAIT); /* finished once */
	sse_sent(&s);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_WAIT);
	sse_free(&s);
	replay_free(&log);
}

/* The last line (why the server ends the stream) goes after every event
 * still owed, right before the final part. */
static void test_the_last_line_goes_after_the_backlog_before_the_end(void **state)
{
	replay_t log = {0};
	sse_t s = {0};
	char out[64];
	(void)state;
	sse_attach(&s, &log);
	publish(&log, "a");
	publish(&log, "b");
	sse_end(&s, 0, &log);
	sse_last(&s, "why", 3);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_SEND);
	assert_string_equal(out, "ab");
	sse_sent(&s);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_SEND);
	assert_string_equal(out, "why");
	sse_sent(&s);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_FINISH);
	sse_free(&s);
	replay_free(&log);
}

static void test_end_dropping_pending_finishes_after_the_batch_in_flight(void **state)
{
	replay_t log = {0};
	sse_t s = {0};
	char out[64];
	(void)state;
	sse_attach(&s, &log);
	publish(&log, "a");
	assert_int_equal(next(&s, out, sizeof(out)), SSE_SEND);
	publish(&log, "b");
	sse_end(&s, 1, NULL);
	sse_sent(&s);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_FINISH);
	sse_free(&s);
	replay_free(&log);
}

/* A workspace closing frees its log while its ended streams still send
 * their backlog: they hold it (ASan would see a use after free). */
static void test_the_backlog_outlives_the_log(void **state)
{
	replay_t log = {.max_count = 2};
	sse_t s = {0};
	char out[64];
	(void)state;
	sse_attach(&s, &log);
	publish(&log, "a");
	assert_int_equal(next(&s, out, sizeof(out)), SSE_SEND);
	publish(&log, "b");
	publish(&log, "c");
	sse_end(&s, 0, &log);
	replay_free(&log);
	assert_int_equal(sse_backlog(&s, NULL), 3);
	sse_sent(&s);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_SEND);
	assert_string_equal(out, "bc");
	sse_sent(&s);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_FINISH);
	sse_free(&s);
}

static void test_a_stopped_transport_gets_nothing_more(void **state)
{
	replay_t log = {0};
	sse_t s = {0};
	(void)state;
	sse_attach(&s, &log);
	publish(&log, "a");
	sse_stop(&s);
	assert_int_equal(next(&s, NULL, 0), SSE_WAIT);
	sse_end(&s, 1, NULL);
	assert_int_equal(next(&s, NULL, 0), SSE_WAIT);
	sse_free(&s);
	replay_free(&log);
}

static void test_resume_replays_in_batches_then_takes_live_events(void **state)
{
	replay_t log = {0};
	sse_t s = {0};
	replay_span_t sp[SSE_BATCH_SPANS];
	size_t n, total = 0;
	int sends = 0;
	(void)state;
	for (uint64_t id = 1; id <= 2000; id++)
		add(&log, id, 200); /* 400 KB: more than one batch */
	assert_int_equal(sse_resume(&s, &log, 10), 0);
	assert_int_equal(s.replaying, 1);
	assert_int_equal(sse_backlog(&s, &log), 0); /* the log's retention, not a backlog */
	while (sse_next(&s, sp, &n) == SSE_SEND) {
		size_t len = 0;
		for (size_t i = 0; i < n; i++)
			len += sp[i].len;
		assert_true(len <= SSE_BATCH_BYTES);
		if (sends == 0)
			assert_memory_equal(sp[0].base, "id: 11\n", 7);
		total += len;
		sends++;
		sse_sent(&s);
	}
	assert_true(sends > 1);
	assert_int_equal(total, 1990 * 200);
	assert_int_equal(s.replaying, 0);
	publish(&log, "live");
	assert_int_equal(sse_next(&s, sp, &n), SSE_SEND);
	assert_int_equal(n, 1);
	assert_int_equal(sp[0].len, 4);
	sse_free(&s);
	replay_free(&log);
}

static void test_a_replay_overtaken_by_the_log_is_behind(void **state)
{
	replay_t log = {.max_count = 10};
	sse_t s = {0}, t = {0};
	char out[2048];
	(void)state;
	for (uint64_t id = 1; id <= 10; id++)
		add(&log, id, 50);
	assert_int_equal(sse_resume(&s, &log, 0), 0);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_SEND); /* all ten */
	for (uint64_t id = 11; id <= 30; id++)
		add(&log, id, 50); /* the log moves on while that batch is out */
	/* Handed the newest event (10), it went live: 11..30 are its backlog,
	 * not a replay the log's retention can overtake. */
	assert_int_equal(s.replaying, 0);
	assert_int_equal(sse_behind(&s, &log), 0);
	sse_sent(&s);
	assert_int_equal(next(&s, out, sizeof(out)), SSE_SEND);
	assert_int_equal(strlen(out), 20 * 50);
	sse_sent(&s);

	/* Needs 6.., the log holds 21..30: it cannot even start. */
	assert_int_equal(sse_resume(&t, &log, 5), -1);
	sse_free(&s);
	sse_free(&t);
	replay_free(&log);
}

static void test_a_replay_that_stops_reading_falls_off_the_tail(void **state)
{
	static char ev[40 << 10];
	replay_t log = {.max_count = 10};
	sse_t s = {0};
	replay_span_t sp[SSE_BATCH_SPANS];
	size_t n;
	(void)state;
	memset(ev, 'x', sizeof(ev));
	for (uint64_t id = 1; id <= 10; id++)
		replay_add(&log, id, ev, sizeof(ev));
	assert_int_equal(sse_resume(&s, &log, 0), 0);
	assert_int_equal(sse_next(&s, sp, &n), SSE_SEND); /* 1..6 (one batch), never sent */
	assert_int_equal(s.replaying, 1);
	for (uint64_t id = 11; id <= 16; id++) {
		replay_add(&log, id, ev, sizeof(ev));
		assert_int_equal(sse_behind(&s, &log), 0); /* the log still holds 7.. */
	}
	replay_add(&log, 17, ev, sizeof(ev)); /* 7 is gone */
	assert_int_equal(sse_behind(&s, &log), 1);
	sse_free(&s);
	replay_free(&log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_batch_in_flight_the_rest_waits),
	    cmocka_unit_test(test_streams_are_handed_the_log_itself_not_copies),
	    cmocka_unit_test(test_own_lines_go_before_events),
	    cmocka_unit_test(test_a_live_stream_too_far_behind_is_a_slow_reader),
	    cmocka_unit_test(test_end_sends_the_backlog_then_finishes),
	    cmocka_unit_test(test_the_last_line_goes_after_the_backlog_before_the_end),
	    cmocka_unit_test(test_end_dropping_pending_finishes_after_the_batch_in_flight),
	    cmocka_unit_test(test_the_backlog_outlives_the_log),
	    cmocka_unit_test(test_a_stopped_transport_gets_nothing_more),
	    cmocka_unit_test(test_resume_replays_in_batches_then_takes_live_events),
	    cmocka_unit_test(test_a_replay_overtaken_by_the_log_is_behind),
	    cmocka_unit_test(test_a_replay_that_stops_reading_falls_off_the_tail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
