/*
 * fuzz_http: the request-target parsing of the API (supervisor/route.c):
 * route_query_param against a plain reference decoder (first "name=" pair;
 * %XX and '+' decoded; cut to the buffer, no overrun), route_segment, which
 * cuts the {id} out of /v1/workspaces/{id}..., route_match (never reads
 * past the path; a matched {id} is the segment), and route_event_id
 * against strtoull.
 *
 * Input: byte 0 = output buffer size - 1 (low 7 bits) and which parameter
 * (bit 7); the rest is the request path, query included.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor/route.h"

#include "fuzz/check.h"

/* The whole decoded value of name in query q[0..n) into out (n + 1 bytes). */
static int ref_param(const char *q, size_t n, const char *name, char *out)
{
	size_t nl = strlen(name);

	for (size_t i = 0; i <= n;) {
		size_t j = i;
		while (j < n && q[j] != '&')
			j++;
		if (j - i > nl && memcmp(q + i, name, nl) == 0 && q[i + nl] == '=') {
			size_t k = 0;
			for (size_t x = i + nl + 1; x < j; x++) {
				if (q[x] == '%' && x + 2 < j && isxdigit((unsigned char)q[x + 1]) &&
				    isxdigit((unsigned char)q[x + 2])) {
					char hex[3] = {q[x + 1], q[x + 2], 0};
					out[k++] = (char)strtol(hex, NULL, 16);
					x += 2;
				} else {
					out[k++] = q[x] == '+' ? ' ' : q[x];
				}
			}
			return (int)k;
		}
		i = j + 1;
	}
	return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 16 * 1024)
		return 0;
	size_t outlen = (size_t)(data[0] & 0x7f) + 1, plen = size - 1;
	const char *name = data[0] & 0x80 ? "last_event_id" : "client_id";
	char *path = malloc(plen + 1), *out = malloc(outlen), *ref = malloc(plen + 1), id[16];

	memcpy(path, data + 1, plen);
	path[plen] = '\0';
	const char *qm = memchr(path, '?', plen);

	int n = qm ? route_query_param(qm + 1, plen - (size_t)(qm + 1 - path), name, out, outlen) : -1;
	int rn = qm ? ref_param(qm + 1, plen - (size_t)(qm + 1 - path), name, ref) : -1;
	CHECK((n < 0) == (rn < 0));
	if (n >= 0) {
		size_t want = (size_t)rn < outlen - 1 ? (size_t)rn : outlen - 1;
		CHECK((size_t)n == want && out[n] == '\0' && memcmp(out, ref, want) == 0);
	}

	/* segment: {id} is the non-empty, '/'-free run after the prefix. */
	const char *rest = route_segment(path, plen, "/v1/workspaces/", id, sizeof(id));
	int prefixed = plen > 15 && memcmp(path, "/v1/workspaces/", 15) == 0;
	const char *slash = prefixed ? memchr(path + 15, '/', plen - 15) : NULL;
	size_t l = prefixed ? (slash ? (size_t)(slash - path) : plen) - 15 : 0;
	int nul = prefixed && memchr(path + 15, '\0', l) != NULL;
	if (rest != NULL)
		CHECK(prefixed && l > 0 && l < sizeof(id) && !nul && memcmp(id, path + 15, l) == 0 &&
		      id[l] == '\0' && rest == path + 15 + l);
	else
		CHECK(!prefixed || l == 0 || l >= sizeof(id) || nul);

	/* route_match on the path before '?': a route with {id} carries the
	 * segment verbatim. The path is an exact-size copy: ASan sees any
	 * read past it. */
	size_t mlen = qm ? (size_t)(qm - path) : plen;
	char *exact = malloc(mlen ? mlen : 1);
	memcpy(exact, path, mlen);
	route_t r;
	route_match(exact, mlen, &r);
	if (r.id == ROUTE_FORWARD)
		CHECK(r.rest == 15 + strlen(r.param) && r.rest + 1 < mlen && exact[r.rest] == '/');
	if (r.id == ROUTE_WORKSPACE || r.id == ROUTE_EVENTS || r.id == ROUTE_FORWARD ||
	    r.id == ROUTE_CURRENT_SESSION) {
		size_t pl = strlen(r.param);
		CHECK(mlen >= 15 + pl && pl > 0 && memcmp(exact + 15, r.param, pl) == 0 &&
		      (15 + pl == mlen || exact[15 + pl] == '/'));
	} else if (r.id == ROUTE_NONE)
		CHECK(r.param[0] == '\0');
	free(exact);

	/* route_event_id: exactly the all-digit strings strtoull takes whole. */
	uint64_t v;
	int ok = route_event_id(path, plen, &v) == 0;
	int digits = plen > 0;
	for (size_t i = 0; i < plen && digits; i++)
		digits = path[i] >= '0' && path[i] <= '9';
	if (digits) {
		errno = 0;
		unsigned long long want = strtoull(path, NULL, 10);
		CHECK(ok == (errno == 0) && (!ok || v == want));
	} else {
		CHECK(!ok);
	}
	free(path);
	free(out);
	free(ref);
	return 0;
}
