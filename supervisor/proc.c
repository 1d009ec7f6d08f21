/*
 * proc: worker processes (see proc.h): spawn, the handshake (HELLO, the
 * setup request, READY) and frames over the pair, liveness pings, a
 * worker's FAIL, stop and reap.
 */
#include "supervisor/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/flatjson.h"
#include "common/utf8.h"

extern char **environ;

struct proc {
	h2o_linklist_t link; /* procs.all */
	procs_t *ps;
	pid_t pid;
	h2o_socket_t *sock; /* our end of the socketpair; NULL once closed */
	proto_decoder_t dec;
	int said_hello, ready, stopping;
	int ran_commands; /* a shell run went to it (proc_ran_commands) */
	int failed;	  /* it sent FAIL: its last frame */
	h2o_timeout_entry_t start_te, kill_te;
	h2o_timeout_entry_t ping_te;  /* liveness: a ping per interval, answered within it */
	h2o_linklist_t resume_link;   /* ps->resuming: frames left over a turn's budget */
	h2o_timeout_entry_t flush_te; /* frames queued this turn: written at its end */
	uint32_t next_req_id;	      /* request ids: 1, 2, ... */
	uint32_t ping_pending;	      /* id of the unanswered ping, 0 when none */
	uint32_t setup_pending;	      /* id of the unanswered setup, 0 once answered */
	uint32_t presence_pending;    /* id of the unanswered presence, 0 when none */
	char *presence_next;	      /* the newest presence not sent yet (coalesced) */
	buf_t out, inflight;	      /* frames to the worker; the batch being written */
	void *arg;		      /* the owner; NULL once disowned */
	char ws_id[ID_LEN + 1];
	char reason[200];      /* why we killed it, if we did */
	char fail_reason[200]; /* why it gave up (FAIL), if it did */
	char fail_code[PROTO_FAIL_CODE_MAX + 1];
	h2o_linklist_t calls;	/* proc_call_t.link, in flight */
	h2o_linklist_t sending; /* proc_call_t.send_link: request bodies not all framed yet */
	unsigned ncalls;
};

struct proc_call {
	h2o_linklist_t link; /* proc.calls */
	proc_t *p;
	uint32_t id;
	const proc_call_cb_t *cb;
	void *arg;    /* NULL once cancelled */
	int got_head; /* RESPONSE seen */
	unsigned unacked;
	/* The request body, framed a batch at a time as the socketpair drains
	 * (never copied whole): the caller's bytes, which outlive the call or
	 * its cancel (forward.c: the h2o request's entity). */
	h2o_linklist_t send_link; /* proc.sending, while body_off < body_len */
	const char *body;
	size_t body_len, body_off;
};

#define WORKER_FD 3

/* --- what a worker is told */

/*
 * The setup request: the first creator's env as data (PROTOCOL.md). It is
 * never the worker's own environment, which is ours (invariant 8: no
 * client byte reaches the worker's exec or its loader). NULL with err when
 * it does not fit one frame.
 */
static char *setup_request(const proc_spec_t *spec, char *err, size_t errlen)
{
	json_t *env = json_array();
	for (size_t i = 0; i < spec->nenv; i++)
		json_array_append_new(env, utf8_json_string(spec->env[i]));
	json_t *req = json_pack("{s:s, s:o}", "method", "setup", "env", env);
	char *text = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (text == NULL)
		snprintf(err, errlen, "out of memory");
	else if (strlen(text) > PROTO_MAX_PAYLOAD) {
		snprintf(err, errlen, "env too large for the worker: %zu bytes as JSON, at most %d",
			 strlen(text), PROTO_MAX_PAYLOAD);
		free(text);
		text = NULL;
	}
	return text;
}

/* s, cut to fit len bytes on a character boundary (and before anything
 * that is not UTF-8), control characters made spaces: a worker's words
 * end up in JSON, SSE data and log lines, which a cut character or a raw
 * newline would break. */
static void copy_text(char *out, size_t len, const char *s)
{
	size_t n = strlen(s);
	n = utf8_valid_prefix(s, n < len ? n : len - 1);
	for (size_t i = 0; i < n; i++)
		out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
	out[n] = '\0';
}

static void on_start_timeout(h2o_timeout_entry_t *te);
static uint32_t next_id(proc_t *p);

static void on_ping(h2o_timeout_entry_t *te);
static void on_kill_timeout(h2o_timeout_entry_t *te);
static void on_read(h2o_socket_t *sock, const char *err);
static void drain(proc_t *p);
static void flush_out(proc_t *p);
static void queue_out(proc_t *p);
static void on_flush_turn(h2o_timeout_entry_t *te);
static void fail_calls(proc_t *p, const char *why);

static void proc_close_sock(proc_t *p)
{
	if (p->sock != NULL) {
		h2o_socket_close(p->sock);
		p->sock = NULL;
	}
}

/*
 * posix_spawn is vfork-style: the child shares our memory until exec, so a
 * large supervisor does not pay for copying page tables on every create.
 * Everything the child needs is set up through attributes:
 *   - its own session (setsid) and process group;
 *   - no blocked signals, SIGPIPE back to default;
 *   - stdin on /dev/null, the pair on fd 3, every other fd closed
 *     (invariant 4), whatever a library may have leaked;
 * and the worker sets parent-death SIGKILL itself (invariant 3), checking
 * --parent to close the race with our own death. Exec errors come back as
 * posix_spawn's result.
 */
/* Sets up the child's descriptors, session and signals (see above). 0, or
 * an errno value. */
