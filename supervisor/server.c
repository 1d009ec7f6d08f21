/*
 * server: the event loop and the effects of the claims core (see
 * server.h). Signals arrive through a signalfd on the loop; claims timers
 * set how long the loop may sleep.
 */
#include "supervisor/server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/log.h"
#include "supervisor/http.h"
#include "supervisor/proc.h"
#include "supervisor/stream.h"

server_t *g_srv;

uint64_t server_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --- events to streams */

void server_publish(sv_ws_t *sws, const char *json, size_t len)
{
	buf_t *b = &g_srv->scratch;
	buf_reset(b);
	buf_appendf(b, "id: %llu\ndata: ", (unsigned long long)++sws->last_event_id);
	buf_append(b, json, len);
	buf_append(b, "\n\n", 2);
	replay_add(&sws->replay, sws->last_event_id, buf_data(b), buf_size(b));
	/* Every stream gets the same bytes in the same order. A stream may
	 * leave the list while we walk it (slow reader), never another one. */
	h2o_linklist_t *l = sws->streams.next;
	while (l != &sws->streams) {
		h2o_linklist_t *next = l->next;
		stream_push_event(H2O_STRUCT_FROM_MEMBER(stream_t, link, l), buf_data(b), buf_size(b));
		l = next;
	}
}

void server_publish_workspace(sv_ws_t *sws, const char *type, const char *reason)
{
	json_t *j = json_pack("{s:s, s:{s:s, s:s, s:I, s:s}}", "type", "workspace", "payload", "type", type,
			      "workspace_id", sws->ws->id, "pid", (json_int_t)sws->pid, "reason",
			      reason ? reason : "");
	char *text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (text != NULL)
		server_publish(sws, text, strlen(text));
	free(text);
}

/* --- from worker processes */

void server_on_worker_ready(sv_ws_t *sws)
{
	char pidstr[16];
	snprintf(pidstr, sizeof(pidstr), "%d", (int)sws->pid);
	int restarted = sws->ws->state == WS_RESTARTING;
	log_info(restarted ? "Worker restarted" : "Worker ready", "workspace_id", sws->ws->id, "pid", pidstr,
		 NULL);
	server_publish_workspace(sws, restarted ? "restarted" : "ready", NULL);
	claims_worker_ready(g_srv->claims, sws->ws, server_now());
}

void server_on_worker_event(sv_ws_t *sws, const char *json, size_t len)
{
	server_publish(sws, json, len);
}

void server_on_worker_exit(sv_ws_t *sws, const char *reason)
{
	claims_worker_exited(g_srv->claims, sws->ws, reason, server_now());
}

/* --- claims effects */

