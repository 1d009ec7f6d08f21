/*
 * Unit tests for common/flatjson.c: the frame heads' JSON without a tree.
 * The contract is jansson's: whatever flatjson_parse takes, jansson takes
 * too, with the same values; whatever it leaves (-1), the caller hands to
 * jansson. So every case here is checked against jansson itself, and a
 * bounded run of mutated heads checks the same on inputs nobody listed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/flatjson.h"
#include "common/utf8.h"

/* When flatjson takes s, jansson takes it too and agrees on every field.
 * Returns flatjson's verdict. */
static int agrees(const char *s, size_t len)
{
	flatjson_t fj;
	buf_t store = BUF_INIT;
	int r = flatjson_parse(s, len, &fj, &store);
	if (r == 0) {
		json_t *j = json_loadb(s, len, 0, NULL);
		assert_non_null(j);
		assert_true(json_is_object(j));
		assert_int_equal(json_object_size(j), fj.n);
		for (size_t i = 0; i < fj.n; i++) {
			const flatjson_field_t *f = &fj.f[i];
			json_t *v = json_object_getn(j, f->key, f->keylen);
			assert_non_null(v);
			if (f->type == 's') {
				assert_true(json_is_string(v));
				assert_int_equal(json_string_length(v), f->len);
				assert_memory_equal(json_string_value(v), f->str, f->len);
				assert_int_equal(f->str[f->len], '\0');
			} else if (f->type == 'i') {
				assert_true(json_is_integer(v));
				assert_true(json_integer_value(v) == f->num);
			} else if (f->type == 'b') {
				assert_true(json_is_boolean(v));
				assert_int_equal(json_is_true(v), f->num);
			} else {
				assert_int_equal(f->type, 'n');
				assert_true(json_is_null(v));
			}
			assert_true(f->type == 's' || f->str == NULL);
		}
		json_decref(j);
	}
	buf_free(&store);
	return r;
}

#define TAKES(s)  assert_int_equal(agrees(s, sizeof(s) - 1), 0)
#define LEAVES(s) assert_int_equal(agrees(s, sizeof(s) - 1), -1)

static void test_plain_heads_are_taken(void **state)
{
	(void)state;
	TAKES(
	    "{\"method\":\"http\",\"verb\":\"GET\",\"path\":\"/config\",\"query\":\"\",\"client_id\":\"\"}");
	TAKES("{\"status\":200,\"content_type\":\"application/json\"}");
	TAKES("{}");
	TAKES(" { \"a\" : \"b\" , \"n\" : -12 } \n");
	TAKES("{\"n\":0,\"m\":-0,\"big\":123456789012345678}");
	TAKES("{\"esc\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}");
	TAKES("{\"u\":\"\\u00e9\\u20ac\\ud83d\\ude00\\u001f\"}");
	TAKES("{\"raw\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}");
	TAKES("{\"k\xc3\xa9y\":\"v\"}");
	TAKES("{\"path\":\"/p\",\"yolo\":true,\"debug\":false,\"data_dir\":null}");
}

static void test_what_it_is_not_sure_of_goes_to_jansson(void **state)
{
	(void)state;
	LEAVES("");
	LEAVES("[]");
	LEAVES("{\"a\":{}}");
	LEAVES("{\"a\":[1]}");
	LEAVES("{\"a\":tru}");
	LEAVES("{\"a\":nul}");
	LEAVES("{\"a\":True}");
	LEAVES("{\"a\":truex}");
	LEAVES("{\"a\":1.5}");
	LEAVES("{\"a\":1e3}");
	LEAVES("{\"a\":01}");
	LEAVES("{\"a\":1234567890123456789}"); /* 19 digits */
	LEAVES("{\"a\":-}");
	LEAVES("{\"a\":\"x\",\"a\":\"y\"}");  /* a repeated key: jansson keeps the last */
	LEAVES("{\"a\\u0062\":\"x\"}");	      /* an escaped key */
	LEAVES("{\"a\":\"\\u0000\"}");	      /* NUL */
	LEAVES("{\"a\":\"\\ud800\"}");	      /* lone high surrogate */
	LEAVES("{\"a\":\"\\udc00\"}");	      /* lone low surrogate */
	LEAVES("{\"a\":\"\\ud800\\u0041\"}"); /* high then not low */
	LEAVES("{\"a\":\"\\x\"}");
	LEAVES("{\"a\":\"\\u12\"}");
	LEAVES("{\"a\":\"\xff\"}");
	LEAVES("{\"a\":\"\xc0\x80\"}");
	LEAVES("{\"a\":\"\xed\xa0\x80\"}"); /* an encoded surrogate */
	LEAVES("{\"a\":\"tab\there\"}");    /* a raw control byte */
	LEAVES("{\"a\":\"x\"} trailing");
	LEAVES("{\"a\":\"x\",}");
	LEAVES("{\"a\" \"x\"}");
	LEAVES("{\"a\":\"unterminated}");
	LEAVES(
	    "{\"1\":1,\"2\":2,\"3\":3,\"4\":4,\"5\":5,\"6\":6,\"7\":7,\"8\":8,\"9\":9}"); /* past 8 fields */
	/* An embedded NUL byte, raw. */
	assert_int_equal(agrees("{\"a\":\"x\0y\"}", 11), -1);
}

