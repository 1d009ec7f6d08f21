/*
 * Unit tests for supervisor/claims.c, the I/O-free claim state machine.
 * A fake effects table records every effect; time is only the `now` we
 * pass, so each race of the seed's backend_test.go is one explicit order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "supervisor/claims.h"

#define T0    10000u
#define GRACE 1000u /* create grace of most tests */

static const char *const CA = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
static const char *const CB = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
static const char *const CC = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";
static const char *const KA = "/w/a";
static const char *const KB = "/w/b";
static const char *const NO_WS = "99999999-9999-4999-8999-999999999999";

/* ---- the fake shell: a log of effects, plus invariant checks */

enum { EV_WS_NEW, EV_SPAWN, EV_ANSWER, EV_STOP, EV_WS_FREE, EV_MISMATCH, EV_EXIT, EV_RESTARTING };

typedef struct rec {
	int kind;
	char ws[ID_LEN + 1];
	char text[320];	 /* answer error / stop reason / mismatch data_dir */
	int null_text;	 /* answer(NULL) */
	int worker_live; /* at stop */
} rec_t;

typedef struct fake {
	claims_t *c;
	rec_t log[128];
	size_t nlog;
	int spawn_rc;	       /* what spawn returns */
	const char *spawn_err; /* reason written on failure */
	struct {
		char key[64];
		char ws[ID_LEN + 1];
	} live[16]; /* workers the fake "runs": spawned, exit not reported */
	size_t nlive;
	int shells;	 /* ws_new minus ws_free */
	unsigned minted; /* ids handed out by mint_id */
	int reenter;	 /* stop effect calls claims_release (must abort) */
} fake_t;

static rec_t *rec_add(fake_t *f, int kind, const claims_ws_t *ws)
{
	rec_t *r;

	assert_true(f->nlog < sizeof(f->log) / sizeof(f->log[0]));
	r = &f->log[f->nlog++];
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	if (ws != NULL)
		snprintf(r->ws, sizeof(r->ws), "%s", ws->id);
	return r;
}

static void fx_ws_new(void *ud, claims_ws_t *ws)
{
	fake_t *f = ud;

	assert_null(ws->shell);
	ws->shell = f; /* marker: ws_free must see it again */
	f->shells++;
	rec_add(f, EV_WS_NEW, ws);
}

static int fx_spawn(void *ud, claims_ws_t *ws, char *err, size_t errlen)
{
	fake_t *f = ud;

	rec_add(f, EV_SPAWN, ws);
	assert_ptr_equal(ws->shell, f);
	assert_int_not_equal(ws->state, WS_CLOSING);
	/* Invariant 1: never a second live worker for one directory. */
	for (size_t i = 0; i < f->nlive; i++)
		assert_string_not_equal(f->live[i].key, ws->key);
	if (f->spawn_rc != 0) {
		snprintf(err, errlen, "%s", f->spawn_err);
		return f->spawn_rc;
	}
	assert_true(f->nlive < 16);
	snprintf(f->live[f->nlive].key, sizeof(f->live[0].key), "%s", ws->key);
	snprintf(f->live[f->nlive].ws, sizeof(f->live[0].ws), "%s", ws->id);
	f->nlive++;
	return 0;
}

static void fx_answer(void *ud, claims_ws_t *ws, const char *err)
{
	rec_t *r = rec_add(ud, EV_ANSWER, ws);

	r->null_text = err == NULL;
	if (err != NULL)
		snprintf(r->text, sizeof(r->text), "%s", err);
}

static void fx_stop(void *ud, claims_ws_t *ws, const char *reason)
{
	rec_t *r = rec_add(ud, EV_STOP, ws);

	assert_int_equal(ws->state, WS_CLOSING);
	assert_non_null(reason);
	snprintf(r->text, sizeof(r->text), "%s", reason);
	r->worker_live = ws->worker_live;
	if (((fake_t *)ud)->reenter)
		claims_release(((fake_t *)ud)->c, ws->id, CA, T0); /* forbidden: must abort */
}

static void fx_ws_free(void *ud, claims_ws_t *ws)
{
	fake_t *f = ud;

	assert_ptr_equal(ws->shell, f);
	ws->shell = NULL;
	f->shells--;
	rec_add(f, EV_WS_FREE, ws);
	/* Freed while its worker runs would lose the process (invariant 3). */
	for (size_t i = 0; i < f->nlive; i++)
		assert_string_not_equal(f->live[i].ws, ws->id);
}

static void fx_mismatch(void *ud, const claims_ws_t *ws, const claims_create_t *req)
{
	rec_t *r = rec_add(ud, EV_MISMATCH, ws);

	snprintf(r->text, sizeof(r->text), "%s", req->data_dir);
}

static void fx_restarting(void *ud, claims_ws_t *ws, const char *reason)
{
	rec_t *r = rec_add(ud, EV_RESTARTING, ws);

	assert_int_equal(ws->state, WS_RESTARTING);
	snprintf(r->text, sizeof(r->text), "%s", reason);
}

static void fx_exit(void *ud)
{
	rec_add(ud, EV_EXIT, NULL);
}

/* Deterministic ids: the n-th workspace is 00000000-0000-4000-8000-<n>. */
static void fx_mint_id(void *ud, char out[ID_LEN + 1])
{
	fake_t *f = ud;

	snprintf(out, ID_LEN + 1, "00000000-0000-4000-8000-%012u", ++f->minted);
}

static fake_t *start(uint64_t create_ms, uint64_t detach_ms, uint64_t idle_ms)
{
	fake_t *f = calloc(1, sizeof(*f));
	claims_config_t cfg = {create_ms, detach_ms, idle_ms, 0, 0, 0, 0, 0}; /* crash_limit 0: no restarts */
	claims_effects_t fx = {
	    .ud = f,
	    .mint_id = fx_mint_id,
	    .ws_new = fx_ws_new,
	    .spawn = fx_spawn,
	    .answer = fx_answer,
	    .stop = fx_stop,
	    .ws_free = fx_ws_free,
	    .mismatch = fx_mismatch,
	    .exit = fx_exit,
	    .restarting = fx_restarting,
	};

	assert_non_null(f);
	fx.ud = f;
	f->c = claims_new(&cfg, &fx);
	assert_non_null(f->c);
	return f;
}

/* claims_free releases every shell; nothing may be left half-freed. */
static void finish(fake_t *f)
{
	f->nlive = 0; /* workers still "running" are the test's to forget */
	claims_free(f->c);
	assert_int_equal(f->shells, 0);
	free(f);
}

/* Effects of `kind` (on workspace id ws, or any when NULL). */
static int count(const fake_t *f, int kind, const char *ws)
{
	int n = 0;

	for (size_t i = 0; i < f->nlog; i++)
		if (f->log[i].kind == kind && (ws == NULL || strcmp(f->log[i].ws, ws) == 0))
			n++;
	return n;
}

/* The last effect of `kind`, which must exist. */
static const rec_t *last(const fake_t *f, int kind)
{
	for (size_t i = f->nlog; i > 0; i--)
		if (f->log[i - 1].kind == kind)
			return &f->log[i - 1];
	fail_msg("no effect of kind %d", kind);
	return NULL;
}

static claims_create_t req_for(const char *key, const char *client)
{
	claims_create_t r = {.path = key, .key = key, .client_id = client, .data_dir = ""};

	return r;
}

static int create_req(fake_t *f, const claims_create_t *req, uint64_t now, claims_ws_t **out)
{
	char err[256] = "";

	return claims_create(f->c, req, now, out, err, sizeof(err));
}

static int create(fake_t *f, const char *key, const char *client, uint64_t now, claims_ws_t **out)
{
	claims_create_t r = req_for(key, client);

	return create_req(f, &r, now, out);
}

/* The shell reaped ws's worker. */
static void worker_exit(fake_t *f, claims_ws_t *ws, const char *reason, uint64_t now)
{
	size_t i;

	for (i = 0; i < f->nlive; i++)
		if (strcmp(f->live[i].ws, ws->id) == 0)
			break;
	assert_true(i < f->nlive);
	f->live[i] = f->live[--f->nlive];
	claims_worker_exited(f->c, ws, reason, now);
}

