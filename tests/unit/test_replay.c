/*
 * Unit tests for supervisor/replay.c, a workspace's one log of events:
 * what a reconnecting stream is sent (resume retention), and the cursors
 * live streams read through (spans of the log itself, blocks kept while a
 * cursor needs them and freed once none does).
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

/* Every span from c on (moving c), each event "eN" followed by "|". */
static void drain(replay_cursor_t *c, size_t max, buf_t *out)
{
	replay_span_t spans[4];
	replay_cursor_t end;
	size_t n;
	int steps = 0;
	while ((n = replay_cursor_read(c, UINT64_MAX, max, spans, 4, &end)) > 0) {
		assert_true(++steps < 1000000); /* a cursor that never reaches the end fails */
		for (size_t k = 0; k < n; k++)
			for (size_t i = 0; i < spans[k].len; i++) {
				if (buf_size(out) > 0 && spans[k].base[i] == 'e')
					buf_append(out, "|", 1);
				buf_append(out, spans[k].base + i, 1);
			}
		replay_cursor_move(c, &end);
	}
	if (buf_size(out) > 0)
		buf_append(out, "|", 1);
	buf_append(out, "", 1);
	out->len--; /* NUL-terminated, not counted */
}

/* The events a client that saw `after` is sent; returns whether a gap is
 * reported (then from the oldest held, as stream.c does). */
static int since(replay_t *r, uint64_t after, buf_t *out)
{
	replay_cursor_t c;
	int gap = replay_gap(r, after, r->last);
	if (gap)
		after = replay_oldest(r) - 1;
	assert_int_equal(replay_cursor_after(r, after, &c), 0);
	drain(&c, 4, out);
	replay_cursor_release(&c);
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
	assert_int_equal(since(&r, 2, &out), 0);
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
	assert_int_equal(since(&r, 3, &out), 0);
	assert_int_equal(since(&r, 9, &out), 0);
	assert_int_equal(buf_size(&out), 0);
	buf_free(&out);
	replay_free(&r);
}

static void test_count_limit_drops_the_oldest_and_reports_the_gap(void **state)
{
	replay_t r = {.max_count = 3};
	buf_t out = BUF_INIT;
	replay_cursor_t c;
	(void)state;
	for (uint64_t i = 1; i <= 10; i++)
		add(&r, i);
	assert_int_equal(r.count, 3);
	assert_int_equal(replay_oldest(&r), 8);
	/* Saw 7: 8..10 are all held, no gap. */
	assert_int_equal(since(&r, 7, &out), 0);
	assert_string_equal(buf_data(&out), "e8|e9|e10|");
	buf_reset(&out);
	/* Saw 5: 6 and 7 are gone; a cursor cannot be placed there. */
	assert_int_equal(replay_cursor_after(&r, 5, &c), -1);
	assert_int_equal(since(&r, 5, &out), 1);
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
	(void)state;
	assert_int_equal(replay_gap(&r, 0, 0), 0);
	assert_int_equal(replay_gap(&r, 1, 4), 1);
	replay_free(&r);
}

static void test_a_read_is_whole_events_and_bounded(void **state)
{
	replay_t r = {0};
	replay_cursor_t c, end;
	replay_span_t sp[4];
	(void)state;
	for (uint64_t i = 1; i <= 5; i++)
		add(&r, i);
	assert_int_equal(replay_cursor_after(&r, 0, &c), 0);
	/* One block: one span of every event, whatever max says. */
	assert_int_equal(replay_cursor_read(&c, UINT64_MAX, 3, sp, 4, &end), 1);
	assert_int_equal(sp[0].len, 10);
	assert_memory_equal(sp[0].base, "e1e2e3e4e5", 10);
	assert_int_equal(replay_cursor_id(&end), 5);
	/* A stop position (between events) is not read past. */
	assert_int_equal(replay_cursor_read(&c, c.pos + 4, 1000, sp, 4, &end), 1);
	assert_int_equal(sp[0].len, 4);
	assert_int_equal(replay_cursor_id(&end), 2);
	replay_cursor_move(&c, &end);
	assert_int_equal(replay_cursor_id(&c), 2);
	assert_int_equal(replay_end(&r) - c.pos, 6);
	replay_cursor_release(&c);
	replay_free(&r);
}

