/*
 * fuzz_utf8: the UTF-8 sanitiser (common/utf8.c) on arbitrary bytes, NULs
 * included. Checked against a reference written differently (Go's
 * utf8.DecodeRune: a table of valid second-byte ranges per lead byte):
 * the output is valid UTF-8, is the input when that is valid, keeps every
 * ASCII byte in order, has one U+FFFD per rejected byte (so len <= out <=
 * 3 len), and utf8_json_stringn holds exactly those bytes.
 *
 * Input: the bytes to sanitise, whole.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/utf8.h"

#include "fuzz/check.h"

/* Length of the valid sequence at p[0, n), n > 0, or 0: Unicode's table
 * 3-7 of well-formed byte sequences, as Go's first/acceptRanges encode it. */
static size_t ref_seq(const uint8_t *p, size_t n)
{
	uint8_t lo = 0x80, hi = 0xbf;
	size_t len;

	if (p[0] <= 0x7f)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (p[0] == 0xe0)
		lo = 0xa0; /* no overlong 3-byte */
	else if (p[0] == 0xed)
		hi = 0x9f; /* no surrogates */
	else if (p[0] == 0xf0)
		lo = 0x90; /* no overlong 4-byte */
	else if (p[0] == 0xf4)
		hi = 0x8f; /* nothing above U+10FFFF */
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

static int ref_valid(const uint8_t *p, size_t n)
{
	size_t k;

	for (size_t i = 0; i < n; i += k)
		if ((k = ref_seq(p + i, n - i)) == 0)
			return 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy, so ASan sees any read past size. */
	char *in = malloc(size ? size : 1);
	buf_t want = BUF_INIT, got = BUF_INIT;
	size_t bad = 0, k;

	memcpy(in, data, size);
	for (size_t i = 0; i < size; i += k) {
		k = ref_seq(data + i, size - i);
		if (k == 0) {
			buf_append(&want, "\xef\xbf\xbd", 3);
			bad++;
			k = 1;
		} else {
			buf_append(&want, data + i, k);
		}
	}

	/* The valid prefix ends at the first rejected byte. */
	size_t prefix = utf8_valid_prefix(in, size);
	CHECK(prefix <= size && ref_valid(data, prefix));
	CHECK(prefix == size || ref_seq(data + prefix, size - prefix) == 0);
	CHECK((prefix == size) == (bad == 0));

	/* Appends after what is there, and only there. */
	buf_append(&got, "<", 1);
	utf8_sanitize(&got, in, size);
	CHECK(buf_size(&got) >= 1 && buf_data(&got)[0] == '<');
	buf_consume(&got, 1);
	const uint8_t *o = (const uint8_t *)buf_data(&got);
	size_t olen = buf_size(&got);

	CHECK(olen == size + 2 * bad && olen <= 3 * size);
	CHECK(olen == buf_size(&want) && (olen == 0 || memcmp(o, buf_data(&want), olen) == 0));
	CHECK(ref_valid(o, olen));
	if (bad == 0)
		CHECK(olen == size && (size == 0 || memcmp(o, data, size) == 0));
	/* ASCII (NUL included) survives in order: the output's ASCII bytes are
	 * the input's, since U+FFFD and valid sequences hold none. */
	for (size_t i = 0, j = 0;; i++, j++) {
		while (i < size && data[i] >= 0x80)
			i++;
		while (j < olen && o[j] >= 0x80)
			j++;
		CHECK((i == size) == (j == olen));
		if (i == size)
			break;
		CHECK(data[i] == o[j]);
	}

	/* The JSON string is those bytes, and survives a dump and a load. */
	json_t *j = utf8_json_stringn(in, size);
	CHECK(j != NULL && json_string_length(j) == olen);
	CHECK(olen == 0 || memcmp(json_string_value(j), o, olen) == 0);
	char *text = json_dumps(j, JSON_ENCODE_ANY);
	CHECK(text != NULL);
	json_t *back = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	CHECK(back != NULL && json_equal(back, j));
	json_decref(back);
	free(text);
	json_decref(j);

	buf_free(&want);
	buf_free(&got);
	free(in);
	return 0;
}
