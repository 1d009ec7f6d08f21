/*
 * fuzz_event: the worker's fs-event publisher (worker/msg.c: msg_fs_event
 * framed by msg_encode, as main.c's watch callback sends it) on arbitrary
 * file names. Every event must become exactly one EVENT frame whose
 * payload is JSON with the name verbatim when it is UTF-8, else with
 * U+FFFD for the bad bytes (PROTOCOL.md) -- never a dropped event.
 *
 * Input: byte 0 = kind (low 3 bits) and is_dir (bit 3); then the path, and
 * after a NUL the rename's "from" (present for WATCH_RENAMED only).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/buf.h"
#include "proto/proto.h"
#include "worker/msg.h"
#include "worker/watch.h"

#include "fuzz/check.h"

/* The name as published: s itself when UTF-8, else a UTF-8 string with
 * U+FFFD in place of some bytes and every ASCII byte of s kept in order. */
static void check_name(json_t *j, const char *s)
{
	const char *o = json_string_value(j);

	CHECK(o != NULL && strlen(o) == json_string_length(j));
	json_t *direct = json_string(s);
	if (direct != NULL) {
		CHECK(strcmp(o, s) == 0);
		json_decref(direct);
		return;
	}
	CHECK(strstr(o, "\xef\xbf\xbd") != NULL);
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s >= 0x80)
			continue;
		while (*o != '\0' && *o != *s)
			CHECK((unsigned char)*o++ >= 0x80);
		CHECK(*o++ == *s);
	}
	while (*o != '\0')
		CHECK((unsigned char)*o++ >= 0x80);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	buf_t out = BUF_INIT;
	proto_decoder_t d = PROTO_DECODER_INIT;
	proto_frame_t f;

	if (size < 1 || size > 64 * 1024)
		return 0;
	enum watch_kind kind = (enum watch_kind)(data[0] & 7) % (WATCH_OVERFLOW + 1);
	int is_dir = (data[0] >> 3) & 1;
	/* Exact-size NUL-terminated copies: path, then from. */
	char *path = strndup((const char *)data + 1, size - 1);
	size_t plen = strlen(path);
	char *from = 1 + plen < size ? strndup((const char *)data + 2 + plen, size - 2 - plen) : strdup("");

	CHECK(msg_encode(&out, PROTO_EVENT, 0,
			 msg_fs_event(kind, path, is_dir, kind == WATCH_RENAMED ? from : NULL)) == 0);

	proto_feed(&d, buf_data(&out), buf_size(&out));
	CHECK(proto_next(&d, &f) == 1 && f.type == PROTO_EVENT && f.id == 0);
	/* Upstream's nested envelope: {"type":"fs","payload":{"type":kind,"payload":p}}. */
	json_t *env = json_loadb(f.payload, f.len, 0, NULL), *ev = json_object_get(env, "payload");
	json_t *p = json_object_get(ev, "payload");
	CHECK(proto_next(&d, &f) == 0);
	CHECK(json_is_object(env) && json_object_size(env) == 2);
	CHECK(strcmp(json_string_value(json_object_get(env, "type")), "fs") == 0);
	CHECK(json_is_object(ev) && json_object_size(ev) == 2);
	CHECK(strcmp(json_string_value(json_object_get(ev, "type")), watch_kind_name(kind)) == 0);
	CHECK(json_is_object(p));
	CHECK(json_is_boolean(json_object_get(p, "is_dir")) &&
	      json_is_true(json_object_get(p, "is_dir")) == is_dir);
	check_name(json_object_get(p, "path"), path);
	if (kind == WATCH_RENAMED)
		check_name(json_object_get(p, "from"), from);
	else
		CHECK(json_object_get(p, "from") == NULL);

	json_decref(env);
	proto_decoder_free(&d);
	buf_free(&out);
	free(path);
	free(from);
	return 0;
}