/* A READY workspace for key, created by client at now. */
static claims_ws_t *ready_ws(fake_t *f, const char *key, const char *client, uint64_t now)
{
	claims_ws_t *ws = NULL;

	assert_int_equal(create(f, key, client, now, &ws), CLAIMS_WAIT);
	assert_non_null(ws);
	claims_worker_ready(f->c, ws, now);
	assert_int_equal(ws->state, WS_READY);
	return ws;
}

static void attach_ok(fake_t *f, const claims_ws_t *ws, const char *client)
{
	claims_ws_t *got = NULL;

	assert_int_equal(claims_attach(f->c, ws->id, client, &got), CLAIMS_OK);
	assert_ptr_equal(got, ws);
}

static int hold_armed(const claims_client_t *cl)
{
	return cl->hold.next != NULL;
}

/* The path index's workspace for key, or NULL. */
static claims_ws_t *indexed(const fake_t *f, const char *key)
{
	return claims_find_key(f->c, key);
}

/* A refused client left nothing: ws is gone, or closing without it. */
static void assert_nothing_of(const fake_t *f, const char *ws_id, const char *client)
{
	claims_ws_t *ws = claims_find(f->c, ws_id);

	if (ws == NULL)
		return;
	assert_int_equal(ws->state, WS_CLOSING);
	assert_null(claims_find_client(ws, client));
	assert_int_equal(ws->clients.count, 0);
}

/* ---- ported from backend_test.go, by intent */

static void test_register_twice_by_one_client_keeps_one_held_claim(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *w1 = NULL, *w2 = NULL;
	claims_client_t *cl;

	(void)state;
	assert_int_equal(create(f, KA, CA, T0, &w1), CLAIMS_WAIT);
	assert_int_equal(create(f, KA, CA, T0 + 1, &w2), CLAIMS_WAIT);
	assert_ptr_equal(w1, w2);
	assert_int_equal(w1->clients.count, 1);
	cl = claims_find_client(w1, CA);
	assert_non_null(cl);
	/* Held by its two waiting creates; the grace timer starts at the answer. */
	assert_false(hold_armed(cl));
	assert_int_equal(cl->waiting, 2);
	assert_int_equal(cl->streams, 0);
	assert_int_equal(w1->streams, 0);
	assert_int_equal(count(f, EV_SPAWN, NULL), 1);
	claims_worker_ready(f->c, w1, T0 + 2);
	assert_true(hold_armed(cl));
	assert_int_equal(cl->waiting, 0);
	finish(f);
}

static void test_create_again_after_ready_is_idempotent_and_rearms_the_hold(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0), *again = NULL;

	(void)state;
	assert_int_equal(create(f, KA, CA, T0 + 600, &again), CLAIMS_OK);
	assert_ptr_equal(again, ws);
	assert_int_equal(ws->clients.count, 1);
	/* A full create grace from the second create, not the first. */
	claims_expire(f->c, T0 + GRACE);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	assert_non_null(claims_find_client(ws, CA));
	claims_expire(f->c, T0 + 600 + GRACE);
	assert_int_equal(count(f, EV_STOP, ws->id), 1);
	assert_null(indexed(f, KA));
	finish(f);
}

static void test_create_by_an_attached_client_leaves_its_stream_claim_alone(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0), *again = NULL;
	claims_client_t *cl;

	(void)state;
	attach_ok(f, ws, CA);
	assert_int_equal(create(f, KA, CA, T0 + 5, &again), CLAIMS_OK);
	cl = claims_find_client(ws, CA);
	assert_false(hold_armed(cl));
	assert_int_equal(cl->streams, 1);
	claims_expire(f->c, T0 + 100 * GRACE);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	finish(f);
}

static void test_attach_consumes_the_create_hold(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);
	claims_client_t *cl;

	(void)state;
	attach_ok(f, ws, CA);
	cl = claims_find_client(ws, CA);
	assert_non_null(cl);
	assert_int_equal(ws->clients.count, 1);
	assert_false(hold_armed(cl));
	assert_int_equal(cl->streams, 1);
	assert_int_equal(ws->streams, 1);
	assert_int_equal(claims_next_deadline(f->c), CLAIMS_NEVER);
	/* Well past the grace window: a stopped hold never fires. */
	claims_expire(f->c, T0 + 3 * GRACE);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	assert_ptr_equal(indexed(f, KA), ws);
	finish(f);
}

static void test_attach_without_prior_create_installs_a_stream_claim(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);
	claims_client_t *cl;

	(void)state;
	attach_ok(f, ws, CB);
	cl = claims_find_client(ws, CB);
	assert_non_null(cl);
	assert_int_equal(ws->clients.count, 2);
	assert_int_equal(cl->streams, 1);
	assert_false(hold_armed(cl));
	assert_false(cl->released);
	finish(f);
}

static void test_duplicate_streams_of_one_client_count_until_the_last_detach(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);

	(void)state;
	attach_ok(f, ws, CA);
	attach_ok(f, ws, CA);
	assert_int_equal(claims_find_client(ws, CA)->streams, 2);
	assert_int_equal(ws->streams, 2);

	claims_detach(f->c, ws->id, CA, T0 + 1);
	assert_int_equal(claims_find_client(ws, CA)->streams, 1);
	assert_int_equal(ws->streams, 1);
	assert_int_equal(count(f, EV_STOP, NULL), 0);

	claims_detach(f->c, ws->id, CA, T0 + 2);
	assert_int_equal(count(f, EV_STOP, ws->id), 1);
	assert_int_equal(ws->state, WS_CLOSING);
	finish(f);
}

static void test_last_detach_tears_down_and_server_exits_after_the_reap(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0), *got = NULL;
	char id[ID_LEN + 1];
	const rec_t *stop;

	(void)state;
	snprintf(id, sizeof(id), "%s", ws->id);
	attach_ok(f, ws, CA);
	claims_detach(f->c, id, CA, T0 + 10);

	assert_int_equal(count(f, EV_STOP, id), 1);
	stop = last(f, EV_STOP);
	assert_true(stop->worker_live);
	assert_int_equal(ws->state, WS_CLOSING);
	assert_null(indexed(f, KA));
	assert_int_equal(claims_attach(f->c, id, CA, &got), CLAIMS_ENOTFOUND);
	assert_nothing_of(f, id, CA);
	/* Not freed while the worker is being stopped, and no exit yet. */
	assert_int_equal(count(f, EV_WS_FREE, NULL), 0);
	assert_int_equal(claims_next_deadline(f->c), CLAIMS_NEVER);
	claims_expire(f->c, T0 + 100 * GRACE);
	assert_int_equal(count(f, EV_EXIT, NULL), 0);

	worker_exit(f, ws, "terminated", T0 + 20);
	assert_int_equal(count(f, EV_WS_FREE, id), 1);
	assert_null(claims_find(f->c, id));
	assert_true(claims_next_deadline(f->c) <= T0 + 20 || count(f, EV_EXIT, NULL) == 1);
	claims_expire(f->c, T0 + 20);
	assert_int_equal(count(f, EV_EXIT, NULL), 1);
	/* Exit decided: a late create must not get a departing workspace. */
	assert_int_equal(create(f, KA, CB, T0 + 21, &got), CLAIMS_ESTOPPING);
	assert_int_equal(count(f, EV_SPAWN, NULL), 1);
	finish(f);
}

static void test_create_hold_expiry_tears_down(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);

	(void)state;
	assert_int_equal(claims_next_deadline(f->c), T0 + GRACE);
	claims_expire(f->c, T0 + GRACE - 1);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	assert_non_null(claims_find_client(ws, CA));

	claims_expire(f->c, T0 + GRACE);
	assert_int_equal(count(f, EV_STOP, ws->id), 1);
	assert_int_equal(ws->clients.count, 0);
	assert_null(indexed(f, KA));
	worker_exit(f, ws, "terminated", T0 + GRACE + 5);
	claims_expire(f->c, T0 + GRACE + 5);
	assert_int_equal(count(f, EV_EXIT, NULL), 1);
	finish(f);
}

