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

#include "common/clock.h"
#include "common/id.h"
#include "common/log.h"
#include "supervisor/workspace.h"

static workspace_t *shell_of(claims_ws_t *ws)
{
	return ws->shell;
}

/* --- from worker processes (proc callbacks; arg is the workspace) */

static void on_worker_ready(procs_t *ps, void *arg, const char *payload, size_t len)
{
	server_t *s = H2O_STRUCT_FROM_MEMBER(server_t, procs, ps);
	workspace_t *w = arg;
	char pidstr[16];
	snprintf(pidstr, sizeof(pidstr), "%d", (int)w->feed.pid);
	int restarted = w->ws->state == WS_RESTARTING;
	log_info(restarted ? "Worker restarted" : "Worker ready", "workspace_id", w->ws->id, "pid", pidstr,
		 NULL);
	/* The worker's config goes into the Workspace object (upstream
	 * clients read it there). */
	json_t *j = json_loadb(payload, len, 0, NULL);
	json_t *cfg = json_object_get(j, "config");
	char *text = json_is_object(cfg) ? json_dumps(cfg, JSON_COMPACT) : NULL;
	if (text != NULL)
		workspace_set_config(w, text, strlen(text));
	free(text);
	if (json_is_string(json_object_get(j, "data_dir")))
		workspace_set_data_dir(w, json_string_value(json_object_get(j, "data_dir")));
	json_decref(j);
	/* Ready is before the worker's walk of the tree: until it reports
	 * (watch events), the Workspace says it is scanning. */
	workspace_watch_reset(w);
	stream_publish_workspace(&w->feed, restarted ? "restarted" : "ready", NULL);
	claims_worker_ready(s->claims, w->ws, clock_ms());
	workspace_presence_reset(w); /* a new worker knows nothing yet */
	workspace_presence_update(w);
	forward_ready(w);
}

static void on_worker_event(procs_t *ps, void *arg, const char *json, size_t len)
{
	(void)ps;
	workspace_t *w = arg;
	/* config_changed carries the worker's new (redacted) config: the
	 * Workspace object shows it from now on. */
	static const char cc[] = "{\"type\":\"config_changed\"";
	if (len > sizeof(cc) - 1 && memcmp(json, cc, sizeof(cc) - 1) == 0) {
		json_t *j = json_loadb(json, len, 0, NULL);
		json_t *cfg =
		    json_object_get(json_object_get(json_object_get(j, "payload"), "payload"), "config");
		char *text = json_is_object(cfg) ? json_dumps(cfg, JSON_COMPACT) : NULL;
		if (text != NULL)
			workspace_set_config(w, text, strlen(text));
		free(text);
		json_decref(j);
	}
	/* A watch event carries the worker's view of the tree: kept for the
	 * Workspace object (late joiners), and relayed like any event. */
	workspace_watch_event(w, json, len);
	stream_publish(&w->feed, json, len);
}

static void on_worker_exited(procs_t *ps, void *arg, const char *reason)
{
	server_t *s = H2O_STRUCT_FROM_MEMBER(server_t, procs, ps);
	workspace_t *w = arg;
	const char *code = procs_exited_code(ps);
	w->proc = NULL;
	workspace_watch_lost(w);
	s->metrics.workers_failed += w->ws->state != WS_CLOSING; /* not asked to stop */
	/* Out of a per-user kernel resource: the machine is busy, not broken
	 * (503, the sysctl named in the reason). The data dir owned by another
	 * process (a Go crush, another daemon): 409, as upstream's conflict. */
	if (code != NULL && strncmp(code, "inotify_", 8) == 0)
		w->fail_status = 503;
	else if (code != NULL && strcmp(code, "data_dir_locked") == 0) {
		/* Said as is: "data directory is in use by pid N" (SPEC §8). */
		w->fail_status = 409;
		workspace_set_fail_message(w, procs_exited_error(ps));
	} else
		w->fail_status = 500;
	claims_worker_exited(s->claims, w->ws, reason, clock_ms());
}

/* --- from streams */

static void on_stream_detach(void *arg, const char *ws_id, const char *client_id)
{
	server_t *s = arg;
	log_debug("Stream detached", "workspace_id", ws_id, "client_id", client_id, NULL);
	claims_detach(s->claims, ws_id, client_id, clock_ms());
	claims_ws_t *ws = claims_find(s->claims, ws_id);
	if (ws != NULL && ws->state != WS_CLOSING)
		workspace_presence_update(ws->shell);
}

/* --- claims effects (ud is the server) */

static void fx_mint_id(void *ud, char out[ID_LEN + 1])
{
	(void)ud;
	id_new(out);
}

static void fx_ws_new(void *ud, claims_ws_t *ws)
{
	server_t *s = ud;
	workspace_new(ws, &s->hub);
}

