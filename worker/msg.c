/*
 * msg: the worker's messages as frames (see msg.h). The envelope is the
 * one upstream publishes on its SSE stream; the supervisor relays the
 * payload as it is (and keeps the status of `watch` events).
 */
#include "worker/msg.h"

#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "proto/proto.h"

/* {"type":type,"payload":{"type":kind,"payload":inner}}, inner consumed. */
static json_t *envelope(const char *type, const char *kind, json_t *inner)
{
	json_t *event = json_object(), *env = json_object();

	json_object_set_new(event, "type", json_string(kind));
	json_object_set_new(event, "payload", inner);
	json_object_set_new(env, "type", json_string(type));
	json_object_set_new(env, "payload", event);
	return env;
}

json_t *msg_fs_event(enum watch_kind kind, const char *path, int is_dir, const char *from)
{
	json_t *p = json_object();

	json_object_set_new(p, "path", utf8_json_string(path));
	json_object_set_new(p, "is_dir", json_boolean(is_dir));
	if (from != NULL)
		json_object_set_new(p, "from", utf8_json_string(from));
	/* Events were lost: what a client knows of the tree may be wrong. */
	if (kind == WATCH_OVERFLOW)
		json_object_set_new(p, "rescan", json_true());
	return envelope("fs", watch_kind_name(kind), p);
}

json_t *msg_watch_status(const struct watch_status *st)
{
	json_t *s = json_object(), *sample = json_array();
	size_t bytes = 0;

	json_object_set_new(s, "complete", json_boolean(st->complete));
	json_object_set_new(s, "scanning", json_boolean(st->scanning));
	for (size_t i = 0; i < st->nsample; i++) {
		bytes += strlen(st->sample[i]) + 3;
		if (bytes > MSG_SAMPLE_BYTES)
			break;
		json_array_append_new(sample, utf8_json_string(st->sample[i]));
	}
	json_object_set_new(s, "unwatched", sample);
	json_object_set_new(s, "unwatched_count", json_integer((json_int_t)st->unwatched));
	json_object_set_new(s, "reason", json_string(st->reason ? st->reason : ""));
	return s;
}

json_t *msg_watch_event(const struct watch_event *ev)
{
	json_t *p;

	if (ev->kind <= WATCH_KIND_FS_LAST)
		return msg_fs_event(ev->kind, ev->path, ev->is_dir, ev->from);
	p = json_object();
	switch (ev->kind) {
	case WATCH_ROOT_GONE:
	case WATCH_ROOT_MOVED:
		json_object_set_new(p, "path", json_string(""));
		/* The tree a client knew is no longer the workspace. */
		json_object_set_new(p, "rescan", json_true());
		break;
	case WATCH_ROOT_APPEARED:
		json_object_set_new(p, "path", json_string(""));
		break;
	case WATCH_SCANNING:
		json_object_set_new(p, "cause", json_string(ev->cause ? ev->cause : ""));
		break;
	case WATCH_SCAN_COMPLETE:
		json_object_set_new(p, "cause", json_string(ev->cause ? ev->cause : ""));
		json_object_set_new(p, "dirs", json_integer((json_int_t)ev->dirs));
		json_object_set_new(p, "ms", json_integer((json_int_t)ev->ms));
		break;
	case WATCH_INCOMPLETE:
		json_object_set_new(p, "path", utf8_json_string(ev->path));
		json_object_set_new(p, "reason", json_string(ev->reason ? ev->reason : ""));
		break;
	case WATCH_COMPLETE:
		/* What was unwatched is watched from now on: what changed there
		 * meanwhile no event told. */
		json_object_set_new(p, "rescan", json_true());
		break;
	default:
		break;
	}
	if (ev->status != NULL)
		json_object_set_new(p, "watch", msg_watch_status(ev->status));
	return envelope("watch", watch_kind_name(ev->kind), p);
}

int msg_encode(buf_t *out, uint8_t type, uint32_t id, json_t *obj)
{
	char *s = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;
	int r = s != NULL ? proto_encode(out, type, id, s, strlen(s)) : -1;

	free(s);
	json_decref(obj);
	return r < 0 ? -1 : 0;
}
