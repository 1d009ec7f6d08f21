/*
 * offload: a small lazily grown thread pool whose results come back
 * through h2o's multithread queue (see offload.h).
 */
#include "supervisor/offload.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct offload {
	h2o_multithread_queue_t *queue;
	h2o_multithread_receiver_t back; /* finished jobs, on the loop */
	h2o_evloop_t *loop;
	h2o_linklist_t batch; /* submitted this loop turn (loop only) */
	h2o_timeout_t turn;   /* 0 ms: the batch goes at the turn's end */
	h2o_timeout_entry_t turn_te;
	unsigned pending; /* submitted, done not run yet (loop only) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	h2o_linklist_t todo;	      /* offload_job_t.msg.link, under mu */
	unsigned threads, idle, busy; /* under mu; busy: running a job */
	unsigned long taken;	      /* jobs threads took, under mu */
	unsigned long taken_seen;     /* taken at the watch's last look (loop only) */
	h2o_timeout_t watch;	      /* OFFLOAD_WATCH_MS, while jobs wait */
	h2o_timeout_entry_t watch_te;
	int stopping;
};

static void *run(void *arg);

/* Under mu: one more thread for the waiting jobs, an idle one woken or a
 * new one started (up to the limit). */
static void call_thread(offload_t *o)
{
	if (h2o_linklist_is_empty(&o->todo))
		return;
	if (o->idle > 0) {
		pthread_cond_signal(&o->cv);
		return;
	}
	if (o->threads >= OFFLOAD_MAX_THREADS)
		return;
	pthread_t tid;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&tid, &at, run, o) == 0)
		o->threads++;
	pthread_attr_destroy(&at);
}

/*
 * A thread runs jobs one after another while any wait: a batch is one
 * thread's work, one wakeup and no thread switch per job (the threads
 * share the loop's CPU when the daemon is pinned to one). A second thread
 * is called only when the queue stops moving: the watch (on the loop,
 * every OFFLOAD_WATCH_MS while jobs wait) sees jobs waiting and
 * none taken since its last look, as when a job hangs in the filesystem.
 * So a stuck job holds its own thread, and the ones behind it wait at
 * most about one watch period for another.
 */
static void *run(void *arg)
{
	offload_t *o = arg;
	pthread_mutex_lock(&o->mu);
	for (;;) {
		while (h2o_linklist_is_empty(&o->todo) && !o->stopping) {
			o->idle++;
			pthread_cond_wait(&o->cv, &o->mu);
			o->idle--;
		}
		if (o->stopping)
			break;
		offload_job_t *j = H2O_STRUCT_FROM_MEMBER(offload_job_t, msg.link, o->todo.next);
		h2o_linklist_unlink(&j->msg.link);
		o->busy++;
		o->taken++;
		pthread_mutex_unlock(&o->mu);
		j->work(j);
		h2o_multithread_send_message(&o->back, &j->msg);
		pthread_mutex_lock(&o->mu);
		o->busy--;
	}
	o->threads--;
	pthread_cond_broadcast(&o->cv); /* offload_free waits for the last */
	pthread_mutex_unlock(&o->mu);
	return NULL;
}

/* Runs while jobs wait (on_turn_end links it): a job running alone, even
 * one stuck for good, costs the loop no wakeups. */
static void on_watch(h2o_timeout_entry_t *te)
{
	offload_t *o = H2O_STRUCT_FROM_MEMBER(offload_t, watch_te, te);
	pthread_mutex_lock(&o->mu);
	if (o->taken == o->taken_seen)
		call_thread(o); /* nothing taken for a period: stuck */
	o->taken_seen = o->taken;
	int waiting = !h2o_linklist_is_empty(&o->todo);
	pthread_mutex_unlock(&o->mu);
	if (waiting)
		h2o_timeout_link(o->loop, &o->watch, &o->watch_te);
}