static int spawn_setup(posix_spawn_file_actions_t *fa, posix_spawnattr_t *at, int pair)
{
	sigset_t none, dfl;
	int rc;
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	if ((rc = posix_spawnattr_setflags(at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
						   POSIX_SPAWN_SETSIGDEF)) != 0 ||
	    (rc = posix_spawnattr_setsigmask(at, &none)) != 0 ||
	    (rc = posix_spawnattr_setsigdefault(at, &dfl)) != 0 ||
	    (rc = posix_spawn_file_actions_addopen(fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0)) != 0 ||
	    (rc = posix_spawn_file_actions_adddup2(fa, pair, WORKER_FD)) != 0 ||
	    (rc = posix_spawn_file_actions_addclosefrom_np(fa, WORKER_FD + 1)) != 0)
		return rc;
	return 0;
}

/* Runs the worker with `pair` as its fd 3. 0 with *pid, or an errno. */
static int spawn_worker(procs_t *ps, char **argv, char *const *envp, int pair, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	int rc;
	if ((rc = posix_spawn_file_actions_init(&fa)) != 0)
		return rc;
	if ((rc = posix_spawnattr_init(&at)) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return rc;
	}
	rc = spawn_setup(&fa, &at, pair);
	if (rc == 0)
		rc = posix_spawn(pid, ps->worker_path, &fa, &at, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return rc;
}

proc_t *proc_spawn(procs_t *ps, const proc_spec_t *spec, void *arg, char *err, size_t errlen)
{
	int sv[2], rc = 0;
	char fdarg[16], parent[16];
	pid_t pid;

	snprintf(fdarg, sizeof(fdarg), "%d", WORKER_FD);
	snprintf(parent, sizeof(parent), "%d", (int)getpid());
	char *argv[] = {ps->worker_path,
			(char *)spec->ws_id,
			(char *)spec->path,
			"--fd",
			fdarg,
			"--parent",
			parent,
			"--log-level",
			(char *)spec->log_level,
			"--data-dir", /* last: cut off when not given */
			(char *)spec->data_dir,
			NULL};
	/* Without one the worker resolves the data dir as upstream does. */
	if (spec->data_dir == NULL || spec->data_dir[0] == '\0')
		argv[9] = NULL;
	char *setup = setup_request(spec, err, errlen);
	if (setup == NULL)
		return NULL;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		free(setup);
		return NULL;
	}
	/* dup2 onto itself would leave FD_CLOEXEC set: keep the pair off 3. */
	if (sv[1] == WORKER_FD) {
		int moved = fcntl(sv[1], F_DUPFD_CLOEXEC, WORKER_FD + 1);
		rc = errno;
		close(sv[1]);
		sv[1] = moved;
	}
	if (sv[1] < 0)
		snprintf(err, errlen, "socketpair: %s", strerror(rc));
	else if ((rc = spawn_worker(ps, argv, environ, sv[1], &pid)) != 0)
		snprintf(err, errlen, "exec %s: %s", ps->worker_path, strerror(rc));
	if (sv[1] >= 0)
		close(sv[1]);
	if (sv[1] < 0 || rc != 0) {
		close(sv[0]);
		free(setup);
		return NULL;
	}

	proc_t *p = calloc(1, sizeof(*p));
	if (p == NULL)
		abort();
	p->ps = ps;
	p->pid = pid;
	h2o_linklist_init_anchor(&p->calls);
	h2o_linklist_init_anchor(&p->sending);
	p->arg = arg;
	snprintf(p->ws_id, sizeof(p->ws_id), "%s", spec->ws_id);
	p->dec = (proto_decoder_t)PROTO_DECODER_INIT;
	/* h2o_evloop_socket_create makes the fd non-blocking itself. */
	p->sock = h2o_evloop_socket_create(ps->loop, sv[0], 0);
	p->sock->data = p;
	h2o_socket_read_start(p->sock, on_read);
	p->start_te.cb = on_start_timeout;
	h2o_timeout_link(ps->loop, &ps->start_timeout, &p->start_te);
	p->kill_te.cb = on_kill_timeout;
	p->ping_te.cb = on_ping;
	p->flush_te.cb = on_flush_turn;
	h2o_linklist_insert(&ps->all, &p->link);
	/* The setup goes first, before the worker has said anything: it is
	 * read once the worker's loop runs, and answered before READY. */
	p->setup_pending = p->next_req_id = 1;
	proto_encode(&p->out, PROTO_REQUEST, p->setup_pending, setup, strlen(setup));
	free(setup);
	flush_out(p);

	char pidstr[16];
	snprintf(pidstr, sizeof(pidstr), "%d", (int)pid);
	log_info("Worker started", "workspace_id", spec->ws_id, "path", spec->path, "pid", pidstr, NULL);
	return p;
}

pid_t proc_pid(const proc_t *p)
{
	return p->pid;
}

void proc_disown(proc_t *p)
{
	p->arg = NULL;
}

static void signal_group(proc_t *p, int sig)
{
	/* The worker leads its own process group (setsid). */
	if (kill(-p->pid, sig) != 0 && errno == ESRCH)
		kill(p->pid, sig);
}

void proc_stop(proc_t *p)
{
	if (p->stopping)
		return;
	p->stopping = 1;
	if (h2o_timeout_is_linked(&p->start_te))
		h2o_timeout_unlink(&p->start_te);
	if (h2o_timeout_is_linked(&p->ping_te))
		h2o_timeout_unlink(&p->ping_te);
	signal_group(p, SIGTERM);
	if (p->ps->kill_ms == 0)
		signal_group(p, SIGKILL);
	else
		h2o_timeout_link(p->ps->loop, &p->ps->kill_timeout, &p->kill_te);
}

