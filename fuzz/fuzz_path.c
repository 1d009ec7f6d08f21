/*
 * fuzz_path: path_resolve_key (common/path.c) on NUL-free strings, as given
 * or under a few real directories (symlinked, virtual, missing). A relative
 * input is EINVAL; a key is absolute, clean (no "//", "." or ".." component,
 * no trailing '/' but "/"), names a directory or nothing, and resolves to
 * itself. Read-only: realpath(3) and stat(2) only.
 *
 * Input: byte 0 picks the prefix; the rest, up to a NUL, is the path.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/path.h"

#include "fuzz/check.h"

static const char *const prefixes[] = {
    "", "/", "/lib/", "/usr/", "/proc/self/", "/dev/", "/etc/", "/crush-fuzz-missing/",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > PATH_MAX * 2)
		return 0;
	const char *pre = prefixes[data[0] % (sizeof(prefixes) / sizeof(prefixes[0]))];
	size_t plen = strlen(pre), n = strnlen((const char *)data + 1, size - 1);
	/* Exact-size heap buffers, so ASan sees any overrun. */
	char *in = malloc(plen + n + 1), *out = malloc(PATH_MAX), *again = malloc(PATH_MAX);

	memcpy(in, pre, plen);
	memcpy(in + plen, data + 1, n);
	in[plen + n] = '\0';

	errno = 0;
	int r = path_resolve_key(in, out);
	if (in[0] != '/')
		CHECK(r == -1 && errno == EINVAL);
	else if (plen + n >= PATH_MAX)
		CHECK(r == -1 && errno == ENAMETOOLONG);
	if (r == 0) {
		size_t len = strnlen(out, PATH_MAX);
		struct stat st;

		CHECK(len < PATH_MAX && out[0] == '/');
		CHECK(len == 1 || out[len - 1] != '/');
		CHECK(strstr(out, "//") == NULL && strstr(out, "/./") == NULL && strstr(out, "/../") == NULL);
		CHECK(!(len >= 2 && strcmp(out + len - 2, "/.") == 0));
		CHECK(!(len >= 3 && strcmp(out + len - 3, "/..") == 0));
		CHECK(stat(out, &st) == 0 ? S_ISDIR(st.st_mode) : errno == ENOENT);
		CHECK(path_resolve_key(out, again) == 0 && strcmp(out, again) == 0);
	}
	free(in);
	free(out);
	free(again);
	return 0;
}