static void on_back(h2o_multithread_receiver_t *r, h2o_linklist_t *messages)
{
	offload_t *o = H2O_STRUCT_FROM_MEMBER(offload_t, back, r);
	while (!h2o_linklist_is_empty(messages)) {
		offload_job_t *j = H2O_STRUCT_FROM_MEMBER(offload_job_t, msg.link, messages->next);
		h2o_linklist_unlink(&j->msg.link);
		o->pending--;
		j->done(j);
	}
}

/* The turn's submissions go to the threads at once: one lock and one
 * wakeup per loop turn, not per job. */
static void on_turn_end(h2o_timeout_entry_t *te)
{
	offload_t *o = H2O_STRUCT_FROM_MEMBER(offload_t, turn_te, te);
	pthread_mutex_lock(&o->mu);
	while (!h2o_linklist_is_empty(&o->batch)) {
		h2o_linklist_t *l = o->batch.next;
		h2o_linklist_unlink(l);
		h2o_linklist_insert(&o->todo, l);
	}
	if (o->busy == 0) /* else a running thread takes them next */
		call_thread(o);
	int watching = h2o_timeout_is_linked(&o->watch_te);
	if (!watching)
		o->taken_seen = o->taken;
	pthread_mutex_unlock(&o->mu);
	if (!watching)
		h2o_timeout_link(o->loop, &o->watch, &o->watch_te);
}

offload_t *offload_new(h2o_evloop_t *loop)
{
	offload_t *o = calloc(1, sizeof(*o));
	if (o == NULL)
		abort();
	o->loop = loop;
	h2o_linklist_init_anchor(&o->batch);
	h2o_timeout_init(loop, &o->turn, 0);
	o->turn_te.cb = on_turn_end;
	h2o_timeout_init(loop, &o->watch, OFFLOAD_WATCH_MS);
	o->watch_te.cb = on_watch;
	o->queue = h2o_multithread_create_queue(loop);
	h2o_multithread_register_receiver(o->queue, &o->back, on_back);
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
	h2o_linklist_init_anchor(&o->todo);
	return o;
}

unsigned offload_pending(const offload_t *o)
{
	return o->pending;
}

void offload_submit(offload_t *o, offload_job_t *j)
{
	o->pending++;
	h2o_linklist_insert(&o->batch, &j->msg.link);
	if (!h2o_timeout_is_linked(&o->turn_te))
		h2o_timeout_link(o->loop, &o->turn, &o->turn_te);
}

void offload_free(offload_t *o)
{
	/* Idle threads leave at once. A busy one may be stuck in the
	 * filesystem: after a short wait the pool is left to the process's
	 * exit rather than freed under it. */
	if (h2o_timeout_is_linked(&o->turn_te))
		h2o_timeout_unlink(&o->turn_te); /* a batch not handed over: never done */
	h2o_timeout_dispose(o->loop, &o->turn);	 /* off the loop's list before o goes */
	if (h2o_timeout_is_linked(&o->watch_te))
		h2o_timeout_unlink(&o->watch_te);
	h2o_timeout_dispose(o->loop, &o->watch);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += 200 * 1000000L;
	if (until.tv_nsec >= 1000000000L)
		until.tv_sec++, until.tv_nsec -= 1000000000L;
	pthread_mutex_lock(&o->mu);
	o->stopping = 1;
	pthread_cond_broadcast(&o->cv);
	while (o->threads > 0 && pthread_cond_timedwait(&o->cv, &o->mu, &until) == 0)
		;
	int left = o->threads;
	pthread_mutex_unlock(&o->mu);
	/* h2o 2.2.5 asserts a receiver has no undelivered message when it is
	 * unregistered; with no thread left, none can arrive any more. */
	if (left > 0 || !h2o_linklist_is_empty(&o->back._messages))
		return;
	h2o_multithread_unregister_receiver(o->queue, &o->back);
	h2o_multithread_destroy_queue(o->queue);
	pthread_mutex_destroy(&o->mu);
	pthread_cond_destroy(&o->cv);
	free(o);
}
