/*
 * test_proto: the frame codec. Round trips, every way a stream can be cut
 * into reads, and every way a peer can break the protocol.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/proto.h"

/* A 12-byte header with every field chosen by the test. */
static void put_header(unsigned char *h, uint32_t len, uint8_t version, uint8_t type, uint16_t flags,
		       uint32_t id)
{
	h[0] = (unsigned char)(len >> 24);
	h[1] = (unsigned char)(len >> 16);
	h[2] = (unsigned char)(len >> 8);
	h[3] = (unsigned char)len;
	h[4] = version;
	h[5] = type;
	h[6] = (unsigned char)(flags >> 8);
	h[7] = (unsigned char)flags;
	h[8] = (unsigned char)(id >> 24);
	h[9] = (unsigned char)(id >> 16);
	h[10] = (unsigned char)(id >> 8);
	h[11] = (unsigned char)id;
}

static void expect_frame(proto_decoder_t *d, uint8_t type, uint32_t id, const char *payload)
{
	proto_frame_t f;

	assert_int_equal(proto_next(d, &f), 1);
	assert_int_equal(f.type, type);
	assert_int_equal(f.id, id);
	assert_int_equal(f.len, strlen(payload));
	assert_memory_equal(f.payload, payload, f.len);
}

static void test_encode_writes_the_documented_header(void **state)
{
	buf_t b = BUF_INIT;
	const unsigned char want[] = {0,    0,	  0,   2,  PROTO_VERSION, PROTO_RESPONSE, 0, 0, 0x01, 0x02,
				      0x03, 0x04, '{', '}'};

	(void)state;
	assert_int_equal(proto_encode(&b, PROTO_RESPONSE, 0x01020304, "{}", 2), 0);
	assert_int_equal(buf_size(&b), sizeof(want));
	assert_memory_equal(buf_data(&b), want, sizeof(want));
	buf_free(&b);
}

static void test_every_type_round_trips(void **state)
{
	static const struct {
		uint8_t type;
		uint32_t id;
		const char *payload;
	} cases[] = {
	    {PROTO_HELLO, 0, "{\"version\":1,\"pid\":42,\"workspace_id\":\"w\"}"},
	    {PROTO_READY, 0, "{\"pid\":42}"},
	    {PROTO_EVENT, 0, "{\"type\":\"fs\",\"payload\":{\"type\":\"created\",\"path\":\"a\"}}"},
	    {PROTO_REQUEST, 7, "{\"method\":\"ping\"}"},
	    {PROTO_RESPONSE, 0xffffffffu, "{\"result\":\"pong\"}"},
	    {PROTO_REQUEST, 1, "{\"method\":\"setup\",\"env\":[\"K=V\",\"E=\"]}"},
	    {PROTO_RESPONSE, 1, "{\"result\":{\"env\":2}}"},
	    {PROTO_FAIL, 0, "{\"error\":\"permission denied: /w\",\"code\":\"permission_denied\"}"},
	};
	proto_frame_t f;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_t b = BUF_INIT;
		proto_decoder_t d = PROTO_DECODER_INIT;

		assert_int_equal(
		    proto_encode(&b, cases[i].type, cases[i].id, cases[i].payload, strlen(cases[i].payload)),
		    0);
		proto_feed(&d, buf_data(&b), buf_size(&b));
		expect_frame(&d, cases[i].type, cases[i].id, cases[i].payload);
		assert_int_equal(proto_next(&d, &f), 0);
		assert_null(d.err);
		proto_decoder_free(&d);
		buf_free(&b);
	}
}

/* Two frames cut at every byte boundary, fed as two reads; and the same
 * stream fed one byte per read. */
static void test_split_reads_at_every_boundary_decode(void **state)
{
	buf_t b = BUF_INIT;
	proto_frame_t f;

	(void)state;
	proto_encode(&b, PROTO_REQUEST, 1, "{\"method\":\"ping\"}", 17);
	proto_encode(&b, PROTO_EVENT, 0, "{\"n\":2}", 7);
	for (size_t cut = 0; cut <= buf_size(&b); cut++) {
		proto_decoder_t d = PROTO_DECODER_INIT;
		int got = 0;

		proto_feed(&d, buf_data(&b), cut);
		while (proto_next(&d, &f) == 1)
			got++;
		proto_feed(&d, buf_data(&b) + cut, buf_size(&b) - cut);
		while (proto_next(&d, &f) == 1) {
			got++;
			if (got == 2)
				assert_memory_equal(f.payload, "{\"n\":2}", 7);
		}
		assert_int_equal(got, 2);
		assert_null(d.err);
		proto_decoder_free(&d);
	}

	proto_decoder_t d = PROTO_DECODER_INIT;
	int got = 0;

	for (size_t i = 0; i < buf_size(&b); i++) {
		proto_feed(&d, buf_data(&b) + i, 1);
		while (proto_next(&d, &f) == 1)
			got++;
	}
	assert_int_equal(got, 2);
	proto_decoder_free(&d);
	buf_free(&b);
}

