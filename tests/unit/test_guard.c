/*
 * Unit tests for supervisor/guard.c: who may talk to the daemon (SPEC
 * §7). One table of requests and the verdict each must get, then the
 * helpers it is built from: loopback hosts and addresses, the token
 * compare, and what --allow-origin and a token may be.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "supervisor/guard.h"

#define UID   1000
#define TOKEN "0123456789abcdef0123456789abcdef"
#define PAGE  "http://127.0.0.1:8080"

static guard_str_t S(const char *s)
{
	guard_str_t v = {s, s != NULL ? strlen(s) : 0};
	return v;
}

static guard_conf_t conf(void)
{
	guard_conf_t c;
	memset(&c, 0, sizeof(c));
	c.uid = UID;
	c.token = TOKEN;
	c.token_len = strlen(TOKEN);
	c.origins[c.norigins++] = PAGE;
	c.origins[c.norigins++] = "https://dash.example";
	return c;
}

typedef struct row {
	const char *name;
	guard_transport_t transport;
	long peer_uid;
	const char *method, *path, *query, *host, *origin, *auth, *acrm;
	int norigin, nauth; /* 0: 1 when the header is given */
	guard_action_t action;
	int status, cors;
	const char *message; /* a substring of the message, or NULL */
} row_t;

#define BEARER "Bearer " TOKEN
#define EVENTS "/v1/workspaces/w1/events"

