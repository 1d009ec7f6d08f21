/*
 * Unit tests for supervisor/sse.c, one event stream's send state: one
 * batch in flight at a time, the pending limit, ending with and without
 * what is queued, and resuming from the replay log in chunks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "supervisor/sse.h"

static sse_step_t next(sse_t *s, const replay_t *log, uint64_t last, char *out, size_t outlen)
{
	const char *data = NULL;
	size_t len = 0;
	sse_step_t st = sse_next(s, log, last, &data, &len);

	if (out != NULL) {
		assert_true(st != SSE_SEND || len < outlen);
		snprintf(out, outlen, "%.*s", st == SSE_SEND ? (int)len : 0, st == SSE_SEND ? data : "");
	}
	return st;
}

static void test_one_batch_in_flight_the_rest_waits(void **state)
{
	sse_t s = {0};
	char out[64];

	(void)state;
	assert_int_equal(next(&s, NULL, 0, out, sizeof(out)), SSE_WAIT);
	sse_push(&s, "a", 1);
	assert_int_equal(next(&s, NULL, 0, out, sizeof(out)), SSE_SEND);
	assert_string_equal(out, "a");
	sse_push(&s, "b", 1);
	sse_push(&s, "c", 1);
	assert_int_equal(next(&s, NULL, 0, out, sizeof(out)), SSE_WAIT); /* a still in flight */
	sse_sent(&s);
	assert_int_equal(next(&s, NULL, 0, out, sizeof(out)), SSE_SEND);
	assert_string_equal(out, "bc"); /* what waited goes as one batch, in order */
	sse_sent(&s);
	assert_int_equal(next(&s, NULL, 0, out, sizeof(out)), SSE_WAIT);
	sse_free(&s);
}

static void test_over_the_pending_limit_is_a_slow_reader(void **state)
{
	static char big[SSE_MAX_PENDING];
	sse_t s = {0};

	(void)state;
	assert_int_equal(sse_push(&s, big, sizeof(big)), 0);
	assert_int_equal(sse_push(&s, "x", 1), -1);
	sse_free(&s);
}

static void test_end_sends_what_is_queued_then_finishes(void **state)
{
	sse_t s = {0};
	char out[64];

	(void)state;
	sse_push(&s, "a", 1);
	sse_end(&s, 0);
	assert_int_equal(sse_push(&s, "late", 4), 0); /* dropped: ending */
	assert_int_equal(next(&s, NULL, 0, out, sizeof(out)), SSE_SEND);
	assert_string_equal(out, "a");
	assert_int_equal(next(&s, NULL, 0, out, sizeof(out)), SSE_WAIT);
	sse_sent(&s);
	assert_int_equal(next(&s, NULL, 0, out, sizeof(out)), SSE_FINISH);
	assert_int_equal(next(&s, NULL, 0, out, sizeof(out)), SSE_WAIT); /* finished once */
	sse_free(&s);
}

static void test_end_dropping_pending_finishes_after_the_batch_in_flight(void **state)
{
	sse_t s = {0};
	char out[64];

	(void)state;
	sse_push(&s, "a", 1);
	assert_int_equal(next(&s, NULL, 0, out, sizeof(out)), SSE_SEND);
	sse_push(&s, "b", 1);
	sse_end(&s, 1);
	sse_sent(&s);
	assert_int_equal(next(&s, NULL, 0, out, sizeof(out)), SSE_FINISH);
	sse_free(&s);
}

static void test_a_stopped_transport_gets_nothing_more(void **state)
{
	sse_t s = {0};

	(void)state;
	sse_push(&s, "a", 1);
	sse_stop(&s);
	assert_int_equal(next(&s, NULL, 0, NULL, 0), SSE_WAIT);
	sse_end(&s, 1);
	assert_int_equal(next(&s, NULL, 0, NULL, 0), SSE_WAIT);
	sse_free(&s);
}

static void add(replay_t *r, uint64_t id, size_t size)
{
	char ev[256];

	memset(ev, 'x', sizeof(ev));
	snprintf(ev, sizeof(ev), "id: %llu\n", (unsigned long long)id);
	ev[strlen(ev)] = 'x';
	replay_add(r, id, ev, size);
}

static void test_resume_replays_in_chunks_then_takes_live_events(void **state)
{
	replay_t log = {0};
	sse_t s = {0};
	const char *data;
	size_t len, total = 0;
	int sends = 0;

	(void)state;
	for (uint64_t id = 1; id <= 2000; id++)
		add(&log, id, 100); /* 200 KB: more than one chunk */
	sse_resume(&s, 10, 2000);
	assert_int_equal(sse_push_event(&s, "live", 4), 0);
	assert_int_equal(buf_size(&s.pending), 0); /* replaying: the log has it */
	while (sse_next(&s, &log, 2000, &data, &len) == SSE_SEND) {
		assert_true(len <= SSE_REPLAY_CHUNK + 100);
		if (sends == 0)
			assert_memory_equal(data, "id: 11\n", 7);
		total += len;
		sends++;
		sse_sent(&s);
	}
	assert_true(sends > 1);
	assert_int_equal(total, 1990 * 100);
	assert_int_equal(s.replaying, 0);
	sse_push_event(&s, "live", 4);
	assert_int_equal(sse_next(&s, &log, 2000, &data, &len), SSE_SEND);
	assert_int_equal(len, 4);
	sse_free(&s);
	replay_free(&log);
}

static void test_a_replay_overtaken_by_the_log_is_behind(void **state)
{
	replay_t log = {.max_count = 10};
	sse_t s = {0};
	const char *data;
	size_t len;

	(void)state;
	for (uint64_t id = 1; id <= 10; id++)
		add(&log, id, 50);
	sse_resume(&s, 0, 10);
	assert_int_equal(sse_next(&s, &log, 10, &data, &len), SSE_SEND); /* all ten */
	for (uint64_t id = 11; id <= 30; id++)
		add(&log, id, 50); /* the log moves on while that batch is out */
	sse_sent(&s);
	/* Caught up to 10 before the new ones were published: nothing lost. */
	assert_int_equal(s.replaying, 0);
	sse_free(&s);

	sse_t t = {0};
	sse_resume(&t, 5, 30); /* needs 6.., the log holds 21..30 */
	assert_int_equal(sse_next(&t, &log, 30, &data, &len), SSE_BEHIND);
	sse_free(&t);
	replay_free(&log);
}

static void test_a_replay_without_a_log_stops(void **state)
{
	sse_t s = {0};

	(void)state;
	sse_resume(&s, 1, 5);
	assert_int_equal(next(&s, NULL, 5, NULL, 0), SSE_WAIT);
	assert_int_equal(s.replaying, 0);
	sse_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_batch_in_flight_the_rest_waits),
	    cmocka_unit_test(test_over_the_pending_limit_is_a_slow_reader),
	    cmocka_unit_test(test_end_sends_what_is_queued_then_finishes),
	    cmocka_unit_test(test_end_dropping_pending_finishes_after_the_batch_in_flight),
	    cmocka_unit_test(test_a_stopped_transport_gets_nothing_more),
	    cmocka_unit_test(test_resume_replays_in_chunks_then_takes_live_events),
	    cmocka_unit_test(test_a_replay_overtaken_by_the_log_is_behind),
	    cmocka_unit_test(test_a_replay_without_a_log_stops),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
