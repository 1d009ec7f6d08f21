/*
 * fuzz_http: the request-target parsing of the API (supervisor/http.c,
 * included here for its statics): query_param against a plain reference
 * decoder (first "name=" pair; %XX and '+' decoded; cut to the buffer, no
 * overrun), and segment, which cuts the {id} out of /v1/workspaces/{id}...
 *
 * Input: byte 0 = output buffer size - 1 (low 7 bits) and which parameter
 * (bit 7); the rest is the request path, query included.
 */
#include "supervisor/http.c"

#include <ctype.h>
#include <stdio.h>

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
	h2o_req_t req;

	memcpy(path, data + 1, plen);
	path[plen] = '\0';
	memset(&req, 0, sizeof(req));
	req.path = h2o_iovec_init(path, plen);
	const char *qm = memchr(path, '?', plen);
	req.query_at = qm ? (size_t)(qm - path) : SIZE_MAX;

	int n = query_param(&req, name, out, outlen);
	int rn = qm ? ref_param(qm + 1, plen - (size_t)(qm + 1 - path), name, ref) : -1;
	CHECK((n < 0) == (rn < 0));
	if (n >= 0) {
		size_t want = (size_t)rn < outlen - 1 ? (size_t)rn : outlen - 1;
		CHECK((size_t)n == want && out[n] == '\0' && memcmp(out, ref, want) == 0);
	}

	/* segment: {id} is the non-empty, '/'-free run after the prefix. */
	const char *rest = segment(path, plen, "/v1/workspaces/", id, sizeof(id));
	int prefixed = plen > 15 && memcmp(path, "/v1/workspaces/", 15) == 0;
	const char *slash = prefixed ? memchr(path + 15, '/', plen - 15) : NULL;
	size_t l = prefixed ? (slash ? (size_t)(slash - path) : plen) - 15 : 0;
	if (rest != NULL)
		CHECK(prefixed && l > 0 && l < sizeof(id) && memcmp(id, path + 15, l) == 0 && id[l] == '\0' &&
		      rest == path + 15 + l);
	else
		CHECK(!prefixed || l == 0 || l >= sizeof(id));
	free(path);
	free(out);
	free(ref);
	return 0;
}
