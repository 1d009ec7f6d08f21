/*
 * claims: the supervisor's functional core, a port of the seed's Backend.
 * It owns the path index (resolved directory -> workspace), each
 * workspace's client claims, the grace timers, and the teardown and exit
 * decisions. It does no I/O and reads no clock: every entry point takes the
 * current monotonic time in milliseconds, and every outside action is asked
 * for through claims_effects_t. The supervisor is single-threaded, so each
 * race of the seed is a particular order of calls here, and the unit tests
 * replay those orders one by one.
 *
 * Ownership: claims allocates and frees workspaces and client entries. The
 * shell hangs its own per-workspace state on ws->shell (ws_new/ws_free).
 * Effects must not call back into claims; they run to completion (every
 * entry point asserts it). Workspace ids come from the mint_id effect.
 */
#ifndef CRUSH_CLAIMS_H
#define CRUSH_CLAIMS_H

#include <stddef.h>
#include <stdint.h>

#include "common/hmap.h"
#include "common/id.h"

#define CLAIMS_NEVER	   UINT64_MAX
#define CLAIMS_MAX_CRASHES 16	 /* crash_limit is clamped to this */
#define CLAIMS_MAX_RETIRED 65536 /* past this, the oldest retired ids are forgotten */

typedef enum claims_ws_state {
	WS_STARTING,   /* worker spawned (or waiting to be), not ready yet */
	WS_READY,      /* worker ready */
	WS_RESTARTING, /* worker died, a new one is on its way (faults issue) */
	WS_CLOSING,    /* torn down: out of the path index, worker being killed */
} claims_ws_state_t;

const char *claims_state_name(claims_ws_state_t s);

/* Intrusive timer. Each kind has one fixed duration, so each kind's list
 * is a FIFO already sorted by deadline (the h2o_timeout idea). */
typedef struct claims_timer {
	struct claims_timer *prev, *next; /* NULL when not armed */
	uint64_t deadline;
	int kind;
} claims_timer_t;

typedef struct claims_ws claims_ws_t;

/* One client's claim on one workspace. */
typedef struct claims_client {
	hmap_node_t node; /* in ws->clients, key = id */
	char id[ID_LEN + 1];
	unsigned streams;    /* live event streams of this client on ws */
	int released;	     /* DELETE seen while streams were open */
	unsigned waiting;    /* its creates waiting for the worker: no timer meanwhile */
	claims_timer_t hold; /* armed: held by a create or detach grace */
	claims_ws_t *ws;
} claims_client_t;

struct claims_ws {
	hmap_node_t by_id;  /* in claims->workspaces (every state) */
	hmap_node_t by_key; /* in claims->index, or claims->closing once CLOSING */
	char id[ID_LEN + 1];
	char *path; /* as the first creator sent it */
	char *key;  /* resolved path, the dedup key */
	int yolo, debug;
	char *data_dir; /* as sent; "" when not sent */
	char **env;	/* as sent */
	size_t nenv;
	char **channels; /* MCP servers opted in as channels, as sent */
	size_t nchannels;
	claims_ws_state_t state;
	hmap_t clients;			      /* claims_client_t by id; refcount = clients.count */
	unsigned streams;		      /* sum of the clients' streams */
	unsigned waiters;		      /* creates waiting for ready: keep a STARTING ws alive */
	int worker_live;		      /* spawn succeeded and the exit is not reported yet */
	int spawn_deferred;		      /* waiting for the previous worker of key to exit */
	int failed;			      /* torn down for a crash loop */
	claims_timer_t restart;		      /* armed while RESTARTING waits out its backoff */
	uint64_t crashes[CLAIMS_MAX_CRASHES]; /* times of recent crashes, a ring */
	unsigned ncrashes;		      /* crashes seen in all */
	void *shell;
};

typedef struct claims_create {
	const char *path;      /* as sent, validated absolute */
	const char *key;       /* path_resolve_key(path) */
	const char *client_id; /* canonical UUID */
	int yolo, debug;
	const char *data_dir; /* "" when not sent */
	const char *const *env;
	size_t nenv;
	const char *const *channels;
	size_t nchannels;
} claims_create_t;

typedef struct claims_effects {
	void *ud;
	/* Writes a fresh workspace id (the shell mints UUIDv4s; tests count). */
	void (*mint_id)(void *ud, char out[ID_LEN + 1]);
	/* ws was just made: attach shell state to ws->shell. */
	void (*ws_new)(void *ud, claims_ws_t *ws);
	/* Start ws's worker. 0, or -1 with a reason in err (the ws then fails). */
	int (*spawn)(void *ud, claims_ws_t *ws, char *err, size_t errlen);
	/* Answer every create waiting on ws: err NULL = ready. */
	void (*answer)(void *ud, claims_ws_t *ws, const char *err);
	/* ws is closing: end its event streams; if ws->worker_live, stop the
	 * worker (TERM, KILL after the kill timeout) and report the reap with
	 * claims_worker_exited. */
	void (*stop)(void *ud, claims_ws_t *ws, const char *reason);
	/* ws is about to be freed: release ws->shell. */
	void (*ws_free)(void *ud, claims_ws_t *ws);
	/* ws's worker crashed; a new one starts after the backoff. */
	void (*restarting)(void *ud, claims_ws_t *ws, const char *reason);
	/* A duplicate create's flags differ from the first creator's. */
	void (*mismatch)(void *ud, const claims_ws_t *ws, const claims_create_t *req);
	/* Time to exit: idle timeout passed, or a shutdown finished. */
	void (*exit)(void *ud);
} claims_effects_t;

