/*
 * msg: what the worker says to the supervisor, as proto frames appended to
 * a buffer: the JSON of a watch event (fs changes, and the watch's own
 * `watch` events), and any JSON message as one frame. Every event uses
 * upstream Crush's nested envelope (internal/pubsub: a Payload{type,
 * payload} wrapping an Event{type, payload}):
 *   {"type":"<payload type>","payload":{"type":"<event type>","payload":{...}}}
 * Pure: no I/O, no loop, no globals; main.c owns the buffer and the socket.
 */
#ifndef CRUSH_MSG_H
#define CRUSH_MSG_H

#include <stdint.h>

#include <jansson.h>

#include "common/buf.h"
#include "worker/watch.h"

/* The sample of unwatched paths in a status is cut at this many bytes. */
#define MSG_SAMPLE_BYTES 2048

/*
 * The EVENT payload of one fs change (PROTOCOL.md, "Events"):
 * {"type":"fs","payload":{"type":<kind>,"payload":{"path":..,"is_dir":..
 * [,"from":..][,"rescan":true]}}}; "rescan" only for overflow. path and
 * from are file names and need not be UTF-8: each invalid byte becomes
 * U+FFFD (common/utf8.h), so every event is published. from is included
 * only when non-NULL. Returns a new reference, NULL only when out of
 * memory.
 */
json_t *msg_fs_event(enum watch_kind kind, const char *path, int is_dir, const char *from);

/* The EVENT payload of any watch callback: fs kinds as msg_fs_event,
 * the others as {"type":"watch","payload":{"type":<kind>,"payload":{..,
 * "watch":<status>}}}. A new reference. */
json_t *msg_watch_event(const struct watch_event *ev);

/* A watch status as the Workspace object's "watch" field shows it:
 * {"complete","scanning","unwatched":[..],"unwatched_count","reason"};
 * the sample is cut to MSG_SAMPLE_BYTES. A new reference. */
json_t *msg_watch_status(const struct watch_status *st);

/* Appends obj (consumed, may be NULL) compactly encoded as one frame of
 * type and id to out. Returns 0, or -1 with nothing appended when obj is
 * NULL or cannot be encoded (too large for a frame). */
int msg_encode(buf_t *out, uint8_t type, uint32_t id, json_t *obj);

#endif