static int fx_spawn(void *ud, claims_ws_t *ws, char *err, size_t errlen)
{
	server_t *s = ud;
	workspace_t *w = shell_of(ws);
	proc_spec_t spec = {
	    .ws_id = ws->id,
	    .path = ws->key,	      /* resolved once, here: never the client's path */
	    .data_dir = ws->data_dir, /* "" unless sent: the worker resolves it */
	    .log_level = log_level_arg(log_min_level),
	    .env = ws->env,
	    .nenv = ws->nenv,
	};
	if ((w->proc = proc_spawn(&s->procs, &spec, w, err, errlen)) == NULL) {
		s->metrics.workers_failed++;
		return -1;
	}
	s->metrics.workers_started++;
	w->feed.pid = proc_pid(w->proc);
	return 0;
}

static void fx_answer(void *ud, claims_ws_t *ws, const char *err)
{
	server_t *s = ud;
	http_answer_waiters(s->http, shell_of(ws), err);
}

static void fx_stop(void *ud, claims_ws_t *ws, const char *reason)
{
	server_t *s = ud;
	workspace_t *w = shell_of(ws);
	if (ws->failed)
		log_error("Workspace failed", "workspace_id", ws->id, "path", ws->key, "reason", reason,
			  NULL);
	else
		log_info("Workspace closing", "workspace_id", ws->id, "path", ws->key, "reason", reason,
			 NULL);
	stream_publish_workspace(&w->feed, ws->failed ? "failed" : "closing", reason);
	stream_feed_end(&w->feed, ws->failed ? "failed" : "closing");
	http_answer_waiters(s->http, w, "workspace closed");
	forward_fail_waiting(w, 404, "workspace not found");
	if (w->proc != NULL)
		proc_stop(w->proc);
}

static void fx_restarting(void *ud, claims_ws_t *ws, const char *reason)
{
	((server_t *)ud)->metrics.workers_restarted++;
	log_warn("Worker crashed, restarting", "workspace_id", ws->id, "path", ws->key, "reason", reason,
		 NULL);
	stream_publish_workspace(&shell_of(ws)->feed, "restarting", reason);
}

static void fx_ws_free(void *ud, claims_ws_t *ws)
{
	(void)ud;
	workspace_t *w = shell_of(ws);
	if (w->proc != NULL)
		proc_disown(w->proc); /* still reaped, reported to no one */
	workspace_free(w);
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
	server_t *s = sock->data;
	if (err != NULL)
		return;
	struct signalfd_siginfo si;
	while (sock->input->size >= sizeof(si)) {
		memcpy(&si, sock->input->bytes, sizeof(si));
		h2o_buffer_consume(&sock->input, sizeof(si));
		if (si.ssi_signo == SIGCHLD)
			procs_reap(&s->procs);
		else
			server_begin_shutdown(s, "signal", sigabbrev_np((int)si.ssi_signo));
	}
}

static void pause_accepting(server_t *s);
static void on_between(h2o_timeout_entry_t *te);

static void on_accept(h2o_socket_t *listener, const char *err)
{
	server_t *s = listener->data;
	if (err != NULL)
		return;
	/* Drain the backlog: one wakeup may stand for many clients. */
	for (int i = 0; i < 64; i++) {
		h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
		if (sock == NULL) {
			if (errno == EMFILE || errno == ENFILE)
				pause_accepting(s);
			return;
		}
		int is_unix;
		long uid;
		if (gate_accept(&s->gate, sock, &is_unix, &uid) != 0) /* a unix peer of another user */
			continue;
		conns_add(&s->conns, sock, clock_ms(), is_unix, uid);
		h2o_accept(&s->accept_ctx, sock);
	}
}

/* Out of descriptors: the listeners are level-triggered, so accepting on
 * would spin on the same EMFILE. Stop reading them for a moment; pending
 * clients wait in the backlog, and the refusal is logged once an episode. */
static void pause_accepting(server_t *s)
{
	if (h2o_timeout_is_linked(&s->resume_accept_te))
		return;
	limits_refuse(&s->limits, LIMIT_CONNECTIONS, clock_ms(), "out of file descriptors");
	for (int i = 0; i < s->nlisteners; i++)
		if (s->listen_socks[i] != NULL)
			h2o_socket_read_stop(s->listen_socks[i]);
	h2o_timeout_link(s->loop, &s->accept_pause, &s->resume_accept_te);
}

static void on_resume_accept(h2o_timeout_entry_t *te)
{
	server_t *s = H2O_STRUCT_FROM_MEMBER(server_t, resume_accept_te, te);
	for (int i = 0; i < s->nlisteners; i++)
		if (s->listen_socks[i] != NULL)
			h2o_socket_read_start(s->listen_socks[i], on_accept);
}

