/*
 * claims: path index, client claims, grace timers, teardown and exit
 * decisions (see claims.h). Pure state: no syscalls, no clock, no h2o.
 */
#include "supervisor/claims.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/*
 * Effects run to completion and must not call back into claims: every
 * entry point asserts it is not entered from inside an effect, and every
 * effect is called through these wrappers, which mark the effect running.
 */
#define ENTRY(c) assert((c)->in_effect == 0 && "claims entered from an effect")
#define EFFECT(c, call)                                                                                      \
	do {                                                                                                 \
		(c)->in_effect++;                                                                            \
		call;                                                                                        \
		(c)->in_effect--;                                                                            \
	} while (0)

static int fx_spawn(claims_t *c, claims_ws_t *ws, char *err, size_t errlen)
{
	int r;
	EFFECT(c, r = c->fx.spawn(c->fx.ud, ws, err, errlen));
	return r;
}

const char *claims_state_name(claims_ws_state_t s)
{
	switch (s) {
	case WS_STARTING:
		return "starting";
	case WS_READY:
		return "ready";
	case WS_RESTARTING:
		return "restarting";
	default:
		return "closing";
	}
}

/* --- timers: one FIFO per kind, sorted because each kind has one duration */

static uint64_t kind_duration(const claims_t *c, int kind)
{
	switch (kind) {
	case CLAIMS_T_CREATE:
		return c->cfg.create_grace_ms;
	case CLAIMS_T_DETACH:
		return c->cfg.detach_grace_ms;
	case CLAIMS_T_IDLE:
		return c->cfg.idle_ms;
	default:
		return 0; /* restarts have no one duration: timer_arm_in with the backoff */
	}
}

static int timer_armed(const claims_timer_t *t)
{
	return t->next != NULL;
}

static void timer_cancel(claims_timer_t *t)
{
	if (!timer_armed(t))
		return;
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->prev = t->next = NULL;
}

/* Inserts in deadline order, searching from the tail: O(1) for the kinds
 * with one fixed duration, short walks for restart backoffs. */
static void timer_arm_in(claims_t *c, claims_timer_t *t, int kind, uint64_t now, uint64_t duration)
{
	timer_cancel(t);
	claims_timer_t *head = &c->timers[kind], *after = head->prev;
	t->kind = kind;
	t->deadline = now + duration;
	while (after != head && after->deadline > t->deadline)
		after = after->prev;
	t->prev = after;
	t->next = after->next;
	after->next->prev = t;
	after->next = t;
}

static void timer_arm(claims_t *c, claims_timer_t *t, int kind, uint64_t now)
{
	timer_arm_in(c, t, kind, now, kind_duration(c, kind));
}

uint64_t claims_next_deadline(const claims_t *c)
{
	uint64_t min = CLAIMS_NEVER;
	for (int k = 0; k < CLAIMS_T_NKINDS; k++) {
		const claims_timer_t *head = &c->timers[k];
		if (head->next != head && head->next->deadline < min)
			min = head->next->deadline;
	}
	return min;
}

/* --- workspaces */

typedef struct retired retired_t;
static void retired_forget(claims_t *c, retired_t *r);

static void list_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void ws_free(claims_t *c, claims_ws_t *ws)
{
	hmap_node_t *n, *nxt;
	hmap_foreach (&ws->clients, n, nxt) {
		claims_client_t *cl = container_of(n, claims_client_t, node);
		timer_cancel(&cl->hold);
		free(cl);
	}
	hmap_free(&ws->clients);
	if (c->fx.ws_free != NULL)
		EFFECT(c, c->fx.ws_free(c->fx.ud, ws));
	list_free(ws->env, ws->nenv);
	list_free(ws->channels, ws->nchannels);
	free(ws->path);
	free(ws->key);
	free(ws->data_dir);
	free(ws);
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");
	if (p == NULL)
		abort();
	return p;
}

/* The first creator's string lists (env, channels): copies, NULL when
 * empty. */
