/*
 * calls: routed requests on the worker's side (see calls.h).
 */
#include "worker/calls.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/flatjson.h"
#include "common/hmap.h"
#include "common/utf8.h"

#define CALL_OF(n) ((call_t *)((char *)(n)-offsetof(call_t, node)))

enum call_state {
	CALL_BODY,    /* collecting DATA until END */
	CALL_WAITING, /* dispatched, unanswered */
	CALL_SENDING, /* answered, DATA frames going out as ACKs allow */
};

struct call {
	hmap_node_t node; /* cs->by_id, key = idkey */
	calls_t *cs;
	uint32_t id;
	char idkey[12];
	enum call_state state;
	buf_t strs; /* the head's strings, NUL-terminated, in HEAD_FIELDS order */
	size_t str_at[4];
	buf_t body;	  /* request body, then the answer's body */
	const char *kept; /* or the answer's body, not ours (calls_respond_kept) */
	size_t kept_len;
	int too_large; /* the body passed CALLS_MAX_BODY: answer 413 */
	unsigned unacked;
	void (*on_cancel)(call_t *c, void *data);
	void *cancel_data;
};

struct calls {
	hmap_t by_id;
	buf_t *out;
	calls_dispatch_cb dispatch;
	void *arg;
};

calls_t *calls_new(buf_t *out, calls_dispatch_cb dispatch, void *arg)
{
	calls_t *cs = calloc(1, sizeof(*cs));
	if (cs == NULL)
		abort();
	cs->out = out;
	cs->dispatch = dispatch;
	cs->arg = arg;
	return cs;
}

static void call_free(call_t *c)
{
	hmap_del(&c->cs->by_id, &c->node);
	buf_free(&c->strs);
	buf_free(&c->body);
	free(c);
}

void calls_free(calls_t *cs)
{
	hmap_node_t *n, *nxt;
	hmap_foreach (&cs->by_id, n, nxt) {
		call_t *c = CALL_OF(n);
		/* An unanswered call's dispatcher holds state for it (a timer, a
		 * child): its cancel hook lets go of it, as for a CANCEL. */
		if (c->on_cancel != NULL)
			c->on_cancel(c, c->cancel_data);
		call_free(c);
	}
	hmap_free(&cs->by_id);
	free(cs);
}

/* id in decimal: the calls' hmap key (snprintf was a tenth of a call). */
static void id_key(char key[12], uint32_t id)
{
	char tmp[12];
	size_t n = 0;
	do
		tmp[n++] = (char)('0' + id % 10);
	while ((id /= 10) != 0);
	for (size_t i = 0; i < n; i++)
		key[i] = tmp[n - 1 - i];
	key[n] = '\0';
}

static call_t *find(calls_t *cs, uint32_t id)
{
	char key[12];
	id_key(key, id);
	hmap_node_t *n = hmap_get(&cs->by_id, key);
	return n ? CALL_OF(n) : NULL;
}

static void frame(calls_t *cs, uint8_t type, uint32_t id, const void *p, size_t len)
{
	if (proto_encode(cs->out, type, id, p, len) != 0)
		abort(); /* our own frames: sized and typed to fit */
}

/* Sends what the window allows of an answer under way; END after the
 * last byte. */
static void pump(call_t *c)
{
	while (c->kept_len > 0 && c->unacked < PROTO_WINDOW) {
		size_t n = c->kept_len < CALLS_CHUNK ? c->kept_len : CALLS_CHUNK;
		frame(c->cs, PROTO_DATA, c->id, c->kept, n);
		c->kept += n;
		c->kept_len -= n;
		c->unacked++;
	}
	while (buf_size(&c->body) > 0 && c->unacked < PROTO_WINDOW) {
		size_t n = buf_size(&c->body) < CALLS_CHUNK ? buf_size(&c->body) : CALLS_CHUNK;
		frame(c->cs, PROTO_DATA, c->id, buf_data(&c->body), n);
		buf_consume(&c->body, n);
		c->unacked++;
	}
	if (buf_size(&c->body) == 0 && c->kept_len == 0) {
		frame(c->cs, PROTO_END, c->id, NULL, 0);
		call_free(c);
	}
}

/* An answer without a body and without a type of its own goes without a
 * Content-Type (""), as upstream's w.WriteHeader(200) does. */
static void respond_head(call_t *c, int status, const char *content_type, size_t len)
{
	/* {"status":S,"content_type":"T"}: built by hand, once per request
	 * (T is ours: a constant without quotes or backslashes). */
	static const char a[] = "{\"status\":", b[] = ",\"content_type\":\"";
	char head[160], num[12];
	const char *ct = content_type ? content_type : len == 0 ? "" : "application/json";
	size_t ctlen = strlen(ct), n = 0;
	id_key(num, (uint32_t)status);
	size_t numlen = strlen(num);
	if (ctlen > sizeof(head) - sizeof(a) - sizeof(b) - sizeof(num) - 2)
		abort(); /* our own content types are short */
	memcpy(head + n, a, sizeof(a) - 1), n += sizeof(a) - 1;
	memcpy(head + n, num, numlen), n += numlen;
	memcpy(head + n, b, sizeof(b) - 1), n += sizeof(b) - 1;
	memcpy(head + n, ct, ctlen), n += ctlen;
	memcpy(head + n, "\"}", 2), n += 2;
	frame(c->cs, PROTO_RESPONSE, c->id, head, n);
	buf_reset(&c->body);
	c->state = CALL_SENDING;
	c->on_cancel = NULL;
}