static void fx_ws_new(void *ud, claims_ws_t *ws)
{
	(void)ud;
	sv_ws_t *sws = calloc(1, sizeof(*sws));
	if (sws == NULL)
		abort();
	sws->ws = ws;
	h2o_linklist_init_anchor(&sws->streams);
	h2o_linklist_init_anchor(&sws->waiters);
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(sws->created_at, sizeof(sws->created_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	ws->shell = sws;
}

static int fx_spawn(void *ud, claims_ws_t *ws, char *err, size_t errlen)
{
	(void)ud;
	return proc_spawn(ws->shell, err, errlen);
}

static void fx_answer(void *ud, claims_ws_t *ws, const char *err)
{
	(void)ud;
	http_answer_waiters(ws->shell, err);
}

static void fx_stop(void *ud, claims_ws_t *ws, const char *reason)
{
	(void)ud;
	sv_ws_t *sws = ws->shell;
	if (ws->failed)
		log_error("Workspace failed", "workspace_id", ws->id, "path", ws->key, "reason", reason,
			  NULL);
	else
		log_info("Workspace closing", "workspace_id", ws->id, "path", ws->key, "reason", reason,
			 NULL);
	server_publish_workspace(sws, ws->failed ? "failed" : "closing", reason);
	while (!h2o_linklist_is_empty(&sws->streams))
		stream_end(H2O_STRUCT_FROM_MEMBER(stream_t, link, sws->streams.next));
	http_answer_waiters(sws, "workspace closed");
	if (sws->proc != NULL)
		proc_stop(sws->proc);
}

static void fx_restarting(void *ud, claims_ws_t *ws, const char *reason)
{
	(void)ud;
	log_warn("Worker crashed, restarting", "workspace_id", ws->id, "path", ws->key, "reason", reason,
		 NULL);
	server_publish_workspace(ws->shell, "restarting", reason);
}

static void fx_ws_free(void *ud, claims_ws_t *ws)
{
	(void)ud;
	sv_ws_t *sws = ws->shell;
	if (sws->proc != NULL)
		sws->proc->owner = NULL; /* still reaped, reported to no one */
	replay_free(&sws->replay);
	free(sws->fixed_json);
	free(sws);
	ws->shell = NULL;
}

static char *env_text(char **env, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(env[i]));
	char *t = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return t;
}

static void fx_mismatch(void *ud, const claims_ws_t *ws, const claims_create_t *req)
{
	(void)ud;
	if (log_min_level > LOG_DEBUG)
		return;
	char *have = env_text(ws->env, ws->nenv), *want = env_text((char **)req->env, req->nenv);
	log_debug("Workspace flag mismatch on duplicate create; first wins", "workspace_id", ws->id, "path",
		  ws->path, "existing_yolo", ws->yolo ? "true" : "false", "requested_yolo",
		  req->yolo ? "true" : "false", "existing_debug", ws->debug ? "true" : "false",
		  "requested_debug", req->debug ? "true" : "false", "existing_data_dir", ws->data_dir,
		  "requested_data_dir", req->data_dir, "existing_env", have, "requested_env", want, NULL);
	free(have);
	free(want);
}

static void fx_exit(void *ud)
{
	server_t *s = ud;
	log_info("No workspace left, shutting down", NULL);
	s->exiting = 1;
}

/* --- signals and listeners */

static void on_signal(h2o_socket_t *sock, const char *err)
{
	if (err != NULL)
		return;
	struct signalfd_siginfo si;
	while (sock->input->size >= sizeof(si)) {
		memcpy(&si, sock->input->bytes, sizeof(si));
		h2o_buffer_consume(&sock->input, sizeof(si));
		if (si.ssi_signo == SIGCHLD)
			proc_reap_all();
		else
			server_begin_shutdown(g_srv, sigabbrev_np((int)si.ssi_signo));
	}
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
	if (err != NULL)
		return;
	/* Drain the backlog: one wakeup may stand for many clients. */
	for (int i = 0; i < 64; i++) {
		h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
		if (sock == NULL)
			return;
		h2o_accept(&g_srv->accept_ctx, sock);
	}
}

static void on_keepalive(h2o_timeout_entry_t *te)
{
	stream_keepalive_all();
	h2o_timeout_link(g_srv->loop, &g_srv->keepalive, te);
}

static void close_listeners(server_t *s)
{
	for (int i = 0; i < s->nlisteners; i++) {
		if (s->listen_socks[i] != NULL) {
			h2o_socket_read_stop(s->listen_socks[i]);
			h2o_socket_close(s->listen_socks[i]);
			s->listen_socks[i] = NULL;
		}
		listener_remove_file(&s->listeners[i]);
	}
}

void server_begin_shutdown(server_t *s, const char *why)
{
	if (s->stopping)
		return;
	s->stopping = 1;
	log_info("Shutting down", "signal", why ? why : "", NULL);
	close_listeners(s);
	claims_shutdown(s->claims, server_now());
}

/* The worker binary: --worker, or crush-worker beside our executable. */
static int find_worker(server_t *s, const char *argv0)
{
	if (s->opts->worker != NULL) {
		if (realpath(s->opts->worker, s->worker_path) == NULL) {
			fprintf(stderr, "crush-supervisor: --worker %s: %s\n", s->opts->worker,
				strerror(errno));
			return -1;
		}
		return 0;
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		if (realpath(argv0, self) == NULL)
			return -1;
	} else {
		self[n] = '\0';
	}
	char *slash = strrchr(self, '/');
	*slash = '\0';
	if ((size_t)snprintf(s->worker_path, sizeof(s->worker_path), "%s/crush-worker", self) >=
	    sizeof(s->worker_path))
		return -1;
	return 0;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int server_init(server_t *s, options_t *opts, const char *argv0)
{
	memset(s, 0, sizeof(*s));
	g_srv = s;
	s->opts = opts;
	if (find_worker(s, argv0) != 0)
		return -1;
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);

	/* Block the signals we read from the signalfd; workers unblock them. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		fprintf(stderr, "crush-supervisor: signalfd: %s\n", strerror(errno));
		return -1;
	}

	for (int i = 0; i < opts->nhosts; i++) {
		char err[512];
		if (listener_open(&s->listeners[i], opts->hosts[i], err, sizeof(err)) != 0) {
			fprintf(stderr, "crush-supervisor: %s\n", err);
			log_error("Cannot listen", "error", err, NULL);
			for (int j = 0; j < i; j++) {
				listener_remove_file(&s->listeners[j]);
				close(s->listeners[j].fd);
			}
			close(sfd);
			return -1;
		}
		s->nlisteners++;
	}

	h2o_config_init(&s->config);
	s->config.max_request_entity_size = HTTP_HARD_MAX_BODY;
	s->config.server_name = h2o_iovec_init(H2O_STRLIT("crush-supervisor"));
	http_register(&s->config);
	s->loop = h2o_evloop_create();
	h2o_context_init(&s->ctx, s->loop, &s->config);
	s->accept_ctx.ctx = &s->ctx;
	s->accept_ctx.hosts = s->config.hosts;

	h2o_linklist_init_anchor(&s->procs);
	h2o_linklist_init_anchor(&s->all_streams);
	h2o_timeout_init(s->loop, &s->start_timeout, WORKER_START_TIMEOUT_MS);
	h2o_timeout_init(s->loop, &s->kill_timeout, opts->kill_ms);
	h2o_timeout_init(s->loop, &s->ping_interval, opts->ping_ms);
	h2o_timeout_init(s->loop, &s->next_turn, 0);
	h2o_timeout_init(s->loop, &s->keepalive, STREAM_KEEPALIVE_MS);
	s->keepalive_entry.cb = on_keepalive;
	h2o_timeout_link(s->loop, &s->keepalive, &s->keepalive_entry);

	s->signal_sock = h2o_evloop_socket_create(s->loop, sfd, 0);
	h2o_socket_read_start(s->signal_sock, on_signal);
	for (int i = 0; i < s->nlisteners; i++) {
		s->listen_socks[i] =
		    h2o_evloop_socket_create(s->loop, s->listeners[i].fd, H2O_SOCKET_FLAG_DONT_READ);
		h2o_socket_read_start(s->listen_socks[i], on_accept);
	}

	claims_config_t cc = {
	    .create_grace_ms = opts->create_grace_ms,
	    .detach_grace_ms = opts->detach_grace_ms,
	    .idle_ms = opts->idle_ms,
	    .restart_min_ms = WORKER_RESTART_MIN_MS,
	    .restart_max_ms = WORKER_RESTART_MAX_MS,
	    .crash_window_ms = WORKER_CRASH_WINDOW_MS,
	    .crash_limit = WORKER_CRASH_LIMIT,
	};
	claims_effects_t fx = {
	    .ud = s,
	    .ws_new = fx_ws_new,
	    .spawn = fx_spawn,
	    .answer = fx_answer,
	    .stop = fx_stop,
	    .ws_free = fx_ws_free,
	    .restarting = fx_restarting,
	    .mismatch = fx_mismatch,
	    .exit = fx_exit,
	};
	s->claims = claims_new(&cc, &fx);

	for (int i = 0; i < s->nlisteners; i++)
		log_info("Listening", "address", s->listeners[i].url, "worker", s->worker_path, NULL);
	return 0;
}

int server_run(server_t *s)
{
	while (!s->exiting) {
		uint64_t now = server_now(), dl = claims_next_deadline(s->claims);
		int32_t wait = INT32_MAX;
		if (dl != CLAIMS_NEVER)
			wait = dl <= now ? 0 : (dl - now > INT32_MAX ? INT32_MAX : (int32_t)(dl - now));
		if (h2o_evloop_run(s->loop, wait) != 0 && errno != EINTR) {
			log_error("Event loop failed", "error", strerror(errno), NULL);
			return 1;
		}
		claims_expire(s->claims, server_now());
	}
	close_listeners(s);
	/* Let ended streams flush their last bytes, briefly. */
	uint64_t until = server_now() + 200;
	while (s->nstreams > 0 && server_now() < until)
		h2o_evloop_run(s->loop, 10);
	claims_free(s->claims);
	h2o_socket_close(s->signal_sock);
	h2o_timeout_unlink(&s->keepalive_entry);
	h2o_evloop_run(s->loop, 0); /* lets h2o free what it closed */
	buf_free(&s->scratch);
	log_info("Exited", NULL);
	return 0;
}