static void test_release_without_streams_removes_claim_and_is_idempotent(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);
	char id[ID_LEN + 1];

	(void)state;
	snprintf(id, sizeof(id), "%s", ws->id);
	claims_release(f->c, id, CA, T0 + 1);
	assert_int_equal(count(f, EV_STOP, id), 1);
	assert_int_equal(ws->clients.count, 0);
	claims_release(f->c, id, CA, T0 + 2);
	assert_int_equal(count(f, EV_STOP, NULL), 1);
	worker_exit(f, ws, "terminated", T0 + 3);
	claims_release(f->c, id, CA, T0 + 4);
	assert_int_equal(count(f, EV_STOP, NULL), 1);
	finish(f);
}

static void test_release_with_active_stream_ends_claim_at_last_detach_without_grace(void **state)
{
	fake_t *f = start(GRACE, 5000, 0); /* a detach grace the release must skip */
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);
	claims_client_t *cl;

	(void)state;
	attach_ok(f, ws, CA);
	claims_release(f->c, ws->id, CA, T0 + 1);
	cl = claims_find_client(ws, CA);
	assert_non_null(cl);
	assert_int_equal(cl->streams, 1);
	assert_true(cl->released);
	assert_false(hold_armed(cl));
	assert_int_equal(count(f, EV_STOP, NULL), 0);

	claims_detach(f->c, ws->id, CA, T0 + 2);
	assert_null(claims_find_client(ws, CA));
	assert_int_equal(count(f, EV_STOP, ws->id), 1);
	finish(f);
}

static void test_release_before_any_claim_is_a_noop_then_attach_counts(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);

	(void)state;
	attach_ok(f, ws, CA);
	claims_release(f->c, ws->id, CB, T0 + 1); /* no entry yet: no-op */
	assert_null(claims_find_client(ws, CB));
	assert_int_equal(ws->clients.count, 1);

	attach_ok(f, ws, CB);
	assert_int_equal(claims_find_client(ws, CB)->streams, 1);
	claims_release(f->c, ws->id, CB, T0 + 2); /* streams open: only marks */
	assert_non_null(claims_find_client(ws, CB));
	assert_int_equal(claims_find_client(ws, CB)->streams, 1);
	claims_detach(f->c, ws->id, CA, T0 + 3);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	claims_detach(f->c, ws->id, CB, T0 + 4);
	assert_int_equal(count(f, EV_STOP, ws->id), 1);
	finish(f);
}

static void test_attach_after_releasing_the_last_claim_is_not_found(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0), *got = NULL;
	char id[ID_LEN + 1];

	(void)state;
	snprintf(id, sizeof(id), "%s", ws->id);
	claims_release(f->c, id, CA, T0 + 1);
	assert_int_equal(claims_attach(f->c, id, CA, &got), CLAIMS_ENOTFOUND);
	assert_nothing_of(f, id, CA);
	worker_exit(f, ws, "terminated", T0 + 2);
	assert_int_equal(claims_attach(f->c, id, CA, &got), CLAIMS_ENOTFOUND);
	assert_null(claims_find(f->c, id));
	finish(f);
}

static void test_attach_after_release_on_a_shared_workspace_makes_a_fresh_entry(void **state)
{
	fake_t *f = start(3600 * 1000, 0, 0); /* holds never fire here */
	claims_ws_t *ws = ready_ws(f, KA, CB, T0);
	claims_client_t *cl;

	(void)state;
	attach_ok(f, ws, CB); /* the anchor keeps ws alive */
	assert_int_equal(create(f, KA, CA, T0 + 1, &ws), CLAIMS_OK);
	cl = claims_find_client(ws, CA);
	assert_true(hold_armed(cl));
	assert_int_equal(cl->streams, 0);

	claims_release(f->c, ws->id, CA, T0 + 2);
	assert_null(claims_find_client(ws, CA));
	assert_int_equal(count(f, EV_STOP, NULL), 0);

	attach_ok(f, ws, CA);
	cl = claims_find_client(ws, CA);
	assert_non_null(cl);
	assert_int_equal(cl->streams, 1);
	assert_false(hold_armed(cl));
	assert_false(cl->released);

	claims_release(f->c, ws->id, CA, T0 + 3);
	cl = claims_find_client(ws, CA);
	assert_non_null(cl);
	assert_int_equal(cl->streams, 1);
	assert_false(hold_armed(cl));

	claims_detach(f->c, ws->id, CA, T0 + 4);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	claims_detach(f->c, ws->id, CB, T0 + 5);
	assert_int_equal(count(f, EV_STOP, ws->id), 1);
	finish(f);
}

static void test_second_client_keeps_the_workspace_alive(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0), *got = NULL;

	(void)state;
	attach_ok(f, ws, CA);
	assert_int_equal(create(f, KA, CB, T0 + 1, &got), CLAIMS_OK);
	assert_ptr_equal(got, ws);
	attach_ok(f, ws, CB);
	assert_int_equal(ws->clients.count, 2);

	claims_detach(f->c, ws->id, CA, T0 + 2);
	assert_null(claims_find_client(ws, CA));
	assert_non_null(claims_find_client(ws, CB));
	assert_int_equal(ws->clients.count, 1);
	assert_int_equal(count(f, EV_STOP, NULL), 0);

	claims_detach(f->c, ws->id, CB, T0 + 3);
	assert_int_equal(count(f, EV_STOP, ws->id), 1);
	finish(f);
}

static void test_unknown_workspace_or_client_makes_release_and_detach_noops(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0), *got = NULL;
	size_t before;

	(void)state;
	attach_ok(f, ws, CA);
	before = f->nlog;
	claims_release(f->c, NO_WS, CA, T0 + 1);
	claims_detach(f->c, NO_WS, CA, T0 + 1);
	claims_release(f->c, ws->id, CB, T0 + 1);
	claims_detach(f->c, ws->id, CB, T0 + 1);
	assert_int_equal(f->nlog, before);
	assert_int_equal(ws->clients.count, 1);
	assert_int_equal(claims_find_client(ws, CA)->streams, 1);
	assert_null(claims_find_client(ws, CB));
	assert_int_equal(claims_attach(f->c, NO_WS, CA, &got), CLAIMS_ENOTFOUND);
	assert_null(claims_find(f->c, NO_WS));
	finish(f);
}

static void test_attach_just_before_the_hold_deadline_beats_the_expiry(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);
	claims_client_t *cl;

	(void)state;
	attach_ok(f, ws, CA); /* the shell saw this at T0 + GRACE - 1 */
	claims_expire(f->c, T0 + GRACE);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	cl = claims_find_client(ws, CA);
	assert_non_null(cl);
	assert_int_equal(cl->streams, 1);
	assert_false(hold_armed(cl));
	assert_ptr_equal(indexed(f, KA), ws);
	finish(f);
}

static void test_hold_expiry_before_attach_refuses_the_attach_whole(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0), *got = NULL;
	char id[ID_LEN + 1];

	(void)state;
	snprintf(id, sizeof(id), "%s", ws->id);
	claims_expire(f->c, T0 + GRACE);
	assert_int_equal(count(f, EV_STOP, id), 1);
	assert_int_equal(claims_attach(f->c, id, CA, &got), CLAIMS_ENOTFOUND);
	assert_nothing_of(f, id, CA);
	assert_null(indexed(f, KA));
	worker_exit(f, ws, "terminated", T0 + GRACE + 1);
	assert_null(claims_find(f->c, id));
	finish(f);
}

static void test_attach_after_teardown_is_not_found_and_leaves_nothing(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0), *got = NULL;
	char id[ID_LEN + 1];

	(void)state;
	snprintf(id, sizeof(id), "%s", ws->id);
	attach_ok(f, ws, CA);
	claims_detach(f->c, id, CA, T0 + 1); /* teardown wins */
	assert_int_equal(claims_attach(f->c, id, CB, &got), CLAIMS_ENOTFOUND);
	assert_nothing_of(f, id, CB);
	assert_int_equal(count(f, EV_STOP, id), 1);
	/* A late detach of the refused stream changes nothing. */
	claims_detach(f->c, id, CB, T0 + 2);
	assert_int_equal(count(f, EV_STOP, id), 1);
	finish(f);
}

