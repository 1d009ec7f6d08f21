/*
 * Unit tests for common/utf8.c: file names made into valid UTF-8 for JSON.
 * Every expected output is what Go's encoding/json writes for the same
 * bytes: utf8.DecodeRune yields (RuneError, 1) for every byte that does not
 * start a valid sequence, so each such byte is one U+FFFD (written R here).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/utf8.h"

#define R "\xef\xbf\xbd"

struct sample {
	const char *name;
	const char *in; /* in[0, len) */
	size_t len;
	const char *out; /* out[0, out_len) */
	size_t out_len;
	int valid; /* out is in */
};

/* Valid UTF-8, kept as it is; invalid, with its expected output. */
#define SAME(name, in)                                                                                       \
	{                                                                                                    \
		name, in, sizeof(in) - 1, in, sizeof(in) - 1, 1                                              \
	}
#define S(name, in, out)                                                                                     \
	{                                                                                                    \
		name, in, sizeof(in) - 1, out, sizeof(out) - 1, 0                                            \
	}

static const struct sample samples[] = {
    SAME("empty", ""),
    SAME("ascii", "src/main.go"),
    SAME("controls", "\x01\t\x7f"),
    SAME("2-byte", "caf\xc3\xa9"),
    SAME("3-byte", "\xe2\x82\xac.txt"),
    SAME("4-byte", "\xf0\x9f\x98\x80"),
    SAME("U+0080 and U+07FF", "\xc2\x80\xdf\xbf"),
    SAME("U+0800 and U+FFFF", "\xe0\xa0\x80\xef\xbf\xbf"),
    SAME("U+D7FF and U+E000 around the surrogates", "\xed\x9f\xbf\xee\x80\x80"),
    SAME("U+10000 and U+10FFFF", "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"),
    SAME("U+FFFD itself stays", R),
    /* Overlong forms: the lead byte is bad, then each continuation. */
    S("overlong 2-byte NUL", "\xc0\x80", R R),
    S("overlong 2-byte C1", "a\xc1\xbf", "a" R R),
    S("overlong 3-byte NUL", "\xe0\x80\x80", R R R),
    S("overlong 3-byte U+07FF", "\xe0\x9f\xbf", R R R),
    S("overlong 4-byte NUL", "\xf0\x80\x80\x80", R R R R),
    S("overlong 4-byte U+FFFF", "\xf0\x8f\xbf\xbf", R R R R),
    /* UTF-16 surrogates are not scalar values. */
    S("high surrogate", "\xed\xa0\x80", R R R),
    S("low surrogate", "x\xed\xbf\xbfy", "x" R R R "y"),
    S("surrogate pair (CESU-8)", "\xed\xa0\xbd\xed\xb8\x80", R R R R R R),
    /* Above U+10FFFF. */
    S("U+110000", "\xf4\x90\x80\x80", R R R R),
    S("F5 lead", "\xf5\x80\x80\x80", R R R R),
    /* Cut short by the end of input: one R per byte present. */
    S("truncated 2-byte", "a\xc3", "a" R),
    S("truncated 3-byte", "a\xe2\x82", "a" R R),
    S("truncated 4-byte", "\xf0\x9f\x98", R R R),
    S("truncated 4-byte after one", "\xf0\x9f", R R),
    /* Cut short by a byte that is not a continuation: resync there. */
    S("3-byte cut by ASCII", "\xe2\x82Z", R R "Z"),
    S("4-byte cut by '/'", "\xf0\x9f\x98/b", R R R "/b"),
    S("lead then a valid 2-byte", "\xc3\xc3\xa9", R "\xc3\xa9"),
    S("lead then a valid 4-byte", "\xe2\xf0\x9f\x98\x80", R "\xf0\x9f\x98\x80"),
    /* Continuation bytes with no lead. */
    S("lone continuation", "\x80", R),
    S("continuations between ASCII", "a\x80\xbfz", "a" R R "z"),
    S("one too many continuations", "\xc3\xa9\xa9", "\xc3\xa9" R),
    /* Latin-1 names, the common real case. */
    S("latin-1", "caf\xe9.txt", "caf" R ".txt"),
    /* NUL is U+0000: valid, kept, and does not end the input. */
    S("embedded NUL", "a\0\xffz", "a\0" R "z"),
};

/* t->in in an exact-size heap copy, so ASan sees a read past len. */
static char *exact_copy(const struct sample *t)
{
	char *p = malloc(t->len ? t->len : 1);

	assert_non_null(p);
	memcpy(p, t->in, t->len);
	return p;
}

static void test_sanitize_matches_go_encoding_json(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		const struct sample *t = &samples[i];
		char *in = exact_copy(t);
		buf_t b = BUF_INIT;

		utf8_sanitize(&b, in, t->len);
		if (buf_size(&b) != t->out_len ||
		    (t->out_len > 0 && memcmp(buf_data(&b), t->out, t->out_len) != 0))
			fail_msg("%s: got %zu bytes, want %zu", t->name, buf_size(&b), t->out_len);
		buf_free(&b);
		free(in);
	}
}

static void test_valid_prefix_is_len_exactly_when_unchanged(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		const struct sample *t = &samples[i];
		char *in = exact_copy(t);
		size_t n = utf8_valid_prefix(in, t->len);

		if ((n == t->len) != t->valid)
			fail_msg("%s: valid prefix %zu of %zu", t->name, n, t->len);
		free(in);
	}
}

