/*
 * floor.h: the minimal server the floor helpers (h2_floor.c,
 * relay_floor.c) share: Debian's libh2o-evloop (h2o 2.2.5), one host, one
 * handler for every path, on a listener the helper opened. Header-only,
 * so each helper stays one compile line in bench/run.sh.
 */
#ifndef BENCH_FLOOR_H
#define BENCH_FLOOR_H

#include <h2o.h>

static h2o_accept_ctx_t floor_accept_ctx;

static void floor_on_accept(h2o_socket_t *listener, const char *err)
{
	h2o_socket_t *sock;
	if (err != NULL)
		return;
	while ((sock = h2o_evloop_socket_accept(listener)) != NULL)
		h2o_accept(&floor_accept_ctx, sock);
}

/* Serves every request that comes to listen_fd with on_req, on the loop
 * it returns (run it with h2o_evloop_run). Once per process. */
static h2o_evloop_t *floor_serve(int listen_fd, int (*on_req)(h2o_handler_t *, h2o_req_t *))
{
	static h2o_globalconf_t config;
	static h2o_context_t ctx;
	h2o_config_init(&config);
	h2o_hostconf_t *host =
	    h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
	h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
	h2o_create_handler(path, sizeof(h2o_handler_t))->on_req = on_req;
	h2o_evloop_t *loop = h2o_evloop_create();
	h2o_context_init(&ctx, loop, &config);
	floor_accept_ctx.ctx = &ctx;
	floor_accept_ctx.hosts = config.hosts;
	h2o_socket_read_start(h2o_evloop_socket_create(loop, listen_fd, H2O_SOCKET_FLAG_DONT_READ),
			      floor_on_accept);
	return loop;
}

#endif
