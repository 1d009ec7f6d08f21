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

static h2o_accept_ctx_t accept_ctx;
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

static void on_accept(h2o_socket_t *listener, const char *err)
{
	h2o_socket_t *sock;
	if (err != NULL)
		return;
	while ((sock = h2o_evloop_socket_accept(listener)) != NULL)
		h2o_accept(&accept_ctx, sock);
}

int main(int argc, char **argv)
{
	static h2o_globalconf_t config;
	static h2o_context_t ctx;
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
	h2o_config_init(&config);
	h2o_hostconf_t *host =
	    h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
	h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
	h2o_create_handler(path, sizeof(h2o_handler_t))->on_req = on_req;
	h2o_evloop_t *loop = h2o_evloop_create();
	h2o_context_init(&ctx, loop, &config);
	accept_ctx.ctx = &ctx;
	accept_ctx.hosts = config.hosts;
	h2o_socket_read_start(h2o_evloop_socket_create(loop, fd, H2O_SOCKET_FLAG_DONT_READ), on_accept);
	printf("ready\n");
	fflush(stdout);
	for (;;)
		h2o_evloop_run(loop, INT32_MAX);
}