static void test_many_frames_in_one_feed_all_decode_in_order(void **state)
{
	buf_t b = BUF_INIT;
	proto_decoder_t d = PROTO_DECODER_INIT;
	proto_frame_t f;
	char payload[32];
	int n;

	(void)state;
	for (int i = 0; i < 1000; i++) {
		n = snprintf(payload, sizeof(payload), "{\"seq\":%d}", i);
		proto_encode(&b, PROTO_EVENT, (uint32_t)i, payload, (size_t)n);
	}
	proto_feed(&d, buf_data(&b), buf_size(&b));
	for (int i = 0; i < 1000; i++) {
		n = snprintf(payload, sizeof(payload), "{\"seq\":%d}", i);
		assert_int_equal(proto_next(&d, &f), 1);
		assert_int_equal(f.id, (uint32_t)i);
		assert_int_equal(f.len, (size_t)n);
		assert_memory_equal(f.payload, payload, (size_t)n);
	}
	assert_int_equal(proto_next(&d, &f), 0);
	proto_decoder_free(&d);
	buf_free(&b);
}

static void test_empty_payload_round_trips(void **state)
{
	buf_t b = BUF_INIT;
	proto_decoder_t d = PROTO_DECODER_INIT;
	proto_frame_t f;

	(void)state;
	assert_int_equal(proto_encode(&b, PROTO_READY, 0, NULL, 0), 0);
	assert_int_equal(buf_size(&b), PROTO_HDR_SIZE);
	proto_feed(&d, buf_data(&b), buf_size(&b));
	assert_int_equal(proto_next(&d, &f), 1);
	assert_int_equal(f.type, PROTO_READY);
	assert_int_equal(f.len, 0);
	assert_int_equal(proto_next(&d, &f), 0);
	proto_decoder_free(&d);
	buf_free(&b);
}

static void test_max_size_payload_round_trips(void **state)
{
	buf_t b = BUF_INIT;
	proto_decoder_t d = PROTO_DECODER_INIT;
	proto_frame_t f;
	char *big = malloc(PROTO_MAX_PAYLOAD);

	(void)state;
	assert_non_null(big);
	memset(big, 'x', PROTO_MAX_PAYLOAD);
	assert_int_equal(proto_encode(&b, PROTO_EVENT, 0, big, PROTO_MAX_PAYLOAD), 0);
	assert_int_equal(buf_size(&b), PROTO_MAX_FRAME);
	proto_feed(&d, buf_data(&b), buf_size(&b));
	assert_int_equal(proto_next(&d, &f), 1);
	assert_int_equal(f.len, PROTO_MAX_PAYLOAD);
	assert_memory_equal(f.payload, big, PROTO_MAX_PAYLOAD);
	proto_decoder_free(&d);
	buf_free(&b);
	free(big);
}

static void test_encode_rejects_oversize_payload_and_appends_nothing(void **state)
{
	buf_t b = BUF_INIT;
	char *big = calloc(1, PROTO_MAX_PAYLOAD + 1);

	(void)state;
	assert_non_null(big);
	assert_int_equal(proto_encode(&b, PROTO_EVENT, 0, big, PROTO_MAX_PAYLOAD + 1), -1);
	assert_int_equal(buf_size(&b), 0);
	free(big);
	buf_free(&b);
}

static void test_encode_rejects_unknown_type(void **state)
{
	buf_t b = BUF_INIT;

	(void)state;
	assert_int_equal(proto_encode(&b, 0, 0, "{}", 2), -1);
	assert_int_equal(proto_encode(&b, PROTO_TYPE_MAX + 1, 0, "{}", 2), -1);
	assert_int_equal(buf_size(&b), 0);
	buf_free(&b);
}

/* Feeds one header (and no payload) and expects a protocol error. */
static void expect_header_rejected(uint32_t len, uint8_t version, uint8_t type, uint16_t flags)
{
	proto_decoder_t d = PROTO_DECODER_INIT;
	proto_frame_t f;
	unsigned char h[PROTO_HDR_SIZE];

	put_header(h, len, version, type, flags, 0);
	proto_feed(&d, h, sizeof(h));
	assert_int_equal(proto_next(&d, &f), -1);
	assert_non_null(d.err);
	proto_decoder_free(&d);
}