static void on_keepalive(h2o_timeout_entry_t *te)
{
	server_t *s = H2O_STRUCT_FROM_MEMBER(server_t, keepalive_entry, te);
	stream_keepalive_all(&s->hub);
	h2o_timeout_link(s->loop, &s->keepalive, te);
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

void server_begin_shutdown(server_t *s, const char *key, const char *why)
{
	if (s->stopping)
		return;
	s->stopping = 1;
	/* signal=TERM, or request=control: not every stop is a signal. */
	log_info("Shutting down", key, why ? why : "", NULL);
	close_listeners(s);
	claims_shutdown(s->claims, clock_ms());
}

static void on_control_shutdown(void *arg, const char *why)
{
	server_begin_shutdown(arg, "request", why);
}

/* The worker binary: --worker, or crush-worker beside our executable. */
static int find_worker(const options_t *opts, const char *argv0, char out[PATH_MAX])
{
	if (opts->worker != NULL) {
		if (realpath(opts->worker, out) == NULL) {
			fprintf(stderr, "crush-supervisor: --worker %s: %s\n", opts->worker, strerror(errno));
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
	if ((size_t)snprintf(out, PATH_MAX, "%s/crush-worker", self) >= PATH_MAX)
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
	char worker_path[PATH_MAX];
	memset(s, 0, sizeof(*s));
	s->opts = opts;
	if (find_worker(opts, argv0, worker_path) != 0)
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

	/* Socket activation: the passed sockets replace -H (and tell the
	 * gate which are tcp, so it finds a token for them). */
	char aerr[512];
	int nact = listener_activated(s->listeners, OPTIONS_MAX_HOSTS, options_token_given(opts), aerr,
				      sizeof(aerr));
	if (nact < 0) {
		fprintf(stderr, "crush-supervisor: %s\n", aerr);
		close(sfd);
		return -1;
	}
	for (int i = 0; i < nact; i++)
		opts->hosts[i] = s->listeners[i].url;
	s->nlisteners = nact;
	if (nact > 0)
		opts->nhosts = nact;
	if (gate_init(&s->gate, opts) != 0) { /* issue 8: token, origins */
		close(sfd);
		return -1;
	}
	for (int i = 0; nact == 0 && i < opts->nhosts; i++) {
		char err[512];
		if (listener_open(&s->listeners[i], opts->hosts[i], options_token_given(opts), err,
				  sizeof(err)) != 0) {
			log_error("Cannot listen", "error", err, NULL); /* one line per failure */
			for (int j = 0; j < i; j++) {
				listener_remove_file(&s->listeners[j]);
				close(s->listeners[j].fd);
			}
			close(sfd);
			return -1;
		}
		s->nlisteners++;
	}

	limits_init(&s->limits);
	s->limits.max[LIMIT_WORKSPACES] = opts->max_workspaces;
	s->limits.max[LIMIT_STREAMS] = opts->max_streams;
	claims_config_t cc = {
	    .create_grace_ms = opts->create_grace_ms,
	    .detach_grace_ms = opts->detach_grace_ms,
	    .idle_ms = opts->idle_ms,
	    .restart_min_ms = WORKER_RESTART_MIN_MS,
	    .restart_max_ms = WORKER_RESTART_MAX_MS,
	    .crash_window_ms = WORKER_CRASH_WINDOW_MS,
	    .crash_limit = WORKER_CRASH_LIMIT,
	    .max_workspaces = s->limits.max[LIMIT_WORKSPACES],
	};
	claims_effects_t fx = {
	    .ud = s,
	    .mint_id = fx_mint_id,
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

	h2o_config_init(&s->config);
	s->config.max_request_entity_size = HTTP_HARD_MAX_BODY;
	s->config.server_name = h2o_iovec_init(H2O_STRLIT("crush-supervisor"));
	http_env_t env = {
	    .claims = s->claims,
	    .streams = &s->hub,
	    .limits = &s->limits,
	    .metrics = &s->metrics,
	    .conns = &s->conns,
	    .forwarder = &s->forwarder,
	    .pinned = opts->pinned,
	    .shutdown = on_control_shutdown,
	    .arg = s,
	};
	s->loop = h2o_evloop_create();
	s->offload = offload_new(s->loop);
	env.offload = s->offload;
	s->http = http_register(&s->config, &env);
	gate_register(&s->gate, &s->config); /* after every handler: it puts itself first */
	const char *delay = getenv("CRUSH_TEST_RESOLVE_DELAY_MS");
	s->http->resolve_delay_ms = delay ? (unsigned)strtoul(delay, NULL, 10) : 0;
	const char *lookups = getenv("CRUSH_TEST_MAX_LOOKUPS"); /* test-only: a small queue */
	if (lookups != NULL)
		s->limits.max[LIMIT_LOOKUPS] = strtoull(lookups, NULL, 10);
	h2o_context_init(&s->ctx, s->loop, &s->config);
	s->accept_ctx.ctx = &s->ctx;
	s->accept_ctx.hosts = s->config.hosts;
	stream_hub_init(&s->hub, &s->ctx, on_stream_detach, s);
	s->hub.limits = &s->limits;
	s->hub.metrics = &s->metrics;
	proc_callbacks_t pcb = {
	    .ready = on_worker_ready,
	    .event = on_worker_event,
	    .exited = on_worker_exited,
	};
	procs_init(&s->procs, s->loop, s->offload, worker_path, opts->kill_ms, opts->ping_ms, &pcb);

	s->limits.max[LIMIT_IDLE] = opts->header_timeout_ms;
	conns_init(&s->conns, s->loop, &s->limits);
	s->gate.conns = &s->conns;
	forwarder_init(&s->forwarder, s->loop, opts->request_timeout_ms, &s->limits);
	h2o_timeout_init(s->loop, &s->accept_pause, ACCEPT_PAUSE_MS);
	s->resume_accept_te.cb = on_resume_accept;
	h2o_timeout_init(s->loop, &s->keepalive, STREAM_KEEPALIVE_MS);
	h2o_timeout_init(s->loop, &s->between, 0);
	s->between_te.cb = on_between;
	s->keepalive_entry.cb = on_keepalive;
	h2o_timeout_link(s->loop, &s->keepalive, &s->keepalive_entry);

	s->signal_sock = h2o_evloop_socket_create(s->loop, sfd, 0);
	s->signal_sock->data = s;
	h2o_socket_read_start(s->signal_sock, on_signal);
	for (int i = 0; i < s->nlisteners; i++) {
		s->listen_socks[i] =
		    h2o_evloop_socket_create(s->loop, s->listeners[i].fd, H2O_SOCKET_FLAG_DONT_READ);
		s->listen_socks[i]->data = s;
		h2o_socket_read_start(s->listen_socks[i], on_accept);
	}

	for (int i = 0; i < s->nlisteners; i++)
		log_info("Listening", "address", s->listeners[i].url, "worker", worker_path, "activated",
			 nact > 0 ? "true" : "false", NULL);
	return 0;
}

/* Workers' frames left over a pass's budget, and claims whose time is up. */
static void on_between(h2o_timeout_entry_t *te)
{
	server_t *s = H2O_STRUCT_FROM_MEMBER(server_t, between_te, te);
	procs_resume(&s->procs);
	claims_expire(s->claims, clock_ms());
}

/*
 * Work due between two passes runs from a 0 ms timeout linked here, after
 * a pass, not from its own callback (h2o 2.2.5 runs an entry linked during
 * its timeouts' run again in the same pass, and the loop would never poll
 * the sockets in between). It runs inside h2o_evloop_run on purpose: h2o's
 * evloop expects every socket write to start in one of its callbacks, after
 * which it runs the write's completion before it polls again. A write that
 * completes at once outside the loop leaves its socket polled for writing
 * with no write callback, and its next writable event aborts the process
 * (evloop.c.h, write_pending's assert): this is h2o internals we rely on.
 */
int server_run(server_t *s)
{
	while (!s->exiting) {
		uint64_t now = clock_ms(), dl = claims_next_deadline(s->claims);
		int32_t wait = INT32_MAX;
		if (dl != CLAIMS_NEVER)
			wait = dl <= now ? 0 : (dl - now > INT32_MAX ? INT32_MAX : (int32_t)(dl - now));
		if (h2o_evloop_run(s->loop, wait) != 0 && errno != EINTR) {
			log_error("Event loop failed", "error", strerror(errno), NULL);
			return 1;
		}
		if (!h2o_timeout_is_linked(&s->between_te) &&
		    (procs_resuming(&s->procs) || claims_next_deadline(s->claims) <= clock_ms()))
			h2o_timeout_link(s->loop, &s->between, &s->between_te);
	}
	if (h2o_timeout_is_linked(&s->between_te))
		h2o_timeout_unlink(&s->between_te);
	close_listeners(s);
	/* Let ended streams flush their last bytes, briefly. */
	uint64_t until = clock_ms() + 200;
	while (s->hub.count > 0 && clock_ms() < until)
		h2o_evloop_run(s->loop, 10);
	procs_finish(&s->procs);
	claims_free(s->claims);
	h2o_socket_close(s->signal_sock);
	h2o_timeout_unlink(&s->keepalive_entry);
	h2o_evloop_run(s->loop, 0); /* lets h2o free what it closed */
	if (h2o_timeout_is_linked(&s->resume_accept_te))
		h2o_timeout_unlink(&s->resume_accept_te);
	stream_hub_dispose(&s->hub);
	conns_dispose(&s->conns);
	http_dispose(s->http);
	offload_free(s->offload);
	log_info("Exited", NULL);
	return 0;
}
