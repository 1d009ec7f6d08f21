/*
 * workspace: the supervisor's shell state of one workspace (beside the
 * claims core's claims_ws_t): its worker process, its event feed, the
 * creates waiting for it, its Workspace JSON object (SPEC §4), and the
 * last watch status its worker reported (the object's "watch" field).
 * Ownership: made by the claims ws_new effect and hung on ws->shell; freed
 * by ws_free, after its streams and waiters have left.
 */
#ifndef CRUSH_WORKSPACE_H
#define CRUSH_WORKSPACE_H

#include <stddef.h>

#include <h2o.h>

#include "common/buf.h"
#include "common/hmap.h"
#include "supervisor/claims.h"
#include "supervisor/stream.h"

struct proc;

typedef struct workspace {
	claims_ws_t *ws;
	struct proc *proc;	    /* live worker process, or NULL */
	stream_feed_t feed;	    /* its events; feed.pid is the worker's */
	h2o_linklist_t waiters;	    /* creates waiting for ready (http.c) */
	h2o_linklist_t fwd_waiting; /* routed requests waiting for ready (forward.c) */
	unsigned fwd_count;	    /* routed requests waiting or in flight */
	char *config_json;	    /* the worker's config (from READY), or NULL */
	hmap_t sessions;	    /* current session per client (workspace_session_t) */
	char *presence_sent;	    /* the last presence told to the worker */
	char created_at[32];	    /* RFC 3339, UTC */
	char *fail_message;	    /* the answer to waiting creates instead of the reason, or NULL */
	int fail_status;	    /* HTTP status of a failed start: 500, or 503 (resources) */
	char *fixed_json;	    /* the object's fixed fields, made once */
	char *data_dir;		    /* the worker's resolved data dir (READY), or NULL */
	char *watch_json;	    /* the last watch status (one small object), owned */
} workspace_t;

workspace_t *workspace_new(claims_ws_t *ws, stream_hub_t *hub);
void workspace_free(workspace_t *w);

/* A client's current session ("" clears it). */
void workspace_set_session(workspace_t *w, const char *client_id, const char *session_id);
/* Attached clients per current session changed (attach, detach, a
 * current-session, a worker ready): tells the worker when it differs from
 * what it was told, so it fills upstream's attached_clients. */
void workspace_presence_update(workspace_t *w);
/* A new worker knows nothing yet. */
void workspace_presence_reset(workspace_t *w);
/* A failed start's own message for waiting creates (NULL: the reason). */
void workspace_set_fail_message(workspace_t *w, const char *msg);
/* The worker's config (READY's "config"); kept as its JSON text. */
void workspace_set_config(workspace_t *w, const char *json, size_t len);

/* The one data_dir default: as the first creator sent it, else
 * <resolved_path>/.crush; shown until the worker reports its own. */
void workspace_data_dir(const claims_ws_t *ws, char *out, size_t len);
/* The data dir the worker resolved (READY's "data_dir"), as upstream
 * resolves it: the Workspace object's data_dir from now on. */
void workspace_set_data_dir(workspace_t *w, const char *dir);

/* A new worker is ready: until its first status, it is walking the tree. */
void workspace_watch_reset(workspace_t *w);
/* Its worker is gone: nothing watches the tree until a new one is ready
 * (reason "worker restarting"). */
void workspace_watch_lost(workspace_t *w);

/*
 * Keeps the status a `watch` event of w's worker carries (its
 * payload.payload.watch, PROTOCOL.md), so that a client that attaches
 * later finds it in the Workspace object. Anything else, or a status that
 * is malformed or over its bounds (WORKSPACE_WATCH_*), is left alone.
 * Returns 1 when the status was kept.
 */
#define WORKSPACE_WATCH_SAMPLE 8    /* unwatched paths kept */
#define WORKSPACE_WATCH_BYTES  4096 /* their bytes, all told */
#define WORKSPACE_WATCH_REASON 256  /* bytes of the reason */
int workspace_watch_event(workspace_t *w, const char *json, size_t len);

/* Appends w's Workspace object. Its first creator's fields never change,
 * so they are serialised once; each call formats only the live ones
 * (joins are the hot path). */
void workspace_json(buf_t *out, workspace_t *w);

#endif
