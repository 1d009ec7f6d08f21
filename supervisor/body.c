/*
 * body: decoding of the create request, and the resolution of its path
 * (see body.h).
 */
#include "supervisor/body.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/flatjson.h"
#include "common/path.h"

/* An optional member of the given type; -1 when present with another type
 * (Go's decoder refuses those too). JSON_TRUE stands for "a boolean". */
static int member(json_t *obj, const char *key, int type, json_t **out)
{
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (type == JSON_TRUE ? !json_is_boolean(v) : json_typeof(v) != (json_type)type)
		return -1;
	*out = v;
	return 0;
}

/* An optional array of strings into *out (pointing into the JSON). */
static int strings(json_t *arr, const char ***out, size_t *n)
{
	*n = arr ? json_array_size(arr) : 0;
	if (*n == 0)
		return 0;
	if ((*out = calloc(*n, sizeof(**out))) == NULL)
		abort();
	for (size_t i = 0; i < *n; i++) {
		json_t *e = json_array_get(arr, i);
		if (!json_is_string(e))
			return -1;
		(*out)[i] = json_string_value(e);
	}
	return 0;
}

static int fail(create_body_t *b, const char **msg, const char *why)
{
	*msg = why;
	create_body_free(b);
	return -1;
}

static int check(create_body_t *b, const char *cid, const char **msg);

/* Go's decoder names the field it could not take; so do we. */
#define BAD(f, what) "failed to decode request: " f " must be " what

/* The body's fields, in the order their type is checked (the first bad
 * one is named): their JSON type, and their flatjson type ('\0': never in
 * a flat body, which has no arrays). */
enum { F_PATH, F_CLIENT_ID, F_YOLO, F_DEBUG, F_DATA_DIR, F_VERSION, F_ENV, F_CHANNELS, F_N };
static const struct field {
	const char *key;
	int type; /* JSON_TRUE: a boolean */
	char flat;
	const char *bad;
} fields[F_N] = {
    [F_PATH] = {"path", JSON_STRING, 's', BAD("path", "a string")},
    [F_CLIENT_ID] = {"client_id", JSON_STRING, 's', BAD("client_id", "a string")},
    [F_YOLO] = {"yolo", JSON_TRUE, 'b', BAD("yolo", "a boolean")},
    [F_DEBUG] = {"debug", JSON_TRUE, 'b', BAD("debug", "a boolean")},
    [F_DATA_DIR] = {"data_dir", JSON_STRING, 's', BAD("data_dir", "a string")},
    [F_VERSION] = {"version", JSON_STRING, 's', BAD("version", "a string")},
    [F_ENV] = {"env", JSON_ARRAY, '\0', BAD("env", "an array of strings")},
    [F_CHANNELS] = {"channels", JSON_ARRAY, '\0', BAD("channels", "an array of strings")},
};
#undef BAD

/*
 * The common body without a tree: a flat object (flatjson.h) whose known
 * fields have their types (null counts as absent) and that sends no env
 * or channels. 1 when taken (b's fields and *cid set), 0 when jansson
 * must decide (and report what is wrong).
 */
static int parse_flat(create_body_t *b, const char *data, size_t len, const char **cid)
{
	const flatjson_field_t *got[F_N] = {NULL};
	flatjson_t fj;
	if (flatjson_parse(data, len, &fj, &b->flat) != 0)
		return 0;
	for (size_t i = 0; i < F_N; i++) {
		const flatjson_field_t *f = flatjson_get(&fj, fields[i].key);
		if (f == NULL || f->type == 'n')
			continue;
		if (f->type != fields[i].flat)
			return 0;
		got[i] = f;
	}
	b->path = got[F_PATH] ? got[F_PATH]->str : "";
	*cid = got[F_CLIENT_ID] ? got[F_CLIENT_ID]->str : "";
	b->yolo = got[F_YOLO] ? (int)got[F_YOLO]->num : 0;
	b->debug = got[F_DEBUG] ? (int)got[F_DEBUG]->num : 0;
	b->data_dir = got[F_DATA_DIR] ? got[F_DATA_DIR]->str : "";
	b->version = got[F_VERSION] ? got[F_VERSION]->str : NULL;
	return 1;
}

int create_body_parse(create_body_t *b, const char *data, size_t len, const char **msg)
{
	json_t *j[F_N];
	const char *cid;

	memset(b, 0, sizeof(*b));
	if (parse_flat(b, data, len, &cid))
		return check(b, cid, msg);
	buf_free(&b->flat);
	b->root = json_loadb(data, len, 0, NULL);
	if (!json_is_object(b->root))
		return fail(b, msg, "failed to decode request");
	for (size_t i = 0; i < F_N; i++)
		if (member(b->root, fields[i].key, fields[i].type, &j[i]) != 0 ||
		    (i == F_ENV && strings(j[i], &b->env, &b->nenv) != 0) ||
		    (i == F_CHANNELS && strings(j[i], &b->channels, &b->nchannels) != 0))
			return fail(b, msg, fields[i].bad);
	b->path = j[F_PATH] ? json_string_value(j[F_PATH]) : "";
	b->data_dir = j[F_DATA_DIR] ? json_string_value(j[F_DATA_DIR]) : "";
	b->version = j[F_VERSION] ? json_string_value(j[F_VERSION]) : NULL;
	b->yolo = j[F_YOLO] ? json_is_true(j[F_YOLO]) : 0;
	b->debug = j[F_DEBUG] ? json_is_true(j[F_DEBUG]) : 0;
	cid = j[F_CLIENT_ID] ? json_string_value(j[F_CLIENT_ID]) : "";
	return check(b, cid, msg);
}

/* What the fields say, once decoded. */
static int check(create_body_t *b, const char *cid, const char **msg)
{
	/* The seed's order: path, then client id, then the path's shape. */
	if (*b->path == '\0')
		return fail(b, msg, "path is required");
	if (id_parse(cid, strlen(cid), b->client_id) != 0)
		return fail(b, msg, *cid ? "invalid client_id" : "invalid client_id: client_id is required");
	if (b->path[0] != '/')
		return fail(b, msg, "path must be absolute");
	for (size_t i = 0; i < b->nenv; i++)
		if (strchr(b->env[i], '=') == NULL || b->env[i][0] == '=')
			return fail(b, msg, "env entries must be KEY=VALUE");
	return 0;
}

int create_body_resolve(create_body_t *b, const char **msg)
{
	if (path_resolve_key(b->path, b->key) != 0) {
		*msg = errno == ENOTDIR ? "path is not a directory" : "failed to resolve workspace path";
		return -1;
	}
	return 0;
}

void create_body_free(create_body_t *b)
{
	free(b->env);
	free(b->channels);
	json_decref(b->root);
	buf_free(&b->flat);
	memset(b, 0, sizeof(*b));
}
