/*
 * forward: routed requests (see forward.h).
 */
#include "supervisor/forward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/flatjson.h"
#include "common/utf8.h"
#include "supervisor/conns.h"
#include "supervisor/proc.h"
#include "supervisor/reply.h"

typedef struct fwd {
	h2o_generator_t gen;
	h2o_req_t *req;
	forwarder_t *fw;
	workspace_t *w;		  /* counted in w->fwd_count until done; NULL after */
	h2o_linklist_t wait_link; /* w->fwd_waiting while waiting for ready */
	h2o_timeout_entry_t timeout_te;
	h2o_timeout_entry_t turn_te; /* the head came: start streaming at the turn's end */
	proc_call_t *call;	     /* NULL before dispatch and once over */
	int status;		     /* the answer's head, once it came (0 before) */
	const char *content_type;    /* in the request's pool */
	char *head;		     /* the REQUEST head, until dispatched */
	buf_t pending, inflight;
	unsigned pending_frames, inflight_frames;
	int started;	      /* response head sent to h2o */
	int sending;	      /* a batch is with h2o: wait for proceed */
	int ending;	      /* END came: finish once pending is out */
	int done;	      /* final sent, or the client stopped us */
	int broken;	      /* failed after the head: end with an error once h2o proceeds */
	int own_deadline;     /* the worker bounds this answer itself (shell runs) */
	conns_watch_t *watch; /* HTTP/1 only: its connection, watched for EOF (on_gone) */
} fwd_t;

static void release(fwd_t *f)
{
	if (f->w == NULL)
		return;
	f->w->fwd_count--;
	f->w = NULL;
}

static void stop_timer(fwd_t *f)
{
	if (h2o_timeout_is_linked(&f->timeout_te))
		h2o_timeout_unlink(&f->timeout_te);
	if (h2o_timeout_is_linked(&f->turn_te))
		h2o_timeout_unlink(&f->turn_te);
}

/* The answer cannot be had: an error if nothing was sent yet, else the
 * answer ends as broken (H2O_SEND_STATE_ERROR: h2o resets an HTTP/2
 * stream, and closes an HTTP/1 connection without the last chunk), so the
 * client sees a broken answer, not a short one. Only this request's: an
 * HTTP/2 connection's other streams (another workspace's events) go on. */
static void fail(fwd_t *f, int status, const char *why)
{
	stop_timer(f);
	f->call = NULL;
	release(f);
	if (f->done)
		return;
	f->done = 1;
	if (!f->started) {
		reply_error(f->req, status, why);
		return;
	}
	f->broken = 1;
	if (!f->sending) /* else on_proceed ends it: one send in flight at a time */
		h2o_send(f->req, NULL, 0, H2O_SEND_STATE_ERROR);
}

/* The response head goes to h2o: with a Content-Length when the whole
 * answer is here (content_length), else chunked (SIZE_MAX). */
static void start(fwd_t *f, size_t content_length)
{
	h2o_req_t *req = f->req;
	if (h2o_timeout_is_linked(&f->turn_te))
		h2o_timeout_unlink(&f->turn_te);
	req->res.status = f->status;
	req->res.reason = reply_reason(f->status);
	req->res.content_length = content_length;
	if (f->content_type[0] != '\0') /* "": none (an empty answer, PROTOCOL.md) */
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, f->content_type,
			       strlen(f->content_type));
	f->started = 1;
	h2o_start_response(req, &f->gen);
}

static void flush(fwd_t *f)
{
	if (f->sending || f->done || !f->started)
		return;
	if (buf_size(&f->pending) > 0 && f->ending) {
		/* The last of it: body and end in one send. */
		f->done = 1;
		h2o_iovec_t iov = h2o_iovec_init(buf_data(&f->pending), buf_size(&f->pending));
		h2o_send(f->req, &iov, 1, H2O_SEND_STATE_FINAL);
		return;
	}
	if (buf_size(&f->pending) > 0) {
		buf_t t = f->inflight;
		f->inflight = f->pending;
		f->pending = t;
		buf_reset(&f->pending);
		f->inflight_frames = f->pending_frames;
		f->pending_frames = 0;
		f->sending = 1;
		h2o_iovec_t iov = h2o_iovec_init(buf_data(&f->inflight), buf_size(&f->inflight));
		h2o_send(f->req, &iov, 1, H2O_SEND_STATE_IN_PROGRESS);
		return;
	}
	if (f->ending) {
		f->done = 1;
		h2o_send(f->req, NULL, 0, H2O_SEND_STATE_FINAL);
	}
}

static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
	fwd_t *f = H2O_STRUCT_FROM_MEMBER(fwd_t, gen, gen);
	f->sending = 0;
	buf_reset(&f->inflight);
	if (f->broken) {
		h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
		return;
	}
	/* The worker may send as many frames as the client has taken. */
	for (; f->inflight_frames > 0; f->inflight_frames--)
		if (f->call != NULL)
			proc_call_ack(f->call);
	flush(f);
}