/* clang-format off */
static const row_t rows[] = {
    /* unix: the peer uid decides; no token, no Host rule */
    {"unix peer of the daemon's user", GUARD_UNIX, UID, "GET", "/v1/workspaces", NULL, NULL, NULL, NULL, NULL, 0, 0, GUARD_ALLOW, 0, 0, NULL},
    {"unix peer root", GUARD_UNIX, 0, "POST", "/v1/workspaces", NULL, "evil.example", NULL, NULL, NULL, 0, 0, GUARD_ALLOW, 0, 0, NULL},
    {"unix peer of another user", GUARD_UNIX, 65534, "GET", "/v1/health", NULL, NULL, NULL, NULL, NULL, 0, 0, GUARD_DENY, 403, 0, "peer uid 65534 is not the daemon's user"},
    {"unix peer unknown", GUARD_UNIX, -1, "GET", "/v1/health", NULL, NULL, NULL, NULL, NULL, 0, 0, GUARD_DENY, 403, 0, "peer uid -1"},
    {"unix: a token is not a way in for another user", GUARD_UNIX, 65534, "GET", "/v1/health", NULL, "localhost", NULL, BEARER, NULL, 0, 0, GUARD_DENY, 403, 0, NULL},
    /* Origin, on either transport, whatever the method and content */
    {"unix cross-origin simple POST", GUARD_UNIX, UID, "POST", "/v1/workspaces", NULL, NULL, "http://evil.example", NULL, NULL, 0, 0, GUARD_DENY, 403, 0, "Origin is not allowed"},
    {"unix Origin null", GUARD_UNIX, UID, "POST", "/v1/workspaces", NULL, NULL, "null", NULL, NULL, 0, 0, GUARD_DENY, 403, 0, "Origin"},
    {"tcp cross-origin POST with the right token", GUARD_TCP, -1, "POST", "/v1/workspaces", NULL, "127.0.0.1:7000", "http://evil.example", BEARER, NULL, 0, 0, GUARD_DENY, 403, 0, "Origin"},
    {"tcp Origin null with the token", GUARD_TCP, -1, "GET", "/v1/workspaces", NULL, "localhost", "null", BEARER, NULL, 0, 0, GUARD_DENY, 403, 0, NULL},
    {"origin differing only in port", GUARD_TCP, -1, "GET", "/v1/workspaces", NULL, "localhost", "http://127.0.0.1:8081", BEARER, NULL, 0, 0, GUARD_DENY, 403, 0, NULL},
    {"origin with a trailing slash", GUARD_TCP, -1, "GET", "/v1/workspaces", NULL, "localhost", PAGE "/", BEARER, NULL, 0, 0, GUARD_DENY, 403, 0, NULL},
    {"origin differing in case", GUARD_TCP, -1, "GET", "/v1/workspaces", NULL, "localhost", "HTTP://127.0.0.1:8080", BEARER, NULL, 0, 0, GUARD_DENY, 403, 0, NULL},
    {"two Origin headers, the first allowed", GUARD_TCP, -1, "GET", "/v1/workspaces", NULL, "localhost", PAGE, BEARER, NULL, 2, 0, GUARD_DENY, 403, 0, "more than one Origin"},
    {"preflight from a foreign origin", GUARD_TCP, -1, "OPTIONS", "/v1/workspaces", NULL, "localhost", "http://evil.example", NULL, "POST", 0, 0, GUARD_DENY, 403, 0, NULL},
    /* Host on tcp (DNS rebinding) */
    {"tcp Host rebinding name", GUARD_TCP, -1, "GET", "/v1/workspaces", NULL, "evil.example:7000", NULL, BEARER, NULL, 0, 0, GUARD_DENY, 403, 0, "Host"},
    {"tcp Host missing", GUARD_TCP, -1, "GET", "/v1/workspaces", NULL, NULL, NULL, BEARER, NULL, 0, 0, GUARD_DENY, 403, 0, "Host"},
    {"tcp Host a private address", GUARD_TCP, -1, "GET", "/v1/workspaces", NULL, "192.168.1.2:7000", NULL, BEARER, NULL, 0, 0, GUARD_DENY, 403, 0, NULL},
    {"tcp Host localhost.evil", GUARD_TCP, -1, "GET", "/v1/workspaces", NULL, "localhost.evil.example", NULL, BEARER, NULL, 0, 0, GUARD_DENY, 403, 0, NULL},
    {"tcp Host 127.0.0.1:port", GUARD_TCP, -1, "GET", "/v1/workspaces", NULL, "127.0.0.1:7000", NULL, BEARER, NULL, 0, 0, GUARD_ALLOW, 0, 0, NULL},
    {"tcp Host [::1]:port", GUARD_TCP, -1, "GET", "/v1/workspaces", NULL, "[::1]:7000", NULL, BEARER, NULL, 0, 0, GUARD_ALLOW, 0, 0, NULL},
    {"tcp Host LOCALHOST", GUARD_TCP, -1, "GET", "/v1/workspaces", NULL, "LOCALHOST", NULL, BEARER, NULL, 0, 0, GUARD_ALLOW, 0, 0, NULL},
    /* the token on tcp */
    {"tcp no token", GUARD_TCP, -1, "GET", "/v1/health", NULL, "localhost", NULL, NULL, NULL, 0, 0, GUARD_DENY, 401, 0, "token is required"},
    {"tcp wrong token", GUARD_TCP, -1, "GET", "/v1/health", NULL, "localhost", NULL, "Bearer " TOKEN "x", NULL, 0, 0, GUARD_DENY, 401, 0, "wrong bearer token"},
    {"tcp token prefix", GUARD_TCP, -1, "GET", "/v1/health", NULL, "localhost", NULL, "Bearer 0123456789abcdef", NULL, 0, 0, GUARD_DENY, 401, 0, "wrong"},
    {"tcp empty bearer", GUARD_TCP, -1, "GET", "/v1/health", NULL, "localhost", NULL, "Bearer ", NULL, 0, 0, GUARD_DENY, 401, 0, NULL},
    {"tcp Basic scheme", GUARD_TCP, -1, "GET", "/v1/health", NULL, "localhost", NULL, "Basic " TOKEN, NULL, 0, 0, GUARD_DENY, 401, 0, "Bearer"},
    {"tcp bare token", GUARD_TCP, -1, "GET", "/v1/health", NULL, "localhost", NULL, TOKEN, NULL, 0, 0, GUARD_DENY, 401, 0, NULL},
    {"tcp two Authorization headers", GUARD_TCP, -1, "GET", "/v1/health", NULL, "localhost", NULL, BEARER, NULL, 0, 2, GUARD_DENY, 401, 0, "more than one"},
    {"tcp right token", GUARD_TCP, -1, "GET", "/v1/health", NULL, "localhost:7000", NULL, BEARER, NULL, 0, 0, GUARD_ALLOW, 0, 0, NULL},
    {"tcp scheme in lower case, extra spaces", GUARD_TCP, -1, "GET", "/v1/health", NULL, "localhost", NULL, "bearer   " TOKEN "  ", NULL, 0, 0, GUARD_ALLOW, 0, 0, NULL},
    {"tcp text/plain JSON create with the token", GUARD_TCP, -1, "POST", "/v1/workspaces", NULL, "localhost", NULL, BEARER, NULL, 0, 0, GUARD_ALLOW, 0, 0, NULL},
    /* allowed origins: CORS */
    {"allowed origin with the token", GUARD_TCP, -1, "POST", "/v1/workspaces", NULL, "127.0.0.1:7000", PAGE, BEARER, NULL, 0, 0, GUARD_ALLOW, 0, 1, NULL},
    {"allowed origin without the token: 401 that the page can read", GUARD_TCP, -1, "POST", "/v1/workspaces", NULL, "127.0.0.1:7000", PAGE, NULL, NULL, 0, 0, GUARD_DENY, 401, 1, NULL},
    {"allowed origin on unix", GUARD_UNIX, UID, "GET", "/v1/workspaces", NULL, NULL, "https://dash.example", NULL, NULL, 0, 0, GUARD_ALLOW, 0, 1, NULL},
    {"preflight without credentials", GUARD_TCP, -1, "OPTIONS", "/v1/workspaces", NULL, "127.0.0.1:7000", PAGE, NULL, "POST", 0, 0, GUARD_PREFLIGHT, 204, 1, NULL},
    {"preflight still needs a loopback Host", GUARD_TCP, -1, "OPTIONS", "/v1/workspaces", NULL, "evil.example", PAGE, NULL, "POST", 0, 0, GUARD_DENY, 403, 1, "Host"},
    {"OPTIONS without Access-Control-Request-Method is no preflight", GUARD_TCP, -1, "OPTIONS", "/v1/workspaces", NULL, "localhost", PAGE, NULL, NULL, 0, 0, GUARD_DENY, 401, 1, NULL},
    {"OPTIONS without Origin is no preflight", GUARD_TCP, -1, "OPTIONS", "/v1/workspaces", NULL, "localhost", NULL, NULL, "POST", 0, 0, GUARD_DENY, 401, 0, NULL},
    /* EventSource: the token in the query, only with an allowed Origin */
    {"events with query token and allowed origin", GUARD_TCP, -1, "GET", EVENTS, "client_id=c&token=" TOKEN, "127.0.0.1:7000", PAGE, NULL, NULL, 0, 0, GUARD_ALLOW, 0, 1, NULL},
    {"events with a percent-encoded query token", GUARD_TCP, -1, "GET", EVENTS, "token=0123456789abcdef0123456789abcde%66", "localhost", PAGE, NULL, NULL, 0, 0, GUARD_ALLOW, 0, 1, NULL},
    {"events with query token and no Origin", GUARD_TCP, -1, "GET", EVENTS, "client_id=c&token=" TOKEN, "127.0.0.1:7000", NULL, NULL, NULL, 0, 0, GUARD_DENY, 401, 0, NULL},
    {"events with query token and a foreign origin", GUARD_TCP, -1, "GET", EVENTS, "token=" TOKEN, "127.0.0.1:7000", "http://evil.example", NULL, NULL, 0, 0, GUARD_DENY, 403, 0, NULL},
    {"events with a wrong query token", GUARD_TCP, -1, "GET", EVENTS, "token=nope", "127.0.0.1:7000", PAGE, NULL, NULL, 0, 0, GUARD_DENY, 401, 1, "wrong"},
    {"query token on another route", GUARD_TCP, -1, "GET", "/v1/workspaces", "token=" TOKEN, "127.0.0.1:7000", PAGE, NULL, NULL, 0, 0, GUARD_DENY, 401, 1, NULL},
    {"query token on a POST", GUARD_TCP, -1, "POST", EVENTS, "token=" TOKEN, "127.0.0.1:7000", PAGE, NULL, NULL, 0, 0, GUARD_DENY, 401, 1, NULL},
    {"query token on a deeper path", GUARD_TCP, -1, "GET", "/v1/workspaces/w1/x/events", "token=" TOKEN, "127.0.0.1:7000", PAGE, NULL, NULL, 0, 0, GUARD_DENY, 401, 1, NULL},
    {"a wrong Authorization header wins over a right query token", GUARD_TCP, -1, "GET", EVENTS, "token=" TOKEN, "127.0.0.1:7000", PAGE, "Bearer nope", NULL, 0, 0, GUARD_DENY, 401, 1, NULL},
};
/* clang-format on */

