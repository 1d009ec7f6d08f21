/*
 * route: request-target parsing for the v1 API (see route.h).
 */
#include "supervisor/route.h"

#include <string.h>

unsigned route_method(const char *m, size_t len)
{
	if (len == 3 && memcmp(m, "GET", 3) == 0)
		return ROUTE_GET;
	if (len == 4 && memcmp(m, "POST", 4) == 0)
		return ROUTE_POST;
	if (len == 6 && memcmp(m, "DELETE", 6) == 0)
		return ROUTE_DELETE;
	if (len == 3 && memcmp(m, "PUT", 3) == 0)
		return ROUTE_PUT;
	return ROUTE_OTHER;
}

static int is(const char *p, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(p, lit, len) == 0;
}

static void set(route_t *r, route_id_t id, unsigned methods, const char *allow)
{
	r->id = id;
	r->methods = methods;
	r->allow = allow;
}

void route_match(const char *p, size_t len, route_t *r)
{
	const char *rest;

	set(r, ROUTE_NONE, 0, "");
	r->param[0] = '\0';
	r->rest = 0;
	if (is(p, len, "/v1/health"))
		set(r, ROUTE_HEALTH, ROUTE_GET, "GET");
	else if (is(p, len, "/v1/version"))
		set(r, ROUTE_VERSION, ROUTE_GET, "GET");
	else if (is(p, len, "/v1/workspaces"))
		set(r, ROUTE_WORKSPACES, ROUTE_GET | ROUTE_POST, "GET, POST");
	else if (is(p, len, "/v1/metrics"))
		set(r, ROUTE_METRICS, ROUTE_GET, "GET");
	else if (is(p, len, "/v1/control"))
		set(r, ROUTE_CONTROL, ROUTE_POST, "POST");
	else if ((rest = route_segment(p, len, "/v1/workspaces/", r->param, sizeof(r->param))) != NULL) {
		size_t rlen = (size_t)(p + len - rest);
		if (rlen == 0)
			set(r, ROUTE_WORKSPACE, ROUTE_GET | ROUTE_DELETE, "GET, DELETE");
		else if (is(rest, rlen, "/events"))
			set(r, ROUTE_EVENTS, ROUTE_GET, "GET");
		else if (is(rest, rlen, "/current-session"))
			set(r, ROUTE_CURRENT_SESSION, ROUTE_POST, "POST");
		else if (rlen > 1) {
			set(r, ROUTE_FORWARD, ROUTE_ANY, "");
			r->rest = (size_t)(rest - p);
		}
	} else if ((rest = route_segment(p, len, "/v1/clients/", r->param, sizeof(r->param))) != NULL &&
		   rest == p + len) {
		set(r, ROUTE_CLIENT, ROUTE_DELETE, "DELETE");
	}
	if (r->id == ROUTE_NONE)
		r->param[0] = '\0';
}

const char *route_segment(const char *p, size_t len, const char *prefix, char *id, size_t idlen)
{
	size_t plen = strlen(prefix);
	if (len <= plen || memcmp(p, prefix, plen) != 0)
		return NULL;
	const char *start = p + plen, *end = p + len;
	const char *slash = memchr(start, '/', (size_t)(end - start));
	const char *stop = slash ? slash : end;
	if (stop == start || (size_t)(stop - start) >= idlen || memchr(start, '\0', (size_t)(stop - start)))
		return NULL;
	memcpy(id, start, (size_t)(stop - start));
	id[stop - start] = '\0';
	return stop;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int route_query_param(const char *q, size_t len, const char *name, char *out, size_t outlen)
{
	const char *end = q + len;
	size_t nlen = strlen(name);
	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *stop = amp ? amp : end;
		if ((size_t)(stop - q) > nlen && memcmp(q, name, nlen) == 0 && q[nlen] == '=') {
			size_t n = 0;
			for (const char *p = q + nlen + 1; p < stop && n + 1 < outlen; p++) {
				int hi, lo;
				if (*p == '%' && stop - p >= 3 && (hi = hexval(p[1])) >= 0 &&
				    (lo = hexval(p[2])) >= 0) {
					out[n++] = (char)(hi << 4 | lo);
					p += 2;
				} else {
					out[n++] = *p == '+' ? ' ' : *p;
				}
			}
			out[n] = '\0';
			return (int)n;
		}
		q = stop + 1;
	}
	return -1;
}

int route_event_id(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	if (len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}