/* HTTP/1: the client left while its call was under way (conns_watch):
 * cancel the call at once, so it does not hold its slot in the worker
 * until the worker answers or the request times out. Pipelined bytes
 * (eof 0) are h2o's to read after our answer. */
static void on_gone(void *arg, int eof)
{
	fwd_t *f = arg;
	f->watch = NULL;
	if (!eof)
		return;
	if (h2o_linklist_is_linked(&f->wait_link))
		h2o_linklist_unlink(&f->wait_link);
	if (f->call != NULL)
		proc_call_cancel(f->call);
	/* The answer goes nowhere: writing it fails, and h2o closes the
	 * connection and disposes the request. */
	fail(f, 499, "client closed request");
}

static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
	(void)req;
	H2O_STRUCT_FROM_MEMBER(fwd_t, gen, gen)->done = 1;
}

/* --- the call's callbacks */

/*
 * The head is kept until the answer's end, or until its first body bytes
 * once the loop turn that read the head is over: a worker writes a short
 * answer's head, body and end at once, and the client then gets it in one
 * write with its Content-Length. A longer one streams (chunked over
 * HTTP/1.1) from there. Until a byte of it has gone, the answer can still
 * fail whole: a worker that dies between its head and its body is a 502
 * for the client, not a reset stream or a closed connection.
 */
static void on_turn_end(h2o_timeout_entry_t *te)
{
	fwd_t *f = H2O_STRUCT_FROM_MEMBER(fwd_t, turn_te, te);
	if (!f->started && !f->done && buf_size(&f->pending) > 0) {
		start(f, SIZE_MAX);
		flush(f);
	}
}

static void on_head(void *arg, int status, const char *content_type)
{
	fwd_t *f = arg;
	stop_timer(f); /* the answer has begun: it streams from here */
	f->status = status;
	f->content_type = h2o_strdup(&f->req->pool, content_type, SIZE_MAX).base;
	h2o_timeout_link(f->fw->loop, &f->fw->next_turn, &f->turn_te);
}

static void on_data(void *arg, const char *data, size_t len)
{
	fwd_t *f = arg;
	buf_append(&f->pending, data, len);
	f->pending_frames++;
	if (!f->started && !f->done && !h2o_timeout_is_linked(&f->turn_te))
		start(f, SIZE_MAX); /* the head's turn is over: stream from here */
	flush(f);
}

static void on_end(void *arg)
{
	fwd_t *f = arg;
	f->call = NULL;
	f->ending = 1;
	release(f);
	if (!f->started && !f->done)
		start(f, buf_size(&f->pending));
	flush(f);
}

static void on_fail(void *arg, const char *why)
{
	char msg[320];
	snprintf(msg, sizeof(msg), "workspace worker gave no answer: %s", why);
	fail(arg, 502, msg);
}

static const proc_call_cb_t call_cb = {on_head, on_data, on_end, on_fail};

/* Sends f's request to its worker (which is ready). */
static void dispatch(fwd_t *f)
{
	h2o_req_t *req = f->req;
	int r = proc_call(f->w->proc, f->head, req->entity.base, req->entity.base ? req->entity.len : 0,
			  &call_cb, f, &f->call);
	free(f->head);
	f->head = NULL;
	/* A shell run ends by its own timeout (default 10 min, timeout_ms),
	 * which the worker enforces and answers: --request-timeout bounds
	 * only its wait for a ready worker. A dead worker still fails it. */
	if (r == PROC_CALL_OK && f->own_deadline) {
		stop_timer(f);
		proc_ran_commands(f->w->proc);
	}
	if (r == PROC_CALL_BUSY) {
		limits_refuse(f->fw->limits, LIMIT_CALLS, clock_ms(), f->w->ws->id);
		fail(f, 429, "too many requests in flight for this workspace");
	} else if (r != PROC_CALL_OK) {
		fail(f, 503, "workspace worker is not available");
	}
}

static void on_timeout(h2o_timeout_entry_t *te)
{
	fwd_t *f = H2O_STRUCT_FROM_MEMBER(fwd_t, timeout_te, te);
	if (h2o_linklist_is_linked(&f->wait_link))
		h2o_linklist_unlink(&f->wait_link);
	if (f->call != NULL)
		proc_call_cancel(f->call);
	fail(f, 504,
	     f->call != NULL || f->head == NULL ? "workspace worker did not answer in time"
						: "workspace worker not ready in time");
}

