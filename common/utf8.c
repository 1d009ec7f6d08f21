/*
 * utf8: validation and per-byte U+FFFD replacement (see utf8.h). The
 * decoder accepts exactly what Go's utf8.DecodeRune and jansson accept, so
 * "json_string failed" and "utf8_valid_prefix < len" mean the same thing.
 */
#include "common/utf8.h"

#include <stdint.h>
#include <string.h>

static size_t seq_len(const unsigned char *p, size_t avail)
{
	size_t n;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07;
	else
		return 0; /* a continuation byte, C0/C1 (always overlong), F5..FF */
	if (n > avail)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

size_t utf8_seq_len(const char *s, size_t avail)
{
	return seq_len((const unsigned char *)s, avail);
}

size_t utf8_valid_prefix(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	while (i < len && (n = seq_len(p + i, len - i)) != 0)
		i += n;
	return i;
}

void utf8_sanitize(buf_t *out, const char *s, size_t len)
{
	for (;;) {
		size_t n = utf8_valid_prefix(s, len);

		buf_append(out, s, n);
		if (n == len)
			return;
		/* One bad byte, one U+FFFD; resync on the next byte, which
		 * may start a valid sequence (Go's DecodeRune returns size 1). */
		buf_append(out, "\xef\xbf\xbd", 3);
		s += n + 1;
		len -= n + 1;
	}
}

json_t *utf8_json_string(const char *s)
{
	return utf8_json_stringn(s, strlen(s));
}

json_t *utf8_json_stringn(const char *s, size_t len)
{
	json_t *j = json_stringn(s, len);
	buf_t b = BUF_INIT;

	if (j != NULL)
		return j;
	/* Invalid (or out of memory, which the second try meets again).
	 * Still checked: a sanitiser bug must not put bad UTF-8 in JSON. */
	utf8_sanitize(&b, s, len);
	j = json_stringn(buf_data(&b), buf_size(&b));
	buf_free(&b);
	return j;
}
