/*
 * path: resolves a workspace path into its dedup key (see path.h): the
 * realpath of the longest existing ancestor, then the missing tail cleaned
 * lexically. A ".." in the tail may climb back into what exists (where
 * names can be files or symlinks), so after one the walk starts over on
 * the shortened path; each restart has one ".." fewer, so it ends.
 */
#include "common/path.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Appends component [s, s+n) to out (holding len bytes), "/"-separated. */
static int append_comp(char *out, size_t *len, const char *s, size_t n)
{
	size_t sep = (*len == 1 && out[0] == '/') ? 0 : 1;

	if (*len + sep + n + 1 > PATH_MAX)
		return -1;
	if (sep)
		out[(*len)++] = '/';
	memcpy(out + *len, s, n);
	*len += n;
	out[*len] = '\0';
	return 0;
}

/* Drops the last component of out, never going above "/". */
static void pop_comp(char *out, size_t *len)
{
	char *slash = strrchr(out, '/');

	if (slash == NULL || slash == out) {
		out[0] = '/';
		out[1] = '\0';
		*len = 1;
		return;
	}
	*slash = '\0';
	*len = (size_t)(slash - out);
}

/* realpath(prefix) into out, which must name a directory. */
static int resolve_existing(const char *prefix, char *out)
{
	struct stat st;

	if (realpath(prefix, out) == NULL)
		return -1;
	if (stat(out, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

/* A path with no ".", "..", empty or trailing component is canonical when
 * the kernel walks it without meeting a symlink; then one openat2 replaces
 * realpath's readlink per component (joins are the hot path). 1: it is,
 * and a directory; 0: take the slow path (also on kernels without it). */
static int canonical_dir(const char *path)
{
	struct open_how how = {
	    .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
	    .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	for (const char *p = path; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		if (p[1] == '/' || (p[1] == '\0' && p != path) ||
		    (p[1] == '.' &&
		     (p[2] == '/' || p[2] == '\0' || (p[2] == '.' && (p[3] == '/' || p[3] == '\0')))))
			return 0;
	}
	int fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

int path_resolve_key(const char *path, char *out)
{
	size_t inlen, cut, len;
	char prefix[PATH_MAX], in[PATH_MAX];
	struct stat st;

	if (path == NULL || path[0] != '/') {
		errno = EINVAL;
		return -1;
	}
	inlen = strlen(path);
	if (inlen >= PATH_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (canonical_dir(path)) {
		memcpy(out, path, inlen + 1);
		return 0;
	}
	memcpy(in, path, inlen + 1);
restart:
	/*
	 * Find the longest existing prefix, cutting at component boundaries
	 * from the right. lstat is not enough (a dangling symlink "exists"
	 * but cannot be resolved), so existence is stat's: it follows links.
	 */
	memcpy(prefix, in, inlen + 1);
	cut = inlen;
	for (;;) {
		prefix[cut] = '\0';
		if (stat(prefix, &st) == 0)
			break;
		if (errno == ENOTDIR) {
			/* An ancestor exists and is not a directory. */
			return -1;
		}
		if (errno != ENOENT)
			return -1;
		while (cut > 1 && prefix[cut - 1] != '/')
			cut--;
		while (cut > 1 && prefix[cut - 1] == '/')
			cut--;
		if (cut <= 1) {
			cut = 1; /* "/" always exists */
			prefix[1] = '\0';
			break;
		}
	}
	if (resolve_existing(prefix, out) != 0)
		return -1;

	/* Clean and append the missing tail in[cut..]. */
	len = strlen(out);
	for (const char *p = in + cut; *p != '\0';) {
		const char *s;
		size_t n;

		while (*p == '/')
			p++;
		s = p;
		while (*p != '\0' && *p != '/')
			p++;
		n = (size_t)(p - s);
		if (n == 0 || (n == 1 && s[0] == '.'))
			continue;
		if (n == 2 && s[0] == '.' && s[1] == '.') {
			/* Start over from the parent with the rest. */
			pop_comp(out, &len);
			if ((size_t)snprintf(prefix, sizeof(prefix), "%s/%s", out, p) >= sizeof(prefix)) {
				errno = ENAMETOOLONG;
				return -1;
			}
			inlen = strlen(prefix);
			memcpy(in, prefix, inlen + 1);
			goto restart;
		}
		if (append_comp(out, &len, s, n) != 0) {
			errno = ENAMETOOLONG;
			return -1;
		}
	}
	return 0;
}
