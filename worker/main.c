/*
 * crush-worker: one process per workspace directory, exec'd by
 * crush-supervisor. It speaks only proto/ frames over the socketpair fd of
 * its command line: HELLO, READY once the directory watch is set up, then
 * fs EVENTs as the tree changes, and a RESPONSE to every REQUEST. It exits
 * on SIGTERM/SIGINT and when the supervisor's end of the pair closes.
 * This file owns the process, the loop and the socket; the tree is
 * watched by watch.c and messages are built by msg.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
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
#include "worker/msg.h"
#include "worker/watch.h"

/* Backpressure: above OUT_HIGH pending bytes the producer (inotify reads)
 * stops; they resume once the supervisor has drained the
 * backlog to OUT_LOW. A stopped inotify reader lets the kernel queue
 * overflow, which the watch then reports as one `overflow` event: loss is
 * announced, never silent. */
#define OUT_HIGH  (1024 * 1024)
#define OUT_LOW	  (256 * 1024)
#define READ_SIZE (64 * 1024)

/* The whole process; every ev watcher's data points back here. */
struct worker {
	struct ev_loop *loop;
	const char *id;	  /* workspace id, from argv */
	const char *root; /* workspace directory, from argv */
	int fd;		  /* our end of the socketpair */
	long parent;	  /* --parent: the supervisor we must die with */
	int stopping;	  /* ev_break requested; exit_code is final */
	int exit_code;
	int paused; /* producers stopped by backpressure */
	proto_decoder_t in;
	buf_t out;
	watch_t *watch;
	ev_io sock_r, sock_w, inotify;
	ev_signal sigterm, sigint;
};

static void stop(struct worker *wk, int code)
{
	if (wk->stopping)
		return;
	wk->stopping = 1;
	wk->exit_code = code;
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
	if (wk->paused) {
		ev_io_stop(wk->loop, &wk->inotify);
		return;
	}
	if (wk->watch != NULL)
		ev_io_start(wk->loop, &wk->inotify);
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

static void respond_error(struct worker *wk, uint32_t id, const char *text)
{
	json_t *r = json_object();

	json_object_set_new(r, "error", utf8_json_string(text));
	send_json(wk, PROTO_RESPONSE, id, r);
}

/* watch_cb: one fs event, published as the SSE envelope. */
static void on_fs(void *arg, enum watch_kind kind, const char *path, int is_dir, const char *from)
{
	struct worker *wk = arg;

	log_debug("fs event", "workspace_id", wk->id, "type", watch_kind_name(kind), "path", path, NULL);
	send_json(wk, PROTO_EVENT, 0, msg_fs_event(kind, path, is_dir, from));
}

static void handle_request(struct worker *wk, const proto_frame_t *f)
{
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
		if (f.type != PROTO_REQUEST || f.id == 0) {
			log_error("Protocol error from supervisor: unexpected frame", "workspace_id", wk->id,
				  "type", f.type == PROTO_REQUEST ? "request with id 0" : "not a request",
				  NULL);
			stop(wk, 1);
			return;
		}
		handle_request(wk, &f);
	}
	if (r < 0) {
		log_error("Protocol error from supervisor", "workspace_id", wk->id, "err", wk->in.err, NULL);
		stop(wk, 1);
		return;
	}
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
		log_error("Reading inotify events failed", "workspace_id", wk->id, "err", strerror(errno),
			  NULL);
		stop(wk, 1);
		return;
	}
	flush(wk);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct worker *wk = w->data;

	(void)loop, (void)revents;
	log_debug("Worker stopping", "workspace_id", wk->id, "signal", strsignal(w->signum), NULL);
	stop(wk, 0);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: crush-worker <workspace-id> <path> --fd N [--parent PID] [--data-dir DIR]\n"
		   "                    [--log-level debug|info|warn|error]\n"
		   "       crush-worker --version | --help\n");
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
			usage(stdout);
			exit(0);
		case 'v':
			printf("crush-worker %s (commit %s)\n", CRUSH_VERSION, crush_commit);
			exit(0);
		default:
			return -1;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "crush-worker: expected <workspace-id> <path>\n");
		return -1;
	}
	wk->id = argv[optind];
	wk->root = argv[optind + 1];
	if (*wk->id == '\0') {
		fprintf(stderr, "crush-worker: empty workspace id\n");
		return -1;
	}
	if (wk->root[0] != '/') {
		fprintf(stderr, "crush-worker: path must be absolute: %s\n", wk->root);
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
	watch_close(wk->watch);
	proto_decoder_free(&wk->in);
	buf_free(&wk->out);
	ev_loop_destroy(wk->loop);
	close(wk->fd);
}

int main(int argc, char **argv)
{
	struct worker wk = {.in = PROTO_DECODER_INIT, .out = BUF_INIT};
	const char *data_dir = NULL;
	char pid[16];
	int flags;

	if (parse_args(argc, argv, &wk, &data_dir) < 0) {
		usage(stderr);
		return 2;
	}
	/* Invariant 3: die with the supervisor, even on its SIGKILL. It spawns
	 * us vfork-style, so this is ours to set; --parent closes the window
	 * where it died before we got here. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (wk.parent > 0 && getppid() != (pid_t)wk.parent)
		return 1;
	signal(SIGPIPE, SIG_IGN); /* a closed pair shows up as EPIPE instead */
	flags = fcntl(wk.fd, F_GETFL);
	if (flags < 0 || fcntl(wk.fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
	    fcntl(wk.fd, F_SETFD, FD_CLOEXEC) < 0) {
		fprintf(stderr, "crush-worker: --fd %d: %s\n", wk.fd, strerror(errno));
		return 2;
	}
	if (chdir(wk.root) != 0)
		log_debug("Workspace directory not there yet", "workspace_id", wk.id, "path", wk.root, NULL);

	wk.loop = ev_default_loop(EVFLAG_AUTO);
	if (wk.loop == NULL) {
		log_error("Cannot start the event loop", "workspace_id", wk.id, NULL);
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

	send_json(&wk, PROTO_HELLO, 0,
		  json_pack("{s:i,s:i,s:o}", "version", PROTO_VERSION, "pid", (int)getpid(), "workspace_id",
			    utf8_json_string(wk.id)));
	flush(&wk);

	/* READY means "watching": a missing directory is waited for inside
	 * the watch, so readiness never waits for it to appear. */
	wk.watch = watch_open(wk.root, data_dir, on_fs, &wk);
	if (wk.watch == NULL) {
		log_error("Cannot watch the workspace directory", "workspace_id", wk.id, "path", wk.root,
			  "err", strerror(errno), NULL);
		free_worker(&wk);
		return 1;
	}
	ev_io_init(&wk.inotify, on_inotify, watch_fd(wk.watch), EV_READ);
	wk.inotify.data = &wk;
	send_json(&wk, PROTO_READY, 0, json_pack("{s:i}", "pid", (int)getpid()));
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	/* Not "Worker ready": the supervisor logs that once it gets READY. */
	log_debug(watch_active(wk.watch) ? "Watching workspace directory" : "Waiting for workspace directory",
		  "workspace_id", wk.id, "path", wk.root, "pid", pid, NULL);
	flush(&wk);

	if (!wk.stopping)
		ev_run(wk.loop, 0);
	free_worker(&wk);
	return wk.exit_code;
}
