/*
 * config: merge, defaults, redaction and dotted keys (see config.h).
 */
#include "worker/config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

/* Upstream's defaultContextPaths (internal/config/config.go): the files
 * its agent reads as context, always in options.context_paths. */
static const char *const default_context_paths[] = {
    ".github/copilot-instructions.md",
    ".cursorrules",
    ".cursor/rules/",
    "CLAUDE.md",
    "CLAUDE.local.md",
    "GEMINI.md",
    "gemini.md",
    "crush.md",
    "crush.local.md",
    "Crush.md",
    "Crush.local.md",
    "CRUSH.md",
    "CRUSH.local.md",
    "AGENTS.md",
    "agents.md",
    "Agents.md",
};
#define DEFAULT_INITIALIZE_AS "AGENTS.md"

/* go-jsons compares Go types: every JSON number is a float64 there. */
static int same_kind(const json_t *a, const json_t *b)
{
	if (json_is_number(a) && json_is_number(b))
		return 1;
	if (json_is_boolean(a) && json_is_boolean(b))
		return 1;
	return json_typeof(a) == json_typeof(b);
}

static int merge_at(json_t *dst, const json_t *src, char *path, size_t pathlen, char *err, size_t errlen)
{
	const char *key;
	json_t *sv;
	size_t used = strlen(path);

	json_object_foreach((json_t *)src, key, sv)
	{
		json_t *dv = json_object_get(dst, key);
		snprintf(path + used, pathlen - used, "%s%s", used ? "." : "", key);
		if (json_is_null(sv))
			continue;
		if (dv == NULL || json_is_null(dv)) {
			json_object_set_new(dst, key, json_deep_copy(sv));
			continue;
		}
		if (!same_kind(dv, sv)) {
			snprintf(err, errlen, "field '%s': type mismatch", path);
			path[used] = '\0';
			return -1;
		}
		if (json_is_object(sv)) {
			if (merge_at(dv, sv, path, pathlen, err, errlen) < 0)
				return -1;
		} else if (json_is_array(sv)) {
			json_t *copy = json_deep_copy(sv);
			json_array_extend(dv, copy);
			json_decref(copy);
		} else {
			json_object_set_new(dst, key, json_deep_copy(sv));
		}
	}
	path[used] = '\0';
	return 0;
}

int config_merge(json_t *dst, const json_t *src, char *err, size_t errlen)
{
	char path[512] = "";

	if (!json_is_object(dst) || !json_is_object(src)) {
		snprintf(err, errlen, "not a JSON object");
		return -1;
	}
	return merge_at(dst, src, path, sizeof(path), err, errlen);
}

/* The object at key in obj, made one if absent or of another type. */
static json_t *object_at(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_object(v)) {
		v = json_object();
		json_object_set_new(obj, key, v);
	}
	return v;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* options.context_paths: upstream's defaults plus the configured ones,
 * sorted and without repeats (slices.Sort + slices.Compact). */
static void context_paths(json_t *options)
{
	json_t *have = json_object_get(options, "context_paths");
	size_t nd = sizeof(default_context_paths) / sizeof(default_context_paths[0]);
	size_t n = 0, cap = nd + json_array_size(have);
	const char **all = calloc(cap ? cap : 1, sizeof(*all));
	json_t *out = json_array();

	if (all == NULL)
		abort();
	for (size_t i = 0; i < nd; i++)
		all[n++] = default_context_paths[i];
	for (size_t i = 0; i < json_array_size(have); i++) {
		const char *s = json_string_value(json_array_get(have, i));
		if (s != NULL)
			all[n++] = s;
	}
	qsort(all, n, sizeof(*all), cmp_str);
	for (size_t i = 0; i < n; i++)
		if (i == 0 || strcmp(all[i], all[i - 1]) != 0)
			json_array_append_new(out, json_string(all[i]));
	free(all);
	json_object_set_new(options, "context_paths", out);
}

void config_defaults(json_t *cfg, const char *data_dir)
{
	static const char *const maps[] = {"providers", "models",      "recent_models", "mcp",
					   "lsp",	"permissions", "tools"};
	json_t *options = object_at(cfg, "options");
	json_t *ia = json_object_get(options, "initialize_as");

	object_at(options, "tui");
	context_paths(options);
	if (!json_is_string(ia) || json_string_length(ia) == 0)
		json_object_set_new(options, "initialize_as", json_string(DEFAULT_INITIALIZE_AS));
	json_object_set_new(options, "data_directory", utf8_json_string(data_dir));
	if (!json_is_boolean(json_object_get(options, "disable_metrics")))
		json_object_set_new(options, "disable_metrics", json_false());
	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++)
		object_at(cfg, maps[i]);
}

/* --- redaction */

static int word_is(const char *w, size_t n, const char *want)
{
	return strlen(want) == n && strncmp(w, want, n) == 0;
}