static void test_fields_are_found_by_name(void **state)
{
	(void)state;
	const char s[] = "{\"status\":404,\"content_type\":\"text/plain\"}";
	flatjson_t fj;
	buf_t store = BUF_INIT;
	assert_int_equal(flatjson_parse(s, sizeof(s) - 1, &fj, &store), 0);
	const flatjson_field_t *st = flatjson_get(&fj, "status"), *ct = flatjson_get(&fj, "content_type");
	assert_non_null(st);
	assert_null(st->str);
	assert_true(st->num == 404);
	assert_string_equal(ct->str, "text/plain");
	assert_null(flatjson_get(&fj, "stat"));
	buf_free(&store);
}

/* Whatever bytes a path holds, the literal decodes (by jansson and by
 * flatjson) to what utf8_sanitize makes of them. */
static void check_string(const char *s, size_t len)
{
	buf_t lit = BUF_INIT, want = BUF_INIT, doc = BUF_INIT;
	flatjson_string(&lit, s, len);
	utf8_sanitize(&want, s, len);
	buf_append(&doc, "{\"p\":", 5);
	buf_append(&doc, buf_data(&lit), buf_size(&lit));
	buf_append(&doc, "}", 1);
	json_t *j = json_loadb(buf_data(&doc), buf_size(&doc), JSON_ALLOW_NUL, NULL);
	assert_non_null(j);
	json_t *v = json_object_get(j, "p");
	assert_int_equal(json_string_length(v), buf_size(&want));
	assert_memory_equal(json_string_value(v), buf_data(&want), buf_size(&want));
	json_decref(j);
	if (buf_size(&want) == 0 || memchr(buf_data(&want), 0, buf_size(&want)) == NULL)
		assert_int_equal(agrees(buf_data(&doc), buf_size(&doc)), 0);
	buf_free(&lit);
	buf_free(&want);
	buf_free(&doc);
}

static void test_string_literals_round_trip(void **state)
{
	(void)state;
	check_string("", 0);
	check_string("/sessions/abc", 13);
	check_string("q=\"x\"&b=\\", 9);
	check_string("\x01\x1f\x7f", 3);
	check_string("a\0b", 3);
	check_string("\xff\xfe/caf\xc3\xa9", 8);
	check_string("\xe2\x82", 2);
	unsigned seed = 7;
	char b[64];
	for (int round = 0; round < 2000; round++) {
		size_t len = (size_t)(rand_r(&seed) % sizeof(b));
		for (size_t i = 0; i < len; i++)
			b[i] = (char)(rand_r(&seed) & 0xff);
		check_string(b, len);
	}
}

/* Heads with bytes changed at random: flatjson never disagrees with
 * jansson, and never reads outside the input (ASan). */
static void test_mutated_heads_never_disagree(void **state)
{
	(void)state;
	static const char *const seeds[] = {
	    "{\"method\":\"http\",\"verb\":\"GET\",\"path\":\"/"
	    "a\\u00e9\",\"query\":\"x=1\",\"client_id\":\"c\"}",
	    "{\"status\":200,\"content_type\":\"application/json\"}",
	    "{\"s\":\"\\ud83d\\ude00\\n\",\"n\":-42,\"b\":true,\"f\":false,\"z\":null}",
	};
	static const char alphabet[] = "{}[]:,\"\\u0123456789abcdefABCDEF -.eEtrlsn\x00\x1f\xc3\xa9\xed\xff";
	unsigned seed = 1;
	for (int round = 0; round < 20000; round++) {
		const char *src = seeds[round % 3];
		size_t len = strlen(src);
		char *m = malloc(len + 4);
		assert_non_null(m);
		memcpy(m, src, len);
		int edits = 1 + rand_r(&seed) % 3;
		for (int k = 0; k < edits; k++) {
			size_t at = (size_t)rand_r(&seed) % len;
			int op = rand_r(&seed) % 3;
			char c = alphabet[(size_t)rand_r(&seed) % (sizeof(alphabet) - 1)];
			if (op == 0) {
				m[at] = c;
			} else if (op == 1 && len > 1) {
				memmove(m + at, m + at + 1, len - at - 1);
				len--;
			} else if (op == 2) {
				memmove(m + at + 1, m + at, len - at);
				m[at] = c;
				len++;
			}
		}
		char *exact = malloc(len ? len : 1); /* exactly len bytes: ASan sees any overread */
		assert_non_null(exact);
		memcpy(exact, m, len);
		agrees(exact, len);
		free(exact);
		free(m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain_heads_are_taken),
	    cmocka_unit_test(test_what_it_is_not_sure_of_goes_to_jansson),
	    cmocka_unit_test(test_fields_are_found_by_name),
	    cmocka_unit_test(test_string_literals_round_trip),
	    cmocka_unit_test(test_mutated_heads_never_disagree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