static void test_attach_before_teardown_keeps_the_workspace(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);

	(void)state;
	attach_ok(f, ws, CA);
	attach_ok(f, ws, CB); /* attach wins */
	claims_detach(f->c, ws->id, CA, T0 + 1);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	assert_ptr_equal(indexed(f, KA), ws);
	assert_int_equal(claims_find_client(ws, CB)->streams, 1);
	finish(f);
}

static void test_parallel_creates_for_one_key_converge_on_one_worker(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *wa = NULL, *wb = NULL, *wc = NULL;
	const rec_t *ans;

	(void)state;
	assert_int_equal(create(f, KA, CA, T0, &wa), CLAIMS_WAIT);
	assert_int_equal(create(f, KA, CB, T0, &wb), CLAIMS_WAIT);
	assert_ptr_equal(wa, wb);
	assert_int_equal(wa->state, WS_STARTING);
	assert_int_equal(count(f, EV_SPAWN, NULL), 1);
	assert_int_equal(count(f, EV_WS_NEW, NULL), 1);
	assert_non_null(claims_find_client(wa, CA));
	assert_non_null(claims_find_client(wa, CB));
	assert_int_equal(count(f, EV_ANSWER, NULL), 0);

	claims_worker_ready(f->c, wa, T0 + 50);
	assert_int_equal(count(f, EV_ANSWER, wa->id), 1);
	ans = last(f, EV_ANSWER);
	assert_true(ans->null_text);
	assert_int_equal(wa->state, WS_READY);
	assert_int_equal(wa->clients.count, 2);

	assert_int_equal(create(f, KA, CC, T0 + 60, &wc), CLAIMS_OK);
	assert_ptr_equal(wc, wa);
	assert_int_equal(count(f, EV_SPAWN, NULL), 1);
	assert_int_equal(count(f, EV_ANSWER, NULL), 1);
	finish(f);
}

static void test_first_create_wins_flags_env_and_path(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	const char *env_a[] = {"FOO=bar"};
	const char *env_b[] = {"BAZ=qux"};
	claims_create_t a = req_for(KA, CA), b = req_for(KA, CB);
	claims_ws_t *wa = NULL, *wb = NULL;

	(void)state;
	a.path = "/w/./a/";
	a.yolo = 1;
	a.data_dir = "/data/a";
	a.env = env_a;
	a.nenv = 1;
	b.path = "/link/a";
	b.debug = 1;
	b.data_dir = "/data/b";
	b.env = env_b;
	b.nenv = 1;
	assert_int_equal(create_req(f, &a, T0, &wa), CLAIMS_WAIT);
	claims_worker_ready(f->c, wa, T0);
	assert_int_equal(create_req(f, &b, T0 + 1, &wb), CLAIMS_OK);
	assert_ptr_equal(wa, wb);
	assert_string_equal(wa->path, "/w/./a/");
	assert_string_equal(wa->key, KA);
	assert_true(wa->yolo);
	assert_false(wa->debug);
	assert_string_equal(wa->data_dir, "/data/a");
	assert_int_equal(wa->nenv, 1);
	assert_string_equal(wa->env[0], "FOO=bar");
	assert_int_equal(count(f, EV_MISMATCH, wa->id), 1);
	assert_string_equal(last(f, EV_MISMATCH)->text, "/data/b");
	finish(f);
}

/* One first/second create pair on a fresh state machine: mismatch calls. */
static int mismatches(const claims_create_t *second)
{
	fake_t *f = start(GRACE, 0, 0);
	const char *env[] = {"FOO=bar"};
	claims_create_t a = req_for(KA, CA), b = *second;
	claims_ws_t *ws = NULL;
	int n;

	a.data_dir = "/data";
	a.env = env;
	a.nenv = 1;
	b.key = KA;
	b.client_id = CB;
	assert_int_equal(create_req(f, &a, T0, &ws), CLAIMS_WAIT);
	assert_int_equal(create_req(f, &b, T0, &ws), CLAIMS_WAIT);
	/* First wins, whatever the second sent. */
	assert_false(ws->yolo);
	assert_false(ws->debug);
	assert_string_equal(ws->data_dir, "/data");
	n = count(f, EV_MISMATCH, NULL);
	finish(f);
	return n;
}

static void test_mismatch_is_reported_for_each_differing_flag_only(void **state)
{
	const char *same[] = {"FOO=bar"};
	const char *other[] = {"NEW=val"};
	const char *more[] = {"FOO=bar", "X=1"};
	claims_create_t base = {.path = KA, .data_dir = "/data", .env = same, .nenv = 1};
	claims_create_t r;

	(void)state;
	r = base;
	assert_int_equal(mismatches(&r), 0);
	r = base;
	r.path = "/elsewhere/spelling"; /* the path is not a flag */
	assert_int_equal(mismatches(&r), 0);
	r = base;
	r.yolo = 1;
	assert_int_equal(mismatches(&r), 1);
	r = base;
	r.debug = 1;
	assert_int_equal(mismatches(&r), 1);
	r = base;
	r.data_dir = ""; /* compared as sent: omitted differs from set */
	assert_int_equal(mismatches(&r), 1);
	r = base;
	r.env = other;
	assert_int_equal(mismatches(&r), 1);
	r = base;
	r.env = more;
	r.nenv = 2;
	assert_int_equal(mismatches(&r), 1);
	r = base;
	r.env = NULL;
	r.nenv = 0;
	assert_int_equal(mismatches(&r), 1);
}

static void test_unsent_data_dir_matches_unsent_data_dir(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_create_t a = req_for(KA, CA), b = req_for(KA, CB);
	claims_ws_t *ws = NULL;

	(void)state;
	assert_int_equal(create_req(f, &a, T0, &ws), CLAIMS_WAIT);
	assert_int_equal(create_req(f, &b, T0, &ws), CLAIMS_WAIT);
	assert_int_equal(count(f, EV_MISMATCH, NULL), 0);
	b.client_id = CC;
	b.data_dir = "/x";
	assert_int_equal(create_req(f, &b, T0, &ws), CLAIMS_WAIT);
	assert_int_equal(count(f, EV_MISMATCH, NULL), 1);
	finish(f);
}

static void test_different_keys_get_different_workspaces(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *wa = NULL, *wb = NULL;

	(void)state;
	assert_int_equal(create(f, KA, CA, T0, &wa), CLAIMS_WAIT);
	assert_int_equal(create(f, KB, CA, T0, &wb), CLAIMS_WAIT);
	assert_ptr_not_equal(wa, wb);
	assert_string_not_equal(wa->id, wb->id);
	assert_int_equal(count(f, EV_SPAWN, NULL), 2);
	assert_ptr_equal(indexed(f, KA), wa);
	assert_ptr_equal(indexed(f, KB), wb);
	assert_ptr_equal(claims_find(f->c, wa->id), wa);
	assert_ptr_equal(claims_find(f->c, wb->id), wb);
	finish(f);
}

/* ---- ours: detach grace, idle timeout, lifetimes the seed never had */

static void test_detach_grace_holds_the_claim_until_it_expires(void **state)
{
	fake_t *f = start(GRACE, 300, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);
	claims_client_t *cl;

	(void)state;
	attach_ok(f, ws, CA);
	claims_detach(f->c, ws->id, CA, T0 + 100);
	cl = claims_find_client(ws, CA);
	assert_non_null(cl);
	assert_int_equal(cl->streams, 0);
	assert_true(hold_armed(cl));
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	assert_int_equal(claims_next_deadline(f->c), T0 + 400);

	claims_expire(f->c, T0 + 399);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	claims_expire(f->c, T0 + 400);
	assert_int_equal(count(f, EV_STOP, ws->id), 1);
	assert_int_equal(ws->clients.count, 0);
	finish(f);
}

static void test_reattach_within_the_detach_grace_cancels_it(void **state)
{
	fake_t *f = start(GRACE, 300, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);
	claims_client_t *cl;

	(void)state;
	attach_ok(f, ws, CA);
	claims_detach(f->c, ws->id, CA, T0 + 100);
	attach_ok(f, ws, CA); /* reconnect at T0 + 399 */
	cl = claims_find_client(ws, CA);
	assert_false(hold_armed(cl));
	assert_int_equal(cl->streams, 1);
	assert_int_equal(claims_next_deadline(f->c), CLAIMS_NEVER);
	claims_expire(f->c, T0 + 10 * GRACE);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	assert_non_null(claims_find_client(ws, CA));
	finish(f);
}