void proc_kill(proc_t *p, const char *reason)
{
	if (p->reason[0] == '\0') {
		copy_text(p->reason, sizeof(p->reason), reason);
		char pidstr[16];
		snprintf(pidstr, sizeof(pidstr), "%d", (int)p->pid);
		log_warn("Killing worker", "workspace_id", p->ws_id, "pid", pidstr, "reason", reason, NULL);
	}
	if (h2o_timeout_is_linked(&p->start_te))
		h2o_timeout_unlink(&p->start_te);
	if (h2o_timeout_is_linked(&p->ping_te))
		h2o_timeout_unlink(&p->ping_te);
	signal_group(p, SIGKILL);
	proc_close_sock(p);
	fail_calls(p, p->reason);
}

/* --- frames to the worker: one h2o write at a time, the rest queued */

static void read_last_words(proc_t *p);

static void on_written(h2o_socket_t *sock, const char *err)
{
	proc_t *p = sock->data;
	buf_reset(&p->inflight);
	if (err != NULL) {
		/* A worker that gave up (FAIL) and exited before reading its
		 * setup: its reason is the one to tell, not our broken write. */
		read_last_words(p);
		if (p->failed) {
			proc_close_sock(p);
			return;
		}
		proc_kill(p, "socketpair write failed");
		return;
	}
	flush_out(p);
}

/*
 * Frames queued in a loop turn go out in one write at its end: every
 * request a turn reads from its clients costs the worker one wakeup, not
 * one each (h2o runs its 0 ms timeouts after the turn's sockets).
 */
static void queue_out(proc_t *p)
{
	if (p->sock != NULL && !h2o_timeout_is_linked(&p->flush_te))
		h2o_timeout_link(p->ps->loop, &p->ps->next_turn, &p->flush_te);
}

static void on_flush_turn(h2o_timeout_entry_t *te)
{
	flush_out(H2O_STRUCT_FROM_MEMBER(proc_t, flush_te, te));
}

/* Request bodies go out a batch per write, round robin over the calls
 * sending one, behind whatever small frames are queued: a 64 MiB body
 * costs 1 MiB of buffer, and never holds up another call's frames. */
static void frame_bodies(proc_t *p)
{
	while (buf_size(&p->out) < PROTO_MAX_FRAME && !h2o_linklist_is_empty(&p->sending)) {
		proc_call_t *c = H2O_STRUCT_FROM_MEMBER(proc_call_t, send_link, p->sending.next);
		size_t n = c->body_len - c->body_off;
		if (n > PROTO_MAX_PAYLOAD)
			n = PROTO_MAX_PAYLOAD;
		proto_encode(&p->out, PROTO_DATA, c->id, c->body + c->body_off, n);
		c->body_off += n;
		h2o_linklist_unlink(&c->send_link);
		if (c->body_off < c->body_len)
			h2o_linklist_insert(&p->sending, &c->send_link);
		else
			proto_encode(&p->out, PROTO_END, c->id, NULL, 0);
	}
}

static void flush_out(proc_t *p)
{
	if (p->sock == NULL || buf_size(&p->inflight) > 0)
		return;
	frame_bodies(p);
	if (buf_size(&p->out) == 0)
		return;
	buf_t t = p->inflight;
	p->inflight = p->out;
	p->out = t;
	h2o_iovec_t iov = h2o_iovec_init(buf_data(&p->inflight), buf_size(&p->inflight));
	h2o_socket_write(p->sock, &iov, 1, on_written);
}

/* 0, or -1 when json does not fit one frame (nothing is sent then). */
static int send_request(proc_t *p, uint32_t id, const char *json)
{
	if (proto_encode(&p->out, PROTO_REQUEST, id, json, strlen(json)) != 0)
		return -1;
	queue_out(p);
	return 0;
}

/* Sends the newest presence, once the worker is ready and the previous
 * one is answered: updates coalesce, the last one wins. */
static void send_presence(proc_t *p)
{
	if (p->presence_next == NULL || p->presence_pending != 0 || !proc_ready(p))
		return;
	p->presence_pending = next_id(p);
	if (send_request(p, p->presence_pending, p->presence_next) != 0) {
		/* Cannot happen with bounded session ids (http.c); never wait
		 * for an answer to a request that was not sent. */
		log_warn("Presence too large for one frame; not sent", "workspace_id", p->ws_id, NULL);
		p->presence_pending = 0;
	}
	free(p->presence_next);
	p->presence_next = NULL;
}

void proc_presence(proc_t *p, const char *json)
{
	free(p->presence_next);
	if ((p->presence_next = strdup(json)) == NULL)
		abort();
	send_presence(p);
}

/* Liveness: the previous ping must be answered by now. */
static void on_ping(h2o_timeout_entry_t *te)
{
	proc_t *p = H2O_STRUCT_FROM_MEMBER(proc_t, ping_te, te);
	if (p->ping_pending != 0) {
		proc_kill(p, "protocol error: unanswered request");
		return;
	}
	p->ping_pending = next_id(p);
	(void)send_request(p, p->ping_pending, "{\"method\":\"ping\"}"); /* fits: a literal */
	h2o_timeout_link(p->ps->loop, &p->ps->ping_interval, &p->ping_te);
}

static void on_start_timeout(h2o_timeout_entry_t *te)
{
	proc_t *p = H2O_STRUCT_FROM_MEMBER(proc_t, start_te, te);
	char why[64];
	snprintf(why, sizeof(why), "not ready within %d s", PROC_START_TIMEOUT_MS / 1000);
	proc_kill(p, why);
}