static void test_a_live_cursor_reads_what_is_added_after_it(void **state)
{
	replay_t r = {0};
	replay_cursor_t c;
	buf_t out = BUF_INIT;
	(void)state;
	replay_cursor_end(&r, &c); /* before anything was published */
	assert_int_equal(replay_cursor_at_end(&c), 1);
	assert_int_equal(replay_cursor_id(&c), 0);
	add(&r, 1);
	add(&r, 2);
	assert_int_equal(replay_cursor_at_end(&c), 0);
	drain(&c, 1000, &out);
	assert_string_equal(buf_data(&out), "e1|e2|");
	assert_int_equal(replay_cursor_at_end(&c), 1);
	assert_int_equal(replay_cursor_id(&c), 2);
	replay_cursor_release(&c);
	buf_free(&out);
	replay_free(&r);
}

static void test_many_events_stay_in_order_across_blocks(void **state)
{
	replay_t r = {.max_count = 100};
	replay_cursor_t live;
	buf_t out = BUF_INIT;
	char want[64];
	(void)state;
	replay_cursor_end(&r, &live);
	for (uint64_t i = 1; i <= 100000; i++) {
		add(&r, i);
		if (i % 1000 == 0) { /* a reader keeping up sees every event, in order */
			buf_reset(&out);
			drain(&live, 64 << 10, &out);
			assert_int_equal(replay_cursor_id(&live), i);
			snprintf(want, sizeof(want), "e%llu|", (unsigned long long)i);
			assert_true(strstr(buf_data(&out), want) != NULL);
		}
	}
	buf_reset(&out);
	assert_int_equal(since(&r, 99997, &out), 0);
	snprintf(want, sizeof(want), "e99998|e99999|e100000|");
	assert_string_equal(buf_data(&out), want);
	replay_cursor_release(&live);
	buf_free(&out);
	replay_free(&r);
}

/* A cursor holds what is ahead of it, past the resume retention and past
 * the log itself: a stream finishing after its workspace went reads on. */
static void test_a_cursor_keeps_its_events_after_the_log_dropped_them(void **state)
{
	replay_t r = {.max_count = 2};
	replay_cursor_t slow;
	buf_t out = BUF_INIT;
	(void)state;
	add(&r, 1);
	replay_cursor_end(&r, &slow);
	for (uint64_t i = 2; i <= 3000; i++)
		add(&r, i); /* several blocks; the log keeps 2999, 3000 */
	assert_int_equal(replay_oldest(&r), 2999);
	assert_int_equal(replay_cursor_id(&slow), 1);
	replay_free(&r);
	drain(&slow, 1 << 20, &out);
	assert_int_equal(replay_cursor_id(&slow), 3000);
	assert_memory_equal(buf_data(&out), "e2|e3|", 6);
	assert_true(strstr(buf_data(&out), "|e1500|e1501|") != NULL);
	replay_cursor_release(&slow); /* the last reference: ASan checks the rest went */
	buf_free(&out);
}

static void test_an_event_larger_than_a_block_goes_whole(void **state)
{
	static char big[3 * REPLAY_BLOCK_MAX];
	replay_t r = {0};
	replay_cursor_t c, end;
	replay_span_t sp[4];
	(void)state;
	memset(big, 'x', sizeof(big));
	replay_cursor_end(&r, &c);
	add(&r, 1);
	replay_add(&r, 2, big, sizeof(big));
	add(&r, 3);
	assert_int_equal(replay_cursor_read(&c, UINT64_MAX, 16, sp, 4, &end), 1);
	assert_int_equal(sp[0].len, 2); /* "e1": the next span would pass 16 bytes */
	replay_cursor_move(&c, &end);
	assert_int_equal(replay_cursor_read(&c, UINT64_MAX, 16, sp, 4, &end), 1);
	assert_int_equal(sp[0].len, sizeof(big));
	replay_cursor_move(&c, &end);
	assert_int_equal(replay_cursor_id(&c), 2);
	replay_cursor_release(&c);
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
	    cmocka_unit_test(test_a_read_is_whole_events_and_bounded),
	    cmocka_unit_test(test_a_live_cursor_reads_what_is_added_after_it),
	    cmocka_unit_test(test_many_events_stay_in_order_across_blocks),
	    cmocka_unit_test(test_a_cursor_keeps_its_events_after_the_log_dropped_them),
	    cmocka_unit_test(test_an_event_larger_than_a_block_goes_whole),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