static void test_create_during_the_detach_grace_rearms_a_full_create_grace(void **state)
{
	fake_t *f = start(GRACE, 300, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0), *got = NULL;

	(void)state;
	attach_ok(f, ws, CA);
	claims_detach(f->c, ws->id, CA, T0 + 100);
	assert_int_equal(create(f, KA, CA, T0 + 200, &got), CLAIMS_OK);
	assert_int_equal(ws->clients.count, 1);
	assert_int_equal(claims_next_deadline(f->c), T0 + 200 + GRACE);
	claims_expire(f->c, T0 + 400);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	claims_expire(f->c, T0 + 200 + GRACE);
	assert_int_equal(count(f, EV_STOP, ws->id), 1);
	finish(f);
}

static void test_zero_detach_grace_removes_the_claim_at_once(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);

	(void)state;
	attach_ok(f, ws, CA);
	attach_ok(f, ws, CB);
	claims_detach(f->c, ws->id, CB, T0 + 1);
	assert_null(claims_find_client(ws, CB));
	assert_int_equal(ws->clients.count, 1);
	assert_int_equal(claims_next_deadline(f->c), CLAIMS_NEVER);
	finish(f);
}

static void test_starts_with_no_workspace_and_no_deadline(void **state)
{
	fake_t *f = start(GRACE, 300, 0); /* idle 0 still waits for a first ws */

	(void)state;
	assert_int_equal(claims_next_deadline(f->c), CLAIMS_NEVER);
	assert_int_equal(claims_count(f->c), 0);
	claims_expire(f->c, T0 + 100 * GRACE);
	assert_int_equal(f->nlog, 0);
	finish(f);
}

static void test_idle_timer_starts_only_after_the_last_worker_exit(void **state)
{
	fake_t *f = start(GRACE, 0, 5000);
	claims_ws_t *wa = ready_ws(f, KA, CA, T0), *wb = ready_ws(f, KB, CB, T0), *got = NULL;

	(void)state;
	attach_ok(f, wa, CA);
	attach_ok(f, wb, CB);
	claims_detach(f->c, wa->id, CA, T0 + 10);
	worker_exit(f, wa, "terminated", T0 + 20);
	assert_int_equal(claims_next_deadline(f->c), CLAIMS_NEVER); /* wb lives */

	claims_detach(f->c, wb->id, CB, T0 + 30);
	assert_int_equal(claims_next_deadline(f->c), CLAIMS_NEVER); /* wb reaping */
	worker_exit(f, wb, "terminated", T0 + 40);
	assert_int_equal(claims_next_deadline(f->c), T0 + 40 + 5000);

	claims_expire(f->c, T0 + 40 + 4999);
	assert_int_equal(count(f, EV_EXIT, NULL), 0);
	claims_expire(f->c, T0 + 40 + 5000);
	assert_int_equal(count(f, EV_EXIT, NULL), 1);
	assert_int_equal(create(f, KA, CA, T0 + 40 + 5001, &got), CLAIMS_ESTOPPING);
	assert_int_equal(count(f, EV_SPAWN, NULL), 2);
	claims_expire(f->c, T0 + 100000);
	assert_int_equal(count(f, EV_EXIT, NULL), 1);
	finish(f);
}

static void test_create_during_the_idle_window_cancels_the_exit(void **state)
{
	fake_t *f = start(GRACE, 0, 5000);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);

	(void)state;
	claims_release(f->c, ws->id, CA, T0 + 10);
	worker_exit(f, ws, "terminated", T0 + 20);
	assert_int_equal(claims_next_deadline(f->c), T0 + 5020);

	ws = ready_ws(f, KA, CB, T0 + 1000);
	attach_ok(f, ws, CB);
	assert_int_equal(claims_next_deadline(f->c), CLAIMS_NEVER);
	claims_expire(f->c, T0 + 5020);
	assert_int_equal(count(f, EV_EXIT, NULL), 0);
	assert_ptr_equal(indexed(f, KA), ws);
	assert_int_equal(ws->state, WS_READY);
	finish(f);
}

static void test_recreate_while_closing_defers_the_spawn_until_the_old_worker_exits(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *old = ready_ws(f, KA, CA, T0), *neu = NULL;

	(void)state;
	attach_ok(f, old, CA);
	claims_detach(f->c, old->id, CA, T0 + 1); /* old closing, worker alive */
	assert_int_equal(create(f, KA, CB, T0 + 2, &neu), CLAIMS_WAIT);
	assert_non_null(neu);
	assert_ptr_not_equal(neu, old);
	assert_true(neu->spawn_deferred);
	assert_false(neu->worker_live);
	assert_int_equal(neu->state, WS_STARTING);
	assert_ptr_equal(indexed(f, KA), neu);
	assert_int_equal(count(f, EV_SPAWN, NULL), 1);

	/* A join of the deferred workspace does not spawn either. */
	assert_int_equal(create(f, KA, CC, T0 + 3, &neu), CLAIMS_WAIT);
	assert_int_equal(count(f, EV_SPAWN, NULL), 1);

	worker_exit(f, old, "terminated", T0 + 4); /* fake checks invariant 1 */
	assert_int_equal(count(f, EV_SPAWN, neu->id), 1);
	assert_false(neu->spawn_deferred);
	assert_true(neu->worker_live);
	claims_worker_ready(f->c, neu, T0 + 5);
	assert_int_equal(count(f, EV_ANSWER, neu->id), 1);
	assert_true(last(f, EV_ANSWER)->null_text);
	assert_int_equal(neu->clients.count, 2);
	finish(f);
}

static void test_deferred_workspace_torn_down_is_freed_without_a_stop_wait(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *old = ready_ws(f, KA, CA, T0), *neu = NULL;
	char id[ID_LEN + 1];

	(void)state;
	claims_release(f->c, old->id, CA, T0 + 1); /* old closing */
	assert_int_equal(create(f, KA, CB, T0 + 2, &neu), CLAIMS_WAIT);
	snprintf(id, sizeof(id), "%s", neu->id);
	claims_release(f->c, id, CB, T0 + 3);
	claims_unwait(f->c, neu, CB, T0 + 3); /* the create's client went away */
	assert_int_equal(count(f, EV_WS_FREE, id), 1);
	assert_null(claims_find(f->c, id));
	assert_null(indexed(f, KA));
	assert_int_equal(count(f, EV_WS_FREE, old->id), 0);

	worker_exit(f, old, "terminated", T0 + 4);
	assert_int_equal(count(f, EV_SPAWN, NULL), 1);
	assert_int_equal(claims_count(f->c), 0);
	finish(f);
}

static void test_deferred_spawn_failure_fails_the_waiting_creates(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *old = ready_ws(f, KA, CA, T0), *neu = NULL;
	char id[ID_LEN + 1];

	(void)state;
	claims_release(f->c, old->id, CA, T0 + 1);
	assert_int_equal(create(f, KA, CB, T0 + 2, &neu), CLAIMS_WAIT);
	snprintf(id, sizeof(id), "%s", neu->id);
	f->spawn_rc = -1;
	f->spawn_err = "exec: permission denied";
	worker_exit(f, old, "terminated", T0 + 3);
	assert_int_equal(count(f, EV_ANSWER, id), 1);
	assert_non_null(strstr(last(f, EV_ANSWER)->text, "exec: permission denied"));
	assert_null(claims_find(f->c, id));
	assert_null(indexed(f, KA));
	assert_int_equal(claims_count(f->c), 0);
	finish(f);
}