void calls_respond(call_t *c, int status, const char *content_type, const char *body, size_t len)
{
	respond_head(c, status, content_type, len);
	buf_append(&c->body, body, len);
	pump(c);
}

void calls_respond_kept(call_t *c, int status, const char *content_type, const char *body, size_t len)
{
	respond_head(c, status, content_type, len);
	c->kept = body;
	c->kept_len = len;
	pump(c);
}

void calls_json(call_t *c, int status, json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(j);
	if (text == NULL)
		abort(); /* only out of memory: every string in j is valid UTF-8 */
	calls_respond(c, status, NULL, text, strlen(text));
	free(text);
}

void calls_error(call_t *c, int status, const char *msg)
{
	calls_json(c, status, json_pack("{s:o}", "message", utf8_json_string(msg)));
}

void call_on_cancel(call_t *c, void (*hook)(call_t *c, void *data), void *data)
{
	c->on_cancel = hook;
	c->cancel_data = data;
}

/* The head's fields a request is made of, in call_t.str_at order. */
static const char *const HEAD_FIELDS[4] = {"verb", "path", "query", "client_id"};

/* A new call with the head's fields from fj or j: a missing one, or one
 * that is not a string, is "". */
static int add_call(calls_t *cs, uint32_t id, const flatjson_t *fj, json_t *j, const char **err)
{
	if (find(cs, id) != NULL) {
		*err = "a second request head for one id";
		return -1;
	}
	if (cs->by_id.count >= CALLS_MAX_ACTIVE) {
		*err = "too many routed requests at once";
		return -1;
	}
	call_t *c = calloc(1, sizeof(*c));
	if (c == NULL)
		abort();
	for (int i = 0; i < 4; i++) {
		const char *v;
		if (j != NULL) {
			v = json_string_value(json_object_get(j, HEAD_FIELDS[i]));
		} else {
			const flatjson_field_t *f = flatjson_get(fj, HEAD_FIELDS[i]);
			v = f != NULL ? f->str : NULL;
		}
		c->str_at[i] = buf_size(&c->strs);
		buf_append(&c->strs, v ? v : "", v ? strlen(v) + 1 : 1);
	}
	c->cs = cs;
	c->id = id;
	id_key(c->idkey, id);
	hmap_put(&cs->by_id, &c->node, c->idkey);
	return 0;
}

int calls_request(calls_t *cs, uint32_t id, json_t *head, const char **err)
{
	return add_call(cs, id, NULL, head, err);
}

int calls_request_flat(calls_t *cs, uint32_t id, const char *head, size_t len, const char **err)
{
	flatjson_t fj;
	buf_t store = BUF_INIT;
	int r = 1;
	if (flatjson_parse(head, len, &fj, &store) == 0) {
		const flatjson_field_t *m = flatjson_get(&fj, "method");
		if (m != NULL && m->type == 's' && strcmp(m->str, "http") == 0)
			r = add_call(cs, id, &fj, NULL, err);
	}
	buf_free(&store);
	return r;
}

static const char *field(const call_t *c, int i)
{
	return buf_data(&c->strs) + c->str_at[i];
}

/* The body is whole: hand the request over. */
static void dispatch(call_t *c)
{
	c->state = CALL_WAITING;
	if (c->too_large) {
		calls_error(c, 413, "request body too large");
		return;
	}
	const char *verb = field(c, 0), *path = field(c, 1);
	if (*verb == '\0' || path[0] != '/') {
		calls_error(c, 400, "bad routed request: verb and path are required");
		return;
	}
	buf_append(&c->body, "", 1); /* a NUL after the body, for parsers */
	call_req_t req = {
	    .verb = verb,
	    .path = path,
	    .query = field(c, 2),
	    .client_id = field(c, 3),
	    .body = buf_data(&c->body),
	    .body_len = buf_size(&c->body) - 1,
	};
	c->cs->dispatch(c->cs->arg, c, &req);
}

int calls_frame(calls_t *cs, const proto_frame_t *f, const char **err)
{
	call_t *c = find(cs, f->id);
	if (c == NULL) {
		/* A CANCEL or ACK may cross the END that finished the call. */
		if (f->type == PROTO_CANCEL || f->type == PROTO_ACK)
			return 0;
		*err = "a body frame for no request";
		return -1;
	}
	switch (f->type) {
	case PROTO_DATA:
		if (c->state != CALL_BODY) {
			*err = "request body after its end";
			return -1;
		}
		if (buf_size(&c->body) + f->len > CALLS_MAX_BODY) {
			c->too_large = 1;
			buf_free(&c->body);
		} else if (!c->too_large) {
			buf_append(&c->body, f->payload, f->len);
		}
		return 0;
	case PROTO_END:
		if (c->state != CALL_BODY) {
			*err = "a second end of a request body";
			return -1;
		}
		dispatch(c);
		return 0;
	case PROTO_ACK:
		if (c->state == CALL_SENDING && c->unacked > 0) {
			c->unacked--;
			pump(c);
		}
		return 0;
	case PROTO_CANCEL:
		if (c->state == CALL_SENDING) {
			/* Cut the answer short: END now, the rest is dropped. */
			buf_reset(&c->body);
			c->kept_len = 0;
			pump(c);
		} else {
			if (c->on_cancel != NULL)
				c->on_cancel(c, c->cancel_data);
			c->state = CALL_WAITING;
			calls_error(c, 499, "request cancelled by the client");
		}
		return 0;
	default:
		*err = "unexpected frame type";
		return -1;
	}
}
