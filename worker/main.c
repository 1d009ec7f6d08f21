/*
 * crush-worker: one process per workspace directory, exec'd by
 * crush-supervisor. It speaks only proto/ frames over the socketpair fd of
 * its command line: HELLO, then READY once the directory watch is set up
 * and the supervisor's `setup` request (the first creator's env, kept as
 * data) is answered, then fs and watch EVENTs as the tree changes and
 * is walked (in bounded steps on this loop), and a RESPONSE
 * to every REQUEST. A worker that cannot run says why in a FAIL frame
 * before it exits. It exits on SIGTERM/SIGINT and when the supervisor's
 * end of the pair closes.
 * This file owns the process, the loop, the socket and the setup; the
 * tree is watched by watch.c (root.c opens it), messages are built by
 * msg.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <ev.h>
#include <jansson.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/utf8.h"
#include "common/version.h"
#include "proto/proto.h"
#include "worker/api.h"
#include "worker/calls.h"
#include "worker/cfgstore.h"
#include "worker/msg.h"
#include "worker/root.h"
#include "worker/shell.h"
#include "worker/store.h"
#include "worker/watch.h"

/* Backpressure: above OUT_HIGH pending bytes the producer (inotify reads)
 * stops; they resume once the supervisor has drained the
 * backlog to OUT_LOW. A stopped inotify reader lets the kernel queue
 * overflow, which the watch then reports as one `overflow` event: loss is
 * announced, never silent. */
#define OUT_HIGH  (1024 * 1024)
#define OUT_LOW	  (256 * 1024)
#define READ_SIZE (64 * 1024)
/* The watch's walks: at most this many entries per loop turn (and a few
 * ms, see watch_work), so pings and requests are answered while a big
 * tree is walked. */
#define WATCH_BUDGET 1024
/* How long a failing worker waits for its FAIL frame to be taken. */
#define FAIL_FLUSH_MS 1000
/* At most this much of the env's keys goes into the setup's log line. */
#define LOG_KEYS_MAX 1024
#define LOG_KEY_MAX  128

/* The whole process; every ev watcher's data points back here. */
struct worker {
	struct ev_loop *loop;
	const char *id;	  /* workspace id, from argv */
	const char *root; /* the supervisor's resolved key, from argv; never resolved again */
	int fd;		  /* our end of the socketpair */
	long parent;	  /* --parent: the supervisor we must die with */
	int stopping;	  /* ev_break requested; exit_code is final */
	int exit_code;
	int paused;	/* producers stopped by backpressure */
	int said_hello; /* HELLO queued: it goes first, whatever follows */
	int ready;	/* READY sent: events may flow */
	int setup_done; /* the setup request was answered */
	char **env;	/* the first creator's KEY=VALUE entries, as data for the
			 * commands a workspace runs (SPEC §8); never our own
			 * environment (invariant 8). NULL-terminated, owned. */
	size_t nenv;
	proto_decoder_t in;
	buf_t out;
	watch_t *watch;
	calls_t *calls; /* routed requests (calls.c), answered by api.c */
	api_t *api;
	cfgstore_t *cfg; /* data dir lock and config (cfgstore.c) */
	store_t *store;	 /* <data_dir>/crush.db (store.c) */
	shell_t *shell;	 /* shell runs (shell.c), reaped by its ev_child watchers */
	ev_io sock_r, sock_w, inotify;
	ev_prepare flush_w;   /* before each poll: send what any callback queued */
	ev_timer watch_timer; /* the watch's walks, retries and status (watch_next) */
	ev_signal sigterm, sigint;
};

static void stop(struct worker *wk, int code)
{
	if (wk->stopping)
		return;
	wk->stopping = 1;
	wk->exit_code = code;
	if (wk->loop != NULL)
		ev_break(wk->loop, EVBREAK_ALL);
}