static void on_dispose(void *p)
{
	fwd_t *f = p;
	stop_timer(f);
	conns_unwatch(f->watch);
	if (h2o_linklist_is_linked(&f->wait_link))
		h2o_linklist_unlink(&f->wait_link);
	if (f->call != NULL)
		proc_call_cancel(f->call); /* the client left */
	release(f);
	free(f->head);
	buf_free(&f->pending);
	buf_free(&f->inflight);
}

/* POST /agent/sessions/{sid}/shell */
static int is_shell_run(h2o_req_t *req, const char *path, size_t len)
{
	static const char pre[] = "/agent/sessions/", post[] = "/shell";
	size_t np = sizeof(pre) - 1, ns = sizeof(post) - 1;
	if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST")) || len <= np + ns ||
	    memcmp(path, pre, np) != 0 || memcmp(path + len - ns, post, ns) != 0)
		return 0;
	return memchr(path + np, '/', len - np - ns) == NULL;
}

/* The REQUEST head: method, path below the workspace, query, client. */
static char *make_head(h2o_req_t *req, const char *client_id, const char *path, size_t pathlen)
{
	const char *q = "";
	size_t qlen = 0;
	if (req->query_at != SIZE_MAX) {
		q = req->path.base + req->query_at + 1;
		qlen = req->path.len - req->query_at - 1;
	}
	if (utf8_valid_prefix(req->method.base, req->method.len) != req->method.len)
		return NULL;
#define LIT(s) buf_append(&b, s, sizeof(s) - 1)
	buf_t b = BUF_INIT;
	LIT("{\"method\":\"http\",\"verb\":");
	flatjson_string(&b, req->method.base, req->method.len);
	LIT(",\"path\":");
	flatjson_string(&b, path, pathlen);
	LIT(",\"query\":");
	flatjson_string(&b, q, qlen);
	LIT(",\"client_id\":");
	flatjson_string(&b, client_id, strlen(client_id));
	buf_append(&b, "}", 2); /* with its NUL */
#undef LIT
	return b.base; /* never consumed: the allocation itself, the caller's to free */
}

/* The limit table is the binding cap on a worker's calls: it admits no
 * more than proc takes, so PROC_CALL_BUSY stays a backstop. */
_Static_assert(LIMIT_DEFAULT_CALLS <= PROC_MAX_CALLS, "LIMIT_CALLS above PROC_MAX_CALLS");

void forward_start(forwarder_t *fw, h2o_req_t *req, workspace_t *w, const char *client_id, const char *path,
		   size_t pathlen)
{
	/* Waiting and in flight per worker: the limit table's. */
	if (w->fwd_count >= fw->limits->max[LIMIT_CALLS]) {
		limits_refuse(fw->limits, LIMIT_CALLS, clock_ms(), w->ws->id);
		reply_error(req, 429, "too many requests in flight for this workspace");
		return;
	}
	fwd_t *f = h2o_mem_alloc_shared(&req->pool, sizeof(*f), on_dispose);
	memset(f, 0, sizeof(*f));
	f->gen.proceed = on_proceed;
	f->gen.stop = on_stop;
	f->req = req;
	f->fw = fw;
	f->w = w;
	f->timeout_te.cb = on_timeout;
	f->turn_te.cb = on_turn_end;
	if ((f->head = make_head(req, client_id, path, pathlen)) == NULL) {
		reply_error(req, 400, "bad request target");
		f->w = NULL;
		return;
	}
	w->fwd_count++;
	h2o_timeout_link(fw->loop, &fw->timeout, &f->timeout_te);
	f->own_deadline = is_shell_run(req, path, pathlen);
	f->watch = conns_watch(req, on_gone, f);
	if (w->proc != NULL && proc_ready(w->proc) && w->ws->state == WS_READY)
		dispatch(f);
	else
		h2o_linklist_insert(&w->fwd_waiting, &f->wait_link);
}

void forward_ready(workspace_t *w)
{
	while (!h2o_linklist_is_empty(&w->fwd_waiting)) {
		fwd_t *f = H2O_STRUCT_FROM_MEMBER(fwd_t, wait_link, w->fwd_waiting.next);
		h2o_linklist_unlink(&f->wait_link);
		dispatch(f);
	}
}

void forward_fail_waiting(workspace_t *w, int status, const char *why)
{
	while (!h2o_linklist_is_empty(&w->fwd_waiting)) {
		fwd_t *f = H2O_STRUCT_FROM_MEMBER(fwd_t, wait_link, w->fwd_waiting.next);
		h2o_linklist_unlink(&f->wait_link);
		fail(f, status, why);
	}
}

void forwarder_init(forwarder_t *fw, h2o_evloop_t *loop, uint64_t timeout_ms, limits_t *limits)
{
	memset(fw, 0, sizeof(*fw));
	fw->loop = loop;
	fw->limits = limits;
	h2o_timeout_init(loop, &fw->timeout, timeout_ms);
	h2o_timeout_init(loop, &fw->next_turn, 0);
}
