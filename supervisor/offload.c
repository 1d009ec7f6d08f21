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
	pthread_mutex_t mu;
	pthread_cond_t cv;
	h2o_linklist_t todo; /* offload_job_t.msg.link, under mu */
	unsigned threads, idle;
	int stopping;
};

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
		pthread_mutex_unlock(&o->mu);
		j->work(j);
		h2o_multithread_send_message(&o->back, &j->msg);
		pthread_mutex_lock(&o->mu);
	}
	o->threads--;
	pthread_cond_broadcast(&o->cv); /* offload_free waits for the last */
	pthread_mutex_unlock(&o->mu);
	return NULL;
}

static void on_back(h2o_multithread_receiver_t *r, h2o_linklist_t *messages)
{
	(void)r;
	while (!h2o_linklist_is_empty(messages)) {
		offload_job_t *j = H2O_STRUCT_FROM_MEMBER(offload_job_t, msg.link, messages->next);
		h2o_linklist_unlink(&j->msg.link);
		j->done(j);
	}
}

offload_t *offload_new(h2o_evloop_t *loop)
{
	offload_t *o = calloc(1, sizeof(*o));
	if (o == NULL)
		abort();
	o->queue = h2o_multithread_create_queue(loop);
	h2o_multithread_register_receiver(o->queue, &o->back, on_back);
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
	h2o_linklist_init_anchor(&o->todo);
	return o;
}

void offload_submit(offload_t *o, offload_job_t *j)
{
	pthread_mutex_lock(&o->mu);
	h2o_linklist_insert(&o->todo, &j->msg.link);
	if (o->idle == 0 && o->threads < OFFLOAD_MAX_THREADS) {
		pthread_t tid;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&tid, &at, run, o) == 0)
			o->threads++;
		pthread_attr_destroy(&at);
	}
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
}

void offload_free(offload_t *o)
{
	/* Idle threads leave at once. A busy one may be stuck in the
	 * filesystem: after a short wait the pool is left to the process's
	 * exit rather than freed under it. */
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
