/*
 * limits: the one table of the supervisor's limits (SPEC §7 "Limits"):
 * each has a maximum, a count of refusals (for metrics) and one log line
 * per episode, so an operator sees what was refused and why without a
 * flood taking the log with it.
 */
#ifndef CRUSH_LIMITS_H
#define CRUSH_LIMITS_H

#include <stdint.h>

typedef enum limit_id {
	LIMIT_WORKSPACES,     /* live workspaces (--max-workspaces) */
	LIMIT_STREAMS,	      /* open event streams (--max-streams) */
	LIMIT_CLIENT_STREAMS, /* open event streams of one client id */
	LIMIT_CONNECTIONS,    /* accepted connections, by the fd budget */
	LIMIT_RESETS,	      /* requests a connection abandons per second (rapid reset) */
	LIMIT_HEADERS,	      /* header count and bytes of one request */
	LIMIT_IDLE,	      /* a connection with no request in flight, past its deadline */
	LIMIT_SLOW_READERS,   /* streams ended for not reading */
	LIMIT_QUEUED_BYTES,   /* bytes queued to all streams at once */
	LIMIT_CALLS,	      /* routed requests waiting or in flight per worker */
	LIMIT_LOOKUPS,	      /* path lookups (creates, joins, ?path=) queued or running */
	LIMIT_N
} limit_id_t;

#define LIMIT_DEFAULT_WORKSPACES     512
#define LIMIT_DEFAULT_STREAMS	     4096
#define LIMIT_DEFAULT_CLIENT_STREAMS 64
#define LIMIT_DEFAULT_RESETS	     100 /* per connection per second */
#define LIMIT_DEFAULT_HEADERS	     100 /* headers of one request */
#define LIMIT_DEFAULT_HEADER_BYTES   (64u << 10)
#define LIMIT_DEFAULT_CALLS	     64 /* per worker: waiting + in flight */
#define LIMIT_DEFAULT_LOOKUPS	     1024
/* A connection with no request in flight for this long is cut (conns.c);
 * CRUSH_SERVER_HEADER_TIMEOUT sets it. Longer than h2o's own 10 s idle
 * timeouts, so only a connection that trickles bytes hits it. */
#define LIMIT_DEFAULT_IDLE_MS	   15000
#define LIMIT_DEFAULT_QUEUED_BYTES (256u << 20)
#define LIMIT_LOG_EVERY_MS	   10000

typedef struct limits {
	uint64_t max[LIMIT_N];
	uint64_t refused[LIMIT_N];   /* since start */
	uint64_t logged_at[LIMIT_N]; /* when the last line was written */
	uint64_t unlogged[LIMIT_N];  /* refusals since that line */
} limits_t;

void limits_init(limits_t *l);
/* "workspaces", "streams", ...: the name in logs and metrics. */
const char *limit_name(limit_id_t id);
/* Counts a refusal of id at now (ms) and logs it, at most one line per
 * LIMIT_LOG_EVERY_MS per limit (that line says how many were refused
 * since the last). detail may be NULL. */
void limits_refuse(limits_t *l, limit_id_t id, uint64_t now, const char *detail);

#endif