static void test_worker_exit_before_ready_fails_every_waiter_and_leaves_nothing(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = NULL, *got = NULL;
	char id[ID_LEN + 1];
	const rec_t *ans;

	(void)state;
	assert_int_equal(create(f, KA, CA, T0, &ws), CLAIMS_WAIT);
	assert_int_equal(create(f, KA, CB, T0 + 1, &ws), CLAIMS_WAIT);
	snprintf(id, sizeof(id), "%s", ws->id);
	worker_exit(f, ws, "exited with status 127", T0 + 2);

	assert_int_equal(count(f, EV_ANSWER, id), 1); /* one answer: every waiter */
	ans = last(f, EV_ANSWER);
	assert_false(ans->null_text);
	assert_non_null(strstr(ans->text, "exited with status 127"));
	assert_int_equal(count(f, EV_WS_FREE, id), 1);
	assert_null(claims_find(f->c, id));
	assert_null(indexed(f, KA));
	assert_int_equal(claims_attach(f->c, id, CA, &got), CLAIMS_ENOTFOUND);
	/* The holds went with it: nothing fires later. */
	claims_expire(f->c, T0 + 10 * GRACE);
	assert_int_equal(count(f, EV_STOP, id), count(f, EV_STOP, NULL));
	assert_true(count(f, EV_STOP, NULL) <= 1);
	finish(f);
}

static void test_spawn_failure_fails_the_create_and_leaves_nothing(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_create_t r = req_for(KA, CA);
	claims_ws_t *ws = NULL;
	char err[256] = "";

	(void)state;
	f->spawn_rc = -1;
	f->spawn_err = "exec: no such file";
	assert_int_equal(claims_create(f->c, &r, T0, &ws, err, sizeof(err)), CLAIMS_EFAILED);
	assert_non_null(strstr(err, "exec: no such file"));
	assert_int_equal(claims_count(f->c), 0);
	assert_null(indexed(f, KA));
	assert_int_equal(f->shells, 0);
	assert_int_equal(count(f, EV_ANSWER, NULL), 0);

	/* No stale index entry: the next create makes a new workspace. */
	f->spawn_rc = 0;
	assert_int_equal(create(f, KA, CA, T0 + 1, &ws), CLAIMS_WAIT);
	assert_ptr_equal(indexed(f, KA), ws);
	assert_int_equal(count(f, EV_SPAWN, NULL), 2);
	/* Nor a stale hold: the failed create's grace passes harmlessly. */
	claims_expire(f->c, T0 + GRACE);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	assert_non_null(claims_find_client(ws, CA));
	finish(f);
}

static void test_worker_crash_while_ready_closes_the_workspace(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0), *got = NULL;
	char id[ID_LEN + 1];
	const rec_t *stop;

	(void)state;
	snprintf(id, sizeof(id), "%s", ws->id);
	attach_ok(f, ws, CA);
	attach_ok(f, ws, CB);
	worker_exit(f, ws, "killed by signal 9", T0 + 5);

	assert_int_equal(count(f, EV_STOP, id), 1);
	stop = last(f, EV_STOP);
	assert_false(stop->worker_live); /* nothing left to kill */
	assert_non_null(strstr(stop->text, "killed by signal 9"));
	assert_null(claims_find(f->c, id));
	assert_null(indexed(f, KA));
	assert_int_equal(claims_attach(f->c, id, CA, &got), CLAIMS_ENOTFOUND);
	/* The streams' late detaches are harmless. */
	claims_detach(f->c, id, CA, T0 + 6);
	claims_detach(f->c, id, CB, T0 + 6);
	assert_int_equal(count(f, EV_STOP, NULL), 1);
	finish(f);
}

static void test_shutdown_stops_everything_and_exits_after_the_last_reap(void **state)
{
	fake_t *f = start(GRACE, 300, 5000);
	claims_ws_t *wa = ready_ws(f, KA, CA, T0), *wb = ready_ws(f, KB, CB, T0), *wc = NULL, *got = NULL;

	(void)state;
	attach_ok(f, wa, CA);
	assert_int_equal(create(f, "/w/c", CC, T0, &wc), CLAIMS_WAIT);

	claims_shutdown(f->c, T0 + 10);
	assert_int_equal(count(f, EV_STOP, wa->id), 1);
	assert_int_equal(count(f, EV_STOP, wb->id), 1);
	assert_int_equal(count(f, EV_STOP, wc->id), 1);
	assert_int_equal(count(f, EV_ANSWER, wc->id), 1);
	assert_false(last(f, EV_ANSWER)->null_text);
	assert_int_equal(count(f, EV_EXIT, NULL), 0);
	assert_int_equal(claims_next_deadline(f->c), CLAIMS_NEVER);
	assert_int_equal(claims_attach(f->c, wa->id, CC, &got), CLAIMS_ENOTFOUND);
	assert_int_equal(create(f, KA, CA, T0 + 11, &got), CLAIMS_ESTOPPING);
	assert_int_equal(count(f, EV_SPAWN, NULL), 3);

	worker_exit(f, wa, "terminated", T0 + 12);
	worker_exit(f, wc, "terminated", T0 + 13);
	assert_int_equal(count(f, EV_EXIT, NULL), 0);
	worker_exit(f, wb, "killed", T0 + 14);
	claims_expire(f->c, T0 + 14);
	assert_int_equal(count(f, EV_EXIT, NULL), 1);
	claims_shutdown(f->c, T0 + 15); /* a second signal: still one exit */
	claims_expire(f->c, T0 + 100000);
	assert_int_equal(count(f, EV_EXIT, NULL), 1);
	finish(f);
}

static void test_shutdown_with_nothing_running_exits_at_once(void **state)
{
	fake_t *f = start(GRACE, 0, 5000);

	(void)state;
	claims_shutdown(f->c, T0);
	claims_expire(f->c, T0);
	assert_int_equal(count(f, EV_EXIT, NULL), 1);
	finish(f);
}

/* A start slower than the create grace must not answer a create with a
 * workspace its creator no longer holds (issue 8: "clients":0, then
 * teardown): a waiting creator's claim has no timer until its answer. */
static void test_a_waiting_creator_keeps_its_claim_past_the_create_grace(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = NULL;

	(void)state;
	assert_int_equal(create(f, KA, CA, T0, &ws), CLAIMS_WAIT);
	claims_expire(f->c, T0 + 3 * GRACE);
	assert_non_null(claims_find_client(ws, CA));
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	assert_int_equal(ws->state, WS_STARTING);
	claims_worker_ready(f->c, ws, T0 + 3 * GRACE);
	assert_true(last(f, EV_ANSWER)->null_text);
	assert_int_equal(claims_ws_clients(ws), 1);
	claims_expire(f->c, T0 + 4 * GRACE - 1);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	claims_expire(f->c, T0 + 4 * GRACE);
	assert_int_equal(count(f, EV_STOP, ws->id), 1);
	finish(f);
}

/* The waiting request went away: the claim's grace starts then. */
static void test_a_creator_that_gives_up_keeps_a_grace_from_then(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = NULL;

	(void)state;
	assert_int_equal(create(f, KA, CA, T0, &ws), CLAIMS_WAIT);
	claims_unwait(f->c, ws, CA, T0 + 2 * GRACE);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	claims_expire(f->c, T0 + 3 * GRACE - 1);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	claims_expire(f->c, T0 + 3 * GRACE);
	assert_int_equal(count(f, EV_STOP, ws->id), 1);
	assert_null(indexed(f, KA));
	assert_int_equal(count(f, EV_ANSWER, NULL), 0);
	finish(f);
}

/* Two creates of one client wait; one gives up: the other still holds. */
static void test_one_of_two_waiting_creates_giving_up_keeps_the_claim_waiting(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = NULL, *again = NULL;

	(void)state;
	assert_int_equal(create(f, KA, CA, T0, &ws), CLAIMS_WAIT);
	assert_int_equal(create(f, KA, CA, T0 + 1, &again), CLAIMS_WAIT);
	claims_unwait(f->c, ws, CA, T0 + 2);
	claims_expire(f->c, T0 + 2 * GRACE);
	assert_non_null(claims_find_client(ws, CA));
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	finish(f);
}

static void test_create_grace_counts_from_the_ready_answer(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = NULL;

	(void)state;
	assert_int_equal(create(f, KA, CA, T0, &ws), CLAIMS_WAIT);
	/* A slow start takes most of the window... */
	claims_worker_ready(f->c, ws, T0 + GRACE - 1);
	assert_true(last(f, EV_ANSWER)->null_text);
	/* ...yet the creator keeps a whole grace after its answer. */
	claims_expire(f->c, T0 + GRACE);
	assert_non_null(claims_find_client(ws, CA));
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	claims_expire(f->c, T0 + 2 * GRACE - 1);
	assert_int_equal(count(f, EV_STOP, ws->id), 1);
	finish(f);
}

