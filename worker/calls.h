/*
 * calls: the worker's side of routed HTTP requests (PROTOCOL.md, "Routed
 * requests"). It collects each request's body (DATA frames up to END),
 * hands the whole request to the dispatcher, and sends the answer back as
 * a RESPONSE head, DATA frames and END, never more than PROTO_WINDOW DATA
 * frames ahead of the supervisor's ACKs. It does no I/O: frames go to the
 * output buffer the owner flushes.
 *
 * Every request gets exactly one answer, cancelled or not: a CANCEL makes
 * an unanswered call answer 499 at once (its on_cancel hook runs first),
 * and cuts the body of an answer under way short with END.
 * Ownership: calls_t owns every call; a call_t handed to the dispatcher
 * stays valid until calls_respond (or its cancel) and must not be used
 * after.
 */
#ifndef CRUSH_CALLS_H
#define CRUSH_CALLS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/buf.h"
#include "proto/proto.h"

#define CALLS_MAX_BODY (64u << 20) /* a request body past this is 413 */
/* Answer DATA frame size: the window (4 frames) is what an answer holds
 * in the supervisor at most, 512 KiB; larger frames bought no speed. */
#define CALLS_CHUNK	 (128u << 10)
#define CALLS_MAX_ACTIVE 256 /* more at once is a protocol error */

typedef struct calls calls_t;
typedef struct call call_t;

/* What a routed request asks. Strings are NUL-terminated and valid while
 * the call is unanswered. */
typedef struct call_req {
	const char *verb;      /* GET, POST, PUT, DELETE, ... */
	const char *path;      /* below the workspace: "/config", "/sessions/x" */
	const char *query;     /* without '?', "" when none */
	const char *client_id; /* the asking client, "" when none */
	const char *body;
	size_t body_len;
} call_req_t;

/* Called once per complete request; answer now or later with
 * calls_respond. */
typedef void (*calls_dispatch_cb)(void *arg, call_t *c, const call_req_t *req);

calls_t *calls_new(buf_t *out, calls_dispatch_cb dispatch, void *arg);
void calls_free(calls_t *cs);

/*
 * One frame from the supervisor that belongs to calls: a REQUEST whose
 * method is "http" (head), or DATA, END, CANCEL, ACK. 0, or -1 with *err
 * (static) on a protocol error: an unknown id, a body after its END, a
 * second head for one id, too many calls at once.
 */
int calls_request(calls_t *cs, uint32_t id, json_t *head, const char **err);
/* The same for a flat head (flatjson.h) whose method is "http", the
 * supervisor's usual: 1 (nothing done) for any other head, which the
 * caller reads with jansson and hands to calls_request if it is one. */
int calls_request_flat(calls_t *cs, uint32_t id, const char *head, size_t len, const char **err);
int calls_frame(calls_t *cs, const proto_frame_t *f, const char **err);

/* Answers c: status, a content type (NULL: application/json) and the
 * body, which calls copies. c is gone after. */
void calls_respond(call_t *c, int status, const char *content_type, const char *body, size_t len);
/* The same, without the copy: body must stay valid and unchanged until
 * calls_free (bytes the dispatcher keeps for good). */
void calls_respond_kept(call_t *c, int status, const char *content_type, const char *body, size_t len);
/* Answers c with j (consumed) as application/json; any JSON value. */
void calls_json(call_t *c, int status, json_t *j);
/* Answers c with {"message": msg} (msg made valid UTF-8). */
void calls_error(call_t *c, int status, const char *msg);

/* An unanswered call whose client left: hook runs before the 499 (and
 * at calls_free, for calls never answered). */
void call_on_cancel(call_t *c, void (*hook)(call_t *c, void *data), void *data);

#endif