static void on_kill_timeout(h2o_timeout_entry_t *te)
{
	proc_t *p = H2O_STRUCT_FROM_MEMBER(proc_t, kill_te, te);
	char pidstr[16];
	snprintf(pidstr, sizeof(pidstr), "%d", (int)p->pid);
	log_warn("Worker ignored SIGTERM, sending SIGKILL", "workspace_id", p->ws_id, "pid", pidstr, NULL);
	signal_group(p, SIGKILL);
}

/* The answer to the setup request: {"result":…}, or {"error":"…"}, which
 * means the worker refused to run as asked. */
static int handle_setup_response(proc_t *p, const proto_frame_t *f)
{
	json_t *j = json_loadb(f->payload, f->len, 0, NULL);
	const char *error = json_string_value(json_object_get(j, "error"));
	int ok = json_is_object(j) && json_object_get(j, "result") != NULL && error == NULL;
	char why[PROC_REASON_MAX], text[160];
	if (!ok) {
		copy_text(text, sizeof(text), error != NULL ? error : "malformed response");
		snprintf(why, sizeof(why), "worker refused its setup: %s", text);
	}
	json_decref(j);
	if (!ok) {
		proc_kill(p, why);
		return -1;
	}
	p->setup_pending = 0;
	return 0;
}

/* A code as PROTO_FAIL_* are written: 1..PROTO_FAIL_CODE_MAX of [a-z0-9_]. */
static int code_ok(const char *c)
{
	size_t n = c != NULL ? strlen(c) : 0;
	if (n == 0 || n > PROTO_FAIL_CODE_MAX || strspn(c, "abcdefghijklmnopqrstuvwxyz0123456789_") != n)
		return 0;
	return 1;
}

#define MALFORMED_FAIL "protocol error: malformed fail"

/* The worker gives up and says why: kept for the reap, which reports it
 * (proc.h), and logged now. Its exit follows; nothing else may. 0, or -1
 * for a malformed FAIL (the caller kills, unless it is dead already). */
static int take_fail(proc_t *p, const proto_frame_t *f)
{
	json_t *j = json_loadb(f->payload, f->len, 0, NULL);
	const char *error = json_string_value(json_object_get(j, "error"));
	const char *code = json_string_value(json_object_get(j, "code"));
	int ok = json_is_object(j) && error != NULL && error[0] != '\0' && code_ok(code);
	if (ok) {
		copy_text(p->fail_reason, sizeof(p->fail_reason), error);
		snprintf(p->fail_code, sizeof(p->fail_code), "%s", code);
	}
	json_decref(j);
	if (!ok)
		return -1;
	p->failed = 1;
	char pidstr[16];
	snprintf(pidstr, sizeof(pidstr), "%d", (int)p->pid);
	log_warn("Worker failed", "workspace_id", p->ws_id, "pid", pidstr, "code", p->fail_code, "reason",
		 p->fail_reason, NULL);
	return 0;
}

/* --- routed requests */

static proc_call_t *find_call(proc_t *p, uint32_t id)
{
	for (h2o_linklist_t *l = p->calls.next; l != &p->calls; l = l->next) {
		proc_call_t *c = H2O_STRUCT_FROM_MEMBER(proc_call_t, link, l);
		if (c->id == id)
			return c;
	}
	return NULL;
}

static void call_free(proc_call_t *c)
{
	if (h2o_linklist_is_linked(&c->send_link))
		h2o_linklist_unlink(&c->send_link);
	h2o_linklist_unlink(&c->link);
	c->p->ncalls--;
	free(c);
}

/* Every call of p ends without its answer (the worker is gone). */
static void fail_calls(proc_t *p, const char *why)
{
	while (!h2o_linklist_is_empty(&p->calls)) {
		proc_call_t *c = H2O_STRUCT_FROM_MEMBER(proc_call_t, link, p->calls.next);
		void *arg = c->arg;
		const proc_call_cb_t *cb = c->cb;
		call_free(c);
		if (arg != NULL)
			cb->fail(arg, why);
	}
}

static uint32_t next_id(proc_t *p)
{
	do {
		if (++p->next_req_id == 0)
			p->next_req_id = 1;
	} while (p->next_req_id == p->setup_pending || p->next_req_id == p->ping_pending ||
		 p->next_req_id == p->presence_pending || find_call(p, p->next_req_id) != NULL);
	return p->next_req_id;
}

int proc_call(proc_t *p, const char *head, const char *body, size_t len, const proc_call_cb_t *cb, void *arg,
	      proc_call_t **out)
{
	*out = NULL;
	if (p->sock == NULL || !p->ready || p->stopping || p->reason[0] != '\0')
		return PROC_CALL_GONE;
	if (p->ncalls >= PROC_MAX_CALLS)
		return PROC_CALL_BUSY;
	proc_call_t *c = calloc(1, sizeof(*c));
	if (c == NULL)
		abort();
	c->p = p;
	c->id = next_id(p);
	c->cb = cb;
	c->arg = arg;
	h2o_linklist_insert(&p->calls, &c->link);
	p->ncalls++;
	if (proto_encode(&p->out, PROTO_REQUEST, c->id, head, strlen(head)) != 0)
		abort(); /* the caller's head is one line of JSON under a frame */
	if (len == 0) {
		proto_encode(&p->out, PROTO_END, c->id, NULL, 0);
	} else {
		c->body = body;
		c->body_len = len;
		h2o_linklist_insert(&p->sending, &c->send_link);
	}
	queue_out(p);
	*out = c;
	return PROC_CALL_OK;
}

