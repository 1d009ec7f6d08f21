/*
 * relpath: lexical helpers for root-relative paths (see relpath.h). Moved
 * out of watch.c so that they have a public contract the fuzzer and unit
 * tests call directly.
 */
#include "worker/relpath.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/path.h"
#include "common/xalloc.h"

char *relpath_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = xmalloc(la + lb + 2);

	if (la == 0) {
		memcpy(p, b, lb + 1);
		return p;
	}
	memcpy(p, a, la);
	p[la] = '/';
	memcpy(p + la + 1, b, lb + 1);
	return p;
}

char *relpath_squeeze(const char *s)
{
	char *out = xmalloc(strlen(s) + 1), *o = out;

	for (; *s != '\0'; s++)
		if (*s != '/' || o == out || o[-1] != '/')
			*o++ = *s;
	*o = '\0';
	return out;
}

int relpath_under(const char *rel, const char *prefix)
{
	size_t n = strlen(prefix);

	return strncmp(rel, prefix, n) == 0 && (rel[n] == '\0' || rel[n] == '/');
}

char *relpath_clean(const char *s)
{
	char *out = xmalloc(strlen(s) + 1), *o = out;

	while (*s != '\0') {
		size_t n = strcspn(s, "/");

		if (n == 2 && strncmp(s, "..", 2) == 0) {
			free(out);
			return NULL;
		}
		if (n > 0 && !(n == 1 && *s == '.')) {
			if (o != out)
				*o++ = '/';
			memcpy(o, s, n);
			o += n;
		}
		s += n;
		s += *s == '/';
	}
	*o = '\0';
	if (o == out) {
		free(out);
		return NULL;
	}
	return out;
}

char *relpath_inside(const char *root, const char *path)
{
	size_t n = strlen(root);

	if (strcmp(root, "/") == 0)
		return relpath_clean(path);
	if (strncmp(path, root, n) != 0 || path[n] != '/')
		return NULL;
	return relpath_clean(path + n);
}

char *relpath_data_dir(const char *raw_root, const char *root, const char *data_dir)
{
	char key[PATH_MAX];
	char *rel;

	if (data_dir == NULL || *data_dir == '\0')
		return strcpy(xmalloc(sizeof(".crush")), ".crush");
	if (data_dir[0] != '/')
		return relpath_clean(data_dir);
	rel = relpath_inside(raw_root, data_dir);
	if (rel == NULL && path_resolve_key(data_dir, key) == 0)
		rel = relpath_inside(root, key);
	return rel;
}
