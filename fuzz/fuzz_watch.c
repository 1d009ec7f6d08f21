/*
 * fuzz_watch: the path helpers of the worker's watch (worker/relpath.c):
 * relpath_clean, relpath_squeeze, relpath_inside, relpath_join and
 * relpath_data_dir (the ignored data dir, from the client's data_dir).
 * Relative results are clean (no "", "." or ".." component, no leading or
 * trailing '/') and relpath_clean is idempotent on them.
 *
 * Input: three NUL-separated strings a, b, c (missing ones are "").
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/path.h"
#include "worker/relpath.h"

#include "fuzz/check.h"

/* r is a clean relative path, and relpath_clean gives it back unchanged. */
static void check_clean(const char *r)
{
	CHECK(r[0] != '\0' && r[0] != '/' && r[strlen(r) - 1] != '/' && strstr(r, "//") == NULL);
	for (const char *s = r; *s != '\0';) {
		size_t n = strcspn(s, "/");
		CHECK(!(n == 1 && s[0] == '.') && !(n == 2 && s[0] == '.' && s[1] == '.'));
		s += n + (s[n] == '/');
	}
	char *again = relpath_clean(r);
	CHECK(again != NULL && strcmp(again, r) == 0);
	free(again);
}

/* The next NUL-terminated string of [*p, end), as an exact-size copy. */
static char *next(const uint8_t **p, const uint8_t *end)
{
	char *s = strndup((const char *)*p, (size_t)(end - *p));
	*p += strlen(s) + (*p + strlen(s) < end);
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	char key[PATH_MAX], *r;

	if (size > 3 * PATH_MAX)
		return 0;
	char *a = next(&p, end), *b = next(&p, end), *c = next(&p, end);

	/* relpath_clean: NULL only for a ".." or nothing but "/" and "." */
	if ((r = relpath_clean(a)) != NULL)
		check_clean(r);
	else
		CHECK(strstr(a, "..") != NULL || strspn(a, "/.") == strlen(a));
	free(r);

	/* relpath_squeeze: no "//", the same bytes otherwise */
	r = relpath_squeeze(a);
	CHECK(strstr(r, "//") == NULL);
	for (const char *x = a, *y = r; *x != '\0' || *y != '\0';) {
		if (*x == '/' && *y != '/') {
			CHECK(x > a && x[-1] == '/'); /* only repeats go */
			x++;
			continue;
		}
		CHECK(*x == *y);
		x++, y++;
	}
	free(r);

	/* relpath_inside(b, a): clean, and a really lies under b */
	if ((r = relpath_inside(b, a)) != NULL) {
		check_clean(r);
		if (strcmp(b, "/") != 0)
			CHECK(strncmp(a, b, strlen(b)) == 0 && a[strlen(b)] == '/');
	}
	free(r);

	/* relpath_join(b, a) as dispatch builds an event's path */
	r = relpath_join(b, a);
	CHECK(*b == '\0' ? strcmp(r, a) == 0
			 : strncmp(r, b, strlen(b)) == 0 && r[strlen(b)] == '/' &&
			       strcmp(r + strlen(b) + 1, a) == 0);
	free(r);

	/* relpath_data_dir as watch_open computes it for root b, data dir c */
	if (b[0] == '/') {
		size_t n = strlen(b);
		while (n > 1 && b[n - 1] == '/')
			n--;
		char *raw = strndup(b, n);
		char *root = path_resolve_key(raw, key) == 0 ? strdup(key) : relpath_squeeze(raw);
		if ((r = relpath_data_dir(raw, root, *c ? c : NULL)) != NULL)
			check_clean(r);
		CHECK(*c != '\0' || (r != NULL && strcmp(r, ".crush") == 0));
		free(r);
		free(root);
		free(raw);
	}
	free(a);
	free(b);
	free(c);
	return 0;
}
