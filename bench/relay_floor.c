/*
 * relay_floor: the least a front process can do to answer an HTTP request
 * from a second process, the anchor of the routed p50 row. A minimal
 * Debian h2o 2.2.5 server (floor.h) on 127.0.0.1:PORT:
 *
 *   /health   answered at once: 200, no body (as the daemon's /v1/health)
 *   anything else   relayed: an 8-byte id goes to a child process over a
 *             socketpair (the ids a loop turn collects go in one write at
 *             its end, as the daemon batches its calls); the child answers
 *             each id with the id and BODY_BYTES bytes (a plain blocking
 *             read/write loop: no event loop, no parsing, no framing); the
 *             answer goes to the client with its Content-Length.
 *
 * No token, no JSON, no protocol checks, no timeouts: whatever the daemon
 * spends past this is its own. At most SLOTS requests are in flight (the
 * benchmark keeps 32); past that h2o answers 404.
 *
 * Usage: relay_floor PORT BODY_BYTES [CHILD_CPU]. The child pins itself
 * to CHILD_CPU when given (the daemon's worker runs there). Prints
 * "ready" on stdout once listening; runs until SIGTERM (the default
 * action ends it, and the child sees EOF and exits).
 */
#define H2O_USE_LIBUV 0
#include <arpa/inet.h>
#include <h2o.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "floor.h"

#define SLOTS	   4096 /* ids: at most this many requests in flight */
#define ANSWER_MAX 4096 /* BODY_BYTES: the child holds SLOTS answers (16 MiB at most) */

static h2o_req_t *slots[SLOTS];
static uint64_t free_ids[SLOTS];
static size_t nfree;
static char out[SLOTS * 8]; /* the turn's ids: below a socketpair's buffer, so one write takes them */
static size_t outlen;
static int child_fd;
static size_t body_len;
static h2o_evloop_t *loop;
static h2o_timeout_t turn_end;
static h2o_timeout_entry_t flush_te;

static void child(int fd, size_t len, int cpu)
{
	static char in[SLOTS * 8];
	size_t have = 0; /* bytes of a partial id at in's start */
	char *ans = malloc((8 + len) * SLOTS);
	if (ans == NULL)
		_exit(1);
	memset(ans, 'x', (8 + len) * SLOTS);
	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) != 0)
			_exit(1);
	}
	for (;;) {
		ssize_t n = read(fd, in + have, sizeof(in) - have);
		if (n <= 0)
			_exit(0);
		have += (size_t)n;
		size_t k = have / 8, o = 0;
		for (size_t i = 0; i < k; i++, o += 8 + len)
			memcpy(ans + o, in + i * 8, 8);
		memmove(in, in + k * 8, have - k * 8);
		have -= k * 8;
		for (size_t w = 0; w < o;) {
			ssize_t m = write(fd, ans + w, o - w);
			if (m <= 0)
				_exit(0);
			w += (size_t)m;
		}
	}
}

static void on_flush(h2o_timeout_entry_t *te)
{
	(void)te;
	for (size_t w = 0; w < outlen;) {
		ssize_t m = write(child_fd, out + w, outlen - w);
		if (m <= 0)
			abort(); /* the child is gone, or a full socketpair: out fits in its buffer */
		w += (size_t)m;
	}
	outlen = 0;
}

static void on_dispose(void *p)
{
	uint64_t id = *(uint64_t *)p;
	if (slots[id] != NULL) { /* the client left first: the answer is dropped */
		slots[id] = NULL;
		free_ids[nfree++] = id;
	}
}

static void on_answer(h2o_socket_t *sock, const char *err)
{
	static h2o_generator_t gen = {NULL, NULL};
	static size_t have; /* bytes of a partial answer, kept in ans */
	static char *ans;
	if (err != NULL)
		abort();
	if (ans == NULL && (ans = malloc(8 + body_len)) == NULL)
		abort();
	h2o_buffer_t *b = sock->input;
	size_t off = 0;
	while (off < b->size) {
		size_t take = 8 + body_len - have;
		if (take > b->size - off)
			take = b->size - off;
		memcpy(ans + have, b->bytes + off, take);
		have += take;
		off += take;
		if (have < 8 + body_len)
			break;
		have = 0;
		uint64_t id;
		memcpy(&id, ans, 8);
		h2o_req_t *req = slots[id];
		if (req == NULL)
			continue;
		slots[id] = NULL;
		free_ids[nfree++] = id;
		req->res.status = 200;
		req->res.reason = "OK";
		req->res.content_length = body_len;
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
			       H2O_STRLIT("application/json"));
		h2o_iovec_t body = h2o_strdup(&req->pool, ans + 8, body_len);
		h2o_start_response(req, &gen);
		h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
	}
	h2o_buffer_consume(&sock->input, off);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
	static h2o_generator_t gen = {NULL, NULL};
	(void)self;
	if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/health"))) {
		req->res.status = 200;
		req->res.reason = "OK";
		req->res.content_length = 0;
		h2o_start_response(req, &gen);
		h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
		return 0;
	}
	if (nfree == 0)
		return -1; /* h2o answers 404 */
	uint64_t id = free_ids[--nfree];
	slots[id] = req;
	*(uint64_t *)h2o_mem_alloc_shared(&req->pool, sizeof(uint64_t), on_dispose) = id;
	memcpy(out + outlen, &id, 8);
	outlen += 8;
	if (!h2o_timeout_is_linked(&flush_te))
		h2o_timeout_link(loop, &turn_end, &flush_te);
	return 0;
}

int main(int argc, char **argv)
{
	int sv[2], one = 1, cpu = argc == 4 ? atoi(argv[3]) : -1;
	if (argc < 3 || argc > 4 || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535 || atoi(argv[2]) < 0 ||
	    atoi(argv[2]) > ANSWER_MAX || (argc == 4 && (cpu < 0 || cpu >= CPU_SETSIZE))) {
		fprintf(stderr, "usage: relay_floor PORT BODY_BYTES [CHILD_CPU] (BODY_BYTES <= %d)\n",
			ANSWER_MAX);
		return 2;
	}
	body_len = (size_t)atoi(argv[2]);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		perror("relay_floor: socketpair");
		return 1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("relay_floor: fork");
		return 1;
	}
	if (pid == 0) {
		close(sv[0]);
		child(sv[1], body_len, cpu);
	}
	close(sv[1]);
	child_fd = sv[0];

	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4096) != 0) {
		perror("relay_floor: listen");
		return 1;
	}
	for (size_t i = 0; i < SLOTS; i++)
		free_ids[nfree++] = SLOTS - 1 - i;
	loop = floor_serve(fd, on_req);
	h2o_timeout_init(loop, &turn_end, 0);
	flush_te.cb = on_flush;
	h2o_socket_read_start(h2o_evloop_socket_create(loop, child_fd, 0), on_answer);
	printf("ready\n");
	fflush(stdout);
	for (;;)
		h2o_evloop_run(loop, INT32_MAX);
}
