/*
 * Unit tests for supervisor/body.c's decoding of the create request. A
 * flat body is decoded without a tree (parse_flat); every other body goes
 * to jansson. Both must say the same: each case here is decoded as sent
 * and again with `"env":[]` added (an array: never flat, so jansson's
 * path), and the two results must agree field for field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "supervisor/body.h"

#define CID "0b6f3a52-5d0e-4c1e-9a57-3a9e1c2b7d10"

static const char *const bodies[] = {
    "{\"path\":\"/tmp/x\",\"client_id\":\"" CID "\"}",
    "{\"path\":\"/tmp/x\",\"client_id\":\"" CID "\",\"yolo\":true,\"debug\":false}",
    "{\"path\":\"/tmp/x\",\"client_id\":\"" CID "\",\"yolo\":null,\"data_dir\":null,\"version\":null}",
    "{\"path\":\"/tmp/x\",\"client_id\":\"" CID "\",\"data_dir\":\"/d\",\"version\":\"v1\"}",
    "{\"path\":\"/tmp/x\",\"client_id\":\"" CID "\",\"unknown\":7,\"other\":\"s\"}",
    "{\"path\":\"/tmp/\\u00e9\",\"client_id\":\"0B6F3A52-5D0E-4C1E-9A57-3A9E1C2B7D10\"}",
    "{\"path\":\"relative\",\"client_id\":\"" CID "\"}",
    "{\"path\":\"\",\"client_id\":\"" CID "\"}",
    "{\"client_id\":\"" CID "\"}",
    "{\"path\":\"/tmp/x\"}",
    "{\"path\":\"/tmp/x\",\"client_id\":\"nope\"}",
    "{\"path\":7,\"client_id\":\"" CID "\"}",
    "{\"path\":\"/tmp/x\",\"client_id\":\"" CID "\",\"yolo\":\"yes\"}",
    "{\"path\":\"/tmp/x\",\"client_id\":\"" CID "\",\"debug\":1}",
    "{\"path\":\"/tmp/x\",\"client_id\":\"" CID "\",\"data_dir\":false}",
    "{\"path\":\"/tmp/x\",\"client_id\":\"" CID "\",\"version\":3}",
    "{\"path\":\"/tmp/x\",\"client_id\":\"" CID "\",\"channels\":\"c\"}",
    "{}",
};

static void same(const char *flat, const char *tree)
{
	create_body_t a, b;
	const char *ma = NULL, *mb = NULL;
	int ra = create_body_parse(&a, flat, strlen(flat), &ma);
	int rb = create_body_parse(&b, tree, strlen(tree), &mb);
	assert_int_equal(ra, rb);
	if (ra != 0) {
		assert_string_equal(ma, mb);
		return;
	}
	assert_string_equal(a.path, b.path);
	assert_string_equal(a.client_id, b.client_id);
	assert_string_equal(a.data_dir, b.data_dir);
	assert_true((a.version == NULL) == (b.version == NULL));
	if (a.version != NULL)
		assert_string_equal(a.version, b.version);
	assert_int_equal(a.yolo, b.yolo);
	assert_int_equal(a.debug, b.debug);
	assert_int_equal(a.nenv, 0);
	assert_int_equal(b.nenv, 0);
	create_body_free(&a);
	create_body_free(&b);
}

static void test_flat_bodies_decode_as_jansson_does(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		const char *s = bodies[i];
		size_t n = strlen(s);
		char *tree = malloc(n + 16);
		assert_non_null(tree);
		memcpy(tree, s, n - 1); /* without its closing brace */
		strcpy(tree + n - 1, n > 2 ? ",\"env\":[]}" : "\"env\":[]}");
		same(s, tree);
		free(tree);
	}
}

static void test_a_flat_body_is_taken_whole(void **state)
{
	(void)state;
	const char s[] = "{\"path\":\"/tmp/x\",\"client_id\":\"" CID "\",\"yolo\":true,\"version\":\"v\"}";
	create_body_t b;
	const char *msg = NULL;
	assert_int_equal(create_body_parse(&b, s, sizeof(s) - 1, &msg), 0);
	assert_null(b.root); /* decoded without jansson */
	assert_string_equal(b.path, "/tmp/x");
	assert_string_equal(b.client_id, CID);
	assert_int_equal(b.yolo, 1);
	assert_string_equal(b.version, "v");
	create_body_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_flat_bodies_decode_as_jansson_does),
	    cmocka_unit_test(test_a_flat_body_is_taken_whole),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
