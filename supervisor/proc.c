/*
 * proc: worker processes (see proc.h): spawn, the handshake and frames
 * over the pair, liveness pings, stop and reap.
 */
#include "supervisor/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "common/log.h"

extern char **environ;

#define WORKER_FD 3

/* --- argv/envp of a worker */

/* envp = our environment, minus keys the first creator's env overrides,
 * plus those entries. */
static char **build_env(const claims_ws_t *ws)
{
	size_t n = 0;
	while (environ[n] != NULL)
		n++;
	char **envp = calloc(n + ws->nenv + 1, sizeof(*envp));
	if (envp == NULL)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		int overridden = 0;
		for (size_t j = 0; j < ws->nenv && !overridden; j++)
			overridden = strncmp(ws->env[j], environ[i], klen) == 0 && ws->env[j][klen] == '=';
		if (!overridden)
			envp[k++] = environ[i];
	}
	for (size_t j = 0; j < ws->nenv; j++)
		envp[k++] = ws->env[j];
	envp[k] = NULL;
	return envp;
}

static const char *level_arg(void)
{
	switch (log_min_level) {
	case LOG_DEBUG:
		return "debug";
	case LOG_INFO:
		return "info";
	case LOG_WARN:
		return "warn";
	default:
		return "error";
	}
}

static void on_start_timeout(h2o_timeout_entry_t *te);
static void on_ping(h2o_timeout_entry_t *te);
static void on_kill_timeout(h2o_timeout_entry_t *te);
static void on_read(h2o_socket_t *sock, const char *err);
static void drain(proc_t *p);
static void on_resume(h2o_timeout_entry_t *te);

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
int proc_spawn(sv_ws_t *sws, char *err, size_t errlen)
{
	server_t *s = g_srv;
	claims_ws_t *ws = sws->ws;
	int sv[2], rc;
	char data_dir[PATH_MAX + 8], fdarg[16], parent[16];
	pid_t pid;

	if (ws->data_dir[0] != '\0')
		snprintf(data_dir, sizeof(data_dir), "%s", ws->data_dir);
	else
		snprintf(data_dir, sizeof(data_dir), "%s/.crush", ws->key);
	snprintf(fdarg, sizeof(fdarg), "%d", WORKER_FD);
	snprintf(parent, sizeof(parent), "%d", (int)getpid());
	char *argv[] = {s->worker_path,	     ws->id, ws->path,	   "--fd",   fdarg,
			"--parent",	     parent, "--data-dir", data_dir, "--log-level",
			(char *)level_arg(), NULL};
	char **envp = build_env(ws);
	if (envp == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		free(envp);
		return -1;
	}
	/* dup2 onto itself would leave FD_CLOEXEC set: keep the pair off 3. */
	if (sv[1] == WORKER_FD) {
		int moved = fcntl(sv[1], F_DUPFD_CLOEXEC, WORKER_FD + 1);
		close(sv[1]);
		sv[1] = moved;
	}

	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, dfl;
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &dfl);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, sv[1], WORKER_FD);
	posix_spawn_file_actions_addclosefrom_np(&fa, WORKER_FD + 1);
	rc = sv[1] < 0 ? errno : posix_spawn(&pid, s->worker_path, &fa, &at, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	free(envp);
	if (sv[1] >= 0)
		close(sv[1]);
	if (rc != 0) {
		close(sv[0]);
		snprintf(err, errlen, "exec %s: %s", s->worker_path, strerror(rc));
		return -1;
	}

	proc_t *p = calloc(1, sizeof(*p));
	if (p == NULL)
		abort();
	p->pid = pid;
	p->owner = sws;
	p->dec = (proto_decoder_t)PROTO_DECODER_INIT;
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	p->sock = h2o_evloop_socket_create(s->loop, sv[0], 0);
	p->sock->data = p;
	h2o_socket_read_start(p->sock, on_read);
	p->start_te.cb = on_start_timeout;
	h2o_timeout_link(s->loop, &s->start_timeout, &p->start_te);
	p->kill_te.cb = on_kill_timeout;
	p->ping_te.cb = on_ping;
	p->resume_te.cb = on_resume;
	h2o_linklist_insert(&s->procs, &p->link);
	sws->proc = p;
	sws->pid = pid;

	char pidstr[16];
	snprintf(pidstr, sizeof(pidstr), "%d", (int)pid);
	log_info("Worker started", "workspace_id", ws->id, "path", ws->key, "pid", pidstr, NULL);
	return 0;
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
	if (g_srv->opts->kill_ms == 0)
		signal_group(p, SIGKILL);
	else
		h2o_timeout_link(g_srv->loop, &g_srv->kill_timeout, &p->kill_te);
}

void proc_kill(proc_t *p, const char *reason)
{
	if (p->reason[0] == '\0') {
		snprintf(p->reason, sizeof(p->reason), "%s", reason);
		char pidstr[16];
		snprintf(pidstr, sizeof(pidstr), "%d", (int)p->pid);
		log_warn("Killing worker", "pid", pidstr, "reason", reason, NULL);
	}
	if (h2o_timeout_is_linked(&p->start_te))
		h2o_timeout_unlink(&p->start_te);
	if (h2o_timeout_is_linked(&p->ping_te))
		h2o_timeout_unlink(&p->ping_te);
	signal_group(p, SIGKILL);
	proc_close_sock(p);
}

/* --- frames to the worker: one h2o write at a time, the rest queued */

static void flush_out(proc_t *p);

static void on_written(h2o_socket_t *sock, const char *err)
{
	proc_t *p = sock->data;
	buf_reset(&p->inflight);
	if (err != NULL) {
		proc_kill(p, "socketpair write failed");
		return;
	}
	flush_out(p);
}

