/*
 * proc: worker processes, a leaf module in the manner of tmux's proc.c: it
 * spawns, frames, pings, kills and reaps workers and reports through
 * callbacks; it knows nothing of workspaces, claims or HTTP.
 *   - posix_spawn with the socketpair as fd 3 and no other inherited
 *     descriptor, own session, parent-death SIGKILL (set by the worker,
 *     checked against --parent);
 *   - the handshake over the pair: HELLO, the setup request (the first
 *     creator's env, as data: never the worker's own environment, which
 *     is ours, SPEC invariant 8), READY; then events and liveness pings;
 *   - a worker that gives up says why (FAIL): kept, and reported at reap;
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

#include "supervisor/offload.h"

#include "common/buf.h"
#include "common/id.h"
#include "proto/proto.h"

#define PROC_START_TIMEOUT_MS 10000
/* Bytes of an exit reason, NUL included; reasons are valid UTF-8 without
 * control characters, short enough for a 500's message. */
#define PROC_REASON_MAX 256
/* Bytes of worker frames handled per loop turn (see drain in proc.c). */
#define PROC_TURN_BUDGET (256u << 10)

typedef struct proc proc_t;
typedef struct procs procs_t;

/* What a worker reports to its owner (arg of proc_spawn); ps is the set
 * it belongs to, from which the owner's owner is recovered. */
typedef struct proc_callbacks {
	/* READY; payload is its JSON ({"pid","config","data_dir"}). */
	void (*ready)(procs_t *ps, void *arg, const char *payload, size_t len);
	/* One event: a JSON object with a string "type", one line. */
	void (*event)(procs_t *ps, void *arg, const char *json, size_t len);
	/*
	 * Reaped. reason says why it ended and how, worker's word first:
	 *   "<worker's FAIL reason> (exited with status 1)"
	 *   "<why we killed it> (killed by signal KILL)"
	 *   "<worker's>; <ours> (<status>)", or just "exited with status 3".
	 * The worker's FAIL code, for deciding what to answer (an inotify
	 * shortage is the machine's limit, not the request's fault), is
	 * procs_exited_code(ps) during this call.
	 */
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
	h2o_timeout_t next_turn; /* 0 ms: the end of this loop turn (frames queued to workers) */
	/* Workers with frames left over a turn's budget (procs_resume, run
	 * between two passes of the loop: server_run). */
	h2o_linklist_t resuming;
	const char *exited_code;  /* see procs_exited_code; NULL outside cb.exited */
	const char *exited_error; /* likewise, its FAIL error */
	/* Leftovers of dead workers' commands (procs_reap): /proc is read on
	 * an offload thread, one look at a time. */
	offload_t *offload;
	struct leftover_scan *scan; /* the look under way, or NULL */
	int scan_again;		    /* another was asked for meanwhile */
	int leftovers_wanted;	    /* a look was ever asked for (procs_finish) */
	/* Children we had before any worker (a script that started one and
	 * then exec'd us): not leftovers. Dropped as they are reaped. */
	pid_t *foreign;
	size_t nforeign;
};

/* How to start one worker. */
typedef struct proc_spec {
	const char *ws_id;    /* its hello must name it */
	const char *path;     /* argv[2]: the resolved key, never the client's path (the
			       * worker does not resolve it again, SPEC invariant 1) */
	const char *data_dir; /* --data-dir as the creator sent it; NULL or "": the
			       * worker resolves it (the nearest .crush up to the git root) */
	const char *log_level;
	char *const *env; /* KEY=VALUE entries, sent in the setup request as data; the
			   * worker's environment is ours, whatever they say */
	size_t nenv;
} proc_spec_t;

/* offload reads /proc for what dead workers' commands left (procs_reap). */
void procs_init(procs_t *ps, h2o_evloop_t *loop, offload_t *offload, const char *worker_path,
		uint64_t kill_ms, uint64_t ping_ms, const proc_callbacks_t *cb);
/* Reaps every exited child (on SIGCHLD). */
void procs_reap(procs_t *ps);
/* At exit: what dead workers' commands left is killed now, on the loop
 * (a look still on an offload thread would never finish). */