/* Starts or stops the producers as the backlog crosses the marks. */
static void update_flow(struct worker *wk)
{
	size_t pending = buf_size(&wk->out);

	if (!wk->paused && pending > OUT_HIGH) {
		wk->paused = 1;
		log_debug("Output backlog high; pausing producers", "workspace_id", wk->id, NULL);
	} else if (wk->paused && pending <= OUT_LOW) {
		wk->paused = 0;
		log_debug("Output backlog drained; resuming producers", "workspace_id", wk->id, NULL);
	}
	shell_pause(wk->shell, wk->paused); /* shell output waits too */
	if (wk->paused) {
		ev_io_stop(wk->loop, &wk->inotify);
		ev_timer_stop(wk->loop, &wk->watch_timer);
		return;
	}
	/* No event may precede READY (the supervisor kills for it): until
	 * then the kernel queues them, and the walk waits. */
	if (wk->watch != NULL && wk->ready) {
		long next = watch_next(wk->watch);

		ev_io_start(wk->loop, &wk->inotify);
		ev_timer_stop(wk->loop, &wk->watch_timer);
		if (next >= 0) {
			ev_timer_set(&wk->watch_timer, (double)next / 1000.0, 0.);
			ev_timer_start(wk->loop, &wk->watch_timer);
		}
	}
}

/* Writes what the socket takes; the write watcher finishes the rest. */
static void flush(struct worker *wk)
{
	while (!wk->stopping && buf_size(&wk->out) > 0) {
		ssize_t n = write(wk->fd, buf_data(&wk->out), buf_size(&wk->out));

		if (n > 0) {
			buf_consume(&wk->out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
			log_debug("Supervisor closed the channel; exiting", "workspace_id", wk->id, NULL);
			stop(wk, 0);
		} else {
			log_error("Write to supervisor failed", "workspace_id", wk->id, "err",
				  strerror(errno), NULL);
			stop(wk, 1);
		}
		return;
	}
	if (wk->stopping)
		return;
	if (buf_size(&wk->out) > 0)
		ev_io_start(wk->loop, &wk->sock_w);
	else
		ev_io_stop(wk->loop, &wk->sock_w);
	update_flow(wk);
}

/* Queues obj (consumed) as one frame; flush() sends it. */
static void send_json(struct worker *wk, uint8_t type, uint32_t id, json_t *obj)
{
	if (msg_encode(&wk->out, type, id, obj) < 0)
		log_error("Cannot encode frame; dropped", "workspace_id", wk->id, NULL);
}

/* An event of the store's or the shell's (api_emit_cb, shell_emit_cb). */
static void on_service_event(void *arg, json_t *event)
{
	send_json(arg, PROTO_EVENT, 0, event);
}

static void say_hello(struct worker *wk)
{
	if (wk->said_hello)
		return;
	wk->said_hello = 1;
	send_json(wk, PROTO_HELLO, 0,
		  json_pack("{s:i,s:i,s:o}", "version", PROTO_VERSION, "pid", (int)getpid(), "workspace_id",
			    utf8_json_string(wk->id)));
}

/* Writes what is queued before we exit, blocking up to FAIL_FLUSH_MS. */
static void flush_sync(struct worker *wk)
{
	struct pollfd pfd = {.fd = wk->fd, .events = POLLOUT};

	for (int waited = 0; buf_size(&wk->out) > 0 && waited < FAIL_FLUSH_MS;) {
		ssize_t n = write(wk->fd, buf_data(&wk->out), buf_size(&wk->out));

		if (n > 0)
			buf_consume(&wk->out, (size_t)n);
		else if (n < 0 && errno == EINTR)
			continue;
		else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			poll(&pfd, 1, 10);
			waited += 10; /* counted as if it waited it all: bounded */
		} else
			return; /* the supervisor is gone: no one to tell */
	}
}

/*
 * Gives up: says why in a FAIL frame (after HELLO, which always goes
 * first), logs it, and ends the run with status 1. The supervisor reports
 * the reason at reap, so a create's 500 names it ("worker failed to start:
 * <reason>"); code is one of PROTO_FAIL_*, for programs.
 */
