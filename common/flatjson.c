/*
 * flatjson: flat JSON heads without a tree (see flatjson.h).
 */
#include "common/flatjson.h"

#include <stdio.h>
#include <string.h>

#include "common/utf8.h"

void flatjson_string(buf_t *out, const char *s, size_t len)
{
	buf_t clean = BUF_INIT;
	if (utf8_valid_prefix(s, len) != len) {
		utf8_sanitize(&clean, s, len);
		s = buf_data(&clean);
		len = buf_size(&clean);
	}
	buf_append(out, "\"", 1);
	size_t run = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		buf_append(out, s + run, i - run);
		run = i + 1;
		if (ch == '"' || ch == '\\') {
			char esc[2] = {'\\', (char)ch};
			buf_append(out, esc, 2);
		} else {
			buf_appendf(out, "\\u%04x", ch);
		}
	}
	buf_append(out, s + run, len - run);
	buf_append(out, "\"", 1);
	buf_free(&clean);
}

static const char *skip_ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static int hex4(const char *p, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
			     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
			     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
						    : 16u;
		if (d == 16)
			return -1;
		*v = *v << 4 | d;
	}
	return 0;
}

static void put_utf8(buf_t *b, unsigned v)
{
	char u[4];
	size_t n;
	if (v < 0x80) {
		u[0] = (char)v;
		n = 1;
	} else if (v < 0x800) {
		u[0] = (char)(0xc0 | v >> 6);
		u[1] = (char)(0x80 | (v & 0x3f));
		n = 2;
	} else if (v < 0x10000) {
		u[0] = (char)(0xe0 | v >> 12);
		u[1] = (char)(0x80 | (v >> 6 & 0x3f));
		u[2] = (char)(0x80 | (v & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | v >> 18);
		u[1] = (char)(0x80 | (v >> 12 & 0x3f));
		u[2] = (char)(0x80 | (v >> 6 & 0x3f));
		u[3] = (char)(0x80 | (v & 0x3f));
		n = 4;
	}
	buf_append(b, u, n);
}

/* One escape after its backslash, at p: decoded into store. Past it, or
 * NULL for what jansson refuses or this parser leaves to it (\u0000). */
static const char *escape(const char *p, const char *e, buf_t *store)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	if (p >= e)
		return NULL;
	const char *k = *p != '\0' ? strchr(from, *p) : NULL;
	if (k != NULL) {
		buf_append(store, &to[k - from], 1);
		return p + 1;
	}
	unsigned v, lo;
	if (*p != 'u' || e - p < 5 || hex4(p + 1, &v) != 0 || v == 0)
		return NULL;
	p += 5;
	if (v >= 0xdc00 && v <= 0xdfff)
		return NULL;
	if (v >= 0xd800 && v <= 0xdbff) {
		if (e - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) != 0 || lo < 0xdc00 ||
		    lo > 0xdfff)
			return NULL;
		p += 6;
		v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
	}
	put_utf8(store, v);
	return p;
}

/* A string's body at p (after its quote), decoded into store at *off
 * (NUL-terminated, *len bytes): past its closing quote, or NULL. */
static const char *string(const char *p, const char *e, buf_t *store, size_t *off, size_t *len)
{
	*off = buf_size(store);
	const char *run = p;
	for (;;) {
		if (p >= e)
			return NULL;
		unsigned char ch = (unsigned char)*p;
		if (ch == '"')
			break;
		if (ch < 0x20)
			return NULL;
		if (ch != '\\') {
			p++;
			continue;
		}
		buf_append(store, run, (size_t)(p - run));
		if ((p = escape(p + 1, e, store)) == NULL)
			return NULL;
		run = p;
	}
	buf_append(store, run, (size_t)(p - run));
	*len = buf_size(store) - *off;
	buf_append(store, "", 1);
	if (utf8_valid_prefix(buf_data(store) + *off, *len) != *len)
		return NULL;
	return p + 1;
}

/* An integer without fraction or exponent, at most 18 digits. */
static const char *number(const char *p, const char *e, long long *v)
{
	int neg = p < e && *p == '-';
	p += neg;
	const char *d = p;
	long long n = 0;
	while (p < e && *p >= '0' && *p <= '9' && p - d < 18)
		n = n * 10 + (*p++ - '0');
	if (p == d || (*d == '0' && p - d > 1) ||
	    (p < e && (*p == '.' || *p == 'e' || *p == 'E' || (*p >= '0' && *p <= '9'))))
		return NULL;
	*v = neg ? -n : n;
	return p;
}

int flatjson_parse(const char *s, size_t len, flatjson_t *out, buf_t *store)
{
	const char *p = s, *e = s + len;
	size_t offs[FLATJSON_MAX_FIELDS];
	out->n = 0;
	p = skip_ws(p, e);
	if (p >= e || *p++ != '{')
		return -1;
	p = skip_ws(p, e);
	if (p < e && *p == '}') {
		p++;
	} else {
		for (;;) {
			if (out->n == FLATJSON_MAX_FIELDS || p >= e || *p++ != '"')
				return -1;
			flatjson_field_t *f = &out->f[out->n];
			f->key = p;
			while (p < e && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
				p++;
			if (p >= e || *p != '"')
				return -1;
			f->keylen = (size_t)(p - f->key);
			if (utf8_valid_prefix(f->key, f->keylen) != f->keylen)
				return -1;
			for (size_t i = 0; i < out->n; i++)
				if (out->f[i].keylen == f->keylen &&
				    memcmp(out->f[i].key, f->key, f->keylen) == 0)
					return -1; /* jansson keeps the last: leave it to jansson */
			p = skip_ws(p + 1, e);
			if (p >= e || *p++ != ':')
				return -1;
			p = skip_ws(p, e);
			f->str = NULL;
			if (p < e && *p == '"') {
				f->type = 's';
				p = string(p + 1, e, store, &offs[out->n], &f->len);
			} else if (p < e && (*p == 't' || *p == 'f' || *p == 'n')) {
				static const char *const words[] = {"true", "false", "null"};
				int w = *p == 't' ? 0 : *p == 'f' ? 1 : 2;
				size_t n = strlen(words[w]);
				if ((size_t)(e - p) < n || memcmp(p, words[w], n) != 0)
					return -1;
				p += n;
				f->type = w == 2 ? 'n' : 'b';
				f->num = w == 0;
			} else {
				f->type = 'i';
				p = number(p, e, &f->num);
			}
			if (p == NULL)
				return -1;
			out->n++;
			p = skip_ws(p, e);
			if (p < e && *p == ',') {
				p = skip_ws(p + 1, e);
				continue;
			}
			if (p >= e || *p++ != '}')
				return -1;
			break;
		}
	}
	if (skip_ws(p, e) != e)
		return -1;
	for (size_t i = 0; i < out->n; i++)
		if (out->f[i].type == 's') /* now that store stops moving */
			out->f[i].str = buf_data(store) + offs[i];
	return 0;
}

const flatjson_field_t *flatjson_get(const flatjson_t *j, const char *key)
{
	size_t n = strlen(key);
	for (size_t i = 0; i < j->n; i++)
		if (j->f[i].keylen == n && memcmp(j->f[i].key, key, n) == 0)
			return &j->f[i];
	return NULL;
}