typedef struct claims_config {
	uint64_t create_grace_ms;
	uint64_t detach_grace_ms; /* 0: no reconnect window */
	uint64_t idle_ms;	  /* 0: exit as soon as the last workspace is gone */
	/* Restarts of crashed workers: the delay doubles from restart_min_ms to
	 * restart_max_ms; crash_limit crashes within crash_window_ms mark the
	 * workspace failed. crash_limit 0: a crash closes the workspace. */
	uint64_t restart_min_ms, restart_max_ms, crash_window_ms;
	unsigned crash_limit;
	size_t max_workspaces; /* 0: no limit; closing ones count (their workers live) */
} claims_config_t;

enum { CLAIMS_T_CREATE, CLAIMS_T_DETACH, CLAIMS_T_IDLE, CLAIMS_T_RESTART, CLAIMS_T_NKINDS };

typedef struct claims {
	claims_config_t cfg;
	claims_effects_t fx;
	hmap_t workspaces; /* by id, every state */
	hmap_t index;	   /* by key, not closing */
	hmap_t closing;	   /* by key, closing with a live worker */
	hmap_t retired;	   /* retired client ids */
	struct claims_link {
		struct claims_link *prev, *next;
	} retired_order;			/* oldest first, to forget past CLAIMS_MAX_RETIRED */
	claims_timer_t timers[CLAIMS_T_NKINDS]; /* list heads (sentinels) */
	claims_timer_t idle;
	int stopping;  /* no more creates: exit decided or shutdown under way */
	int exited;    /* exit effect issued */
	int in_effect; /* an effect is running: entry points assert it is 0 */
} claims_t;

claims_t *claims_new(const claims_config_t *cfg, const claims_effects_t *fx);
/* Frees every workspace (ws_free for each) without other effects. */
void claims_free(claims_t *c);

enum claims_result {
	CLAIMS_OK = 0,	       /* ws is ready: answer now */
	CLAIMS_WAIT = 1,       /* ws is starting: the answer effect will come */
	CLAIMS_ESTOPPING = -1, /* 503 */
	CLAIMS_EFAILED = -2,   /* 500; err holds the reason */
	CLAIMS_ENOTFOUND = -3, /* 404 */
	CLAIMS_ERETIRED = -4,  /* 409: the client retired */
	CLAIMS_ELIMIT = -5,    /* 429: max_workspaces workspaces exist */
};

/*
 * Create or join. Registers req->client_id's claim (idempotent per client)
 * on the workspace for req->key, making and spawning one when none is live.
 * On CLAIMS_WAIT the caller is counted as a waiter until answer() fires or
 * it calls claims_unwait().
 */
int claims_create(claims_t *c, const claims_create_t *req, uint64_t now, claims_ws_t **out, char *err,
		  size_t errlen);
/* A waiting create of client_id went away before its answer (client
 * disconnected): its claim's create grace starts now. */
void claims_unwait(claims_t *c, claims_ws_t *ws, const char *client_id, uint64_t now);

/* An event stream opens: CLAIMS_OK with *out, CLAIMS_ERETIRED, or
 * CLAIMS_ENOTFOUND when the workspace is unknown or closing (then nothing
 * of the client is kept). */
int claims_attach(claims_t *c, const char *ws_id, const char *client_id, claims_ws_t **out);
/* An event stream closed, for any reason. No-op if unknown/closing. */
void claims_detach(claims_t *c, const char *ws_id, const char *client_id, uint64_t now);
/* DELETE /v1/workspaces/{id}?client_id=: idempotent no-op when unknown. */
void claims_release(claims_t *c, const char *ws_id, const char *client_id, uint64_t now);

/* DELETE /v1/clients/{id}: removes the client's entries in every
 * workspace, streams included (the shell ends those streams first), and
 * refuses its later creates and attaches. Idempotent. */
void claims_retire(claims_t *c, const char *client_id, uint64_t now);
int claims_is_retired(const claims_t *c, const char *client_id);

/* The worker said ready. */
void claims_worker_ready(claims_t *c, claims_ws_t *ws, uint64_t now);
/* ws's worker was reaped (or could not be started); reason is for logs and
 * for failing creates still waiting on it. A live workspace's worker is
 * restarted (restarting effect, then spawn after the backoff) unless it
 * crashed crash_limit times within the window: then it fails (ws->failed)
 * and is torn down. */
void claims_worker_exited(claims_t *c, claims_ws_t *ws, const char *reason, uint64_t now);

/* Graceful stop: every workspace closes; exit effect once all are gone. */
void claims_shutdown(claims_t *c, uint64_t now);

/* Timers: the earliest deadline (CLAIMS_NEVER if none), and running every
 * timer whose deadline is <= now. */
uint64_t claims_next_deadline(const claims_t *c);
void claims_expire(claims_t *c, uint64_t now);

claims_ws_t *claims_find(const claims_t *c, const char *ws_id);
/* The live (not closing) workspace of a resolved directory, or NULL. */
claims_ws_t *claims_find_key(const claims_t *c, const char *key);
/* Clients holding a claim on ws (its refcount). */
size_t claims_ws_clients(const claims_ws_t *ws);
/* Live workspaces (the path index); every workspace, closing included. */
size_t claims_live_count(const claims_t *c);
size_t claims_count(const claims_t *c);
/* 1 once no create can succeed: shutdown under way or exit decided. */
int claims_stopping(const claims_t *c);
/* Calls fn for every workspace, closing ones included. fn must not call
 * into claims. */
void claims_foreach(const claims_t *c, void (*fn)(void *arg, claims_ws_t *ws), void *arg);
claims_client_t *claims_find_client(const claims_ws_t *ws, const char *client_id);

#endif