/* ---- faults: restarts, crash loops, retired clients */

#define RMIN   100u
#define RMAX   400u
#define WINDOW 30000u

static fake_t *start_restarting(unsigned limit)
{
	fake_t *f = start(GRACE, 0, 0);

	f->c->cfg.restart_min_ms = RMIN;
	f->c->cfg.restart_max_ms = RMAX;
	f->c->cfg.crash_window_ms = WINDOW;
	f->c->cfg.crash_limit = limit;
	return f;
}

static void test_crash_restarts_in_place_after_a_doubling_backoff(void **state)
{
	fake_t *f = start_restarting(5);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);
	uint64_t t = T0, delays[] = {RMIN, 2 * RMIN, RMAX, RMAX};

	(void)state;
	attach_ok(f, ws, CA);
	for (int i = 0; i < 4; i++) {
		int spawns = count(f, EV_SPAWN, ws->id);
		worker_exit(f, ws, "killed by signal KILL", t);
		assert_int_equal(ws->state, WS_RESTARTING);
		assert_string_equal(last(f, EV_RESTARTING)->text, "killed by signal KILL");
		assert_int_equal(claims_next_deadline(f->c), t + delays[i]);
		claims_expire(f->c, t + delays[i] - 1);
		assert_int_equal(count(f, EV_SPAWN, ws->id), spawns);
		t += delays[i];
		claims_expire(f->c, t);
		assert_int_equal(count(f, EV_SPAWN, ws->id), spawns + 1);
		claims_worker_ready(f->c, ws, t);
		assert_int_equal(ws->state, WS_READY);
		/* Same workspace, same claims and streams. */
		assert_ptr_equal(claims_find(f->c, ws->id), ws);
		assert_int_equal(claims_find_client(ws, CA)->streams, 1);
	}
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	finish(f);
}

static void test_crash_loop_fails_the_workspace_and_a_later_create_starts_clean(void **state)
{
	fake_t *f = start_restarting(3);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0), *again = NULL;
	char old[ID_LEN + 1];

	(void)state;
	snprintf(old, sizeof(old), "%s", ws->id);
	attach_ok(f, ws, CA);
	worker_exit(f, ws, "exited with status 1", T0 + 1);
	claims_expire(f->c, T0 + 1 + RMIN);
	worker_exit(f, ws, "exited with status 1", T0 + 2 + RMIN); /* died while restarting */
	claims_expire(f->c, T0 + 2 + 3 * RMIN);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	worker_exit(f, ws, "exited with status 1", T0 + 3 + 3 * RMIN);
	/* Third crash within the window: failed, torn down, freed. */
	assert_int_equal(count(f, EV_STOP, old), 1);
	assert_non_null(strstr(last(f, EV_STOP)->text, "crash loop"));
	assert_null(claims_find(f->c, old));
	assert_null(indexed(f, KA));
	assert_int_equal(create(f, KA, CB, T0 + 10000, &again), CLAIMS_WAIT);
	assert_string_not_equal(again->id, old);
	assert_int_equal(again->ncrashes, 0);
	finish(f);
}

static void test_crashes_outside_the_window_do_not_add_up(void **state)
{
	fake_t *f = start_restarting(2);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);

	(void)state;
	worker_exit(f, ws, "x", T0);
	claims_expire(f->c, T0 + RMIN);
	claims_worker_ready(f->c, ws, T0 + RMIN);
	worker_exit(f, ws, "x", T0 + WINDOW + RMIN);
	assert_int_equal(ws->state, WS_RESTARTING);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	finish(f);
}

static void test_teardown_while_waiting_to_restart_frees_at_once(void **state)
{
	fake_t *f = start_restarting(5);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0);
	char id[ID_LEN + 1];

	(void)state;
	snprintf(id, sizeof(id), "%s", ws->id);
	worker_exit(f, ws, "x", T0 + 1);
	claims_release(f->c, id, CA, T0 + 2);
	assert_int_equal(count(f, EV_STOP, id), 1);
	assert_null(claims_find(f->c, id));
	claims_expire(f->c, T0 + 10 * RMAX); /* the backoff timer went with it */
	assert_int_equal(count(f, EV_SPAWN, id), 1);
	finish(f);
}

static void test_join_while_restarting_is_answered_at_once(void **state)
{
	fake_t *f = start_restarting(5);
	claims_ws_t *ws = ready_ws(f, KA, CA, T0), *got = NULL;

	(void)state;
	worker_exit(f, ws, "x", T0 + 1);
	assert_int_equal(create(f, KA, CB, T0 + 2, &got), CLAIMS_OK);
	assert_ptr_equal(got, ws);
	finish(f);
}

static void test_retire_removes_the_client_everywhere_and_refuses_it_later(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *a = ready_ws(f, KA, CA, T0), *b = ready_ws(f, KB, CA, T0), *got = NULL;
	char ida[ID_LEN + 1];

	(void)state;
	snprintf(ida, sizeof(ida), "%s", a->id);
	attach_ok(f, a, CA);
	assert_int_equal(create(f, KB, CB, T0 + 1, &got), CLAIMS_OK);
	claims_retire(f->c, CA, T0 + 2);
	/* a had only CA (with a stream): gone. b keeps CB. */
	assert_int_equal(count(f, EV_STOP, ida), 1);
	assert_null(claims_find_client(b, CA));
	assert_non_null(claims_find_client(b, CB));
	assert_int_equal(b->state, WS_READY);
	assert_true(claims_is_retired(f->c, CA));
	assert_int_equal(create(f, KB, CA, T0 + 3, &got), CLAIMS_ERETIRED);
	assert_int_equal(claims_attach(f->c, b->id, CA, &got), CLAIMS_ERETIRED);
	assert_null(claims_find_client(b, CA));
	claims_retire(f->c, CA, T0 + 4); /* idempotent */
	assert_int_equal(b->clients.count, 1);
	finish(f);
}

static void test_unwait_of_one_waiter_keeps_a_claimed_workspace(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *ws = NULL;

	(void)state;
	assert_int_equal(create(f, KA, CA, T0, &ws), CLAIMS_WAIT);
	claims_unwait(f->c, ws, CA, T0 + 1); /* CA's hold still counts */
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	assert_non_null(claims_find_client(ws, CA));
	claims_worker_ready(f->c, ws, T0 + 2);
	assert_int_equal(ws->state, WS_READY);
	assert_int_equal(count(f, EV_STOP, NULL), 0);
	finish(f);
}

static void test_expire_runs_every_due_timer_in_one_call(void **state)
{
	fake_t *f = start(GRACE, 300, 0);
	claims_ws_t *wa = ready_ws(f, KA, CA, T0), *wb = ready_ws(f, KB, CB, T0 + 50), *got = NULL;

	(void)state;
	assert_int_equal(create(f, KA, CC, T0 + 100, &got), CLAIMS_OK);
	claims_expire(f->c, T0 + 10 * GRACE);
	assert_int_equal(count(f, EV_STOP, wa->id), 1);
	assert_int_equal(count(f, EV_STOP, wb->id), 1);
	assert_int_equal(wa->clients.count, 0);
	finish(f);
}

static void test_next_deadline_is_the_earliest_armed_timer(void **state)
{
	fake_t *f = start(GRACE, 300, 5000);
	claims_ws_t *wa = ready_ws(f, KA, CA, T0), *wb = ready_ws(f, KB, CB, T0 + 100);

	(void)state;
	assert_int_equal(claims_next_deadline(f->c), T0 + GRACE); /* wa's hold */
	attach_ok(f, wb, CB);
	claims_detach(f->c, wb->id, CB, T0 + 500);
	assert_int_equal(claims_next_deadline(f->c), T0 + 800); /* wb's detach grace */
	attach_ok(f, wa, CA);
	assert_int_equal(claims_next_deadline(f->c), T0 + 800);
	attach_ok(f, wb, CB);
	assert_int_equal(claims_next_deadline(f->c), CLAIMS_NEVER);
	claims_detach(f->c, wa->id, CA, T0 + 900);
	assert_int_equal(claims_next_deadline(f->c), T0 + 1200);
	claims_expire(f->c, T0 + 1200);
	worker_exit(f, wa, "terminated", T0 + 1300);
	assert_int_equal(claims_next_deadline(f->c), CLAIMS_NEVER);
	claims_release(f->c, wb->id, CB, T0 + 1400);
	claims_detach(f->c, wb->id, CB, T0 + 1400);
	worker_exit(f, wb, "terminated", T0 + 1500);
	assert_int_equal(claims_next_deadline(f->c), T0 + 6500); /* idle */
	finish(f);
}

