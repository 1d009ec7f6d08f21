/*
 * server: the supervisor's imperative shell. It owns the event loop, the
 * HTTP context, the claims core, and the per-workspace shell state
 * (worker process, event streams, waiting creates), and implements the
 * effects claims asks for. One server per process; single-threaded.
 */
#ifndef CRUSH_SERVER_H
#define CRUSH_SERVER_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include <h2o.h>

#include "common/buf.h"
#include "supervisor/claims.h"
#include "supervisor/listen.h"
#include "supervisor/options.h"
#include "supervisor/replay.h"

struct proc;

/* Shell state of one workspace; ws->shell points here. Allocated by the
 * ws_new effect, freed by ws_free (after its streams and waiters left). */
typedef struct sv_ws {
	claims_ws_t *ws;
	struct proc *proc;	/* live worker process, or NULL */
	h2o_linklist_t streams; /* stream_t.link */
	h2o_linklist_t waiters; /* creates waiting for ready (http.c) */
	uint64_t last_event_id; /* ids increase per workspace, across restarts */
	replay_t replay;	/* recent events, for Last-Event-ID */
	pid_t pid;		/* current (or last) worker pid, 0 before */
	char created_at[32];	/* RFC 3339, UTC */
	char *fixed_json;	/* the Workspace object's fixed fields (http.c) */
} sv_ws_t;

typedef struct server {
	options_t *opts;
	char worker_path[PATH_MAX];
	h2o_globalconf_t config;
	h2o_context_t ctx;
	h2o_accept_ctx_t accept_ctx;
	h2o_evloop_t *loop;
	claims_t *claims;
	listener_t listeners[OPTIONS_MAX_HOSTS];
	h2o_socket_t *listen_socks[OPTIONS_MAX_HOSTS];
	int nlisteners;
	h2o_timeout_t start_timeout; /* worker must say ready within it */
	h2o_timeout_t kill_timeout;  /* SIGTERM -> SIGKILL */
	h2o_timeout_t ping_interval; /* worker liveness pings */
	h2o_timeout_t next_turn;     /* 0 ms: work resumed on the next loop turn */
	h2o_socket_t *signal_sock;   /* the signalfd */
	h2o_timeout_t keepalive;     /* event stream comment lines */
	h2o_timeout_entry_t keepalive_entry;
	h2o_linklist_t procs;	    /* every worker not yet reaped */
	h2o_linklist_t all_streams; /* stream_t.all, for keep-alives */
	unsigned nstreams;
	int stopping;  /* shutdown begun (signal) */
	int exiting;   /* exit effect fired: leave the loop */
	buf_t scratch; /* formatting of one event or one answer, reused */
} server_t;

extern server_t *g_srv;

#define WORKER_START_TIMEOUT_MS 10000
/* Crashed workers restart after 100 ms, doubling to 5 s; 5 crashes within
 * 30 s mark the workspace failed. */
#define WORKER_RESTART_MIN_MS  100
#define WORKER_RESTART_MAX_MS  5000
#define WORKER_CRASH_WINDOW_MS 30000
#define WORKER_CRASH_LIMIT     5
#define STREAM_KEEPALIVE_MS    15000

/* Monotonic milliseconds: the clock handed to claims. */
uint64_t server_now(void);

int server_init(server_t *s, options_t *opts, const char *argv0);
/* Runs the loop until the exit effect; returns the exit status. */
int server_run(server_t *s);
void server_begin_shutdown(server_t *s, const char *why);

/* From proc.c: */
void server_on_worker_ready(sv_ws_t *sws);
void server_on_worker_event(sv_ws_t *sws, const char *json, size_t len);
void server_on_worker_exit(sv_ws_t *sws, const char *reason);

/* Publishes one event (SSE envelope JSON, one line) to every stream of sws. */
void server_publish(sv_ws_t *sws, const char *json, size_t len);
/* Publishes a {"type":"workspace"} event. */
void server_publish_workspace(sv_ws_t *sws, const char *type, const char *reason);

#endif