void proc_call_ack(proc_call_t *c)
{
	proc_t *p = c->p;
	if (c->unacked == 0 || p->sock == NULL)
		return;
	c->unacked--;
	proto_encode(&p->out, PROTO_ACK, c->id, NULL, 0);
	queue_out(p);
}

void proc_call_cancel(proc_call_t *c)
{
	proc_t *p = c->p;
	c->arg = NULL;
	/* The rest of the body is dropped (the caller's bytes go with it):
	 * a worker still reading it answers the CANCEL with 499. */
	if (h2o_linklist_is_linked(&c->send_link))
		h2o_linklist_unlink(&c->send_link);
	c->body = NULL;
	if (p->sock == NULL)
		return;
	/* The worker still answers (499, or END cutting its answer short):
	 * the call goes when that END comes. */
	proto_encode(&p->out, PROTO_CANCEL, c->id, NULL, 0);
	queue_out(p);
}

int proc_ready(const proc_t *p)
{
	return p->ready && !p->stopping && p->sock != NULL && p->reason[0] == '\0';
}

/* RESPONSE, DATA or END of a call. -1 (after proc_kill) on a breach: a
 * frame for no call, a second head, a body before the head, more DATA
 * than the window allows. */
static int call_frame(proc_t *p, const proto_frame_t *f)
{
	proc_call_t *c = find_call(p, f->id);
	const char *breach = NULL;
	if (c == NULL)
		breach = "protocol error: answer to no request";
	else if (f->type == PROTO_RESPONSE && c->got_head)
		breach = "protocol error: request answered twice";
	else if (f->type != PROTO_RESPONSE && !c->got_head)
		breach = "protocol error: answer body before its head";
	else if (f->type == PROTO_DATA && c->unacked >= PROTO_WINDOW)
		breach = "protocol error: answer past its window";
	if (breach != NULL) {
		proc_kill(p, breach);
		return -1;
	}
	switch (f->type) {
	case PROTO_RESPONSE: {
		flatjson_t fj;
		buf_t store = BUF_INIT;
		json_t *j = NULL;
		json_int_t status = 0;
		const char *ct = NULL;
		if (flatjson_parse(f->payload, f->len, &fj, &store) == 0) {
			const flatjson_field_t *st = flatjson_get(&fj, "status"),
					       *t = flatjson_get(&fj, "content_type");
			status = st != NULL && st->type == 'i' ? st->num : 0;
			ct = t != NULL ? t->str : NULL;
		} else { /* not the plain head a worker sends: jansson decides */
			j = json_loadb(f->payload, f->len, 0, NULL);
			status = json_integer_value(json_object_get(j, "status"));
			ct = json_string_value(json_object_get(j, "content_type"));
		}
		/* It becomes a header: printable ASCII only (no CR LF from a
		 * worker into the client's response), and short. */
		for (const char *c = ct; c != NULL && *c != '\0'; c++)
			if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
				ct = NULL;
		char type[128];
		snprintf(type, sizeof(type), "%s", ct && strlen(ct) < sizeof(type) ? ct : "application/json");
		json_decref(j);
		buf_free(&store);
		if (status < 100 || status > 599) {
			proc_kill(p, "protocol error: malformed answer head");
			return -1;
		}
		c->got_head = 1;
		if (c->arg != NULL)
			c->cb->head(c->arg, (int)status, type);
		return 0;
	}
	case PROTO_DATA:
		c->unacked++;
		if (c->arg != NULL)
			c->cb->data(c->arg, f->payload, f->len);
		else
			proc_call_ack(c); /* nobody reads it: let the worker go on */
		return 0;
	default: { /* END */
		void *arg = c->arg;
		const proc_call_cb_t *cb = c->cb;
		call_free(c);
		if (arg != NULL)
			cb->end(arg);
		return 0;
	}
	}
}

/* One frame from the worker. Returns -1 (after proc_kill) when it broke
 * the protocol. */