static void fail(struct worker *wk, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct worker *wk, const char *code, const char *fmt, ...)
{
	char why[PATH_MAX * 2 + 128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_error("Worker cannot run", "workspace_id", wk->id, "code", code, "reason", why, NULL);
	say_hello(wk);
	send_json(wk, PROTO_FAIL, 0, json_pack("{s:o,s:s}", "error", utf8_json_string(why), "code", code));
	flush_sync(wk);
	stop(wk, 1);
}

/* A watch that could not be set up (watch_open, watch_process): errno
 * err as watch.h lists them. */
static void fail_watch(struct worker *wk, int err)
{
	char changed[PATH_MAX * 2 + 64];

	switch (err) {
	case EMFILE:
		fail(wk, PROTO_FAIL_INOTIFY_INSTANCES,
		     "inotify instance limit reached: raise the fs.inotify.max_user_instances sysctl");
		break;
	case ENOSPC:
		fail(wk, PROTO_FAIL_INOTIFY_WATCHES,
		     "inotify watch limit reached: raise the fs.inotify.max_user_watches sysctl");
		break;
	case EACCES:
	case EPERM:
		fail(wk, PROTO_FAIL_PERMISSION, "permission denied: %s", wk->root);
		break;
	case ELOOP:
		root_describe_change(wk->root, changed, sizeof(changed));
		fail(wk, PROTO_FAIL_DIR_CHANGED, "%s", changed);
		break;
	default:
		fail(wk, PROTO_FAIL_ERROR, "cannot watch %s: %s", wk->root, strerror(err));
	}
}

static void respond_error(struct worker *wk, uint32_t id, const char *text)
{
	json_t *r = json_object();

	json_object_set_new(r, "error", utf8_json_string(text));
	send_json(wk, PROTO_RESPONSE, id, r);
}

/* watch_cb: one fs or watch event, published as the SSE envelope. */
static void on_watch_event(void *arg, const struct watch_event *ev)
{
	struct worker *wk = arg;

	log_debug(ev->kind <= WATCH_KIND_FS_LAST ? "fs event" : "watch event", "workspace_id", wk->id, "type",
		  watch_kind_name(ev->kind), "path", ev->path, NULL);
	send_json(wk, PROTO_EVENT, 0, msg_watch_event(ev));
}

/* cfgstore_publish_cb: config_changed, after READY only (the READY
 * carries the config of its time). */
static void on_config_event(void *arg, json_t *event)
{
	struct worker *wk = arg;

	if (!wk->ready) {
		json_decref(event);
		return;
	}
	send_json(wk, PROTO_EVENT, 0, event);
}

static void send_ready(struct worker *wk)
{
	char pid[16];

	wk->ready = 1;
	/* The config and the data dir as resolved go with READY: the
	 * supervisor puts them in the Workspace object, which upstream
	 * clients read them from. */
	send_json(wk, PROTO_READY, 0,
		  json_pack("{s:i, s:o, s:o}", "pid", (int)getpid(), "config", api_config(wk->api),
			    "data_dir", utf8_json_string(cfgstore_data_dir(wk->cfg))));
	cfgstore_start(wk->cfg);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	/* Not "Worker ready": the supervisor logs that once it gets READY. */
	log_debug(watch_active(wk->watch) ? "Watching workspace directory"
					  : "Waiting for workspace directory",
		  "workspace_id", wk->id, "path", wk->root, "pid", pid, NULL);
}

/* One env entry as the setup takes it: KEY=VALUE with a non-empty key
 * (which holds no '=' by construction) and no NUL anywhere. */
static int env_entry_ok(const json_t *v)
{
	const char *s = json_string_value(v), *eq;

	if (s == NULL || strlen(s) != json_string_length(v))
		return 0;
	eq = strchr(s, '=');
	return eq != NULL && eq != s;
}

/*
 * The setup request (PROTOCOL.md): the first creator's env, as data. It
 * is checked and kept, never applied to this process; only the commands a
 * later feature runs for the workspace get it (SPEC §8). Logged by keys
 * only: values may be secrets. Answering it makes us ready.
 */
static void handle_setup(struct worker *wk, uint32_t id, const json_t *req)
{
	const json_t *env = json_object_get(req, "env");
	char text[64], pid[16];
	buf_t keys = BUF_INIT;
	size_t i;

	if (wk->setup_done) {
		respond_error(wk, id, "bad request: setup was done already");
		return;
	}
	if (env != NULL && !json_is_array(env)) {
		respond_error(wk, id, "bad request: env must be an array of KEY=VALUE strings");
		return;
	}
	for (i = 0; i < json_array_size(env); i++) {
		if (!env_entry_ok(json_array_get(env, i))) {
			snprintf(text, sizeof(text), "bad request: env[%zu] is not KEY=VALUE", i);
			respond_error(wk, id, text);
			return;
		}
	}
	wk->nenv = json_array_size(env);
	wk->env = calloc(wk->nenv + 1, sizeof(*wk->env));
	if (wk->env == NULL)
		abort();
	for (i = 0; i < wk->nenv; i++) {
		const char *s = json_string_value(json_array_get(env, i));
		size_t klen = (size_t)(strchr(s, '=') - s);

		if ((wk->env[i] = strdup(s)) == NULL)
			abort();
		/* Bounded, and cut on a character boundary (s is valid UTF-8). */
		if (klen > LOG_KEY_MAX)
			klen = utf8_valid_prefix(s, LOG_KEY_MAX);
		if (buf_size(&keys) < LOG_KEYS_MAX)
			buf_appendf(&keys, "%s%.*s", i > 0 ? "," : "", (int)klen, s);
	}
	buf_append(&keys, "", 1);
	wk->setup_done = 1;
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	log_debug("Workspace setup", "workspace_id", wk->id, "pid", pid, "env_keys", buf_data(&keys), NULL);
	buf_free(&keys);
	shell_set_env(wk->shell, (const char *const *)wk->env);
	send_json(wk, PROTO_RESPONSE, id, json_pack("{s:{s:I}}", "result", "env", (json_int_t)wk->nenv));
	send_ready(wk);
}

static void protocol_error(struct worker *wk, const char *why)
{
	log_error("Protocol error from supervisor", "workspace_id", wk->id, "err", why, NULL);
	stop(wk, 1);
}

static void handle_request(struct worker *wk, const proto_frame_t *f)
{
	/* A routed request's head, read without a tree (flatjson.h): the
	 * common case, one per client request. */
	const char *why;
	int r = calls_request_flat(wk->calls, f->id, f->payload, f->len, &why);
	if (r < 0)
		protocol_error(wk, why);
	if (r <= 0)
		return;
	json_error_t err;
	json_t *req = json_loadb(f->payload, f->len, 0, &err);
	const char *method = json_string_value(json_object_get(req, "method"));
	char text[JSON_ERROR_TEXT_LENGTH + 32];

	if (req == NULL || !json_is_object(req)) {
		snprintf(text, sizeof(text), "bad request: %s", req == NULL ? err.text : "not an object");
		respond_error(wk, f->id, text);
	} else if (method == NULL) {
		respond_error(wk, f->id, "bad request: method is required");
	} else if (strcmp(method, "ping") == 0) {
		send_json(wk, PROTO_RESPONSE, f->id, json_pack("{s:s}", "result", "pong"));
	} else if (strcmp(method, "setup") == 0) {
		handle_setup(wk, f->id, req);
	} else if (strcmp(method, "presence") == 0) {
		if (api_set_presence(wk->api, req) != 0)
			respond_error(wk, f->id, "bad request: sessions must map session ids to counts");
		else
			send_json(wk, PROTO_RESPONSE, f->id, json_pack("{s:s}", "result", "ok"));
	} else if (strcmp(method, "http") == 0) {
		const char *why;
		if (calls_request(wk->calls, f->id, req, &why) != 0)
			protocol_error(wk, why);
	} else {
		snprintf(text, sizeof(text), "unknown method: %.64s", method);
		respond_error(wk, f->id, text);
	}
	json_decref(req);
}

static void on_sock_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct worker *wk = w->data;
	char buf[READ_SIZE];
	proto_frame_t f;
	ssize_t n = read(wk->fd, buf, sizeof(buf));
	int r = 0;

	(void)loop, (void)revents;
	if (n == 0 || (n < 0 && errno == ECONNRESET)) {
		log_debug("Supervisor closed the channel; exiting", "workspace_id", wk->id, NULL);
		stop(wk, 0);
		return;
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		log_error("Read from supervisor failed", "workspace_id", wk->id, "err", strerror(errno),
			  NULL);
		stop(wk, 1);
		return;
	}
	proto_feed(&wk->in, buf, (size_t)n);
	while (!wk->stopping && (r = proto_next(&wk->in, &f)) == 1) {
		const char *why = NULL;
		if (f.id == 0)
			why = "a frame with id 0";
		else if (f.type == PROTO_REQUEST)
			handle_request(wk, &f);
		else if (f.type == PROTO_DATA || f.type == PROTO_END || f.type == PROTO_CANCEL ||
			 f.type == PROTO_ACK)
			calls_frame(wk->calls, &f, &why);
		else
			why = "a frame type the supervisor does not send";
		if (why != NULL) {
			protocol_error(wk, why);
			return;
		}
	}
	if (r < 0) {
		log_error("Protocol error from supervisor", "workspace_id", wk->id, "err", wk->in.err, NULL);
		stop(wk, 1);
		return;
	}
	flush(wk);
}

