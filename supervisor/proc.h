/*
 * proc: worker processes, a leaf module in the manner of tmux's proc.c: it
 * spawns, frames, pings, kills and reaps workers and reports through
 * callbacks; it knows nothing of workspaces, claims or HTTP.
 *   - posix_spawn with the socketpair as fd 3 and no other inherited
 *     descriptor, own session, parent-death SIGKILL (set by the worker,
 *     checked against --parent);
 *   - the HELLO/READY handshake, events, liveness pings over the pair;
 *   - stop: TERM to the process group, KILL after the kill timeout; reap.
 * Ownership: a proc_t lives from spawn until it is reaped, even after its
 * owner let go of it (proc_disown): it is then reaped and reported to no
 * one.
 */
#ifndef CRUSH_PROC_H
#define CRUSH_PROC_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include <h2o.h>

#include "common/buf.h"
#include "common/id.h"
#include "proto/proto.h"

#define PROC_START_TIMEOUT_MS 10000
/* Bytes of worker frames handled per loop turn (see drain in proc.c). */
#define PROC_TURN_BUDGET (256u << 10)

typedef struct proc proc_t;
typedef struct procs procs_t;

/* What a worker reports to its owner (arg of proc_spawn); ps is the set
 * it belongs to, from which the owner's owner is recovered. */
typedef struct proc_callbacks {
	void (*ready)(procs_t *ps, void *arg);
	/* One event: a JSON object with a string "type", one line. */
	void (*event)(procs_t *ps, void *arg, const char *json, size_t len);
	/* Reaped; reason says how it ended (and why we killed it, if we did). */
	void (*exited)(procs_t *ps, void *arg, const char *reason);
} proc_callbacks_t;

/* Every worker of the process not yet reaped, and what they share. */
struct procs {
	h2o_evloop_t *loop;
	h2o_linklist_t all; /* proc_t.link */
	proc_callbacks_t cb;
	char worker_path[PATH_MAX];
	uint64_t kill_ms; /* SIGTERM -> SIGKILL; 0: SIGKILL at once */
	uint64_t ping_ms; /* 0: no liveness pings */
	h2o_timeout_t start_timeout, kill_timeout, ping_interval;
	h2o_timeout_t next_turn; /* 0 ms: frames left over a turn's budget */
};

/* How to start one worker. */
typedef struct proc_spec {
	const char *ws_id;    /* its hello must name it */
	const char *path;     /* the directory, argv[2] */
	const char *data_dir; /* --data-dir */
	const char *log_level;
	char *const *env; /* KEY=VALUE entries over our environment */
	size_t nenv;
} proc_spec_t;

void procs_init(procs_t *ps, h2o_evloop_t *loop, const char *worker_path, uint64_t kill_ms, uint64_t ping_ms,
		const proc_callbacks_t *cb);
/* Reaps every exited child (on SIGCHLD). */
void procs_reap(procs_t *ps);

/* Starts a worker reporting to arg. The proc, or NULL with err. */
proc_t *proc_spawn(procs_t *ps, const proc_spec_t *spec, void *arg, char *err, size_t errlen);
pid_t proc_pid(const proc_t *p);
/* The owner lets go: no more callbacks; it is still reaped. */
void proc_disown(proc_t *p);
/* SIGTERM to the worker's process group; SIGKILL after the kill timeout. */
void proc_stop(proc_t *p);
/* SIGKILL now (protocol error, start timeout); reason is reported at reap. */
void proc_kill(proc_t *p, const char *reason);

#endif