static int handle_frame(proc_t *p, const proto_frame_t *f)
{
	if (!p->said_hello) {
		if (f->type != PROTO_HELLO) {
			proc_kill(p, "protocol error: first frame is not hello");
			return -1;
		}
		json_t *j = json_loadb(f->payload, f->len, 0, NULL);
		json_int_t v = j ? json_integer_value(json_object_get(j, "version")) : 0;
		const char *id = j ? json_string_value(json_object_get(j, "workspace_id")) : NULL;
		/* A worker for another workspace on this pair is a wiring bug. */
		int ours = id != NULL && strcmp(id, p->ws_id) == 0;
		json_decref(j);
		if (v != PROTO_VERSION || !ours) {
			proc_kill(p, v != PROTO_VERSION ? "protocol error: unsupported version"
							: "protocol error: hello for another workspace");
			return -1;
		}
		p->said_hello = 1;
		return 0;
	}
	if (p->failed) {
		proc_kill(p, "protocol error: frame after fail");
		return -1;
	}
	switch (f->type) {
	case PROTO_READY:
		if (p->ready) {
			proc_kill(p, "protocol error: ready twice");
			return -1;
		}
		if (p->setup_pending != 0) {
			proc_kill(p, "protocol error: ready before its setup was answered");
			return -1;
		}
		p->ready = 1;
		if (h2o_timeout_is_linked(&p->start_te))
			h2o_timeout_unlink(&p->start_te);
		if (p->ps->ping_ms > 0)
			h2o_timeout_link(p->ps->loop, &p->ps->ping_interval, &p->ping_te);
		if (p->arg != NULL && !p->stopping)
			p->ps->cb.ready(p->ps, p->arg, f->payload, f->len);
		send_presence(p);
		return 0;
	case PROTO_EVENT: {
		/* Events go out verbatim as SSE data: they must be one JSON
		 * object with a string "type" (the decoder refused newlines). */
		json_t *j = json_loadb(f->payload, f->len, 0, NULL);
		int ok = json_is_object(j) && json_is_string(json_object_get(j, "type"));
		json_decref(j);
		if (!ok || !p->ready) {
			proc_kill(p, ok ? "protocol error: event before ready"
					: "protocol error: malformed event");
			return -1;
		}
		if (p->arg != NULL && !p->stopping)
			p->ps->cb.event(p->ps, p->arg, f->payload, f->len);
		return 0;
	}
	case PROTO_DATA:
	case PROTO_END:
		return call_frame(p, f);
	case PROTO_RESPONSE:
		if (find_call(p, f->id) != NULL)
			return call_frame(p, f);
		/* Besides calls, only the setup and pings are asked for: any
		 * other id is a protocol error. */
		if (f->id != 0 && f->id == p->setup_pending)
			return handle_setup_response(p, f);
		if (f->id != 0 && f->id == p->presence_pending) {
			p->presence_pending = 0;
			send_presence(p);
			return 0;
		}
		if (f->id == 0 || f->id != p->ping_pending) {
			proc_kill(p, "protocol error: response to no request");
			return -1;
		}
		p->ping_pending = 0;
		return 0;
	case PROTO_FAIL:
		if (take_fail(p, f) != 0) {
			proc_kill(p, MALFORMED_FAIL);
			return -1;
		}
		return 0;
	default:
		proc_kill(p, "protocol error: unexpected frame type");
		return -1;
	}
}

static void on_read(h2o_socket_t *sock, const char *err)
{
	proc_t *p = sock->data;
	if (err != NULL) {
		/* EOF: the worker is exiting; the reap reports it. */
		proc_close_sock(p);
		return;
	}
	proto_feed(&p->dec, sock->input->bytes, sock->input->size);
	h2o_buffer_consume(&sock->input, sock->input->size);
	drain(p);
}

/*
 * Handles decoded frames, at most PROC_TURN_BUDGET bytes of them per loop
 * turn. A fast worker can hand us megabytes in one read; publishing them
 * all at once would pile them up in every stream (each has one write in
 * flight) and cut fast readers as slow ones. Past the budget we stop
 * reading the worker (its writes then block: backpressure), let the loop
 * poll and write to the streams, and go on after it (procs_resume).
 */
static void drain(proc_t *p)
{
	proto_frame_t f;
	size_t used = 0;
	int r;
	while (used < PROC_TURN_BUDGET && (r = proto_next(&p->dec, &f)) == 1) {
		used += PROTO_HDR_SIZE + f.len;
		if (handle_frame(p, &f) != 0)
			return;
	}
	if (used >= PROC_TURN_BUDGET) {
		if (p->sock != NULL)
			h2o_socket_read_stop(p->sock);
		if (!h2o_linklist_is_linked(&p->resume_link))
			h2o_linklist_insert(&p->ps->resuming, &p->resume_link);
		return;
	}
	if (r < 0) {
		char why[160];
		snprintf(why, sizeof(why), "protocol error: %s", p->dec.err);
		proc_kill(p, why);
		return;
	}
	if (p->sock != NULL && !h2o_socket_is_reading(p->sock))
		h2o_socket_read_start(p->sock, on_read);
}

int procs_resuming(procs_t *ps)
{
	return !h2o_linklist_is_empty(&ps->resuming);
}

void procs_resume(procs_t *ps)
{
	h2o_linklist_t now;
	h2o_linklist_init_anchor(&now);
	h2o_linklist_insert_list(&now, &ps->resuming);
	while (!h2o_linklist_is_empty(&now)) {
		proc_t *p = H2O_STRUCT_FROM_MEMBER(proc_t, resume_link, now.next);
		h2o_linklist_unlink(&p->resume_link);
		if (p->sock != NULL && p->reason[0] == '\0')
			drain(p); /* may go back on ps->resuming */
	}
}

/*
 * At reap, before the reason is told: what the worker wrote before it
 * exited that we have not handled yet. Its SIGCHLD can be handled in the
 * same loop turn as, and before, its last bytes, and frames may wait in
 * the decoder past a turn's budget. Only a FAIL matters now (the owner is
 * told of the exit next; events of a dead worker are dropped, as ever).
 */
static void read_last_words(proc_t *p)
{
	char buf[16384];
	ssize_t n;
	if (p->sock != NULL && p->reason[0] == '\0') {
		int fd = h2o_socket_get_fd(p->sock);
		/* The pair's buffers hold little once the writer is dead; the
		 * bound is for a wrapper's child that lives on and writes. */
		for (size_t got = 0; got < PROTO_MAX_FRAME && (n = read(fd, buf, sizeof(buf))) > 0;
		     got += (size_t)n)
			proto_feed(&p->dec, buf, (size_t)n);
	}
	proto_frame_t f;
	while (!p->failed && p->reason[0] == '\0' && proto_next(&p->dec, &f) == 1)
		if (f.type == PROTO_FAIL && take_fail(p, &f) != 0)
			snprintf(p->reason, sizeof(p->reason), "%s", MALFORMED_FAIL);
}

static void describe_status(int status, char *out, size_t len)
{
	if (WIFEXITED(status))
		snprintf(out, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, len, "killed by signal %s", sigabbrev_np(WTERMSIG(status)) ?: "?");
	else
		snprintf(out, len, "status %d", status);
}