/* Frames queued outside a socket callback (a timer answering a routed
 * request) go out before the loop sleeps. */
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct worker *wk = w->data;

	(void)loop, (void)revents;
	if (!wk->stopping && buf_size(&wk->out) > 0 && !ev_is_active(&wk->sock_w))
		flush(wk);
}

static void on_sock_write(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop, (void)revents;
	flush(w->data);
}

static void on_inotify(struct ev_loop *loop, ev_io *w, int revents)
{
	struct worker *wk = w->data;

	(void)loop, (void)revents;
	if (watch_process(wk->watch) < 0) {
		/* ELOOP: the directory came back through a symlink. */
		if (errno == ELOOP)
			fail_watch(wk, errno);
		else
			fail(wk, PROTO_FAIL_ERROR, "reading inotify events: %s", strerror(errno));
		return;
	}
	flush(wk);
}

/* A bounded step of the watch's own work; flush() schedules the next. */
static void on_watch_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct worker *wk = w->data;

	(void)loop, (void)revents;
	watch_work(wk->watch, WATCH_BUDGET);
	flush(wk);
}

/* Test knobs from the environment (the supervisor's, never a client's). */
static void watch_knobs(struct worker *wk)
{
	const char *max = getenv("CRUSH_TEST_MAX_WATCHES"), *delay = getenv("CRUSH_TEST_WALK_DELAY_US");

	if (max != NULL)
		watch_set_max_watches(wk->watch, (unsigned)strtoul(max, NULL, 10));
	if (delay != NULL)
		watch_set_walk_delay(wk->watch, (unsigned)strtoul(delay, NULL, 10));
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct worker *wk = w->data;

	(void)loop, (void)revents;
	log_debug("Worker stopping", "workspace_id", wk->id, "signal", strsignal(w->signum), NULL);
	stop(wk, 0);
}

