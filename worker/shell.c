/*
 * shell: shell runs on the worker's loop (see shell.h). Each run is a
 * child, two non-blocking pipes (ev_io), an ev_child, a timeout and a
 * kill timer; the run ends when the child is reaped and both pipes are
 * at EOF, or shortly after the reap when something in its group still
 * holds a pipe (it is killed then).
 */
#include "worker/shell.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/id.h"
#include "common/log.h"
#include "common/utf8.h"

extern char **environ;

#define READ_CHUNK (64 * 1024)
/* After the shell exits, how long a pipe its descendants hold may stay
 * open before the rest of the group is killed. */
#define PIPE_GRACE 0.2

/* Forced on every run, as upstream does (internal/shell/run.go): never an
 * interactive editor or pager, colour as if on a terminal. */
static const char *const forced_env[] = {
    "TERM=xterm-256color", "GIT_EDITOR=false", "EDITOR=false",	"VISUAL=false",
    "JJ_EDITOR=false",	   "JJ_PAGER=cat",     "GIT_PAGER=cat", "PAGER=cat",
    "COLORTERM=truecolor", "CLICOLOR_FORCE=1", "FORCE_COLOR=1",
};
#define NFORCED (sizeof(forced_env) / sizeof(forced_env[0]))

typedef struct run run_t;

typedef struct pipe_in {
	ev_io w;
	run_t *run;
	int idx; /* 0 stdout, 1 stderr */
	int open;
	char tail[4]; /* an incomplete UTF-8 sequence held for the next event */
	size_t ntail;
} pipe_in_t;

struct run {
	shell_t *sh;
	run_t *next, **pprev;
	call_t *call; /* NULL once its client left */
	char id[ID_LEN + 1];
	char *session_id, *client_id, *command;
	pid_t pid;
	int exited, status;
	pipe_in_t in[2];
	buf_t text[2]; /* what was kept of stdout, stderr */
	size_t total;
	int truncated, timed_out, cancelled, killing;
	ev_child child;
	ev_timer timeout, kill_timer, grace;
};

struct shell {
	struct ev_loop *loop;
	char *root;
	store_t *store;
	shell_emit_cb emit;
	void *arg;
	char **env; /* the creator's entries */
	run_t *runs;
	unsigned nruns;
	int paused; /* shell_pause: pipes not read */
};

shell_t *shell_new(struct ev_loop *loop, const char *root, store_t *store, shell_emit_cb emit, void *arg)
{
	shell_t *sh = calloc(1, sizeof(*sh));
	if (sh == NULL || (sh->root = strdup(root)) == NULL)
		abort();
	sh->loop = loop;
	sh->store = store;
	sh->emit = emit;
	sh->arg = arg;
	return sh;
}

static void free_env(char **env)
{
	for (size_t i = 0; env && env[i]; i++)
		free(env[i]);
	free(env);
}