typedef struct leftover_scan leftover_scan_t;
static void note_foreign(procs_t *ps);

void procs_init(procs_t *ps, h2o_evloop_t *loop, offload_t *offload, const char *worker_path,
		uint64_t kill_ms, uint64_t ping_ms, const proc_callbacks_t *cb)
{
	memset(ps, 0, sizeof(*ps));
	ps->loop = loop;
	ps->offload = offload;
	h2o_linklist_init_anchor(&ps->all);
	ps->cb = *cb;
	snprintf(ps->worker_path, sizeof(ps->worker_path), "%s", worker_path);
	ps->kill_ms = kill_ms;
	ps->ping_ms = ping_ms;
	h2o_timeout_init(loop, &ps->start_timeout, PROC_START_TIMEOUT_MS);
	h2o_timeout_init(loop, &ps->kill_timeout, kill_ms);
	h2o_timeout_init(loop, &ps->ping_interval, ping_ms);
	h2o_timeout_init(loop, &ps->next_turn, 0);
	h2o_linklist_init_anchor(&ps->resuming);
	note_foreign(ps);
	/* What a killed worker's commands leave comes to us, not to init
	 * (want_leftovers). */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
		log_warn("Cannot become a child subreaper; a killed worker's commands may outlive it", "err",
			 strerror(errno), NULL);
}

void proc_ran_commands(proc_t *p)
{
	p->ran_commands = 1;
}

static proc_t *find_proc(procs_t *ps, pid_t pid)
{
	for (h2o_linklist_t *l = ps->all.next; l != &ps->all; l = l->next) {
		proc_t *q = H2O_STRUCT_FROM_MEMBER(proc_t, link, l);
		if (q->pid == pid)
			return q;
	}
	return NULL;
}

/* pid's parent and process group (/proc/<pid>/stat): 0, or -1 once it
 * is gone or dead (a zombie: to be reaped, not killed). Its name may hold
 * any byte, ')' too: the fields follow the last ')', and a name is at
 * most 16 bytes, so they are in the buffer. */
static int stat_of(pid_t pid, pid_t *ppid, pid_t *pgrp)
{
	char path[32], buf[256], state;
	int pp, pg;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 1, " %c %d %d", &state, &pp, &pg) != 3 || state == 'Z')
		return -1;
	*ppid = pp;
	*pgrp = pg;
	return 0;
}

/*
 * What a dead worker's shell runs left: a background job whose shell died
 * with the worker (its parent-death signal), or a command that left its
 * run's group. Both are a worker's descendants, and each worker is a
 * child subreaper for its runs (worker/main.c), so while it lives they
 * stay under it; once it is gone they come to us (procs_init makes us
 * one too). So every child of ours that is not a worker is such a
 * leftover, and is killed with its process group.
 *
 * Finding them means reading all of /proc (this kernel need not have
 * /proc/<pid>/task/<tid>/children): 15 us a process here, so 30 ms with
 * 2,000 processes. That runs on an offload thread, one look at a time (a
 * look asked for meanwhile follows it), and the loop kills what it found
 * that is still our child and not reaped (waitid, WNOWAIT): the loop is
 * our only reaper, so neither that pid nor its group's id can have been
 * reused. Asked for once a worker that ran commands is reaped, and again
 * whenever a leftover is (its own children come to us then).
 */
struct leftover_scan {
	offload_job_t job; /* first: the job is the scan */
	procs_t *ps;
	pid_t me;
	pid_t *pids; /* our children, as /proc said */
	size_t n, cap;
};

static void want_leftovers(procs_t *ps);

/* Reads /proc only: safe on an offload thread. */
static void children_of(leftover_scan_t *sc)
{
	DIR *d = opendir("/proc");
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char *end;
		long v = strtol(e->d_name, &end, 10);
		pid_t pid = (pid_t)v, ppid, pgrp;
		if (*end != '\0' || v <= 0 || stat_of(pid, &ppid, &pgrp) != 0 || ppid != sc->me)
			continue;
		if (sc->n == sc->cap) {
			sc->cap = sc->cap ? sc->cap * 2 : 16;
			if ((sc->pids = realloc(sc->pids, sc->cap * sizeof(*sc->pids))) == NULL)
				abort();
		}
		sc->pids[sc->n++] = pid;
	}
	closedir(d);
}

/* pid's index in ps->foreign, or -1. */
static long foreign_index(const procs_t *ps, pid_t pid)
{
	for (size_t i = 0; i < ps->nforeign; i++)
		if (ps->foreign[i] == pid)
			return (long)i;
	return -1;
}

static void kill_found(procs_t *ps, const leftover_scan_t *sc)
{
	pid_t mygroup = getpgrp();
	unsigned n = 0;
	for (size_t i = 0; i < sc->n; i++) {
		pid_t pid = sc->pids[i];
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		/* Still our child and alive (an exited one is reaped soon,
		 * and its children then come to us: another look). */
		if (find_proc(ps, pid) != NULL || foreign_index(ps, pid) >= 0 ||
		    waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid != 0)
			continue;
		pid_t pgrp = getpgid(pid);
		if (pgrp > 1 && pgrp != mygroup)
			kill(-pgrp, SIGKILL);
		kill(pid, SIGKILL);
		n++;
	}
	if (n > 0) {
		char count[16];
		snprintf(count, sizeof(count), "%u", n);
		log_info("Killed what a dead worker's commands left", "processes", count, NULL);
	}
}

