/*
 * Unit tests for supervisor/replay.c: what a reconnecting stream is sent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "supervisor/replay.h"

/* Every held event after `after`, in chunks of at most ~max bytes, each
 * event followed by "|"; returns whether a gap is reported. */
static int since(replay_t *r, uint64_t after, uint64_t last, buf_t *out)
{
	int gap = replay_gap(r, after, last);
	buf_t chunk = BUF_INIT;
	uint64_t id = after;
	while (replay_copy(r, id, 4, &chunk, &id) > 0) {
		/* events here are "eN": split them back for the check */
		for (size_t i = 0; i < buf_size(&chunk); i++) {
			if (i > 0 && buf_data(&chunk)[i] == 'e')
				buf_append(out, "|", 1);
			buf_append(out, buf_data(&chunk) + i, 1);
		}
		buf_append(out, "|", 1);
		buf_reset(&chunk);
	}
	buf_free(&chunk);
	return gap;
}

static void add(replay_t *r, uint64_t id)
{
	char ev[32];
	int n = snprintf(ev, sizeof(ev), "e%llu", (unsigned long long)id);
	replay_add(r, id, ev, (size_t)n);
}

static void test_resume_sends_exactly_the_events_after_the_last_seen(void **state)
{
	replay_t r = {0};
	buf_t out = BUF_INIT;
	(void)state;
	for (uint64_t i = 1; i <= 5; i++)
		add(&r, i);
	assert_int_equal(since(&r, 2, 5, &out), 0);
	buf_append(&out, "", 1);
	assert_string_equal(buf_data(&out), "e3|e4|e5|");
	buf_free(&out);
	replay_free(&r);
}

static void test_up_to_date_client_gets_nothing_and_no_gap(void **state)
{
	replay_t r = {0};
	buf_t out = BUF_INIT;
	(void)state;
	for (uint64_t i = 1; i <= 3; i++)
		add(&r, i);
	assert_int_equal(since(&r, 3, 3, &out), 0);
	assert_int_equal(since(&r, 9, 3, &out), 0);
	assert_int_equal(buf_size(&out), 0);
	replay_free(&r);
}

static void test_count_limit_drops_the_oldest_and_reports_the_gap(void **state)
{
	replay_t r = {.max_count = 3};
	buf_t out = BUF_INIT;
	(void)state;
	for (uint64_t i = 1; i <= 10; i++)
		add(&r, i);
	assert_int_equal(r.count, 3);
	assert_int_equal(replay_oldest(&r), 8);
	/* Saw 7: 8..10 are all held, no gap. */
	assert_int_equal(since(&r, 7, 10, &out), 0);
	buf_reset(&out);
	/* Saw 5: 6 and 7 are gone. */
	assert_int_equal(since(&r, 5, 10, &out), 1);
	buf_append(&out, "", 1);
	assert_string_equal(buf_data(&out), "e8|e9|e10|");
	buf_free(&out);
	replay_free(&r);
}

static void test_byte_limit_keeps_the_newest_even_when_it_alone_is_larger(void **state)
{
	replay_t r = {.max_bytes = 8};
	char big[64];
	(void)state;
	memset(big, 'x', sizeof(big));
	add(&r, 1);
	replay_add(&r, 2, big, sizeof(big));
	assert_int_equal(r.count, 1);
	assert_int_equal(replay_oldest(&r), 2);
	replay_free(&r);
}

static void test_empty_buffer_with_history_is_a_gap(void **state)
{
	replay_t r = {0};
	buf_t out = BUF_INIT;
	(void)state;
	assert_int_equal(since(&r, 0, 0, &out), 0);
	assert_int_equal(since(&r, 1, 4, &out), 1);
	replay_free(&r);
}

static void test_copy_stops_at_whole_events_past_the_chunk_size(void **state)
{
	replay_t r = {0};
	buf_t out = BUF_INIT;
	uint64_t last = 0;
	(void)state;
	for (uint64_t i = 1; i <= 5; i++)
		add(&r, i);
	/* 3 bytes asked: one whole event ("e1", 2 bytes) is not enough. */
	assert_int_equal(replay_copy(&r, 0, 3, &out, &last), 2);
	assert_int_equal(last, 2);
	assert_int_equal(replay_copy(&r, last, 1000, &out, &last), 3);
	assert_int_equal(last, 5);
	buf_append(&out, "", 1);
	assert_string_equal(buf_data(&out), "e1e2e3e4e5");
	assert_int_equal(replay_copy(&r, 5, 1000, &out, &last), 0);
	buf_free(&out);
	replay_free(&r);
}

static void test_many_events_stay_in_order_across_compaction(void **state)
{
	replay_t r = {.max_count = 100};
	buf_t out = BUF_INIT;
	char want[64];
	(void)state;
	for (uint64_t i = 1; i <= 100000; i++)
		add(&r, i);
	assert_int_equal(since(&r, 99997, 100000, &out), 0);
	buf_append(&out, "", 1);
	snprintf(want, sizeof(want), "e99998|e99999|e100000|");
	assert_string_equal(buf_data(&out), want);
	buf_free(&out);
	replay_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_resume_sends_exactly_the_events_after_the_last_seen),
	    cmocka_unit_test(test_up_to_date_client_gets_nothing_and_no_gap),
	    cmocka_unit_test(test_count_limit_drops_the_oldest_and_reports_the_gap),
	    cmocka_unit_test(test_byte_limit_keeps_the_newest_even_when_it_alone_is_larger),
	    cmocka_unit_test(test_empty_buffer_with_history_is_a_gap),
	    cmocka_unit_test(test_copy_stops_at_whole_events_past_the_chunk_size),
	    cmocka_unit_test(test_many_events_stay_in_order_across_compaction),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
