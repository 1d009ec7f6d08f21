/*
 * flatjson: the frame heads of the worker protocol, without a JSON tree.
 * A routed request's head (supervisor -> worker) and its answer's head
 * (worker -> supervisor) are flat objects of strings and integers, one per
 * request; building and parsing them with jansson was most of the CPU a
 * routed request cost beyond HTTP itself.
 *
 * flatjson_parse takes only what it is sure of: a flat object of strings,
 * integers, booleans and nulls, distinct keys without escapes, strings of valid UTF-8
 * without NUL or lone surrogates. For anything else it returns -1 and the
 * caller parses with jansson, so what is accepted, refused and decoded is
 * jansson's in every case.
 */
#ifndef CRUSH_FLATJSON_H
#define CRUSH_FLATJSON_H

#include <stddef.h>

#include "common/buf.h"

/* Appends s[0, len) as a JSON string literal; bytes that are not UTF-8
 * become U+FFFD (utf8_sanitize), as utf8_json_stringn does. */
void flatjson_string(buf_t *out, const char *s, size_t len);

#define FLATJSON_MAX_FIELDS 8

typedef struct flatjson_field {
	const char *key; /* in the parsed text, not NUL-terminated */
	size_t keylen;
	char type;	 /* 's' string, 'i' integer, 'b' boolean, 'n' null */
	const char *str; /* a string's value, NUL-terminated, in the caller's store; else NULL */
	size_t len;
	long long num; /* an integer's value; a boolean's 0 or 1 */
} flatjson_field_t;

typedef struct flatjson {
	flatjson_field_t f[FLATJSON_MAX_FIELDS];
	size_t n;
} flatjson_t;

/* 0 and out filled (string values decoded into store, which must not be
 * touched while out is used), or -1: not a head this parser takes. */
int flatjson_parse(const char *s, size_t len, flatjson_t *out, buf_t *store);

/* The field named key (NUL-terminated), or NULL. */
const flatjson_field_t *flatjson_get(const flatjson_t *j, const char *key);

#endif
