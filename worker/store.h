/*
 * store: the workspace's session store, <data_dir>/crush.db, shared with
 * upstream Crush. Same schema, same migration versions, same goose
 * bookkeeping (goose_db_version), so a database either program made opens
 * in the other. Rows come out as upstream's JSON (internal/proto): a
 * Session, a Message, a history File.
 *
 * Every call runs on the caller's thread (the worker's loop): a few
 * statements, each waiting at most BUSY_TIMEOUT_MS (store.c) for a lock
 * another process holds. Listings come out through a cursor that the
 * caller steps, a few hundred rows at a time; the first step of a listing
 * whose order no index gives (upstream's schema has none for it: messages
 * by created_at, files by version, sessions by updated_at) sorts all of
 * its rows at once. No I/O but SQLite's, no events: callers publish what
 * changed.
 * Ownership: store_t owns its connection; a cursor must be freed before
 * the store is closed.
 */
#ifndef CRUSH_STORE_H
#define CRUSH_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/buf.h"

typedef struct store store_t;
typedef struct store_cursor store_cursor_t;

/* Upstream's goose versions, oldest first, and how many there are. */
extern const int64_t store_versions[];
extern const size_t store_nversions;

/* A store for data_dir, not connected yet (no I/O). */
store_t *store_new(const char *data_dir);
/* Connects: creates the dir (0700) and the file when missing, migrates.
 * Idempotent; every call below connects first when it must, so a
 * workspace whose directory does not exist yet gets it created only when
 * a session is used (as upstream creates it when it connects). 0, or -1
 * with err. */
int store_connect(store_t *st, char *err, size_t errlen);
/* store_new + store_connect: NULL with err filled when it cannot. */
store_t *store_open(const char *data_dir, char *err, size_t errlen);
void store_close(store_t *st);

/* Results: a new JSON reference; NULL with *status and err set on failure
 * (500 "sql: no rows in result set" for an unknown id, as upstream answers;
 * 400 for bad input). */
json_t *store_session_create(store_t *st, const char *title, int *status, char *err, size_t errlen);
json_t *store_session_get(store_t *st, const char *id, int *status, char *err, size_t errlen);
/* in: upstream's session.Session as Go decodes it (field names matched
 * case-insensitively: id, title, prompttokens, ...). */
json_t *store_session_save(store_t *st, const json_t *in, int *status, char *err, size_t errlen);
/* Returns the session as it was before it went (with its messages, files
 * and reads). */
json_t *store_session_delete(store_t *st, const char *id, int *status, char *err, size_t errlen);

/* Creates a message; parts is upstream's stored form (a JSON array of
 * {"type","data"}). NULL with *status 404 when the session is gone. */
json_t *store_message_create(store_t *st, const char *session_id, const char *role, const json_t *parts,
			     int *status, char *err, size_t errlen);

/* The file tracker: paths relative to the workspace root, as upstream's
 * worker-cwd-relative ones. 0, or -1 with err. */
int store_read_record(store_t *st, const char *session_id, const char *relpath, char *err, size_t errlen);
/* The last read, unix seconds, 0 when never. */
int64_t store_read_last(store_t *st, const char *session_id, const char *relpath);

enum store_list {
	STORE_LIST_SESSIONS,	  /* top-level sessions, newest update first */
	STORE_LIST_MESSAGES,	  /* arg: session id; oldest first */
	STORE_LIST_USER_MESSAGES, /* arg: session id; newest first */
	STORE_LIST_ALL_USER,	  /* every user message, newest first */
	STORE_LIST_HISTORY,	  /* arg: session id; history files */
	STORE_LIST_READ_FILES,	  /* arg: session id; root-relative paths */
};

/* A listing as a JSON array, produced in steps. prefix (for READ_FILES)
 * is joined in front of each path. NULL with err when the query fails. */
store_cursor_t *store_list(store_t *st, enum store_list what, const char *arg, const char *prefix, char *err,
			   size_t errlen);
/* Appends up to max_rows rows (and at most about max_bytes) of the array
 * to out; 1 when the array is closed, 0 when more remain, -1 on error. */
int store_cursor_step(store_cursor_t *c, buf_t *out, unsigned max_rows, size_t max_bytes);
void store_cursor_free(store_cursor_t *c);

/* One row of the messages table as upstream's proto.Message (parts in
 * its wire form). Exposed for tests. */
json_t *store_parts_to_proto(const char *parts_text);

/* Where a session's attached_clients comes from (api.c's presence). */
void store_set_attached(store_t *st, int (*fn)(void *arg, const char *session_id), void *arg);

#endif
