/*
 * guard: who may talk to the daemon (SPEC §2.7, §7), decided in one place
 * by pure functions: no h2o, no syscalls, no clock. gate.c feeds it what a
 * connection and a request carry (transport, peer uid, Origin, Host,
 * Authorization, method) and does what the verdict says; options.c and
 * listen.c ask it whether a flag value or a bound address is acceptable.
 */
#ifndef CRUSH_GUARD_H
#define CRUSH_GUARD_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#define GUARD_MAX_ORIGINS 16
#define GUARD_TOKEN_MIN	  16  /* bytes: shorter tokens are refused at start */
#define GUARD_TOKEN_MAX	  256 /* bytes */
#define GUARD_ORIGIN_MAX  255 /* bytes of one --allow-origin */

/* Seconds a browser may cache a preflight answer. */
#define GUARD_PREFLIGHT_MAX_AGE "600"
#define GUARD_ALLOW_METHODS	"GET, POST, PUT, DELETE, OPTIONS"
#define GUARD_ALLOW_HEADERS	"Authorization, Content-Type, Last-Event-ID"

/* A header or request field: p == NULL when absent. Not NUL-terminated. */
typedef struct guard_str {
	const char *p;
	size_t len;
} guard_str_t;

typedef enum guard_transport {
	GUARD_UNIX, /* trusted by peer uid (SO_PEERCRED) */
	GUARD_TCP,  /* trusted by bearer token; Host must be loopback */
} guard_transport_t;

/* The policy: filled once at start, read-only afterwards. Borrows every
 * string it points at (the token buffer and argv live as long as it). */
typedef struct guard_conf {
	uid_t uid;	   /* the daemon's; unix peers must be it or 0 */
	const char *token; /* TCP bearer token; NULL: every TCP request gets 401 */
	size_t token_len;
	const char *origins[GUARD_MAX_ORIGINS]; /* --allow-origin, exact */
	int norigins;
} guard_conf_t;

/* What one request carries. */
typedef struct guard_req {
	guard_transport_t transport;
	long peer_uid;		   /* unix: the peer's uid; -1 unknown (refused) */
	guard_str_t method;	   /* "GET", "OPTIONS", ... */
	guard_str_t path;	   /* normalised, without the query */
	guard_str_t query;	   /* after '?', absent when none */
	guard_str_t host;	   /* Host / :authority */
	guard_str_t origin;	   /* the first Origin header */
	guard_str_t authorization; /* the first Authorization header */
	guard_str_t acr_method;	   /* Access-Control-Request-Method */
	int norigin;		   /* how many Origin headers */
	int nauthorization;	   /* how many Authorization headers */
} guard_req_t;

typedef enum guard_action {
	GUARD_ALLOW,	 /* hand the request to the API */
	GUARD_PREFLIGHT, /* answer 204 with the CORS preflight headers */
	GUARD_DENY,	 /* answer status with {"message": message} */
} guard_action_t;

typedef struct guard_verdict {
	guard_action_t action;
	int status;	  /* 204 (preflight), 401 or 403 (deny); 0 when allowed */
	int cors;	  /* the Origin is allowed: every answer carries ACAO + Vary */
	char message[96]; /* deny: the JSON message; never echoes request bytes */
} guard_verdict_t;

/*
 * The decision, in this order:
 *  1. unix: peer uid not ours and not 0 -> 403;
 *  2. an Origin header (any method, any content type) that is not exactly
 *     an allowed origin, "null", or more than one Origin header -> 403;
 *  3. TCP: Host not a loopback address or "localhost" -> 403 (DNS
 *     rebinding);
 *  4. OPTIONS with an allowed Origin and Access-Control-Request-Method ->
 *     preflight (no token: browsers send none on a preflight);
 *  5. TCP: "Authorization: Bearer <token>" compared in constant time, or,
 *     for GET /v1/workspaces/{id}/events with an allowed Origin and no
 *     Authorization header, the `token` query parameter (EventSource can
 *     send no header) -> else 401;
 *  6. allow.
 */
void guard_decide(const guard_conf_t *c, const guard_req_t *r, guard_verdict_t *v);

/* A unix peer is the daemon's own user or root. */
int guard_peer_allowed(const guard_conf_t *c, long peer_uid);

/* 1 when origin (present) is exactly one of the allowed origins. "null"
 * never is. */
int guard_origin_allowed(const guard_conf_t *c, guard_str_t origin);

/* 1 for "localhost", 127.x.x.x or [::1] (any spelling inet_pton reads),
 * each with an optional :port; 0 for anything else, absent included. */
int guard_host_is_loopback(guard_str_t host);

/* 1 for an AF_INET 127/8, AF_INET6 ::1 or ::ffff:127/104 address. */
int guard_addr_is_loopback(const struct sockaddr *sa);

/* Constant-time in the bytes of `want` (its length may leak, not its
 * contents): 1 when got equals want. */
int guard_token_equal(const char *want, size_t wlen, const char *got, size_t glen);

/* An acceptable token: GUARD_TOKEN_MIN..GUARD_TOKEN_MAX bytes, each
 * printable ASCII without space (it travels in a header). */
int guard_token_valid(const char *tok, size_t len);

/* An acceptable --allow-origin: scheme://host[:port] as a browser
 * serialises it (no path, no trailing slash, no "*", no "null"). */
int guard_origin_valid(const char *origin);

#endif
