/*
 * datadir: find, create and lock a workspace's data dir (see datadir.h).
 */
#include "worker/datadir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

void datadir_clean(const char *base, const char *path, char *out, size_t len)
{
	char tmp[PATH_MAX * 2 + 2];
	size_t n = 0;

	if (path[0] == '/')
		snprintf(tmp, sizeof(tmp), "%s", path);
	else
		snprintf(tmp, sizeof(tmp), "%s/%s", base, path);
	/* Walk the components of tmp, writing the cleaned path into out. */
	if (len == 0)
		return;
	for (char *p = tmp; *p != '\0';) {
		while (*p == '/')
			p++;
		size_t cl = strcspn(p, "/");
		if (cl == 0)
			break;
		if (cl == 1 && p[0] == '.') {
			/* skip */
		} else if (cl == 2 && p[0] == '.' && p[1] == '.') {
			while (n > 0 && out[n - 1] != '/')
				n--;
			if (n > 0)
				n--; /* the slash before the dropped component */
		} else if (n + 1 + cl < len) {
			out[n++] = '/';
			memcpy(out + n, p, cl);
			n += cl;
		}
		p += cl;
	}
	if (n == 0)
		out[n++] = '/';
	out[n] = '\0';
}

/* There (through symlinks, as Go's os.Stat), a directory when want_dir,
 * and owned by uid ((uid_t)-1: anyone), as fsext's probeEnt demands. */
static int exists(const char *path, int want_dir, uid_t uid)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return 0;
	return (!want_dir || S_ISDIR(st.st_mode)) && (uid == (uid_t)-1 || st.st_uid == uid);
}

int datadir_owner(const char *dir, uid_t *uid)
{
	struct stat st;

	if (stat(dir, &st) != 0)
		return -1;
	*uid = st.st_uid;
	return 0;
}

/* The parent of path (absolute, clean) in place; 0 at "/". */
static int up(char *path)
{
	char *slash = strrchr(path, '/');

	if (slash == NULL || (slash == path && path[1] == '\0'))
		return 0;
	if (slash == path)
		slash[1] = '\0';
	else
		*slash = '\0';
	return 1;
}

void datadir_git_root(const char *dir, char *out, size_t len)
{
	char cur[PATH_MAX], probe[PATH_MAX + 8];

	snprintf(cur, sizeof(cur), "%s", dir);
	out[0] = '\0';
	do {
		snprintf(probe, sizeof(probe), "%s%s.git", cur, strcmp(cur, "/") == 0 ? "" : "/");
		/* git refuses a repository of another user ("dubious
		 * ownership"), so upstream's `git rev-parse` finds none. */
		if (exists(probe, 0, geteuid())) {
			snprintf(out, len, "%s", cur);
			return;
		}
	} while (up(cur));
}

void datadir_resolve(const char *root, const char *boundary, const char *option, const char *configured,
		     char *out, size_t len)
{
	char cur[PATH_MAX], probe[PATH_MAX + 16];
	const char *home = getenv("HOME");
	uid_t owner;

	if (option != NULL && option[0] != '\0') {
		datadir_clean(root, option, out, len);
		return;
	}
	if (configured != NULL && configured[0] != '\0') {
		datadir_clean(root, configured, out, len);
		return;
	}
	/* fsext.LookupClosestBounded: root, then each ancestor up to the
	 * boundary; one found in $HOME does not count (the user's, not a
	 * project's). */
	snprintf(cur, sizeof(cur), "%s", root);
	/* Only a .crush of the workspace's owner counts; a workspace that is
	 * not there has none (upstream's lookup fails, then defaults). */
	while (datadir_owner(root, &owner) == 0) {
		snprintf(probe, sizeof(probe), "%s%s%s", cur, strcmp(cur, "/") == 0 ? "" : "/", DATADIR_NAME);
		if (exists(probe, 1, owner)) {
			if (home == NULL || strcmp(cur, home) != 0) {
				snprintf(out, len, "%s", probe);
				return;
			}
			break;
		}
		if (boundary == NULL || strcmp(cur, boundary) == 0 || !up(cur))
			break;
	}
	datadir_clean(root, DATADIR_NAME, out, len);
}

static int mkdir_p(const char *dir, mode_t mode)
{
	char tmp[PATH_MAX];

	if (snprintf(tmp, sizeof(tmp), "%s", dir) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *p = tmp + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, mode) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

int datadir_prepare(const char *dir)
{
	char path[PATH_MAX + 16];
	int fd;

	if (mkdir_p(dir, 0700) != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/.gitignore", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return errno == EEXIST ? 0 : -1;
	if (write(fd, "*\n", 2) != 2) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	close(fd);
	return 0;
}

/* The pid the lock's owner wrote, 0 when it cannot be read. */
static long owner_pid(int fd)
{
	char buf[512];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	json_t *j;
	long pid = 0;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	j = json_loads(buf, 0, NULL);
	if (json_is_integer(json_object_get(j, "pid")))
		pid = (long)json_integer_value(json_object_get(j, "pid"));
	json_decref(j);
	return pid;
}

int datadir_lock(const char *dir, const char *version, long *owner)
{
	char path[PATH_MAX + 16], started[32], info[256];
	time_t now = time(NULL);
	struct tm tm;
	int fd, n;

	*owner = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, DATADIR_LOCK_FILE);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		if (e == EWOULDBLOCK)
			*owner = owner_pid(fd);
		close(fd);
		errno = e;
		return -1;
	}
	/* Upstream's dataDirOwnerInfo through json.MarshalIndent(info, "", "  ")
	 * plus a newline; started_at is RFC 3339 in UTC. Best effort, as
	 * upstream: the flock is what excludes, the text only names us. */
	gmtime_r(&now, &tm);
	strftime(started, sizeof(started), "%Y-%m-%dT%H:%M:%SZ", &tm);
	n = snprintf(info, sizeof(info),
		     "{\n  \"pid\": %d,\n  \"version\": \"%s\",\n  \"started_at\": \"%s\"\n}\n",
		     (int)getpid(), version, started);
	if (ftruncate(fd, 0) != 0 || pwrite(fd, info, (size_t)n, 0) != n) {
		/* Not fatal: the lock holds either way. */
	}
	return fd;
}