static void flush_out(proc_t *p)
{
	if (p->sock == NULL || buf_size(&p->inflight) > 0 || buf_size(&p->out) == 0)
		return;
	buf_t t = p->inflight;
	p->inflight = p->out;
	p->out = t;
	h2o_iovec_t iov = h2o_iovec_init(buf_data(&p->inflight), buf_size(&p->inflight));
	h2o_socket_write(p->sock, &iov, 1, on_written);
}

static void send_request(proc_t *p, uint32_t id, const char *json)
{
	proto_encode(&p->out, PROTO_REQUEST, id, json, strlen(json));
	flush_out(p);
}

/* Liveness: the previous ping must be answered by now. */
static void on_ping(h2o_timeout_entry_t *te)
{
	proc_t *p = H2O_STRUCT_FROM_MEMBER(proc_t, ping_te, te);
	if (p->ping_pending != 0) {
		proc_kill(p, "protocol error: unanswered request");
		return;
	}
	if (++p->next_req_id == 0)
		p->next_req_id = 1;
	p->ping_pending = p->next_req_id;
	send_request(p, p->ping_pending, "{\"method\":\"ping\"}");
	h2o_timeout_link(g_srv->loop, &g_srv->ping_interval, &p->ping_te);
}

static void on_start_timeout(h2o_timeout_entry_t *te)
{
	proc_t *p = H2O_STRUCT_FROM_MEMBER(proc_t, start_te, te);
	char why[64];
	snprintf(why, sizeof(why), "not ready within %d s", WORKER_START_TIMEOUT_MS / 1000);
	proc_kill(p, why);
}

static void on_kill_timeout(h2o_timeout_entry_t *te)
{
	proc_t *p = H2O_STRUCT_FROM_MEMBER(proc_t, kill_te, te);
	char pidstr[16];
	snprintf(pidstr, sizeof(pidstr), "%d", (int)p->pid);
	log_warn("Worker ignored SIGTERM, sending SIGKILL", "pid", pidstr, NULL);
	signal_group(p, SIGKILL);
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
		int ours = id != NULL && (p->owner == NULL || strcmp(id, p->owner->ws->id) == 0);
		json_decref(j);
		if (v != PROTO_VERSION || !ours) {
			proc_kill(p, v != PROTO_VERSION ? "protocol error: unsupported version"
							: "protocol error: hello for another workspace");
			return -1;
		}
		p->said_hello = 1;
		return 0;
	}
	switch (f->type) {
	case PROTO_READY:
		if (p->ready) {
			proc_kill(p, "protocol error: ready twice");
			return -1;
		}
		p->ready = 1;
		if (h2o_timeout_is_linked(&p->start_te))
			h2o_timeout_unlink(&p->start_te);
		if (g_srv->opts->ping_ms > 0)
			h2o_timeout_link(g_srv->loop, &g_srv->ping_interval, &p->ping_te);
		if (p->owner != NULL && !p->stopping)
			server_on_worker_ready(p->owner);
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
		if (p->owner != NULL && !p->stopping)
			server_on_worker_event(p->owner, f->payload, f->len);
		return 0;
	}
	case PROTO_RESPONSE:
		/* Only pings are asked for: any other id is a protocol error. */
		if (f->id == 0 || f->id != p->ping_pending) {
			proc_kill(p, "protocol error: response to no request");
			return -1;
		}
		p->ping_pending = 0;
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
 * write to the streams, and go on in the next turn.
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
		if (!h2o_timeout_is_linked(&p->resume_te))
			h2o_timeout_link(g_srv->loop, &g_srv->next_turn, &p->resume_te);
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

static void on_resume(h2o_timeout_entry_t *te)
{
	proc_t *p = H2O_STRUCT_FROM_MEMBER(proc_t, resume_te, te);
	if (p->sock != NULL && p->reason[0] == '\0')
		drain(p);
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

void proc_reap_all(void)
{
	server_t *s = g_srv;
	pid_t pid;
	int status;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		proc_t *p = NULL;
		for (h2o_linklist_t *l = s->procs.next; l != &s->procs; l = l->next) {
			proc_t *q = H2O_STRUCT_FROM_MEMBER(proc_t, link, l);
			if (q->pid == pid) {
				p = q;
				break;
			}
		}
		if (p == NULL)
			continue;
		/* Sweep anything the worker left in its group. */
		kill(-pid, SIGKILL);
		char why[sizeof(p->reason) + 80], st[64];
		describe_status(status, st, sizeof(st));
		if (p->reason[0] != '\0')
			snprintf(why, sizeof(why), "%s (%s)", p->reason, st);
		else
			snprintf(why, sizeof(why), "%s", st);
		char pidstr[16];
		snprintf(pidstr, sizeof(pidstr), "%d", (int)pid);
		log_info("Worker reaped", "pid", pidstr, "status", why, NULL);

		h2o_linklist_unlink(&p->link);
		if (h2o_timeout_is_linked(&p->start_te))
			h2o_timeout_unlink(&p->start_te);
		if (h2o_timeout_is_linked(&p->kill_te))
			h2o_timeout_unlink(&p->kill_te);
		if (h2o_timeout_is_linked(&p->ping_te))
			h2o_timeout_unlink(&p->ping_te);
		if (h2o_timeout_is_linked(&p->resume_te))
			h2o_timeout_unlink(&p->resume_te);
		proc_close_sock(p);
		proto_decoder_free(&p->dec);
		buf_free(&p->out);
		buf_free(&p->inflight);
		sv_ws_t *owner = p->owner;
		free(p);
		if (owner != NULL) {
			owner->proc = NULL;
			server_on_worker_exit(owner, why);
		}
	}
}
