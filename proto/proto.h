/*
 * proto: the framing codec shared by crush-supervisor and crush-worker,
 * the only language spoken over a worker's socketpair. See PROTOCOL.md.
 *
 * Every frame is a fixed 12-byte header followed by a payload:
 *   u32 length   payload bytes, big endian, at most PROTO_MAX_PAYLOAD
 *   u8  version  PROTO_VERSION; any other value is a protocol error
 *   u8  type     enum proto_type
 *   u16 flags    0 (reserved; non-zero is a protocol error)
 *   u32 id       request/response correlation id, big endian; 0 otherwise
 * Payloads are one-line UTF-8 JSON objects (no '\n'), raw bytes (DATA), or
 * empty (END, CANCEL, ACK).
 */
#ifndef CRUSH_PROTO_H
#define CRUSH_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define PROTO_VERSION	  1
#define PROTO_HDR_SIZE	  12
#define PROTO_MAX_FRAME	  (1024 * 1024) /* header + payload */
#define PROTO_MAX_PAYLOAD (PROTO_MAX_FRAME - PROTO_HDR_SIZE)

enum proto_type {
	/* worker -> supervisor, first frame: {"version":1,"pid":N,"workspace_id":"…"} */
	PROTO_HELLO = 1,
	/* worker -> supervisor, once set up: {"pid","config","data_dir"} */
	PROTO_READY = 2,
	/* worker -> supervisor: {"type":"fs","payload":{…}} (the SSE envelope) */
	PROTO_EVENT = 3,
	/* supervisor -> worker: {"method":"…", …}, id != 0 */
	PROTO_REQUEST = 4,
	/* worker -> supervisor: {"result":…} or {"error":"…"}, id of the request */
	PROTO_RESPONSE = 5,
	/* worker -> supervisor, its last frame before it exits on a failure:
	 * {"error":"<why, for people>","code":"<PROTO_FAIL_*, for programs>"} */
	PROTO_FAIL = 6,
	/* Routed HTTP requests (PROTOCOL.md, "Routed requests"). Bodies travel
	 * as DATA frames after the REQUEST/RESPONSE head that opens them, and
	 * END closes each body; all carry the request's id. */
	PROTO_DATA = 7,	  /* both ways: raw body bytes (any bytes, newlines too) */
	PROTO_END = 8,	  /* both ways: end of a body; empty */
	PROTO_CANCEL = 9, /* supervisor -> worker: the client left; empty */
	PROTO_ACK = 10,	  /* supervisor -> worker: one response DATA frame consumed; empty */
};
#define PROTO_TYPE_MAX PROTO_ACK

/* Response DATA frames a worker may have unacknowledged per request. */
#define PROTO_WINDOW 4

/* FAIL codes (PROTOCOL.md, "Failures"); receivers accept codes they do not
 * know as PROTO_FAIL_ERROR. At most PROTO_FAIL_CODE_MAX bytes of [a-z0-9_]. */
#define PROTO_FAIL_INOTIFY_INSTANCES "inotify_instances" /* fs.inotify.max_user_instances */
#define PROTO_FAIL_INOTIFY_WATCHES   "inotify_watches"	 /* fs.inotify.max_user_watches */
#define PROTO_FAIL_PERMISSION	     "permission_denied" /* the directory cannot be read */
#define PROTO_FAIL_DIR_CHANGED	     "directory_changed" /* the key now goes through a symlink */
#define PROTO_FAIL_WRONG_PARENT	     "wrong_parent"	 /* not exec'd by the supervisor (a wrapper) */
#define PROTO_FAIL_DATA_DIR_LOCKED   "data_dir_locked"	 /* another process holds <data_dir>/crush.lock */
#define PROTO_FAIL_ERROR	     "error"		 /* anything else */
#define PROTO_FAIL_CODE_MAX	     32

typedef struct proto_frame {
	uint8_t type;
	uint32_t id;
	const char *payload; /* points into the decoder's buffer: valid until the next feed */
	size_t len;
} proto_frame_t;

/* Appends one encoded frame to out. Returns 0, or -1 when len exceeds
 * PROTO_MAX_PAYLOAD, type is unknown, a JSON payload holds a '\n' or an
 * END/CANCEL/ACK has a payload (nothing is appended then): encode refuses
 * what decode would. */
int proto_encode(buf_t *out, uint8_t type, uint32_t id, const void *payload, size_t len);

/*
 * Incremental decoder: feed it whatever read(2) returned (partial frames,
 * many frames at once), then call proto_next until it returns 0.
 * Ownership: the decoder owns its buffer; proto_decoder_free releases it.
 */
typedef struct proto_decoder {
	buf_t in;
	const char *err; /* static string once proto_next returned -1; sticky */
} proto_decoder_t;

#define PROTO_DECODER_INIT                                                                                   \
	{                                                                                                    \
		BUF_INIT, NULL                                                                               \
	}

void proto_feed(proto_decoder_t *d, const void *data, size_t len);
/*
 * 1: *f holds the next frame (payload valid until the next proto_feed).
 * 0: need more bytes.
 * -1: protocol error (bad version, unknown type, non-zero flags, oversize
 *     length, a JSON payload containing '\n', a payload on END/CANCEL/ACK);
 *     d->err says which. Sticky.
 */
int proto_next(proto_decoder_t *d, proto_frame_t *f);
void proto_decoder_free(proto_decoder_t *d);

#endif
