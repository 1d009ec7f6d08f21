/*
 * proc: worker processes. posix_spawn with the socketpair as fd 3 and no
 * other inherited descriptor, own session, parent-death SIGKILL (set by the
 * worker, checked against --parent); the handshake over the pair; TERM ->
 * KILL after the kill timeout; reaping.
 * Ownership: a proc_t lives from spawn until it is reaped, even after its
 * workspace let go of it (owner = NULL).
 */
#ifndef CRUSH_PROC_H
#define CRUSH_PROC_H

#include <sys/types.h>

#include <h2o.h>

#include "proto/proto.h"
#include "supervisor/server.h"

typedef struct proc {
	h2o_linklist_t link; /* server.procs */
	pid_t pid;
	h2o_socket_t *sock; /* our end of the socketpair; NULL once closed */
	proto_decoder_t dec;
	int said_hello, ready, stopping;
	h2o_timeout_entry_t start_te, kill_te;
	h2o_timeout_entry_t ping_te;   /* liveness: a ping per interval, answered within it */
	h2o_timeout_entry_t resume_te; /* frames left over a turn's budget: next turn */
	uint32_t next_req_id;	       /* request ids: 1, 2, ... */
	uint32_t ping_pending;	       /* id of the unanswered ping, 0 when none */
	buf_t out, inflight;	       /* frames to the worker; the batch being written */
	sv_ws_t *owner;
	char reason[200]; /* why we killed it, if we did */
} proc_t;

/* Bytes of worker frames handled per loop turn (see drain in proc.c). */
#define PROC_TURN_BUDGET (256u << 10)

/* Starts sws's worker; sets sws->proc and sws->pid. 0, or -1 with err. */
int proc_spawn(sv_ws_t *sws, char *err, size_t errlen);
/* SIGTERM to the worker's process group; SIGKILL after the kill timeout. */
void proc_stop(proc_t *p);
/* SIGKILL now (protocol error, start timeout); reason is reported at reap. */
void proc_kill(proc_t *p, const char *reason);
/* Reaps every exited child (SIGCHLD). */
void proc_reap_all(void);

#endif
