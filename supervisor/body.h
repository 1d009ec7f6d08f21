/*
 * body: the POST /v1/workspaces request body, decoded and validated in one
 * place (also the fuzz target). Decoding does no syscall; resolving the
 * path (the realpath walk of path_resolve_key) is a separate step, run off
 * the loop.
 */
#ifndef CRUSH_BODY_H
#define CRUSH_BODY_H

#include <limits.h>
#include <stddef.h>

#include <jansson.h>

#include "common/buf.h"

#include "common/id.h"

/* Strings point into root (or flat); create_body_free releases everything. */
typedef struct create_body {
	json_t *root;	      /* the decoded body (jansson), or NULL ... */
	buf_t flat;	      /* ... its strings, when it was flat (flatjson.h) */
	const char *path;     /* absolute, as sent */
	const char *data_dir; /* "" when not sent */
	const char *version;  /* NULL when not sent */
	int yolo, debug;
	const char **env; /* KEY=VALUE entries, as sent */
	size_t nenv;
	const char **channels; /* MCP channel opt-ins, as sent */
	size_t nchannels;
	char client_id[ID_LEN + 1]; /* canonical */
	char key[PATH_MAX];	    /* the dedup key */
} create_body_t;

/*
 * 0, or -1 with *msg (a static string for the 400 body): not JSON, not an
 * object or a field of the wrong type ("failed to decode request"), empty
 * path, bad client_id, relative path, bad env entries. Unknown fields are
 * ignored; null counts as absent (as Go's decoder). On -1, b is freed.
 */
int create_body_parse(create_body_t *b, const char *data, size_t len, const char **msg);
/* Resolves b->path into b->key (may block on the filesystem). 0, or -1
 * with *msg: a non-directory, or a path that cannot be resolved. b is
 * kept either way. */
int create_body_resolve(create_body_t *b, const char **msg);
void create_body_free(create_body_t *b);

#endif
