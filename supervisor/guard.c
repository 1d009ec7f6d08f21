/*
 * guard: the trust decisions (see guard.h). Pure: everything it needs is
 * passed in, so tests/unit/test_guard.c can table-test every case.
 */
#include "supervisor/guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "supervisor/route.h"

static int str_is(guard_str_t s, const char *lit)
{
	size_t n = strlen(lit);
	return s.p != NULL && s.len == n && memcmp(s.p, lit, n) == 0;
}

static int lower(int ch)
{
	return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

static int str_ieq(const char *a, size_t alen, const char *lit)
{
	size_t n = strlen(lit);
	if (alen != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (lower((unsigned char)a[i]) != lit[i])
			return 0;
	return 1;
}

int guard_peer_allowed(const guard_conf_t *c, long peer_uid)
{
	return peer_uid >= 0 && ((uid_t)peer_uid == c->uid || peer_uid == 0);
}

int guard_origin_allowed(const guard_conf_t *c, guard_str_t origin)
{
	if (origin.p == NULL || str_is(origin, "null"))
		return 0;
	for (int i = 0; i < c->norigins; i++)
		if (str_is(origin, c->origins[i]))
			return 1;
	return 0;
}

/* ":digits" making a port 1..65535, or nothing. */
static int port_ok(const char *p, size_t len)
{
	if (len == 0)
		return 1;
	if (p[0] != ':' || len < 2 || len > 6)
		return 0;
	unsigned v = 0;
	for (size_t i = 1; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return 0;
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	return v >= 1 && v <= 65535;
}

int guard_host_is_loopback(guard_str_t host)
{
	char name[64];
	const char *p = host.p, *end = host.p + host.len;
	if (p == NULL || host.len == 0)
		return 0;
	if (p[0] == '[') {
		const char *close = memchr(p, ']', host.len);
		size_t n = close ? (size_t)(close - p - 1) : 0;
		if (close == NULL || n == 0 || n >= sizeof(name) ||
		    !port_ok(close + 1, (size_t)(end - close - 1)))
			return 0;
		memcpy(name, p + 1, n);
		name[n] = '\0';
		struct in6_addr a6;
		return inet_pton(AF_INET6, name, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
	}
	const char *colon = memchr(p, ':', host.len);
	size_t n = colon ? (size_t)(colon - p) : host.len;
	if (n == 0 || n >= sizeof(name) || (colon != NULL && !port_ok(colon, (size_t)(end - colon))))
		return 0;
	memcpy(name, p, n);
	name[n] = '\0';
	if (str_ieq(name, n, "localhost"))
		return 1;
	/* inet_pton(AF_INET) takes only the dotted quad: no "127.1", no
	 * octal, no hex, so what it accepts is what a browser would send. */
	struct in_addr a4;
	return inet_pton(AF_INET, name, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

int guard_addr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return 0;
}

int guard_token_equal(const char *want, size_t wlen, const char *got, size_t glen)
{
	/* Every byte of want is compared whatever got holds, so the time taken
	 * depends on want's length only. */
	volatile unsigned char diff = (unsigned char)(wlen != glen || wlen == 0);
	for (size_t i = 0; i < wlen; i++) {
		unsigned char g = i < glen ? (unsigned char)got[i] : 0;
		diff |= (unsigned char)((unsigned char)want[i] ^ g);
	}
	return diff == 0;
}

int guard_token_valid(const char *tok, size_t len)
{
	if (len < GUARD_TOKEN_MIN || len > GUARD_TOKEN_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)tok[i] <= 0x20 || (unsigned char)tok[i] >= 0x7f)
			return 0;
	return 1;
}

int guard_origin_valid(const char *o)
{
	size_t len = strlen(o);
	const char *sep = strstr(o, "://");
	if (len == 0 || len > GUARD_ORIGIN_MAX || sep == NULL || sep == o || sep[3] == '\0')
		return 0;
	/* scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), lower case as
	 * browsers serialise it. */
	for (const char *p = o; p < sep; p++)
		if (!((*p >= 'a' && *p <= 'z') || (p > o && ((*p >= '0' && *p <= '9') || strchr("+-.", *p)))))
			return 0;
	/* host[:port]: no path, query, fragment, userinfo, space or control
	 * byte, so only the exact serialised origin can match. */
	for (const char *p = sep + 3; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || strchr("/?#@\\\"'*", *p))
			return 0;
	return 1;
}

/* "Bearer <token>": the scheme is case-insensitive (RFC 7235); the token
 * is what follows the spaces. */
static int bearer(guard_str_t h, const char **tok, size_t *len)
{
	if (h.p == NULL || h.len < 7 || !str_ieq(h.p, 6, "bearer") || h.p[6] != ' ')
		return 0;
	size_t i = 7;
	while (i < h.len && h.p[i] == ' ')
		i++;
	size_t j = h.len;
	while (j > i && (h.p[j - 1] == ' ' || h.p[j - 1] == '\t'))
		j--;
	*tok = h.p + i;
	*len = j - i;
	return j > i;
}

/* /v1/workspaces/{id}/events: the only route a browser reaches with
 * EventSource, which cannot send an Authorization header. The handler's
 * own route table decides. */
static int is_events_path(guard_str_t path)
{
	route_t r;
	if (path.p == NULL)
		return 0;
	route_match(path.p, path.len, &r);
	return r.id == ROUTE_EVENTS;
}

static void deny(guard_verdict_t *v, int status, const char *message)
{
	v->action = GUARD_DENY;
	v->status = status;
	snprintf(v->message, sizeof(v->message), "%s", message);
}

static void check_token(const guard_conf_t *c, const guard_req_t *r, guard_verdict_t *v)
{
	const char *tok;
	size_t len;
	char q[GUARD_TOKEN_MAX + 2];
	int n;

	if (r->nauthorization > 1) {
		deny(v, 401, "unauthorized: more than one Authorization header");
		return;
	}
	if (r->authorization.p != NULL) {
		if (!bearer(r->authorization, &tok, &len)) {
			deny(v, 401, "unauthorized: want Authorization: Bearer <token>");
			return;
		}
	} else if (v->cors && str_is(r->method, "GET") && is_events_path(r->path) && r->query.p != NULL &&
		   (n = route_query_param(r->query.p, r->query.len, "token", q, sizeof(q))) >= 0) {
		tok = q;
		len = (size_t)n;
	} else {
		deny(v, 401, "unauthorized: a bearer token is required");
		return;
	}
	if (c->token == NULL || !guard_token_equal(c->token, c->token_len, tok, len))
		deny(v, 401, "unauthorized: wrong bearer token");
}

void guard_decide(const guard_conf_t *c, const guard_req_t *r, guard_verdict_t *v)
{
	memset(v, 0, sizeof(*v));
	v->action = GUARD_ALLOW;

	if (r->transport == GUARD_UNIX && !guard_peer_allowed(c, r->peer_uid)) {
		deny(v, 403, "");
		snprintf(v->message, sizeof(v->message), "forbidden: peer uid %ld is not the daemon's user",
			 r->peer_uid);
		return;
	}
	if (r->norigin > 1) {
		deny(v, 403, "forbidden: more than one Origin header");
		return;
	}
	if (r->origin.p != NULL) {
		if (!guard_origin_allowed(c, r->origin)) {
			deny(v, 403, "forbidden: this Origin is not allowed (see --allow-origin)");
			return;
		}
		v->cors = 1;
	}
	if (r->transport == GUARD_TCP && !guard_host_is_loopback(r->host)) {
		deny(v, 403, "forbidden: Host must be localhost or a loopback address");
		return;
	}
	if (v->cors && str_is(r->method, "OPTIONS") && r->acr_method.p != NULL) {
		v->action = GUARD_PREFLIGHT;
		v->status = 204;
		return;
	}
	if (r->transport == GUARD_TCP)
		check_token(c, r, v);
}
