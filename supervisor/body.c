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

/*
 * The common body without a tree: a flat object (flatjson.h) whose known
 * fields have their types (null counts as absent) and that sends no env
 * or channels. 1 when taken (b's fields and *cid set), 0 when jansson
 * must decide (and report what is wrong).
 */
static int parse_flat(create_body_t *b, const char *data, size_t len, const char **cid)
{
	static const struct {
		const char *key;
		char type;
	} known[] = {{"path", 's'},	{"client_id", 's'}, {"yolo", 'b'}, {"debug", 'b'},
		     {"data_dir", 's'}, {"version", 's'},   {"env", 'n'},  {"channels", 'n'}};
	const flatjson_field_t *got[8] = {NULL};
	flatjson_t fj;
	if (flatjson_parse(data, len, &fj, &b->flat) != 0)
		return 0;
	for (size_t i = 0; i < 8; i++) {
		const flatjson_field_t *f = flatjson_get(&fj, known[i].key);
		if (f == NULL || f->type == 'n')
			continue;
		if (f->type != known[i].type)
			return 0;
		got[i] = f;
	}
	b->path = got[0] ? got[0]->str : "";
	*cid = got[1] ? got[1]->str : "";
	b->yolo = got[2] ? (int)got[2]->num : 0;
	b->debug = got[3] ? (int)got[3]->num : 0;
	b->data_dir = got[4] ? got[4]->str : "";
	b->version = got[5] ? got[5]->str : NULL;
	return 1;
}

int create_body_parse(create_body_t *b, const char *data, size_t len, const char **msg)
{
	json_t *jpath, *jcid, *jyolo, *jdebug, *jdata, *jversion, *jenv, *jchan;
	const char *cid;

	memset(b, 0, sizeof(*b));
	if (parse_flat(b, data, len, &cid))
		return check(b, cid, msg);
	buf_free(&b->flat);
	b->root = json_loadb(data, len, 0, NULL);
	/* Go's decoder names the field it could not take; so do we. */
#define BAD(f, what) "failed to decode request: " f " must be " what
	if (!json_is_object(b->root))
		return fail(b, msg, "failed to decode request");
	if (member(b->root, "path", JSON_STRING, &jpath))
		return fail(b, msg, BAD("path", "a string"));
	if (member(b->root, "client_id", JSON_STRING, &jcid))
		return fail(b, msg, BAD("client_id", "a string"));
	if (member(b->root, "yolo", JSON_TRUE, &jyolo))
		return fail(b, msg, BAD("yolo", "a boolean"));
	if (member(b->root, "debug", JSON_TRUE, &jdebug))
		return fail(b, msg, BAD("debug", "a boolean"));
	if (member(b->root, "data_dir", JSON_STRING, &jdata))
		return fail(b, msg, BAD("data_dir", "a string"));
	if (member(b->root, "version", JSON_STRING, &jversion))
		return fail(b, msg, BAD("version", "a string"));
	if (member(b->root, "env", JSON_ARRAY, &jenv) || strings(jenv, &b->env, &b->nenv) != 0)
		return fail(b, msg, BAD("env", "an array of strings"));
	if (member(b->root, "channels", JSON_ARRAY, &jchan) ||
	    strings(jchan, &b->channels, &b->nchannels) != 0)
		return fail(b, msg, BAD("channels", "an array of strings"));
#undef BAD
	b->path = jpath ? json_string_value(jpath) : "";
	b->data_dir = jdata ? json_string_value(jdata) : "";
	b->version = jversion ? json_string_value(jversion) : NULL;
	b->yolo = jyolo ? json_is_true(jyolo) : 0;
	b->debug = jdebug ? json_is_true(jdebug) : 0;
	cid = jcid ? json_string_value(jcid) : "";
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