static void usage(FILE *f, int full)
{
	fprintf(f, "usage: crush-worker <workspace-id> <directory> --fd N [--parent PID] [--data-dir DIR]\n"
		   "                    [--log-level debug|info|warn|error]\n"
		   "       crush-worker --version | --help\n");
	if (!full)
		return;
	fprintf(f, "\n"
		   "Run by crush-supervisor, one per workspace; not meant to be run by hand.\n"
		   "  <workspace-id>  the id its HELLO must name\n"
		   "  <directory>     the workspace's resolved directory: absolute, canonical, no\n"
		   "                  symlink on its way (it is refused if one appears), and\n"
		   "                  waited for if it does not exist yet\n"
		   "  --fd N          its end of the supervisor's socketpair (proto/PROTOCOL.md)\n"
		   "  --parent PID    the supervisor; refuses to run under any other parent\n"
		   "                  (a --worker wrapper must exec crush-worker)\n"
		   "  --data-dir DIR  the workspace's data dir, whose changes are not reported\n"
		   "                  (default: as upstream Crush finds it, the nearest .crush\n"
		   "                  up to the git root, else <directory>/.crush)\n"
		   "  --log-level L   logfmt lines on stderr at L and above (default info)\n"
		   "The environment is the supervisor's; a client's env arrives as data over\n"
		   "the socketpair (the setup request) and is never applied to this process.\n");
}