static void test_valid_prefix_stops_at_the_first_bad_byte(void **state)
{
	(void)state;
	assert_int_equal(utf8_valid_prefix("", 0), 0);
	assert_int_equal(utf8_valid_prefix("ab\xc3\xa9z\xff", 6), 5);
	assert_int_equal(utf8_valid_prefix("ab\xe2\x82", 4), 2);
	assert_int_equal(utf8_valid_prefix("\x80xyz", 4), 0);
	/* len cuts a valid sequence: the cut sequence is not counted. */
	assert_int_equal(utf8_valid_prefix("a\xe2\x82\xac", 3), 1);
	assert_int_equal(utf8_valid_prefix("a\xe2\x82\xac", 4), 4);
}

/* Every F5..FF byte is invalid anywhere, and so is every C0, C1. */
static void test_bytes_that_never_appear_in_utf8(void **state)
{
	(void)state;
	for (unsigned c = 0xc0; c <= 0xff; c++) {
		char in[3] = {'x', (char)c, 'y'};
		buf_t b = BUF_INIT;

		if (c > 0xc1 && c < 0xf5)
			continue;
		assert_int_equal(utf8_valid_prefix(in, 3), 1);
		utf8_sanitize(&b, in, 3);
		assert_int_equal(buf_size(&b), 5);
		assert_memory_equal(buf_data(&b), "x" R "y", 5);
		buf_free(&b);
	}
}

/* The shortest encoding of cp into p; returns its length. */
static size_t encode(uint32_t cp, char *p)
{
	if (cp < 0x80) {
		p[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		p[0] = (char)(0xc0 | cp >> 6);
		p[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		p[0] = (char)(0xe0 | cp >> 12);
		p[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		p[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	p[0] = (char)(0xf0 | cp >> 18);
	p[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	p[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	p[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Every scalar value's encoding is valid; every surrogate's, and every
 * 4-byte form above U+10FFFF, is one R per byte. */
static void test_every_code_point(void **state)
{
	char p[4];

	(void)state;
	for (uint32_t cp = 0; cp <= 0x13ffff; cp++) {
		size_t n = encode(cp, p);
		int valid = cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
		buf_t b = BUF_INIT;

		if (utf8_valid_prefix(p, n) != (valid ? n : 0))
			fail_msg("U+%04X: valid prefix %zu of %zu", (unsigned)cp, utf8_valid_prefix(p, n), n);
		if (valid)
			continue;
		utf8_sanitize(&b, p, n);
		assert_int_equal(buf_size(&b), 3 * n);
		for (size_t i = 0; i < n; i++)
			assert_memory_equal(buf_data(&b) + 3 * i, R, 3);
		buf_free(&b);
	}
}

static void test_sanitize_appends_to_what_is_there(void **state)
{
	buf_t b = BUF_INIT;

	(void)state;
	buf_append(&b, "head:", 5);
	utf8_sanitize(&b, "\xffz", 2);
	utf8_sanitize(&b, "", 0);
	utf8_sanitize(&b, "\xc3\xa9", 2);
	assert_int_equal(buf_size(&b), 5 + 4 + 2);
	assert_memory_equal(buf_data(&b), "head:" R "z\xc3\xa9", 11);
	buf_free(&b);
}

static void test_json_string_is_the_name_when_valid(void **state)
{
	json_t *j = utf8_json_string("dir/caf\xc3\xa9 \xf0\x9f\x98\x80");

	(void)state;
	assert_non_null(j);
	assert_string_equal(json_string_value(j), "dir/caf\xc3\xa9 \xf0\x9f\x98\x80");
	json_decref(j);
}

static void test_json_string_replaces_each_bad_byte(void **state)
{
	json_t *j = utf8_json_string("caf\xe9/\xe2\x82");
	char *text;

	(void)state;
	assert_non_null(j);
	assert_string_equal(json_string_value(j), "caf" R "/" R R);
	text = json_dumps(j, JSON_ENCODE_ANY);
	assert_string_equal(text, "\"caf" R "/" R R "\"");
	free(text);
	json_decref(j);
}

static void test_json_stringn_keeps_nuls(void **state)
{
	json_t *j = utf8_json_stringn("a\0\xff", 3);
	char *text;

	(void)state;
	assert_non_null(j);
	assert_int_equal(json_string_length(j), 5);
	assert_memory_equal(json_string_value(j), "a\0" R, 5);
	text = json_dumps(j, JSON_ENCODE_ANY);
	assert_string_equal(text, "\"a\\u0000" R "\"");
	free(text);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sanitize_matches_go_encoding_json),
	    cmocka_unit_test(test_valid_prefix_is_len_exactly_when_unchanged),
	    cmocka_unit_test(test_valid_prefix_stops_at_the_first_bad_byte),
	    cmocka_unit_test(test_bytes_that_never_appear_in_utf8),
	    cmocka_unit_test(test_every_code_point),
	    cmocka_unit_test(test_sanitize_appends_to_what_is_there),
	    cmocka_unit_test(test_json_string_is_the_name_when_valid),
	    cmocka_unit_test(test_json_string_replaces_each_bad_byte),
	    cmocka_unit_test(test_json_stringn_keeps_nuls),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