static void scan_free(leftover_scan_t *sc)
{
	free(sc->pids);
	free(sc);
}

static void scan_work(offload_job_t *j)
{
	children_of((leftover_scan_t *)j);
}

static void scan_done(offload_job_t *j)
{
	leftover_scan_t *sc = (leftover_scan_t *)j;
	procs_t *ps = sc->ps;
	ps->scan = NULL;
	kill_found(ps, sc);
	scan_free(sc);
	if (ps->scan_again) {
		ps->scan_again = 0;
		want_leftovers(ps);
	}
}

static leftover_scan_t *scan_new(procs_t *ps)
{
	leftover_scan_t *sc = calloc(1, sizeof(*sc));
	if (sc == NULL)
		abort();
	sc->ps = ps;
	sc->me = getpid();
	sc->job.work = scan_work;
	sc->job.done = scan_done;
	return sc;
}

/* Children we already have are not leftovers of any worker. Usually
 * there are none (waitid says so without reading /proc). */
static void note_foreign(procs_t *ps)
{
	siginfo_t si;
	if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
		return; /* ECHILD: no child at all */
	leftover_scan_t *sc = scan_new(ps);
	children_of(sc);
	ps->foreign = sc->pids;
	ps->nforeign = sc->n;
	free(sc);
}

static void want_leftovers(procs_t *ps)
{
	/* As a container's init every orphan of the container comes to us,
	 * not only our workers' descendants: nothing is killed then (they
	 * are reaped as they end). */
	if (getpid() == 1)
		return;
	ps->leftovers_wanted = 1;
	if (ps->scan != NULL) {
		ps->scan_again = 1;
		return;
	}
	leftover_scan_t *sc = scan_new(ps);
	ps->scan = sc;
	offload_submit(ps->offload, &sc->job);
}

void procs_finish(procs_t *ps)
{
	/* A look under way finishes on the loop first (bounded: it reads
	 * /proc only), then one more look here catches what came since. */
	uint64_t until = clock_ms() + 1000;
	while (ps->scan != NULL && clock_ms() < until)
		h2o_evloop_run(ps->loop, 10);
	if (ps->scan == NULL && ps->leftovers_wanted) {
		leftover_scan_t *sc = scan_new(ps);
		children_of(sc);
		kill_found(ps, sc);
		scan_free(sc);
	}
	free(ps->foreign);
	ps->foreign = NULL;
	ps->nforeign = 0;
}

void procs_reap(procs_t *ps)
{
	pid_t pid;
	int status, leftovers = 0;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		proc_t *p = find_proc(ps, pid);
		if (p == NULL) {
			long i = foreign_index(ps, pid);
			if (i >= 0) /* reaped: its pid may come back as anyone's */
				ps->foreign[i] = ps->foreign[--ps->nforeign];
			leftovers = 1; /* one fell: its children are ours now */
			continue;
		}
		if (p->ran_commands)
			leftovers = 1;
		/* Sweep anything the worker left in its group. */
		kill(-pid, SIGKILL);
		read_last_words(p);
		/* Its own reason first (why it gave up), then ours (why we
		 * killed it), then how it ended. */
		char full[sizeof(p->fail_reason) + sizeof(p->reason) + 80], why[PROC_REASON_MAX], st[64];
		char code[sizeof(p->fail_code)], error[sizeof(p->fail_reason)];
		describe_status(status, st, sizeof(st));
		if (p->fail_reason[0] != '\0' && p->reason[0] != '\0')
			snprintf(full, sizeof(full), "%s; %s (%s)", p->fail_reason, p->reason, st);
		else if (p->fail_reason[0] != '\0' || p->reason[0] != '\0')
			snprintf(full, sizeof(full), "%s%s (%s)", p->fail_reason, p->reason, st);
		else
			snprintf(full, sizeof(full), "%s", st);
		copy_text(why, sizeof(why), full);
		snprintf(code, sizeof(code), "%s", p->fail_code);
		snprintf(error, sizeof(error), "%s", p->fail_reason);
		char pidstr[16];
		snprintf(pidstr, sizeof(pidstr), "%d", (int)pid);
		log_info("Worker reaped", "workspace_id", p->ws_id, "pid", pidstr, "status", why, NULL);

		h2o_linklist_unlink(&p->link);
		if (h2o_timeout_is_linked(&p->start_te))
			h2o_timeout_unlink(&p->start_te);
		if (h2o_timeout_is_linked(&p->kill_te))
			h2o_timeout_unlink(&p->kill_te);
		if (h2o_timeout_is_linked(&p->ping_te))
			h2o_timeout_unlink(&p->ping_te);
		if (h2o_linklist_is_linked(&p->resume_link))
			h2o_linklist_unlink(&p->resume_link);
		if (h2o_timeout_is_linked(&p->flush_te))
			h2o_timeout_unlink(&p->flush_te);
		proc_close_sock(p);
		fail_calls(p, why);
		proto_decoder_free(&p->dec);
		free(p->presence_next);
		buf_free(&p->out);
		buf_free(&p->inflight);
		void *owner = p->arg;
		free(p);
		if (owner != NULL) {
			ps->exited_code = code[0] != '\0' ? code : NULL;
			ps->exited_error = error[0] != '\0' ? error : NULL;
			ps->cb.exited(ps, owner, why);
			ps->exited_code = ps->exited_error = NULL;
		}
	}
	if (leftovers)
		want_leftovers(ps);
}

const char *procs_exited_code(const procs_t *ps)
{
	return ps->exited_code;
}

const char *procs_exited_error(const procs_t *ps)
{
	return ps->exited_error;
}
