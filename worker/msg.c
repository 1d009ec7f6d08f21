/*
 * msg: the worker's messages as frames (see msg.h). The event's shape is
 * the one upstream publishes on the SSE stream; the supervisor relays the
 * payload as it is.
 */
#include "worker/msg.h"

#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "proto/proto.h"

json_t *msg_fs_event(enum watch_kind kind, const char *path, int is_dir, const char *from)
{
	json_t *payload = json_object(), *env = json_object();

	json_object_set_new(payload, "type", json_string(watch_kind_name(kind)));
	json_object_set_new(payload, "path", utf8_json_string(path));
	json_object_set_new(payload, "is_dir", json_boolean(is_dir));
	if (from != NULL)
		json_object_set_new(payload, "from", utf8_json_string(from));
	json_object_set_new(env, "type", json_string("fs"));
	json_object_set_new(env, "payload", payload);
	return env;
}

int msg_encode(buf_t *out, uint8_t type, uint32_t id, json_t *obj)
{
	char *s = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;
	int r = s != NULL ? proto_encode(out, type, id, s, strlen(s)) : -1;

	free(s);
	json_decref(obj);
	return r < 0 ? -1 : 0;
}
