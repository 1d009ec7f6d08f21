/*
 * bench_worker: a stand-in for crush-worker that produces events on
 * demand, for the fan-out benchmark. It speaks proto/PROTOCOL.md over the
 * socketpair, through the project's own codec (build/libcrush.a):
 *
 *   argv: <workspace-id> <path> --fd N [anything else is ignored]
 *   -> HELLO {"version":1,"pid":P,"workspace_id":ID}
 *   <- REQUEST {"method":"setup",...} -> RESPONSE {"result":{}}, READY {"pid":P}
 *   <- REQUEST {"method":"ping"}  -> RESPONSE {"result":"pong"} (same id);
 *      any other method           -> RESPONSE {"error":"..."}
 *   SIGUSR1 -> N EVENT frames {"type":"bench","payload":{"seq":i}},
 *      i = 0..N-1, N from $BENCH_EMIT (default 20000), written as fast as
 *      the socket takes them (non-blocking writes, poll for POLLOUT).
 *   Exits 0 on SIGTERM/SIGINT, on EOF/ECONNRESET/EPIPE of the pair.
 *
 * The N frames are encoded once, at start, so a round costs the worker a
 * memcpy and the writes: what the benchmark times is the supervisor.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/buf.h"
#include "proto/proto.h"

static int fd = -1;
static buf_t out = BUF_INIT;

static void frame(uint8_t type, uint32_t id, const char *json)
{
	if (proto_encode(&out, type, id, json, strlen(json)) != 0) {
		fprintf(stderr, "bench_worker: cannot encode frame\n");
		exit(1);
	}
}

/* 0 on progress or EAGAIN, -1 when the supervisor is gone. */
static int flush(void)
{
	while (buf_size(&out) > 0) {
		ssize_t n = write(fd, buf_data(&out), buf_size(&out));
		if (n > 0) {
			buf_consume(&out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -1;
	}
	return 0;
}

/* Crude but enough: the supervisor sends {"method":"setup",...} first
 * (READY follows its answer, PROTOCOL.md), then pings. */
static void on_request(const proto_frame_t *f)
{
	char json[64];

	if (memmem(f->payload, f->len, "\"setup\"", 7) != NULL) {
		frame(PROTO_RESPONSE, f->id, "{\"result\":{}}");
		snprintf(json, sizeof(json), "{\"pid\":%d}", (int)getpid());
		frame(PROTO_READY, 0, json);
	} else if (f->len >= 16 && memmem(f->payload, f->len, "\"ping\"", 6) != NULL)
		frame(PROTO_RESPONSE, f->id, "{\"result\":\"pong\"}");
	else
		frame(PROTO_RESPONSE, f->id, "{\"error\":\"bench_worker: unknown method\"}");
}

int main(int argc, char **argv)
{
	const char *id = NULL;
	char json[512];
	long emit = 20000;
	const char *e = getenv("BENCH_EMIT");

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--fd") == 0 && i + 1 < argc)
			fd = atoi(argv[++i]);
		else if (strncmp(argv[i], "--", 2) == 0)
			i++; /* --data-dir X, --log-level L: ignored */
		else if (id == NULL)
			id = argv[i];
	}
	if (id == NULL || fd < 0 || strlen(id) > 64) {
		fprintf(stderr, "usage: bench_worker <id> <path> --fd N\n");
		return 2;
	}
	if (e != NULL && atol(e) > 0)
		emit = atol(e);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGPIPE, SIG_IGN);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		perror("bench_worker: signalfd");
		return 1;
	}

	/* The whole burst, encoded once. */
	buf_t burst = BUF_INIT;
	for (long i = 0; i < emit; i++) {
		int n = snprintf(json, sizeof(json), "{\"type\":\"bench\",\"payload\":{\"seq\":%ld}}", i);
		proto_encode(&burst, PROTO_EVENT, 0, json, (size_t)n);
	}

	snprintf(json, sizeof(json), "{\"version\":%d,\"pid\":%d,\"workspace_id\":\"%s\"}", PROTO_VERSION,
		 (int)getpid(), id);
	frame(PROTO_HELLO, 0, json);

	proto_decoder_t dec = PROTO_DECODER_INIT;
	char rbuf[65536];
	for (;;) {
		if (flush() != 0)
			return 0;
		struct pollfd p[2] = {
		    {.fd = fd, .events = POLLIN | (buf_size(&out) > 0 ? POLLOUT : 0)},
		    {.fd = sfd, .events = POLLIN},
		};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo != SIGUSR1)
					return 0;
				buf_append(&out, buf_data(&burst), buf_size(&burst));
			}
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(fd, rbuf, sizeof(rbuf));
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				return 0;
			if (n > 0) {
				proto_feed(&dec, rbuf, (size_t)n);
				proto_frame_t f;
				int r;
				while ((r = proto_next(&dec, &f)) == 1)
					if (f.type == PROTO_REQUEST)
						on_request(&f);
				if (r < 0) {
					fprintf(stderr, "bench_worker: protocol error: %s\n", dec.err);
					return 1;
				}
			}
		}
	}
}