int config_key_is_secret(const char *key)
{
	/* Lowercase words: split on separators and on a lower→upper change
	 * ("apiKey" → api, key). */
	char words[16][32];
	size_t nw = 0, len = 0;

	for (const char *p = key;; p++) {
		int sep = *p == '\0' || *p == '_' || *p == '-' || *p == '.' || *p == ' ';
		int camel = p > key && isupper((unsigned char)*p) && islower((unsigned char)p[-1]);
		if ((sep || camel) && len > 0) {
			if (nw < 16)
				words[nw++][len < 31 ? len : 31] = '\0';
			len = 0;
		}
		if (*p == '\0')
			break;
		if (sep)
			continue;
		if (nw < 16 && len < 31)
			words[nw][len] = (char)tolower((unsigned char)*p);
		len++;
	}
	for (size_t i = 0; i < nw; i++) {
		const char *w = words[i];
		size_t n = strlen(w);
		if (word_is(w, n, "token") || word_is(w, n, "secret") || word_is(w, n, "secrets") ||
		    word_is(w, n, "password") || word_is(w, n, "passwd") || word_is(w, n, "apikey") ||
		    word_is(w, n, "credential") || word_is(w, n, "credentials") ||
		    word_is(w, n, "authorization"))
			return 1;
		if (word_is(w, n, "api") && i + 1 < nw && strcmp(words[i + 1], "key") == 0)
			return 1;
	}
	return 0;
}

static json_t *redact(const json_t *v, int secret)
{
	if (json_is_string(v))
		return secret ? json_string(CONFIG_REDACTED) : json_deep_copy(v);
	if (json_is_array(v)) {
		json_t *out = json_array();
		for (size_t i = 0; i < json_array_size(v); i++)
			json_array_append_new(out, redact(json_array_get(v, i), secret));
		return out;
	}
	if (json_is_object(v)) {
		json_t *out = json_object();
		const char *key;
		json_t *sv;
		json_object_foreach((json_t *)v, key, sv)
		    json_object_set_new(out, key, redact(sv, secret || config_key_is_secret(key)));
		return out;
	}
	return json_deep_copy(v);
}

json_t *config_redact(const json_t *cfg)
{
	return redact(cfg, 0);
}

/* --- dotted keys */

/* The next segment of *key into seg (unescaping "\."); advances *key past
 * it and its dot. -1 on an empty or overlong segment. */
static int next_segment(const char **key, char *seg, size_t seglen)
{
	size_t n = 0;
	const char *p = *key;

	for (; *p != '\0' && *p != '.'; p++) {
		if (*p == '\\' && p[1] != '\0')
			p++;
		if (n + 1 >= seglen)
			return -1;
		seg[n++] = *p;
	}
	seg[n] = '\0';
	if (n == 0 || (*p == '.' && p[1] == '\0'))
		return -1;
	*key = *p == '.' ? p + 1 : p;
	return 0;
}

/* seg as an array index: 0.., -1 for "-1", or -2 when not a number. */
static long index_of(const char *seg)
{
	char *end;
	long i;

	if (strcmp(seg, "-1") == 0)
		return -1;
	if (!isdigit((unsigned char)seg[0]))
		return -2;
	i = strtol(seg, &end, 10);
	return *end == '\0' ? i : -2;
}

int config_set(json_t *root, const char *key, json_t *value)
{
	char seg[256];
	json_t *node = root;

	if (!json_is_object(root) || next_segment(&key, seg, sizeof(seg)) < 0) {
		json_decref(value);
		return -1;
	}
	for (;;) {
		int last = *key == '\0';
		char next[256];
		if (!last && next_segment(&key, next, sizeof(next)) < 0) {
			json_decref(value);
			return -1;
		}
		if (json_is_array(node)) {
			long i = index_of(seg);
			size_t n = json_array_size(node);
			if (i == -1 || (i >= 0 && (size_t)i == n)) {
				json_array_append_new(node, last ? value : json_object());
				if (last)
					return 0;
				node = json_array_get(node, json_array_size(node) - 1);
			} else if (i >= 0 && (size_t)i < n) {
				if (last)
					return json_array_set_new(node, (size_t)i, value) == 0 ? 0 : -1;
				json_t *child = json_array_get(node, (size_t)i);
				if (!json_is_object(child) && !json_is_array(child)) {
					json_array_set_new(node, (size_t)i, json_object());
					child = json_array_get(node, (size_t)i);
				}
				node = child;
			} else {
				json_decref(value);
				return -1;
			}
		} else {
			if (last)
				return json_object_set_new(node, seg, value) == 0 ? 0 : -1;
			json_t *child = json_object_get(node, seg);
			if (!json_is_object(child) && !json_is_array(child)) {
				/* A key jansson refuses (not UTF-8) frees child. */
				if (json_object_set_new(node, seg, child = json_object()) != 0) {
					json_decref(value);
					return -1;
				}
			}
			node = child;
		}
		if (last)
			return 0;
		memcpy(seg, next, sizeof(seg));
	}
}

int config_remove(json_t *root, const char *key)
{
	char seg[256];
	json_t *node = root;

	if (!json_is_object(root) || next_segment(&key, seg, sizeof(seg)) < 0)
		return -1;
	for (;;) {
		int last = *key == '\0';
		char next[256];
		if (!last && next_segment(&key, next, sizeof(next)) < 0)
			return -1;
		json_t *child;
		if (json_is_array(node)) {
			long i = index_of(seg);
			if (i == -1 && json_array_size(node) > 0)
				i = (long)json_array_size(node) - 1;
			if (i < 0 || (size_t)i >= json_array_size(node))
				return 0;
			if (last) {
				json_array_remove(node, (size_t)i);
				return 0;
			}
			child = json_array_get(node, (size_t)i);
		} else if (json_is_object(node)) {
			if (last) {
				json_object_del(node, seg);
				return 0;
			}
			child = json_object_get(node, seg);
		} else {
			return 0;
		}
		if (child == NULL)
			return 0;
		node = child;
		memcpy(seg, next, sizeof(seg));
	}
}