static char **list_dup(const char *const *v, size_t n)
{
	if (n == 0)
		return NULL;
	char **out = calloc(n, sizeof(*out));
	if (out == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		out[i] = xstrdup(v[i]);
	return out;
}

static int list_equal(char *const *have, size_t nhave, const char *const *want, size_t nwant)
{
	if (nhave != nwant)
		return 0;
	for (size_t i = 0; i < nhave; i++)
		if (strcmp(have[i], want[i]) != 0)
			return 0;
	return 1;
}

static claims_ws_t *ws_new(claims_t *c, const claims_create_t *req)
{
	claims_ws_t *ws = calloc(1, sizeof(*ws));
	if (ws == NULL)
		abort();
	EFFECT(c, c->fx.mint_id(c->fx.ud, ws->id));
	ws->path = xstrdup(req->path);
	ws->key = xstrdup(req->key);
	ws->yolo = req->yolo;
	ws->debug = req->debug;
	ws->data_dir = xstrdup(req->data_dir);
	ws->env = list_dup(req->env, req->nenv);
	ws->nenv = req->nenv;
	ws->channels = list_dup(req->channels, req->nchannels);
	ws->nchannels = req->nchannels;
	ws->state = WS_STARTING;
	hmap_put(&c->workspaces, &ws->by_id, ws->id);
	hmap_put(&c->index, &ws->by_key, ws->key);
	if (c->fx.ws_new != NULL)
		EFFECT(c, c->fx.ws_new(c->fx.ud, ws));
	return ws;
}

/* Arms the idle timer once nothing at all is left: no workspace in any
 * state, so no create is in flight and no worker is still being reaped. */
static void maybe_idle(claims_t *c, uint64_t now)
{
	if (c->workspaces.count != 0 || c->exited)
		return;
	if (c->stopping) {
		/* A shutdown was asked for and everything is reaped. */
		c->exited = 1;
		EFFECT(c, c->fx.exit(c->fx.ud));
		return;
	}
	timer_arm(c, &c->idle, CLAIMS_T_IDLE, now);
}

static void teardown(claims_t *c, claims_ws_t *ws, const char *reason, uint64_t now);

/* A starting workspace could not get a worker: every waiting create gets
 * the reason, and the workspace goes whole. */
static void fail_start(claims_t *c, claims_ws_t *ws, const char *reason, uint64_t now)
{
	char msg[320];
	snprintf(msg, sizeof(msg), "worker failed to start: %s", reason);
	ws->waiters = 0;
	EFFECT(c, c->fx.answer(c->fx.ud, ws, msg));
	teardown(c, ws, msg, now);
}

/* A closing workspace's worker is gone (or never was): forget it, then
 * start the successor for its directory that waited for this exit. */
static void ws_gone(claims_t *c, claims_ws_t *ws, uint64_t now)
{
	if (hmap_get(&c->closing, ws->key) == &ws->by_key)
		hmap_del(&c->closing, &ws->by_key);
	hmap_del(&c->workspaces, &ws->by_id);

	hmap_node_t *n = hmap_get(&c->index, ws->key);
	claims_ws_t *next = n ? container_of(n, claims_ws_t, by_key) : NULL;
	ws_free(c, ws);

	if (next != NULL && next->spawn_deferred) {
		char err[256] = "";
		next->spawn_deferred = 0;
		if (fx_spawn(c, next, err, sizeof(err)) == 0)
			next->worker_live = 1;
		else
			fail_start(c, next, err, now);
	}
	maybe_idle(c, now);
}

/*
 * Tears ws down: out of the index (a new create for the directory makes a
 * new workspace, whose worker waits for this one's exit), its streams
 * ended, its worker stopped. Every claim goes with it.
 */
static void teardown(claims_t *c, claims_ws_t *ws, const char *reason, uint64_t now)
{
	if (ws->state == WS_CLOSING)
		return;
	hmap_node_t *n, *nxt;
	hmap_foreach (&ws->clients, n, nxt) {
		claims_client_t *cl = container_of(n, claims_client_t, node);
		timer_cancel(&cl->hold);
		hmap_del(&ws->clients, n);
		free(cl);
	}
	ws->streams = 0;
	ws->waiters = 0;
	timer_cancel(&ws->restart);
	hmap_del(&c->index, &ws->by_key);
	ws->state = WS_CLOSING;
	EFFECT(c, c->fx.stop(c->fx.ud, ws, reason));
	if (ws->worker_live)
		hmap_put(&c->closing, &ws->by_key, ws->key); /* claims_worker_exited finishes */
	else
		ws_gone(c, ws, now); /* never spawned, or already exited */
}

static void maybe_teardown(claims_t *c, claims_ws_t *ws, const char *reason, uint64_t now)
{
	if (ws->clients.count == 0 && ws->waiters == 0)
		teardown(c, ws, reason, now);
}

static void client_remove(claims_client_t *cl)
{
	timer_cancel(&cl->hold);
	hmap_del(&cl->ws->clients, &cl->node);
	free(cl);
}

claims_client_t *claims_find_client(const claims_ws_t *ws, const char *client_id)
{
	hmap_node_t *n = hmap_get(&ws->clients, client_id);
	return n ? container_of(n, claims_client_t, node) : NULL;
}

claims_ws_t *claims_find(const claims_t *c, const char *ws_id)
{
	hmap_node_t *n = hmap_get(&c->workspaces, ws_id);
	return n ? container_of(n, claims_ws_t, by_id) : NULL;
}

/* A live (not closing) workspace by id. */
static claims_ws_t *find_live(const claims_t *c, const char *ws_id)
{
	claims_ws_t *ws = claims_find(c, ws_id);
	return ws != NULL && ws->state != WS_CLOSING ? ws : NULL;
}

static claims_client_t *client_new(claims_ws_t *ws, const char *client_id)
{
	claims_client_t *cl = calloc(1, sizeof(*cl));
	if (cl == NULL)
		abort();
	snprintf(cl->id, sizeof(cl->id), "%s", client_id);
	cl->ws = ws;
	hmap_put(&ws->clients, &cl->node, cl->id);
	return cl;
}

/* register: absent -> held by a create grace; timer-held -> re-armed and
 * un-released; with streams -> unchanged. A create that waits for the
 * worker holds its claim without a timer until its answer (or until it
 * gives up): the grace is the creator's window to attach after the
 * answer, and a slow start must not eat it. */
static void register_client(claims_t *c, claims_ws_t *ws, const char *client_id, int waits, uint64_t now)
{
	claims_client_t *cl = claims_find_client(ws, client_id);
	if (cl == NULL)
		cl = client_new(ws, client_id);
	else if (cl->streams > 0)
		return; /* its streams hold it */
	cl->released = 0;
	if (waits) {
		cl->waiting++;
		timer_cancel(&cl->hold);
	} else if (cl->streams == 0 && cl->waiting == 0) {
		timer_arm(c, &cl->hold, CLAIMS_T_CREATE, now);
	}
}

/* A create of cl was answered, or gave up: its grace starts now. */
static void client_answered(claims_t *c, claims_client_t *cl, uint64_t now)
{
	if (cl->waiting > 0)
		cl->waiting--;
	if (cl->waiting == 0 && cl->streams == 0)
		timer_arm(c, &cl->hold, CLAIMS_T_CREATE, now);
}

static int flags_equal(const claims_ws_t *ws, const claims_create_t *req)
{
	return ws->yolo == req->yolo && ws->debug == req->debug &&
	       strcmp(ws->data_dir, req->data_dir ? req->data_dir : "") == 0 &&
	       list_equal(ws->env, ws->nenv, req->env, req->nenv) &&
	       list_equal(ws->channels, ws->nchannels, req->channels, req->nchannels);
}

int claims_create(claims_t *c, const claims_create_t *req, uint64_t now, claims_ws_t **out, char *err,
		  size_t errlen)
{
	ENTRY(c);
	*out = NULL;
	if (c->stopping)
		return CLAIMS_ESTOPPING;
	if (claims_is_retired(c, req->client_id))
		return CLAIMS_ERETIRED;

	hmap_node_t *n = hmap_get(&c->index, req->key);
	if (n != NULL) {
		/* Join: first wins. */
		claims_ws_t *ws = container_of(n, claims_ws_t, by_key);
		if (!flags_equal(ws, req) && c->fx.mismatch != NULL)
			EFFECT(c, c->fx.mismatch(c->fx.ud, ws, req));
		/* A restarting workspace is answered at once, as it stands. */
		int now_ok = ws->state == WS_READY || ws->state == WS_RESTARTING;
		register_client(c, ws, req->client_id, !now_ok, now);
		*out = ws;
		if (now_ok)
			return CLAIMS_OK;
		ws->waiters++;
		return CLAIMS_WAIT;
	}

	if (c->cfg.max_workspaces != 0 && c->workspaces.count >= c->cfg.max_workspaces)
		return CLAIMS_ELIMIT;
	timer_cancel(&c->idle);
	claims_ws_t *ws = ws_new(c, req);
	register_client(c, ws, req->client_id, 1, now);
	if (hmap_get(&c->closing, ws->key) != NULL) {
		/* Invariant 1: the previous worker of this directory is still
		 * being killed; ours starts when it has been reaped. */
		ws->spawn_deferred = 1;
	} else if (fx_spawn(c, ws, err, errlen) != 0) {
		/* Nothing was started: drop it whole, the caller answers 500. */
		hmap_del(&c->index, &ws->by_key);
		hmap_del(&c->workspaces, &ws->by_id);
		ws_free(c, ws);
		maybe_idle(c, now);
		return CLAIMS_EFAILED;
	} else {
		ws->worker_live = 1;
	}
	*out = ws;
	ws->waiters++;
	return CLAIMS_WAIT;
}

void claims_unwait(claims_t *c, claims_ws_t *ws, const char *client_id, uint64_t now)
{
	ENTRY(c);
	if (ws->waiters > 0)
		ws->waiters--;
	claims_client_t *cl = claims_find_client(ws, client_id);
	if (cl != NULL && ws->state != WS_CLOSING)
		client_answered(c, cl, now);
	if (ws->state != WS_CLOSING)
		maybe_teardown(c, ws, "released", now);
}

int claims_attach(claims_t *c, const char *ws_id, const char *client_id, claims_ws_t **out)
{
	ENTRY(c);
	claims_ws_t *ws = find_live(c, ws_id);
	*out = ws;
	if (ws == NULL)
		return CLAIMS_ENOTFOUND;
	if (claims_is_retired(c, client_id)) {
		*out = NULL;
		return CLAIMS_ERETIRED;
	}
	claims_client_t *cl = claims_find_client(ws, client_id);
	if (cl == NULL)
		cl = client_new(ws, client_id); /* attach without create is allowed */
	timer_cancel(&cl->hold);
	cl->streams++;
	ws->streams++;
	return CLAIMS_OK;
}

void claims_detach(claims_t *c, const char *ws_id, const char *client_id, uint64_t now)
{
	ENTRY(c);
	claims_ws_t *ws = find_live(c, ws_id);
	if (ws == NULL)
		return;
	claims_client_t *cl = claims_find_client(ws, client_id);
	if (cl == NULL || cl->streams == 0)
		return;
	cl->streams--;
	ws->streams--;
	if (cl->streams > 0 || timer_armed(&cl->hold))
		return;
	if (c->cfg.detach_grace_ms > 0 && !cl->released) {
		/* Reconnect window: the claim outlives the stream a little. */
		timer_arm(c, &cl->hold, CLAIMS_T_DETACH, now);
		return;
	}
	client_remove(cl);
	maybe_teardown(c, ws, "last client detached", now);
}

void claims_release(claims_t *c, const char *ws_id, const char *client_id, uint64_t now)
{
	ENTRY(c);
	claims_ws_t *ws = find_live(c, ws_id);
	if (ws == NULL)
		return;
	claims_client_t *cl = claims_find_client(ws, client_id);
	if (cl == NULL)
		return;
	timer_cancel(&cl->hold);
	if (cl->streams > 0) {
		cl->released = 1; /* the last detach removes it at once */
		return;
	}
	client_remove(cl);
	maybe_teardown(c, ws, "last client released", now);
}

/* --- retired clients */

typedef struct retired {
	hmap_node_t node;
	struct claims_link order;
	char id[ID_LEN + 1];
} retired_t;

static void retired_forget(claims_t *c, retired_t *r)
{
	hmap_del(&c->retired, &r->node);
	r->order.prev->next = r->order.next;
	r->order.next->prev = r->order.prev;
	free(r);
}

int claims_is_retired(const claims_t *c, const char *client_id)
{
	return hmap_get(&c->retired, client_id) != NULL;
}

void claims_retire(claims_t *c, const char *client_id, uint64_t now)
{
	ENTRY(c);
	if (!claims_is_retired(c, client_id)) {
		if (c->retired.count >= CLAIMS_MAX_RETIRED)
			retired_forget(c, container_of(c->retired_order.next, retired_t, order));
		retired_t *r = calloc(1, sizeof(*r));
		if (r == NULL)
			abort();
		snprintf(r->id, sizeof(r->id), "%s", client_id);
		hmap_put(&c->retired, &r->node, r->id);
		r->order.prev = c->retired_order.prev;
		r->order.next = &c->retired_order;
		c->retired_order.prev->next = &r->order;
		c->retired_order.prev = &r->order;
	}
	/* Remove its entries everywhere, streams included. A removal may tear
	 * a workspace down (and free others), so the walk starts over after
	 * each one: at most one pass per workspace, and nothing to allocate. */
	for (;;) {
		claims_client_t *cl = NULL;
		hmap_node_t *node, *nxt;
		hmap_foreach (&c->workspaces, node, nxt) {
			claims_ws_t *ws = container_of(node, claims_ws_t, by_id);
			if (cl == NULL && ws->state != WS_CLOSING)
				cl = claims_find_client(ws, client_id);
		}
		if (cl == NULL)
			break;
		claims_ws_t *ws = cl->ws;
		ws->streams -= cl->streams; /* the shell ended them */
		client_remove(cl);
		maybe_teardown(c, ws, "last client retired", now);
	}
}

void claims_worker_ready(claims_t *c, claims_ws_t *ws, uint64_t now)
{
	ENTRY(c);
	if (ws->state != WS_STARTING && ws->state != WS_RESTARTING)
		return;
	ws->state = WS_READY;
	ws->waiters = 0;
	/* Every waiting creator is answered now: its create grace starts. */
	hmap_node_t *n, *nxt;
	hmap_foreach (&ws->clients, n, nxt) {
		claims_client_t *cl = container_of(n, claims_client_t, node);
		if (cl->waiting > 0) {
			cl->waiting = 1;
			client_answered(c, cl, now);
		}
	}
	EFFECT(c, c->fx.answer(c->fx.ud, ws, NULL));
	/* Waiters may have been all that held it (their client retired). */
	maybe_teardown(c, ws, "no client left", now);
}

/* Crashes of ws within the crash window, counting one at now. */
static unsigned recent_crashes(claims_t *c, claims_ws_t *ws, uint64_t now)
{
	unsigned limit = c->cfg.crash_limit, n = 0;
	ws->crashes[ws->ncrashes++ % limit] = now;
	for (unsigned i = 0; i < limit && i < ws->ncrashes; i++)
		if (now - ws->crashes[i] < c->cfg.crash_window_ms)
			n++;
	return n;
}

/* A live workspace lost its worker (it exited, or a restart could not
 * spawn): restart it after a backoff, or give up on a crash loop. */
static void crashed(claims_t *c, claims_ws_t *ws, const char *reason, uint64_t now)
{
	char msg[320];
	if (c->cfg.crash_limit == 0) {
		snprintf(msg, sizeof(msg), "worker exited: %s", reason);
		teardown(c, ws, msg, now);
		return;
	}
	unsigned n = recent_crashes(c, ws, now);
	if (n >= c->cfg.crash_limit) {
		snprintf(msg, sizeof(msg), "crash loop: %u crashes within %llu ms, last: %s", n,
			 (unsigned long long)c->cfg.crash_window_ms, reason);
		ws->failed = 1;
		teardown(c, ws, msg, now);
		return;
	}
	uint64_t delay = c->cfg.restart_min_ms;
	for (unsigned i = 1; i < n && delay < c->cfg.restart_max_ms; i++)
		delay *= 2;
	if (delay > c->cfg.restart_max_ms)
		delay = c->cfg.restart_max_ms;
	ws->state = WS_RESTARTING;
	if (c->fx.restarting != NULL)
		EFFECT(c, c->fx.restarting(c->fx.ud, ws, reason));
	timer_arm_in(c, &ws->restart, CLAIMS_T_RESTART, now, delay);
}

static void restart_due(claims_t *c, claims_ws_t *ws, uint64_t now)
{
	char err[256] = "";
	if (fx_spawn(c, ws, err, sizeof(err)) == 0)
		ws->worker_live = 1;
	else
		crashed(c, ws, err, now);
}

void claims_worker_exited(claims_t *c, claims_ws_t *ws, const char *reason, uint64_t now)
{
	ENTRY(c);
	ws->worker_live = 0;
	switch (ws->state) {
	case WS_CLOSING:
		ws_gone(c, ws, now);
		break;
	case WS_STARTING:
		fail_start(c, ws, reason, now);
		break;
	default:
		crashed(c, ws, reason, now);
		break;
	}
}

void claims_shutdown(claims_t *c, uint64_t now)
{
	ENTRY(c);
	c->stopping = 1;
	timer_cancel(&c->idle);
	hmap_node_t *n, *nxt;
	hmap_foreach (&c->workspaces, n, nxt) {
		claims_ws_t *ws = container_of(n, claims_ws_t, by_id);
		if (ws->state == WS_STARTING || ws->state == WS_RESTARTING) {
			ws->waiters = 0;
			EFFECT(c, c->fx.answer(c->fx.ud, ws, "server is shutting down"));
		}
	}
	/* teardown may free workspaces: restart the walk after each one. */
	for (;;) {
		claims_ws_t *victim = NULL;
		hmap_foreach (&c->workspaces, n, nxt) {
			claims_ws_t *ws = container_of(n, claims_ws_t, by_id);
			if (ws->state != WS_CLOSING) {
				victim = ws;
				break;
			}
		}
		if (victim == NULL)
			break;
		teardown(c, victim, "server shutting down", now);
	}
	maybe_idle(c, now);
}

void claims_expire(claims_t *c, uint64_t now)
{
	ENTRY(c);
	for (int k = 0; k < CLAIMS_T_NKINDS; k++) {
		claims_timer_t *head = &c->timers[k];
		while (head->next != head && head->next->deadline <= now) {
			claims_timer_t *t = head->next;
			timer_cancel(t);
			if (t == &c->idle) {
				/* Exit decided: refuse creates from now on. */
				c->stopping = 1;
				c->exited = 1;
				EFFECT(c, c->fx.exit(c->fx.ud));
				continue;
			}
			if (k == CLAIMS_T_RESTART) {
				restart_due(c, container_of(t, claims_ws_t, restart), now);
				continue;
			}
			claims_client_t *cl = container_of(t, claims_client_t, hold);
			claims_ws_t *ws = cl->ws;
			const char *why =
			    k == CLAIMS_T_CREATE ? "create grace expired" : "detach grace expired";
			client_remove(cl); /* frees t */
			maybe_teardown(c, ws, why, now);
		}
	}
}

claims_t *claims_new(const claims_config_t *cfg, const claims_effects_t *fx)
{
	claims_t *c = calloc(1, sizeof(*c));
	if (c == NULL)
		abort();
	c->cfg = *cfg;
	c->fx = *fx;
	if (c->cfg.crash_limit > CLAIMS_MAX_CRASHES)
		c->cfg.crash_limit = CLAIMS_MAX_CRASHES;
	for (int k = 0; k < CLAIMS_T_NKINDS; k++)
		c->timers[k].prev = c->timers[k].next = &c->timers[k];
	c->retired_order.prev = c->retired_order.next = &c->retired_order;
	return c;
}

void claims_free(claims_t *c)
{
	ENTRY(c);
	hmap_node_t *n, *nxt;
	hmap_foreach (&c->workspaces, n, nxt) {
		ws_free(c, container_of(n, claims_ws_t, by_id));
	}
	hmap_free(&c->workspaces);
	hmap_free(&c->index);
	hmap_free(&c->closing);
	while (c->retired_order.next != &c->retired_order)
		retired_forget(c, container_of(c->retired_order.next, retired_t, order));
	hmap_free(&c->retired);
	free(c);
}

size_t claims_ws_clients(const claims_ws_t *ws)
{
	return ws->clients.count;
}

size_t claims_live_count(const claims_t *c)
{
	return c->index.count;
}

size_t claims_count(const claims_t *c)
{
	return c->workspaces.count;
}

int claims_stopping(const claims_t *c)
{
	return c->stopping;
}

claims_ws_t *claims_find_key(const claims_t *c, const char *key)
{
	hmap_node_t *n = hmap_get(&c->index, key);
	return n ? container_of(n, claims_ws_t, by_key) : NULL;
}

void claims_foreach(const claims_t *c, void (*fn)(void *arg, claims_ws_t *ws), void *arg)
{
	hmap_node_t *n, *nxt;
	hmap_foreach (&c->workspaces, n, nxt) {
		fn(arg, container_of(n, claims_ws_t, by_id));
	}
}