void shell_set_env(shell_t *sh, const char *const *env)
{
	size_t n = 0;
	while (env && env[n])
		n++;
	free_env(sh->env);
	sh->env = calloc(n + 1, sizeof(char *));
	if (sh->env == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((sh->env[i] = strdup(env[i])) == NULL)
			abort();
}

unsigned shell_active(const shell_t *sh)
{
	return sh->nruns;
}

void shell_pause(shell_t *sh, int paused)
{
	if (sh == NULL || sh->paused == !!paused)
		return;
	sh->paused = !!paused;
	for (run_t *r = sh->runs; r != NULL; r = r->next)
		for (int i = 0; i < 2; i++)
			if (r->in[i].open) {
				if (paused)
					ev_io_stop(sh->loop, &r->in[i].w);
				else
					ev_io_start(sh->loop, &r->in[i].w);
			}
}

/* --- the environment: ours, then the creator's, then the forced ones;
 * a later KEY replaces an earlier one in place. */

static size_t key_len(const char *kv)
{
	const char *eq = strchr(kv, '=');
	return eq ? (size_t)(eq - kv) : strlen(kv);
}

static void env_put(char **env, size_t *n, const char *kv)
{
	size_t k = key_len(kv);
	for (size_t i = 0; i < *n; i++) {
		if (key_len(env[i]) == k && strncmp(env[i], kv, k) == 0) {
			env[i] = (char *)kv;
			return;
		}
	}
	env[(*n)++] = (char *)kv;
}

/* A NULL-terminated array of borrowed strings; free() the array only. */
static char **build_env(const shell_t *sh)
{
	size_t cap = NFORCED + 1, n = 0;
	for (char **e = environ; e && *e; e++)
		cap++;
	for (char **e = sh->env; e && *e; e++)
		cap++;
	char **env = calloc(cap, sizeof(char *));
	if (env == NULL)
		abort();
	for (char **e = environ; e && *e; e++)
		env_put(env, &n, *e);
	for (char **e = sh->env; e && *e; e++)
		env_put(env, &n, *e);
	for (size_t i = 0; i < NFORCED; i++)
		env_put(env, &n, forced_env[i]);
	env[n] = NULL;
	return env;
}

/* --- events */

static void emit(run_t *r, const char *type, json_t *payload)
{
	json_object_set_new(payload, "run_id", json_string(r->id));
	json_object_set_new(payload, "session_id", utf8_json_string(r->session_id));
	r->sh->emit(r->sh->arg, json_pack("{s:s, s:{s:s, s:o}}", "type", "shell", "payload", "type", type,
					  "payload", payload));
}

/* Bytes at the end of s[0, len) that begin a UTF-8 sequence not yet
 * complete: held back so an event never splits a character. */
static size_t incomplete_tail(const char *s, size_t len)
{
	for (size_t back = 1; back <= 3 && back <= len; back++) {
		unsigned char c = (unsigned char)s[len - back];
		if ((c & 0xc0) == 0x80)
			continue; /* a continuation byte: look further back */
		size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
		return need > back ? back : 0;
	}
	return 0;
}

/* Streams data (kept output) of pipe p as one `output` event. */
static void emit_chunk(pipe_in_t *p, const char *data, size_t len, int final)
{
	buf_t b = BUF_INIT;
	buf_append(&b, p->tail, p->ntail);
	buf_append(&b, data, len);
	p->ntail = final ? 0 : incomplete_tail(buf_data(&b), buf_size(&b));
	size_t n = buf_size(&b) - p->ntail;
	memcpy(p->tail, buf_data(&b) + n, p->ntail);
	if (n > 0)
		emit(p->run, "output",
		     json_pack("{s:s, s:o}", "stream", p->idx == 0 ? "stdout" : "stderr", "data",
			       utf8_json_stringn(buf_data(&b), n)));
	buf_free(&b);
}

/* --- ending a run */

static void killpg_quiet(pid_t pgid, int sig)
{
	if (pgid > 0)
		kill(-pgid, sig);
}

static void begin_kill(run_t *r)
{
	if (r->killing || r->exited)
		return;
	r->killing = 1;
	killpg_quiet(r->pid, SIGTERM);
	ev_timer_start(r->sh->loop, &r->kill_timer);
}

static void close_pipe(run_t *r, int i)
{
	pipe_in_t *p = &r->in[i];
	if (!p->open)
		return;
	ev_io_stop(r->sh->loop, &p->w);
	close(p->w.fd);
	p->open = 0;
}

static void free_run(run_t *r)
{
	for (int i = 0; i < 2; i++) {
		close_pipe(r, i);
		buf_free(&r->text[i]);
	}
	ev_timer_stop(r->sh->loop, &r->timeout);
	ev_timer_stop(r->sh->loop, &r->kill_timer);
	ev_timer_stop(r->sh->loop, &r->grace);
	ev_child_stop(r->sh->loop, &r->child);
	if ((*r->pprev = r->next) != NULL)
		r->next->pprev = r->pprev;
	r->sh->nruns--;
	free(r->session_id);
	free(r->client_id);
	free(r->command);
	free(r);
}

static int exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

/* Records the run in its session as upstream does (shell.PersistOutput):
 * a user message whose parts are the command and a finish. A session
 * that is gone is skipped, as upstream skips it. */
static void record(run_t *r, const char *output, int code)
{
	if (r->sh->store == NULL || r->session_id[0] == '\0')
		return;
	json_t *parts =
	    json_pack("[{s:s, s:{s:o, s:o, s:i}}, {s:s, s:{s:s, s:i}}]", "type", "shell_command", "data",
		      "command", utf8_json_string(r->command), "output", utf8_json_string(output),
		      "exit_code", code, "type", "finish", "data", "reason", "stop", "time", 0);
	int status = 0;
	char err[256];
	json_t *msg =
	    store_message_create(r->sh->store, r->session_id, "user", parts, &status, err, sizeof(err));
	json_decref(parts);
	if (msg != NULL)
		r->sh->emit(r->sh->arg, json_pack("{s:s, s:{s:s, s:o}}", "type", "message", "payload", "type",
						  "created", "payload", msg));
	else if (status == 404)
		log_debug("Skipping shell command persistence: session no longer exists", "session_id",
			  r->session_id, NULL);
	else
		log_error("Failed to persist shell command output", "session_id", r->session_id, "err", err,
			  NULL);
}

static void finish(run_t *r)
{
	/* Whatever is left of its group (a background job) goes with it. */
	killpg_quiet(r->pid, SIGKILL);
	for (int i = 0; i < 2; i++) {
		if (r->in[i].ntail > 0)
			emit_chunk(&r->in[i], "", 0, 1);
		close_pipe(r, i);
	}
	buf_t out = BUF_INIT;
	buf_append(&out, buf_data(&r->text[0]), buf_size(&r->text[0]));
	if (buf_size(&r->text[1]) > 0) {
		if (buf_size(&out) > 0)
			buf_append(&out, "\n", 1);
		buf_append(&out, buf_data(&r->text[1]), buf_size(&r->text[1]));
	}
	if (r->truncated)
		buf_appendf(&out, "\n[output truncated: more than %u bytes]", SHELL_MAX_OUTPUT);
	buf_append(&out, "", 1);
	int code = exit_code(r->status);
	record(r, buf_data(&out), code);
	emit(r, "finished",
	     json_pack("{s:i, s:b, s:b, s:b}", "exit_code", code, "truncated", r->truncated, "timed_out",
		       r->timed_out, "cancelled", r->cancelled));
	if (r->call != NULL) {
		json_t *ans =
		    json_pack("{s:o, s:i, s:s, s:b, s:b}", "output",
			      utf8_json_stringn(buf_data(&out), buf_size(&out) - 1), "exit_code", code,
			      "run_id", r->id, "truncated", r->truncated, "timed_out", r->timed_out);
		char *text = json_dumps(ans, JSON_COMPACT);
		json_decref(ans);
		if (text == NULL)
			abort();
		calls_respond(r->call, 200, NULL, text, strlen(text));
		free(text);
	}
	buf_free(&out);
	free_run(r);
}

static void maybe_finish(run_t *r)
{
	if (!r->exited)
		return;
	if (!r->in[0].open && !r->in[1].open)
		finish(r);
	else if (!ev_is_active(&r->grace))
		ev_timer_start(r->sh->loop, &r->grace);
}

/* --- watchers */

/* One read of pipe p: 1 data, 0 EOF (closed now), -1 nothing yet. */
static int pump(pipe_in_t *p)
{
	run_t *r = p->run;
	char buf[READ_CHUNK];
	ssize_t n = read(p->w.fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return -1;
	if (n <= 0) {
		if (p->ntail > 0)
			emit_chunk(p, "", 0, 1);
		close_pipe(r, p->idx);
		return 0;
	}
	size_t keep = (size_t)n;
	if (r->total + keep > SHELL_MAX_OUTPUT) {
		keep = SHELL_MAX_OUTPUT - r->total;
		r->truncated = 1; /* the rest is read and dropped: the child never blocks */
	}
	if (keep > 0) {
		buf_append(&r->text[p->idx], buf, keep);
		r->total += keep;
		emit_chunk(p, buf, keep, 0);
	}
	return 1;
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	pipe_in_t *p = (pipe_in_t *)w;
	(void)loop, (void)revents;
	if (pump(p) == 0)
		maybe_finish(p->run);
}

static void on_child(struct ev_loop *loop, ev_child *w, int revents)
{
	run_t *r = (run_t *)((char *)w - offsetof(run_t, child));
	(void)revents;
	ev_child_stop(loop, w);
	r->exited = 1;
	r->status = w->rstatus;
	ev_timer_stop(loop, &r->timeout);
	ev_timer_stop(loop, &r->kill_timer);
	maybe_finish(r);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	run_t *r = (run_t *)((char *)w - offsetof(run_t, timeout));
	(void)loop, (void)revents;
	r->timed_out = 1;
	begin_kill(r);
}

static void on_kill_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	run_t *r = (run_t *)((char *)w - offsetof(run_t, kill_timer));
	(void)loop, (void)revents;
	killpg_quiet(r->pid, SIGKILL);
}

/* The shell is gone but its descendants hold a pipe: kill them, take
 * what is buffered (bounded), end. */
static void on_grace(struct ev_loop *loop, ev_timer *w, int revents)
{
	run_t *r = (run_t *)((char *)w - offsetof(run_t, grace));
	(void)loop, (void)revents;
	killpg_quiet(r->pid, SIGKILL);
	for (int i = 0; i < 2; i++)
		for (int guard = 0; r->in[i].open && guard < 32 && pump(&r->in[i]) == 1; guard++)
			;
	finish(r);
}

static void on_call_cancel(call_t *c, void *data)
{
	run_t *r = data;
	(void)c;
	r->call = NULL; /* calls answers 499 itself */
	r->cancelled = 1;
	begin_kill(r);
}

unsigned shell_cancel_session(shell_t *sh, const char *session_id)
{
	unsigned n = 0;
	for (run_t *r = sh->runs; r != NULL; r = r->next) {
		if (strcmp(r->session_id, session_id) != 0 || r->exited)
			continue;
		r->cancelled = 1;
		begin_kill(r);
		n++;
	}
	return n;
}

/* --- starting */

/* In the child, before exec: only async-signal-safe calls. */
static void child(pid_t parent, const char *root, const char *cmd, char **env, int out, int err)
{
	sigset_t none;
	setsid();
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* A worker that died before the line above sends no death signal:
	 * its command must not run without it. */
	if (getppid() != parent)
		_exit(127);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL); /* the worker ignores SIGPIPE: not its children */
	int null = open("/dev/null", O_RDONLY);
	if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(127);
	if (close_range(3, ~0u, 0) != 0)
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	if (chdir(root) != 0) {
		static const char msg[] = "crush: cannot enter the workspace directory\n";
		ssize_t unused = write(2, msg, sizeof(msg) - 1);
		(void)unused;
		_exit(127);
	}
	char *argv[] = {"sh", "-c", (char *)cmd, NULL};
	execve("/bin/sh", argv, env);
	_exit(127);
}