/* Parses argv into wk and *data_dir; returns 0, or -1 after printing why. */
static int parse_args(int argc, char **argv, struct worker *wk, const char **data_dir)
{
	static const struct option opts[] = {
	    {"fd", required_argument, NULL, 'f'},
	    {"parent", required_argument, NULL, 'p'},
	    {"data-dir", required_argument, NULL, 'd'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'v'},
	    {NULL, 0, NULL, 0},
	};
	char *end;
	long fd = -1;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			errno = 0;
			fd = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || fd < 0 || fd > INT_MAX) {
				fprintf(stderr, "crush-worker: invalid --fd: %s\n", optarg);
				return -1;
			}
			break;
		case 'd':
			*data_dir = optarg;
			break;
		case 'p':
			errno = 0;
			wk->parent = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || wk->parent <= 0) {
				fprintf(stderr, "crush-worker: invalid --parent: %s\n", optarg);
				return -1;
			}
			break;
		case 'l':
			if (log_parse_level(optarg, &log_min_level) != 0) {
				fprintf(stderr, "crush-worker: invalid --log-level: %s\n", optarg);
				return -1;
			}
			break;
		case 'h':
			usage(stdout, 1);
			exit(0);
		case 'v':
			printf("crush-worker %s (commit %s)\n", CRUSH_VERSION, crush_commit);
			exit(0);
		default:
			return -1;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "crush-worker: expected <workspace-id> <directory>\n");
		return -1;
	}
	wk->id = argv[optind];
	wk->root = argv[optind + 1];
	if (*wk->id == '\0') {
		fprintf(stderr, "crush-worker: empty workspace id\n");
		return -1;
	}
	if (!root_canonical(wk->root)) {
		fprintf(stderr, "crush-worker: directory must be absolute and canonical: %s\n", wk->root);
		return -1;
	}
	if (fd < 0) {
		fprintf(stderr, "crush-worker: --fd is required\n");
		return -1;
	}
	if (fcntl((int)fd, F_GETFD) < 0) {
		fprintf(stderr, "crush-worker: --fd %ld: %s\n", fd, strerror(errno));
		return -1;
	}
	wk->fd = (int)fd;
	return 0;
}

static void free_worker(struct worker *wk)
{
	/* Unanswered calls first: their cancel hooks let go of what they hold
	 * (a run's call); then every run is ended: TERM, KILL, reaped. */
	if (wk->calls != NULL)
		calls_free(wk->calls);
	shell_free(wk->shell);
	api_free(wk->api);
	store_close(wk->store);
	cfgstore_free(wk->cfg);
	watch_close(wk->watch);
	proto_decoder_free(&wk->in);
	buf_free(&wk->out);
	if (wk->loop != NULL)
		ev_loop_destroy(wk->loop);
	close(wk->fd);
	for (size_t i = 0; i < wk->nenv; i++)
		free(wk->env[i]);
	free(wk->env);
}

/* Makes the directory our cwd when it exists, through root_open: a chdir
 * by name would follow a swapped symlink. Returns 0, or -1 after fail()
 * when the key now resolves elsewhere. */
