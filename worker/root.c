/*
 * root: opening the workspace key without resolving it again (see
 * root.h). openat2(2) refuses a symlink anywhere on the way in one
 * syscall, race-free; the realpath fallback (kernels before 5.6, or a
 * seccomp filter that hides openat2) has a window between its check and
 * its open, which O_NOFOLLOW narrows to the ancestors.
 */
#include "worker/root.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

int root_canonical(const char *key)
{
	const char *p = key;

	if (key[0] != '/')
		return 0;
	if (key[1] == '\0')
		return 1;
	while (*p == '/') {
		size_t n = strcspn(++p, "/");

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return 0;
		p += n;
	}
	return 1;
}

/* realpath(key) is key itself: 1; it resolves elsewhere: 0 (errno ELOOP);
 * nowhere: -1 with realpath's errno, ELOOP only for a symlink loop. */
static int resolves_to_itself(const char *key)
{
	char real[PATH_MAX];

	if (realpath(key, real) == NULL)
		return -1;
	if (strcmp(real, key) == 0)
		return 1;
	errno = ELOOP;
	return 0;
}

int root_open(const char *key)
{
	int fd;

#ifdef SYS_openat2
	struct open_how how = {
	    .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
	    .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};

	fd = (int)syscall(SYS_openat2, AT_FDCWD, key, &how, sizeof(how));
	if (fd >= 0 || (errno != ELOOP && errno != ENOSYS && errno != EPERM))
		return fd;
	if (errno == ELOOP) {
		/* A symlink on the way: refused if it leads somewhere, waited
		 * for (as missing) if it dangles. */
		if (resolves_to_itself(key) < 0 && errno != ELOOP)
			return -1;
		errno = ELOOP;
		return -1;
	}
#endif
	if (resolves_to_itself(key) <= 0)
		return -1;
	return open(key, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

void root_describe_change(const char *key, char *out, size_t len)
{
	char real[PATH_MAX];

	if (realpath(key, real) != NULL)
		snprintf(out, len, "directory changed under the workspace: %s now resolves to %s", key, real);
	else
		snprintf(out, len, "directory changed under the workspace: %s now goes through a symlink",
			 key);
}
