/*
 * utf8: the one function that makes bytes into valid UTF-8. File names
 * (and any other bytes from outside) need not be UTF-8, but JSON must be;
 * like Go's encoding/json upstream, each byte that does not start a valid
 * sequence becomes U+FFFD, so such a name is still reported, never dropped.
 *
 * Valid means RFC 3629: shortest form only, no surrogates (U+D800..DFFF),
 * nothing above U+10FFFF. NUL is U+0000 and valid; every function takes a
 * length, so input need not be NUL-terminated and may hold NULs.
 */
#ifndef CRUSH_UTF8_H
#define CRUSH_UTF8_H

#include <stddef.h>

#include <jansson.h>

#include "common/buf.h"

/* The length of the longest valid UTF-8 prefix of s[0, len): len exactly
 * when all of it is valid. A sequence cut short by len is not valid. */
size_t utf8_valid_prefix(const char *s, size_t len);

/* The length of the one valid sequence at s[0, avail) (avail > 0), or 0
 * when s does not start one. */
size_t utf8_seq_len(const char *s, size_t avail);

/*
 * Appends s[0, len) to out with each invalid byte replaced by U+FFFD
 * (EF BF BD), one replacement per byte as Go's utf8.DecodeRune counts
 * them: an overlong "C0 80" or a truncated "E2 82" is two. Valid input is
 * appended unchanged; ASCII bytes (NUL included) always are. Appends no
 * terminating NUL. At most 3 * len bytes are appended.
 */
void utf8_sanitize(buf_t *out, const char *s, size_t len);

/* A new jansson string of s (NUL-terminated), with utf8_sanitize applied
 * when s is not valid UTF-8; s itself is copied when it is. NULL only
 * when out of memory. */
json_t *utf8_json_string(const char *s);

/* The same for s[0, len), which may hold NULs (they encode as \u0000). */
json_t *utf8_json_stringn(const char *s, size_t len);

#endif