static void test_every_request_gets_its_verdict(void **state)
{
	guard_conf_t c = conf();
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const row_t *w = &rows[i];
		guard_req_t r;
		guard_verdict_t v;
		memset(&r, 0, sizeof(r));
		r.transport = w->transport;
		r.peer_uid = w->peer_uid;
		r.method = S(w->method);
		r.path = S(w->path);
		r.query = S(w->query);
		r.host = S(w->host);
		r.origin = S(w->origin);
		r.authorization = S(w->auth);
		r.acr_method = S(w->acrm);
		r.norigin = w->norigin ? w->norigin : w->origin != NULL;
		r.nauthorization = w->nauth ? w->nauth : w->auth != NULL;
		guard_decide(&c, &r, &v);
		if ((int)v.action != (int)w->action || v.status != w->status || v.cors != w->cors ||
		    (w->message != NULL && strstr(v.message, w->message) == NULL))
			fail_msg("%s: got action %d status %d cors %d message \"%s\"; want %d %d %d \"%s\"",
				 w->name, v.action, v.status, v.cors, v.message, w->action, w->status,
				 w->cors, w->message ? w->message : "");
		if (v.action == GUARD_DENY && strstr(v.message, TOKEN) != NULL)
			fail_msg("%s: the message echoes the token", w->name);
	}
}