static void test_oversize_length_is_rejected_from_the_header_alone(void **state)
{
	(void)state;
	expect_header_rejected(PROTO_MAX_PAYLOAD + 1, PROTO_VERSION, PROTO_EVENT, 0);
	expect_header_rejected(0xffffffffu, PROTO_VERSION, PROTO_EVENT, 0);
}

static void test_bad_version_is_rejected(void **state)
{
	(void)state;
	expect_header_rejected(0, 0, PROTO_EVENT, 0);
	expect_header_rejected(0, PROTO_VERSION + 1, PROTO_EVENT, 0);
}

static void test_ack_is_the_last_known_type(void **state)
{
	/* PROTO_TYPE_MAX moves with the enum: ACK (10) decodes, 11 does not. */
	(void)state;
	assert_int_equal(PROTO_FAIL, 6);
	assert_int_equal(PROTO_ACK, 10);
	assert_int_equal(PROTO_TYPE_MAX, PROTO_ACK);
	expect_header_rejected(0, PROTO_VERSION, 11, 0);
}

/* DATA carries raw body bytes, newlines included; END, CANCEL and ACK
 * carry nothing (a payload on them is a protocol error, both ways). */
static void test_data_is_raw_and_control_frames_are_empty(void **state)
{
	buf_t b = BUF_INIT;
	proto_decoder_t d = PROTO_DECODER_INIT;
	proto_frame_t f;

	(void)state;
	assert_int_equal(proto_encode(&b, PROTO_DATA, 7, "a\nb\0c", 5), 0);
	assert_int_equal(proto_encode(&b, PROTO_END, 7, NULL, 0), 0);
	assert_int_equal(proto_encode(&b, PROTO_END, 7, "x", 1), -1);
	assert_int_equal(proto_encode(&b, PROTO_ACK, 7, "x", 1), -1);
	assert_int_equal(proto_encode(&b, PROTO_CANCEL, 7, "x", 1), -1);
	proto_feed(&d, buf_data(&b), buf_size(&b));
	assert_int_equal(proto_next(&d, &f), 1);
	assert_int_equal(f.type, PROTO_DATA);
	assert_int_equal(f.len, 5);
	assert_memory_equal(f.payload, "a\nb\0c", 5);
	assert_int_equal(proto_next(&d, &f), 1);
	assert_int_equal(f.type, PROTO_END);
	assert_int_equal(f.id, 7);
	proto_decoder_free(&d);
	buf_free(&b);
	expect_header_rejected(1, PROTO_VERSION, PROTO_ACK, 0);
	expect_header_rejected(1, PROTO_VERSION, PROTO_CANCEL, 0);
}

static void test_unknown_type_is_rejected(void **state)
{
	(void)state;
	expect_header_rejected(0, PROTO_VERSION, 0, 0);
	expect_header_rejected(0, PROTO_VERSION, PROTO_TYPE_MAX + 1, 0);
	expect_header_rejected(0, PROTO_VERSION, 0xff, 0);
}

static void test_non_zero_flags_are_rejected(void **state)
{
	(void)state;
	expect_header_rejected(0, PROTO_VERSION, PROTO_EVENT, 1);
	expect_header_rejected(0, PROTO_VERSION, PROTO_EVENT, 0x8000);
}

static void test_newline_in_payload_is_rejected(void **state)
{
	proto_decoder_t d = PROTO_DECODER_INIT;
	proto_frame_t f;
	buf_t b = BUF_INIT;

	(void)state;
	/* Both sides enforce one-line payloads: the encoder refuses... */
	assert_int_equal(proto_encode(&b, PROTO_EVENT, 0, "{\"a\":\n1}", 8), -1);
	assert_int_equal(buf_size(&b), 0);
	/* ...and the decoder rejects what a broken peer sends anyway. */
	assert_int_equal(proto_encode(&b, PROTO_EVENT, 0, "{\"a\": 1}", 8), 0);
	buf_data(&b)[PROTO_HDR_SIZE + 5] = '\n';
	proto_feed(&d, buf_data(&b), buf_size(&b));
	assert_int_equal(proto_next(&d, &f), -1);
	assert_non_null(d.err);
	proto_decoder_free(&d);
	buf_free(&b);
}

