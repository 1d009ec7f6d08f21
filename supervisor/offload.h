/*
 * offload: runs blocking work (path resolution, anything that may touch a
 * hung filesystem) on helper threads and finishes it back on the loop, so
 * the supervisor's loop never blocks on the filesystem (invariant 9). At
 * most OFFLOAD_MAX_THREADS run at once; jobs past that wait in order. A
 * thread runs waiting jobs one after another; another is started or woken
 * when none is running, or when no job was taken for OFFLOAD_WATCH_MS while
 * some waited. So a thread stuck in a hung syscall holds only its own job:
 * the loop, streams, pings and reaps go on, and the jobs behind it get
 * another thread. Jobs submitted in one loop turn go to the threads
 * together at its end (one lock, one wakeup).
 * Ownership: the submitter owns each job; it must stay valid until its
 * done callback ran on the loop (which may free it).
 */
#ifndef CRUSH_OFFLOAD_H
#define CRUSH_OFFLOAD_H

#include <h2o.h>

#define OFFLOAD_MAX_THREADS 8
/* Jobs waiting and none taken for this long: one more thread (offload.c). */
#define OFFLOAD_WATCH_MS 2

typedef struct offload offload_t;

typedef struct offload_job {
	h2o_multithread_message_t msg; /* the queue, then the trip back */
	/* On a helper thread: touches no loop state. */
	void (*work)(struct offload_job *j);
	/* Back on the loop, after work. */
	void (*done)(struct offload_job *j);
} offload_job_t;

offload_t *offload_new(h2o_evloop_t *loop);
void offload_submit(offload_t *o, offload_job_t *j);
/* Jobs submitted whose done has not run yet (queued, running, stuck):
 * what the caller bounds. */
unsigned offload_pending(const offload_t *o);
/* At exit: stops idle threads; threads stuck in work are left to the
 * process's exit, and their jobs' done never runs. */
void offload_free(offload_t *o);

#endif