static void test_without_a_token_every_tcp_request_is_refused(void **state)
{
	guard_conf_t c = conf();
	guard_req_t r;
	guard_verdict_t v;
	(void)state;
	c.token = NULL;
	c.token_len = 0;
	memset(&r, 0, sizeof(r));
	r.transport = GUARD_TCP;
	r.method = S("GET");
	r.path = S("/v1/health");
	r.host = S("localhost");
	r.authorization = S("Bearer ");
	r.nauthorization = 1;
	guard_decide(&c, &r, &v);
	assert_int_equal(v.status, 401);
	r.authorization = S("Bearer x");
	guard_decide(&c, &r, &v);
	assert_int_equal(v.status, 401);
}

static void test_no_allowed_origin_refuses_every_origin(void **state)
{
	guard_conf_t c = conf();
	(void)state;
	c.norigins = 0;
	assert_false(guard_origin_allowed(&c, S(PAGE)));
	assert_false(guard_origin_allowed(&c, S("null")));
	assert_false(guard_origin_allowed(&c, S(NULL)));
	c.origins[c.norigins++] = "null"; /* options refuse it; guard does too */
	assert_false(guard_origin_allowed(&c, S("null")));
}

static void test_loopback_hosts(void **state)
{
	static const char *const yes[] = {
	    "localhost",   "localhost:1",     "LocalHost:65535", "127.0.0.1",  "127.0.0.1:7000",
	    "127.1.2.3:9", "127.255.255.255", "[::1]",		 "[::1]:7000", "[0:0:0:0:0:0:0:1]:80",
	};
	static const char *const no[] = {
	    "",
	    "localhost:",
	    "localhost:0",
	    "localhost:65536",
	    "localhost:80:80",
	    "localhost:+80",
	    "localhost.",
	    "a.localhost",
	    "localhost.evil.example",
	    "128.0.0.1",
	    "0.0.0.0",
	    "127.1",
	    "0x7f000001",
	    "2130706433",
	    "127.0.0.1.evil.example",
	    "[::]",
	    "[::ffff:127.0.0.1]:80",
	    "[::1",
	    "::1",
	    "[::1]x",
	    "[]:80",
	    "evil.example",
	    "default",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!guard_host_is_loopback(S(yes[i])))
			fail_msg("%s: want loopback", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (guard_host_is_loopback(S(no[i])))
			fail_msg("%s: want not loopback", no[i]);
	assert_false(guard_host_is_loopback(S(NULL)));
	/* Host values are not NUL-terminated: only len bytes count. */
	guard_str_t cut = {"localhost.evil.example", 9};
	assert_true(guard_host_is_loopback(cut));
}

static void test_loopback_addresses(void **state)
{
	struct sockaddr_in a4 = {.sin_family = AF_INET};
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
	struct sockaddr sa_unix = {.sa_family = AF_UNIX};
	static const struct {
		const char *addr;
		int loopback;
	} v4[] = {{"127.0.0.1", 1}, {"127.3.4.5", 1}, {"0.0.0.0", 0}, {"10.0.0.1", 0}, {"192.168.1.1", 0}},
	  v6[] = {{"::1", 1}, {"::ffff:127.0.0.1", 1}, {"::", 0}, {"::ffff:10.0.0.1", 0}, {"fe80::1", 0}};
	(void)state;
	for (size_t i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
		assert_int_equal(inet_pton(AF_INET, v4[i].addr, &a4.sin_addr), 1);
		if (guard_addr_is_loopback((struct sockaddr *)&a4) != v4[i].loopback)
			fail_msg("%s", v4[i].addr);
	}
	for (size_t i = 0; i < sizeof(v6) / sizeof(v6[0]); i++) {
		assert_int_equal(inet_pton(AF_INET6, v6[i].addr, &a6.sin6_addr), 1);
		if (guard_addr_is_loopback((struct sockaddr *)&a6) != v6[i].loopback)
			fail_msg("%s", v6[i].addr);
	}
	assert_false(guard_addr_is_loopback(&sa_unix));
}

static void test_token_compare(void **state)
{
	(void)state;
	assert_true(guard_token_equal("abc", 3, "abc", 3));
	assert_false(guard_token_equal("abc", 3, "abd", 3));
	assert_false(guard_token_equal("abc", 3, "ab", 2));
	assert_false(guard_token_equal("abc", 3, "abcd", 4));
	assert_false(guard_token_equal("abc", 3, "", 0));
	assert_false(guard_token_equal("", 0, "", 0)); /* an empty token never matches */
	assert_false(guard_token_equal("abc", 3, "ABC", 3));
}

static void test_what_a_token_may_be(void **state)
{
	char big[GUARD_TOKEN_MAX + 2];
	(void)state;
	assert_true(guard_token_valid(TOKEN, strlen(TOKEN)));
	assert_true(guard_token_valid("!#$%&'()*+,-./:;<=>?@[]^_`{|}~0", 31));
	assert_false(guard_token_valid("short", 5));
	assert_false(guard_token_valid("0123456789abcde", 15));
	assert_false(guard_token_valid("0123456789 abcdef", 17));
	assert_false(guard_token_valid("0123456789abcdef\n", 17));
	assert_false(guard_token_valid("0123456789abcdef\xc3\xa9", 18));
	memset(big, 'a', sizeof(big));
	assert_true(guard_token_valid(big, GUARD_TOKEN_MAX));
	assert_false(guard_token_valid(big, GUARD_TOKEN_MAX + 1));
}

static void test_what_an_allowed_origin_may_be(void **state)
{
	static const char *const yes[] = {
	    "http://127.0.0.1:8080", "https://dash.example",	  "http://[::1]:3000",
	    "http://localhost",	     "chrome-extension://abcdef",
	};
	static const char *const no[] = {
	    "",
	    "null",
	    "*",
	    "http://",
	    "://host",
	    "127.0.0.1:8080",
	    "http://host/",
	    "http://host/path",
	    "http://host?q",
	    "http://host#f",
	    "http://user@host",
	    "http://ho st",
	    "HTTP://host",
	    "1http://host",
	    "http://*.example",
	    "http://host\n",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!guard_origin_valid(yes[i]))
			fail_msg("%s: want valid", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (guard_origin_valid(no[i]))
			fail_msg("%s: want invalid", no[i]);
}

static void test_peers(void **state)
{
	guard_conf_t c = conf();
	(void)state;
	assert_true(guard_peer_allowed(&c, UID));
	assert_true(guard_peer_allowed(&c, 0));
	assert_false(guard_peer_allowed(&c, UID + 1));
	assert_false(guard_peer_allowed(&c, 65534));
	assert_false(guard_peer_allowed(&c, -1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_request_gets_its_verdict),
	    cmocka_unit_test(test_without_a_token_every_tcp_request_is_refused),
	    cmocka_unit_test(test_no_allowed_origin_refuses_every_origin),
	    cmocka_unit_test(test_loopback_hosts),
	    cmocka_unit_test(test_loopback_addresses),
	    cmocka_unit_test(test_token_compare),
	    cmocka_unit_test(test_what_a_token_may_be),
	    cmocka_unit_test(test_what_an_allowed_origin_may_be),
	    cmocka_unit_test(test_peers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
