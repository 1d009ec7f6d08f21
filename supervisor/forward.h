/*
 * forward: requests routed to a workspace's worker (SPEC §8 "Routing").
 * A request under /v1/workspaces/{id}/... that the supervisor does not
 * answer itself becomes a call on the worker (proc.h). The answer's head
 * waits for its end or the end of the loop turn: a short answer goes out
 * whole, with its Content-Length; a longer one streams back as it
 * arrives, one batch in flight to h2o and at most PROTO_WINDOW frames
 * held here. A request for a starting or
 * restarting worker waits for READY; it waits, and then waits for its
 * answer's head, at most the request timeout (504 after). A client that
 * leaves cancels its call. A worker that dies or breaks the protocol
 * fails its calls with 502.
 * Ownership: a forwarded request lives in its request's pool; the dispose
 * hook cancels what is still under way.
 */
#ifndef CRUSH_FORWARD_H
#define CRUSH_FORWARD_H

#include <stdint.h>

#include <h2o.h>

#include "supervisor/limits.h"
#include "supervisor/workspace.h"

typedef struct forwarder {
	h2o_evloop_t *loop;
	h2o_timeout_t timeout;	 /* the request timeout */
	h2o_timeout_t next_turn; /* 0 ms: the end of this loop turn */
	limits_t *limits;
} forwarder_t;

void forwarder_init(forwarder_t *fw, h2o_evloop_t *loop, uint64_t timeout_ms, limits_t *limits);

/* Routes req to w's worker: path is below the workspace ("/config"),
 * client_id the asking client ("" when none). */
void forward_start(forwarder_t *fw, h2o_req_t *req, workspace_t *w, const char *client_id, const char *path,
		   size_t pathlen);
/* w's worker is ready: its waiting requests go. */
void forward_ready(workspace_t *w);
/* w is closing: its waiting requests get status (and the message). */
void forward_fail_waiting(workspace_t *w, int status, const char *why);

#endif