void procs_finish(procs_t *ps);
/* Between two passes of the loop (inside it: a timeout's callback), when
 * procs_resuming: handles the next budget of every worker left over one. */
void procs_resume(procs_t *ps);
/* Nonzero when some worker has frames left over a pass's budget. */
int procs_resuming(procs_t *ps);
/*
 * Inside cb.exited only: the code the worker gave in its FAIL frame before
 * it exited, or NULL (it said nothing: crashed, killed, or a worker that
 * predates FAIL). Codes are PROTO_FAIL_* (proto.h), e.g.
 * PROTO_FAIL_INOTIFY_INSTANCES / PROTO_FAIL_INOTIFY_WATCHES when the
 * kernel's inotify limits stopped it; a code this build does not know is
 * passed on as it came ([a-z0-9_], at most PROTO_FAIL_CODE_MAX bytes).
 */
/* Inside cb.exited only: the worker's FAIL error (for people), or NULL. */
const char *procs_exited_error(const procs_t *ps);
const char *procs_exited_code(const procs_t *ps);

/* Starts a worker reporting to arg, its setup request queued. The proc,
 * or NULL with err (exec failed; env too large for one frame). */
proc_t *proc_spawn(procs_t *ps, const proc_spec_t *spec, void *arg, char *err, size_t errlen);
pid_t proc_pid(const proc_t *p);
/* The owner lets go: no more callbacks; it is still reaped. */
void proc_disown(proc_t *p);
/* SIGTERM to the worker's process group; SIGKILL after the kill timeout. */
void proc_stop(proc_t *p);
/* SIGKILL now (protocol error, start timeout); reason is reported at reap. */
void proc_kill(proc_t *p, const char *reason);

/*
 * Routed requests (PROTOCOL.md, "Routed requests"): a call sends a
 * REQUEST head, the body in DATA frames and END, and reports the worker's
 * RESPONSE head, each DATA frame and END through its callbacks, in order.
 * The worker sends at most PROTO_WINDOW DATA frames ahead of
 * proc_call_ack, so a slow client holds at most that much here.
 * Ownership: proc owns each call until END (or the worker's end); after
 * proc_call_cancel no callback runs and the caller forgets the call.
 */
#define PROC_MAX_CALLS 64 /* in flight per worker */

typedef struct proc_call proc_call_t;

typedef struct proc_call_cb {
	/* The RESPONSE head: its status and content type (printable ASCII;
	 * application/json when the worker gave none or a bad one). */
	void (*head)(void *arg, int status, const char *content_type);
	/* One DATA frame; ack it with proc_call_ack once it is consumed. */
	void (*data)(void *arg, const char *data, size_t len);
	/* END: the answer is whole. The call is gone after. */
	void (*end)(void *arg);
	/* No (whole) answer will come: the worker died, broke the protocol or
	 * answered badly. The call is gone after. */
	void (*fail)(void *arg, const char *why);
} proc_call_cb_t;

enum { PROC_CALL_OK = 0, PROC_CALL_BUSY = -1, PROC_CALL_GONE = -2 };

/* Starts a call on a ready worker: head is the REQUEST's JSON (copied),
 * body the request body, framed as the socketpair drains: not copied
 * whole, so it must stay valid until the call ends (end or fail) or is
 * cancelled. PROC_CALL_BUSY past PROC_MAX_CALLS, PROC_CALL_GONE when the
 * worker is not ready or going. */
int proc_call(proc_t *p, const char *head, const char *body, size_t len, const proc_call_cb_t *cb, void *arg,
	      proc_call_t **out);
void proc_call_ack(proc_call_t *c);
/* The client left: the worker is told (CANCEL); no callback runs again. */
void proc_call_cancel(proc_call_t *c);
/* Tells the worker how many attached clients view each session
 * ({"method":"presence","sessions":{"<sid>":n,…}}, PROTOCOL.md), once it
 * is ready; a newer one replaces one not sent yet. */
void proc_presence(proc_t *p, const char *json);
int proc_ready(const proc_t *p);
/* A shell run went to p: once it is reaped, whatever its commands left
 * is killed (the supervisor is a child subreaper; see procs_reap). */
void proc_ran_commands(proc_t *p);

#endif
