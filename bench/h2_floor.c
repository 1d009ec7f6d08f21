/*
 * h2_floor: what Debian's libh2o-evloop (h2o 2.2.5) itself keeps per idle
 * h2c stream, the anchor of the "RSS per idle h2c stream" row. A minimal
 * server on a unix socket: every request gets a 200 text/event-stream head
 * and one ": connected" comment (what the daemon's streams send first),
 * then is held open with nothing more to say, as an idle event stream is.
 * No claims, no hub, no log: only h2o's connection, stream and request.
 *
 * Usage: h2_floor SOCKET_PATH. Prints "ready" on stdout once listening;
 * runs until SIGTERM (the default action ends it).
 */
#define H2O_USE_LIBUV 0
#include <h2o.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "floor.h"

static h2o_iovec_t hello = {": connected\n\n", 13};

/* The generator is static: held streams never proceed or stop anything. */
static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
	(void)gen;
	(void)req;
}

static h2o_generator_t gen = {on_proceed, NULL};

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
	(void)self;
	req->res.status = 200;
	req->res.reason = "OK";
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
		       H2O_STRLIT("text/event-stream"));
	h2o_start_response(req, &gen);
	h2o_send(req, &hello, 1, H2O_SEND_STATE_IN_PROGRESS);
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (argc != 2 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: h2_floor SOCKET_PATH\n");
		return 2;
	}
	strcpy(sa.sun_path, argv[1]);
	unlink(argv[1]);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4096) != 0) {
		perror("h2_floor: listen");
		return 1;
	}
	h2o_evloop_t *loop = floor_serve(fd, on_req);
	printf("ready\n");
	fflush(stdout);
	for (;;)
		h2o_evloop_run(loop, INT32_MAX);
}