/* Ids come from the mint_id effect, in order: claims itself is
 * deterministic (no random source inside). */
static void test_workspace_ids_come_from_the_mint_effect(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *a = ready_ws(f, KA, CA, T0), *b = ready_ws(f, KB, CB, T0);

	(void)state;
	assert_string_equal(a->id, "00000000-0000-4000-8000-000000000001");
	assert_string_equal(b->id, "00000000-0000-4000-8000-000000000002");
	assert_ptr_equal(claims_find(f->c, a->id), a);
	assert_int_equal(claims_live_count(f->c), 2);
	finish(f);
}

/* An effect that calls back into claims is a bug that would corrupt the
 * state it is walking: the entry point aborts instead. Run in a child. */
static void test_an_effect_reentering_claims_aborts(void **state)
{
	pid_t pid;
	int status;

	(void)state;
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fake_t *f = start(GRACE, 0, 0);
		claims_ws_t *ws = ready_ws(f, KA, CA, T0);

		freopen("/dev/null", "w", stderr); /* the assert's message */
		f->reenter = 1;
		claims_release(f->c, ws->id, CA, T0); /* teardown -> stop -> release */
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

/* Past max_workspaces a create of a new directory is refused whole
 * (nothing made, nothing spawned); joins still work; a closing one still
 * counts until its worker is reaped. */
static void test_max_workspaces_refuses_new_ones_but_not_joins(void **state)
{
	fake_t *f = start(GRACE, 0, 0);
	claims_ws_t *a, *b, *got = NULL;

	(void)state;
	f->c->cfg.max_workspaces = 2;
	a = ready_ws(f, KA, CA, T0);
	b = ready_ws(f, KB, CB, T0);
	assert_int_equal(create(f, "/w/c", CC, T0, &got), CLAIMS_ELIMIT);
	assert_null(got);
	assert_int_equal(count(f, EV_SPAWN, NULL), 2);
	assert_int_equal(create(f, KA, CC, T0, &got), CLAIMS_OK);
	claims_release(f->c, b->id, CB, T0 + 1); /* closing, worker alive */
	assert_int_equal(create(f, "/w/c", CC, T0 + 2, &got), CLAIMS_ELIMIT);
	worker_exit(f, b, "terminated", T0 + 3);
	assert_int_equal(create(f, "/w/c", CC, T0 + 4, &got), CLAIMS_WAIT);
	(void)a;
	finish(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_register_twice_by_one_client_keeps_one_held_claim),
	    cmocka_unit_test(test_create_again_after_ready_is_idempotent_and_rearms_the_hold),
	    cmocka_unit_test(test_create_by_an_attached_client_leaves_its_stream_claim_alone),
	    cmocka_unit_test(test_attach_consumes_the_create_hold),
	    cmocka_unit_test(test_attach_without_prior_create_installs_a_stream_claim),
	    cmocka_unit_test(test_duplicate_streams_of_one_client_count_until_the_last_detach),
	    cmocka_unit_test(test_last_detach_tears_down_and_server_exits_after_the_reap),
	    cmocka_unit_test(test_create_hold_expiry_tears_down),
	    cmocka_unit_test(test_release_without_streams_removes_claim_and_is_idempotent),
	    cmocka_unit_test(test_release_with_active_stream_ends_claim_at_last_detach_without_grace),
	    cmocka_unit_test(test_release_before_any_claim_is_a_noop_then_attach_counts),
	    cmocka_unit_test(test_attach_after_releasing_the_last_claim_is_not_found),
	    cmocka_unit_test(test_attach_after_release_on_a_shared_workspace_makes_a_fresh_entry),
	    cmocka_unit_test(test_second_client_keeps_the_workspace_alive),
	    cmocka_unit_test(test_unknown_workspace_or_client_makes_release_and_detach_noops),
	    cmocka_unit_test(test_attach_just_before_the_hold_deadline_beats_the_expiry),
	    cmocka_unit_test(test_hold_expiry_before_attach_refuses_the_attach_whole),
	    cmocka_unit_test(test_attach_after_teardown_is_not_found_and_leaves_nothing),
	    cmocka_unit_test(test_attach_before_teardown_keeps_the_workspace),
	    cmocka_unit_test(test_parallel_creates_for_one_key_converge_on_one_worker),
	    cmocka_unit_test(test_first_create_wins_flags_env_and_path),
	    cmocka_unit_test(test_mismatch_is_reported_for_each_differing_flag_only),
	    cmocka_unit_test(test_unsent_data_dir_matches_unsent_data_dir),
	    cmocka_unit_test(test_different_keys_get_different_workspaces),
	    cmocka_unit_test(test_detach_grace_holds_the_claim_until_it_expires),
	    cmocka_unit_test(test_reattach_within_the_detach_grace_cancels_it),
	    cmocka_unit_test(test_create_during_the_detach_grace_rearms_a_full_create_grace),
	    cmocka_unit_test(test_zero_detach_grace_removes_the_claim_at_once),
	    cmocka_unit_test(test_starts_with_no_workspace_and_no_deadline),
	    cmocka_unit_test(test_idle_timer_starts_only_after_the_last_worker_exit),
	    cmocka_unit_test(test_create_during_the_idle_window_cancels_the_exit),
	    cmocka_unit_test(test_recreate_while_closing_defers_the_spawn_until_the_old_worker_exits),
	    cmocka_unit_test(test_deferred_workspace_torn_down_is_freed_without_a_stop_wait),
	    cmocka_unit_test(test_deferred_spawn_failure_fails_the_waiting_creates),
	    cmocka_unit_test(test_worker_exit_before_ready_fails_every_waiter_and_leaves_nothing),
	    cmocka_unit_test(test_spawn_failure_fails_the_create_and_leaves_nothing),
	    cmocka_unit_test(test_worker_crash_while_ready_closes_the_workspace),
	    cmocka_unit_test(test_shutdown_stops_everything_and_exits_after_the_last_reap),
	    cmocka_unit_test(test_shutdown_with_nothing_running_exits_at_once),
	    cmocka_unit_test(test_a_waiting_creator_keeps_its_claim_past_the_create_grace),
	    cmocka_unit_test(test_a_creator_that_gives_up_keeps_a_grace_from_then),
	    cmocka_unit_test(test_one_of_two_waiting_creates_giving_up_keeps_the_claim_waiting),
	    cmocka_unit_test(test_create_grace_counts_from_the_ready_answer),
	    cmocka_unit_test(test_unwait_of_one_waiter_keeps_a_claimed_workspace),
	    cmocka_unit_test(test_crash_restarts_in_place_after_a_doubling_backoff),
	    cmocka_unit_test(test_crash_loop_fails_the_workspace_and_a_later_create_starts_clean),
	    cmocka_unit_test(test_crashes_outside_the_window_do_not_add_up),
	    cmocka_unit_test(test_teardown_while_waiting_to_restart_frees_at_once),
	    cmocka_unit_test(test_join_while_restarting_is_answered_at_once),
	    cmocka_unit_test(test_retire_removes_the_client_everywhere_and_refuses_it_later),
	    cmocka_unit_test(test_expire_runs_every_due_timer_in_one_call),
	    cmocka_unit_test(test_next_deadline_is_the_earliest_armed_timer),
	    cmocka_unit_test(test_workspace_ids_come_from_the_mint_effect),
	    cmocka_unit_test(test_max_workspaces_refuses_new_ones_but_not_joins),
	    cmocka_unit_test(test_an_effect_reentering_claims_aborts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
