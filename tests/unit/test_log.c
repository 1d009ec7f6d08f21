/*
 * Unit tests for common/log.c: one logfmt line per record, values quoted
 * and escaped as slog does, invalid UTF-8 escaped byte by byte, and long
 * values cut with a marker.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"

/* The line log_kv writes for one "k" value, from " k=" to the newline. */
static void logged(const char *value, char *out, size_t outlen)
{
	int fds[2], saved = dup(STDERR_FILENO);
	char line[4096];
	ssize_t n;

	assert_int_equal(pipe(fds), 0);
	dup2(fds[1], STDERR_FILENO);
	log_kv(LOG_ERROR, "m", "k", value, NULL);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fds[1]);
	n = read(fds[0], line, sizeof(line) - 1);
	close(fds[0]);
	assert_true(n > 0);
	line[n] = '\0';
	char *k = strstr(line, " k=");
	assert_non_null(k);
	assert_int_equal(line[n - 1], '\n');
	line[n - 1] = '\0';
	snprintf(out, outlen, "%s", k + 3);
}

static void test_plain_values_are_bare_and_others_quoted(void **state)
{
	char out[512];

	(void)state;
	logged("abc", out, sizeof(out));
	assert_string_equal(out, "abc");
	logged("", out, sizeof(out));
	assert_string_equal(out, "\"\"");
	logged("a b", out, sizeof(out));
	assert_string_equal(out, "\"a b\"");
	logged("a=\"b\"\n", out, sizeof(out));
	assert_string_equal(out, "\"a=\\\"b\\\"\\n\"");
	logged("caf\xc3\xa9", out, sizeof(out)); /* valid UTF-8 stays bare */
	assert_string_equal(out, "caf\xc3\xa9");
}

static void test_invalid_utf8_is_quoted_and_escaped_per_byte(void **state)
{
	char out[512];

	(void)state;
	logged("bad\xff", out, sizeof(out));
	assert_string_equal(out, "\"bad\\xff\"");
	logged("\xc3\xa9\xe2\x82", out, sizeof(out)); /* valid, then a cut sequence */
	assert_string_equal(out, "\"\xc3\xa9\\xe2\\x82\"");
}

static void test_long_values_are_cut_at_a_character_with_a_marker(void **state)
{
	char big[1000], out[2048];

	(void)state;
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	logged(big, out, sizeof(out));
	assert_int_equal(strlen(out), LOG_MAX_VALUE + 3);
	assert_string_equal(out + LOG_MAX_VALUE, "\xe2\x80\xa6");
	/* A two-byte character across the limit is not split. */
	memset(big, 'a', sizeof(big));
	big[LOG_MAX_VALUE - 1] = '\xc3';
	big[LOG_MAX_VALUE] = '\xa9';
	big[LOG_MAX_VALUE + 10] = '\0';
	logged(big, out, sizeof(out));
	assert_int_equal(strlen(out), LOG_MAX_VALUE - 1 + 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain_values_are_bare_and_others_quoted),
	    cmocka_unit_test(test_invalid_utf8_is_quoted_and_escaped_per_byte),
	    cmocka_unit_test(test_long_values_are_cut_at_a_character_with_a_marker),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
