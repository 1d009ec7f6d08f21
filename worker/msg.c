/*
 * msg: the worker's messages as frames (see msg.h). The envelope is the
 * one upstream publishes on its SSE stream; the supervisor relays the
 * payload as it is.
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
	return envelope("fs", watch_kind_name(kind), p);
}

int msg_encode(buf_t *out, uint8_t type, uint32_t id, json_t *obj)
{
	char *s = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;
	int r = s != NULL ? proto_encode(out, type, id, s, strlen(s)) : -1;

	free(s);
	json_decref(obj);
	return r < 0 ? -1 : 0;
}