static int enter_root(struct worker *wk)
{
	int fd = root_open(wk->root);

	if (fd < 0 && errno == ELOOP) {
		fail_watch(wk, ELOOP);
		return -1;
	}
	if (fd < 0 || fchdir(fd) != 0)
		log_debug("Not in the workspace directory (not there yet?)", "workspace_id", wk->id, "path",
			  wk->root, "err", strerror(errno), NULL);
	if (fd >= 0)
		close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	struct worker wk = {.in = PROTO_DECODER_INIT, .out = BUF_INIT};
	const char *data_dir = NULL;
	int flags;

	if (parse_args(argc, argv, &wk, &data_dir) < 0) {
		usage(stderr, 0);
		return 2;
	}
	/* Invariant 3: die with the supervisor, even on its SIGKILL. It spawns
	 * us vfork-style, so this is ours to set. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* A shell run's process that outlives its shell (a background job,
	 * a command that left its group) is ours to reap (the loop's
	 * SIGCHLD reaps any child), not init's; once we are gone it goes to
	 * the supervisor, which kills it (supervisor/proc.c, procs_reap). */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	signal(SIGPIPE, SIG_IGN); /* a closed pair shows up as EPIPE instead */
	flags = fcntl(wk.fd, F_GETFL);
	if (flags < 0 || fcntl(wk.fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
	    fcntl(wk.fd, F_SETFD, FD_CLOEXEC) < 0) {
		fprintf(stderr, "crush-worker: --fd %d: %s\n", wk.fd, strerror(errno));
		return 2;
	}
	say_hello(&wk);
	/* --parent closes the window where the supervisor died before the
	 * prctl. Under anything but the supervisor (a --worker wrapper that
	 * forks, strace) the death signal would follow the wrong process:
	 * refused, saying so, never silently. */
	if (wk.parent > 0 && getppid() != (pid_t)wk.parent) {
		fail(&wk, PROTO_FAIL_WRONG_PARENT,
		     "started by pid %d, not by the supervisor (pid %ld): a --worker wrapper must exec "
		     "crush-worker",
		     (int)getppid(), wk.parent);
		free_worker(&wk);
		return 1;
	}
	if (enter_root(&wk) < 0) {
		free_worker(&wk);
		return 1;
	}

	wk.loop = ev_default_loop(EVFLAG_AUTO);
	if (wk.loop == NULL) {
		fail(&wk, PROTO_FAIL_ERROR, "cannot start the event loop");
		free_worker(&wk);
		return 1;
	}
	ev_io_init(&wk.sock_r, on_sock_read, wk.fd, EV_READ);
	ev_io_init(&wk.sock_w, on_sock_write, wk.fd, EV_WRITE);
	ev_signal_init(&wk.sigterm, on_signal, SIGTERM);
	ev_signal_init(&wk.sigint, on_signal, SIGINT);
	wk.sock_r.data = wk.sock_w.data = wk.sigterm.data = wk.sigint.data = &wk;
	ev_signal_start(wk.loop, &wk.sigterm);
	ev_signal_start(wk.loop, &wk.sigint);
	ev_io_start(wk.loop, &wk.sock_r);
	ev_prepare_init(&wk.flush_w, on_prepare);
	wk.flush_w.data = &wk;
	ev_prepare_start(wk.loop, &wk.flush_w);
	/* The data dir (resolved as upstream does unless --data-dir names
	 * it) is ours before READY, or the create fails: a Go crush or
	 * another daemon holding its lock is a 409. */
	char why[PATH_MAX * 2 + 256];
	enum cfgstore_err cerr;
	wk.cfg = cfgstore_open(wk.loop, wk.root, data_dir, wk.id, CRUSH_VERSION, on_config_event, &wk, &cerr,
			       why, sizeof(why));
	if (wk.cfg == NULL) {
		fail(&wk, PROTO_FAIL_ERROR, "%s", why);
		free_worker(&wk);
		return 1;
	}
	const char *abs_data = cfgstore_data_dir(wk.cfg);
	const char *tr = getenv("CRUSH_TEST_ROUTES"); /* test-only: /_test/... routes */
	wk.api = api_new(wk.loop, abs_data, tr != NULL && strcmp(tr, "1") == 0);
	api_set_cfgstore(wk.api, wk.cfg);
	wk.calls = calls_new(&wk.out, api_dispatch, wk.api);
	wk.store = store_new(abs_data);
	wk.shell = shell_new(wk.loop, wk.root, wk.store, on_service_event, &wk);
	api_set_services(wk.api, wk.store, wk.shell, wk.root, on_service_event, &wk);

	flush(&wk);

	/* READY means "the root is watched and set up": the tree under it is
	 * walked afterwards, in bounded steps (scanning .. scan_complete), and
	 * a missing directory is waited for inside the watch, so readiness
	 * waits for neither; READY goes out once the setup request is
	 * answered (handle_setup). */
	wk.watch = watch_open(wk.root, abs_data, on_watch_event, &wk);
	if (wk.watch == NULL) {
		fail_watch(&wk, errno);
		free_worker(&wk);
		return 1;
	}
	watch_knobs(&wk);
	/* After the watch, whose refusal (permission, symlink) is the one to
	 * report for a directory we cannot use at all. */
	if (cfgstore_lock(wk.cfg, &cerr, why, sizeof(why)) < 0) {
		fail(&wk, cerr == CFGSTORE_LOCKED ? PROTO_FAIL_DATA_DIR_LOCKED : PROTO_FAIL_ERROR, "%s", why);
		free_worker(&wk);
		return 1;
	}
	/* The session store opens at its first use (store.c), not here: its
	 * migrations on a new database would add milliseconds to every
	 * create, and its pages to every idle worker. A database it cannot
	 * open is reported by the request that needs it, with the reason. */
	ev_io_init(&wk.inotify, on_inotify, watch_fd(wk.watch), EV_READ);
	ev_timer_init(&wk.watch_timer, on_watch_timer, 0., 0.);
	wk.inotify.data = wk.watch_timer.data = &wk;

	if (!wk.stopping)
		ev_run(wk.loop, 0);
	free_worker(&wk);
	return wk.exit_code;
}