void shell_run(shell_t *sh, call_t *c, const char *session_id, const char *client_id, const char *body,
	       size_t len)
{
	json_t *req = json_loadb(body, len, 0, NULL);
	json_t *cmd = json_object_get(req, "command"), *tmo = json_object_get(req, "timeout_ms"),
	       *tw = json_object_get(req, "term_width");
	if (!json_is_object(req) || (cmd && !json_is_string(cmd) && !json_is_null(cmd)) ||
	    (tw && !json_is_integer(tw) && !json_is_null(tw)) ||
	    (tmo && !(json_is_integer(tmo) && json_integer_value(tmo) > 0) && !json_is_null(tmo)) ||
	    strlen(json_string_value(cmd) ? json_string_value(cmd) : "") !=
		(json_string_value(cmd) ? json_string_length(cmd) : 0)) {
		json_decref(req);
		calls_error(c, 400, "failed to decode request");
		return;
	}
	if (json_string_value(cmd) != NULL && json_string_length(cmd) > SHELL_MAX_COMMAND) {
		json_decref(req);
		char msg[64];
		snprintf(msg, sizeof(msg), "command too long: at most %u bytes", SHELL_MAX_COMMAND);
		calls_error(c, 400, msg);
		return;
	}
	if (sh->nruns >= SHELL_MAX_RUNS) {
		json_decref(req);
		calls_error(c, 429, "too many shell commands running in this workspace");
		return;
	}
	int po[2] = {-1, -1}, pe[2] = {-1, -1};
	/* Non-blocking on our end only: the command's writes block as usual. */
	if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0 ||
	    fcntl(po[0], F_SETFL, O_NONBLOCK) != 0 || fcntl(pe[0], F_SETFL, O_NONBLOCK) != 0) {
		int e = errno;
		for (int i = 0; i < 2; i++) {
			if (po[i] >= 0)
				close(po[i]);
			if (pe[i] >= 0)
				close(pe[i]);
		}
		json_decref(req);
		log_error("Cannot start a shell command", "err", strerror(e), NULL);
		calls_error(c, 500, "cannot start the command: out of file descriptors");
		return;
	}
	run_t *r = calloc(1, sizeof(*r));
	if (r == NULL)
		abort();
	r->sh = sh;
	r->call = c;
	id_new(r->id);
	if ((r->session_id = strdup(session_id)) == NULL || (r->client_id = strdup(client_id)) == NULL ||
	    (r->command = strdup(json_string_value(cmd) ? json_string_value(cmd) : "")) == NULL)
		abort();
	double timeout = json_is_integer(tmo) ? (double)json_integer_value(tmo) / 1000.0
					      : SHELL_DEFAULT_TIMEOUT_MS / 1000.0;
	json_decref(req);

	char **env = build_env(sh);
	pid_t self = getpid();
	pid_t pid = fork();
	if (pid == 0)
		child(self, sh->root, r->command, env, po[1], pe[1]);
	int e = errno;
	free(env);
	close(po[1]);
	close(pe[1]);
	if (pid < 0) {
		close(po[0]);
		close(pe[0]);
		free(r->session_id);
		free(r->client_id);
		free(r->command);
		free(r);
		log_error("Cannot start a shell command", "err", strerror(e), NULL);
		calls_error(c, 500, "cannot start the command");
		return;
	}
	r->pid = pid;
	if ((r->next = sh->runs) != NULL)
		r->next->pprev = &r->next;
	sh->runs = r;
	r->pprev = &sh->runs;
	sh->nruns++;
	int fds[2] = {po[0], pe[0]};
	for (int i = 0; i < 2; i++) {
		r->in[i].run = r;
		r->in[i].idx = i;
		r->in[i].open = 1;
		ev_io_init(&r->in[i].w, on_read, fds[i], EV_READ);
		if (!sh->paused)
			ev_io_start(sh->loop, &r->in[i].w);
	}
	ev_child_init(&r->child, on_child, pid, 0);
	ev_child_start(sh->loop, &r->child);
	ev_timer_init(&r->timeout, on_timeout, timeout, 0.0);
	ev_timer_start(sh->loop, &r->timeout);
	ev_timer_init(&r->kill_timer, on_kill_timer, SHELL_KILL_TIMEOUT, 0.0);
	ev_timer_init(&r->grace, on_grace, PIPE_GRACE, 0.0);
	call_on_cancel(c, on_call_cancel, r);
	char pidtext[16];
	snprintf(pidtext, sizeof(pidtext), "%d", (int)pid);
	log_debug("Shell command started", "run_id", r->id, "session_id", r->session_id, "pid", pidtext,
		  NULL);
	emit(r, "started",
	     json_pack("{s:o, s:o, s:i}", "command", utf8_json_string(r->command), "client_id",
		       utf8_json_string(r->client_id), "pid", (int)pid));
}

void shell_free(shell_t *sh)
{
	if (sh == NULL)
		return;
	for (run_t *r = sh->runs; r != NULL; r = r->next) {
		r->call = NULL;
		if (!r->exited)
			killpg_quiet(r->pid, SIGTERM);
	}
	/* Wait for them (bounded), then KILL whatever is left. */
	struct timespec step = {0, 10 * 1000 * 1000};
	for (int waited = 0; waited < (int)(SHELL_KILL_TIMEOUT * 100); waited++) {
		int live = 0;
		for (run_t *r = sh->runs; r != NULL; r = r->next) {
			if (!r->exited && waitpid(r->pid, &r->status, WNOHANG) == r->pid)
				r->exited = 1;
			live += !r->exited;
		}
		if (!live)
			break;
		nanosleep(&step, NULL);
	}
	while (sh->runs != NULL) {
		run_t *r = sh->runs;
		killpg_quiet(r->pid, SIGKILL);
		if (!r->exited)
			waitpid(r->pid, &r->status, 0);
		r->exited = 1;
		free_run(r);
	}
	free_env(sh->env);
	free(sh->root);
	free(sh);
}