/* Found by fuzz_proto: a frame stays valid until the next feed even when
 * the following bytes are a protocol error. */
static void test_frame_stays_valid_after_a_later_error(void **state)
{
	proto_decoder_t d = PROTO_DECODER_INIT;
	proto_frame_t f, g;
	buf_t b = BUF_INIT;

	(void)state;
	assert_int_equal(proto_encode(&b, PROTO_READY, 0, "{\"pid\":1}", 9), 0);
	buf_append(&b, "\0\0\0\0\x09\x02\0\0\0\0\0\0", 12); /* version 9 */
	proto_feed(&d, buf_data(&b), buf_size(&b));
	assert_int_equal(proto_next(&d, &f), 1);
	assert_int_equal(proto_next(&d, &g), -1);
	assert_int_equal(memcmp(f.payload, "{\"pid\":1}", 9), 0); /* ASan: not freed yet */
	proto_feed(&d, "x", 1);
	assert_int_equal(proto_next(&d, &g), -1);
	proto_decoder_free(&d);
	buf_free(&b);
}

static void test_garbage_bytes_are_rejected(void **state)
{
	proto_decoder_t d = PROTO_DECODER_INIT;
	proto_frame_t f;
	const char *garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

	(void)state;
	proto_feed(&d, garbage, strlen(garbage));
	assert_int_equal(proto_next(&d, &f), -1);
	assert_non_null(d.err);
	proto_decoder_free(&d);
}

static void test_errors_are_sticky_even_after_valid_frames(void **state)
{
	proto_decoder_t d = PROTO_DECODER_INIT;
	proto_frame_t f;
	unsigned char h[PROTO_HDR_SIZE];
	buf_t b = BUF_INIT;
	const char *err;

	(void)state;
	put_header(h, 0, PROTO_VERSION, PROTO_EVENT, 1, 0);
	proto_feed(&d, h, sizeof(h));
	assert_int_equal(proto_next(&d, &f), -1);
	err = d.err;
	proto_encode(&b, PROTO_READY, 0, "{}", 2);
	proto_feed(&d, buf_data(&b), buf_size(&b));
	assert_int_equal(proto_next(&d, &f), -1);
	assert_int_equal(proto_next(&d, &f), -1);
	assert_ptr_equal(d.err, err);
	proto_decoder_free(&d);
	buf_free(&b);
}

static void test_partial_header_waits_for_more(void **state)
{
	proto_decoder_t d = PROTO_DECODER_INIT;
	proto_frame_t f;
	unsigned char h[PROTO_HDR_SIZE];

	(void)state;
	put_header(h, 5, PROTO_VERSION, PROTO_EVENT, 0, 0);
	proto_feed(&d, h, PROTO_HDR_SIZE - 1);
	assert_int_equal(proto_next(&d, &f), 0);
	proto_feed(&d, h + PROTO_HDR_SIZE - 1, 1);
	assert_int_equal(proto_next(&d, &f), 0); /* header fine, payload missing */
	proto_feed(&d, "{\"a\"}", 5);
	assert_int_equal(proto_next(&d, &f), 1);
	assert_null(d.err);
	proto_decoder_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_encode_writes_the_documented_header),
	    cmocka_unit_test(test_frame_stays_valid_after_a_later_error),
	    cmocka_unit_test(test_every_type_round_trips),
	    cmocka_unit_test(test_split_reads_at_every_boundary_decode),
	    cmocka_unit_test(test_many_frames_in_one_feed_all_decode_in_order),
	    cmocka_unit_test(test_empty_payload_round_trips),
	    cmocka_unit_test(test_max_size_payload_round_trips),
	    cmocka_unit_test(test_encode_rejects_oversize_payload_and_appends_nothing),
	    cmocka_unit_test(test_encode_rejects_unknown_type),
	    cmocka_unit_test(test_oversize_length_is_rejected_from_the_header_alone),
	    cmocka_unit_test(test_bad_version_is_rejected),
	    cmocka_unit_test(test_unknown_type_is_rejected),
	    cmocka_unit_test(test_ack_is_the_last_known_type),
	    cmocka_unit_test(test_non_zero_flags_are_rejected),
	    cmocka_unit_test(test_newline_in_payload_is_rejected),
	    cmocka_unit_test(test_data_is_raw_and_control_frames_are_empty),
	    cmocka_unit_test(test_garbage_bytes_are_rejected),
	    cmocka_unit_test(test_errors_are_sticky_even_after_valid_frames),
	    cmocka_unit_test(test_partial_header_waits_for_more),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
