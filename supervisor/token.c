/*
 * token: the bearer token's sources (see token.h).
 */
#include "supervisor/token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/errf.h"

int token_default_path(char *out, size_t outlen)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	const char *dir = xdg != NULL && xdg[0] == '/' ? xdg : "/tmp";
	int n = snprintf(out, outlen, "%s/crush-%u.token", dir, (unsigned)getuid());
	return n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* Reads a small file from fd into out and trims trailing whitespace.
 * 0, or -1 when it is empty, too long or not a valid token. */
static int read_token(int fd, char out[GUARD_TOKEN_MAX + 1])
{
	char buf[GUARD_TOKEN_MAX + 4];
	size_t n = 0;
	while (n < sizeof(buf)) {
		ssize_t r = read(fd, buf + n, sizeof(buf) - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		n--;
	if (!guard_token_valid(buf, n))
		return -1;
	memcpy(out, buf, n);
	out[n] = '\0';
	return 0;
}

int token_read_file(const char *path, char out[GUARD_TOKEN_MAX + 1], char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return errf(err, errlen, "--token-file %s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return errf(err, errlen, "--token-file %s: not a regular file", path);
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		close(fd);
		return errf(err, errlen, "--token-file %s: owned by uid %u, not by this user or root", path,
			    (unsigned)st.st_uid);
	}
	if ((st.st_mode & 077) != 0) {
		close(fd);
		return errf(err, errlen,
			    "--token-file %s: readable or writable by others (mode %03o); chmod 600 it", path,
			    (unsigned)(st.st_mode & 0777));
	}
	int r = read_token(fd, out);
	close(fd);
	if (r != 0)
		return errf(err, errlen, "--token-file %s: want one line of %d to %d printable characters",
			    path, GUARD_TOKEN_MIN, GUARD_TOKEN_MAX);
	return 0;
}

static int random_hex(char *out, size_t nbytes)
{
	unsigned char raw[64];
	size_t got = 0;
	if (nbytes > sizeof(raw))
		return -1;
	while (got < nbytes) {
		ssize_t r = getrandom(raw + got, nbytes - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	for (size_t i = 0; i < nbytes; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
	explicit_bzero(raw, sizeof(raw));
	return 0;
}

/* 1: reused the existing token into out; 0: no file there; -1: refused. */
static int reuse(int dfd, const char *name, const char *path, char out[GUARD_TOKEN_MAX + 1], char *err,
		 size_t errlen)
{
	struct stat st;
	/* O_NOFOLLOW: a planted symlink fails with ELOOP instead of leading us
	 * to read (and trust) someone else's file; O_NONBLOCK: a planted FIFO
	 * cannot stall the start. */
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno == ELOOP)
			return errf(err, errlen,
				    "%s is a symbolic link; refusing it (remove it if it is not yours)",
				    path);
		return errf(err, errlen, "%s: %s", path, strerror(errno));
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		close(fd);
		return errf(err, errlen, "%s exists and is not a regular file of this user; refusing it",
			    path);
	}
	int ok = (st.st_mode & 07777) == 0600 && read_token(fd, out) == 0;
	close(fd);
	return ok ? 1 : 0;
}

int token_load_or_create(const char *path, char out[GUARD_TOKEN_MAX + 1], int *created, char *err,
			 size_t errlen)
{
	char dir[4096], base[256], tmp[300];
	int r = -1;

	const char *slash = strrchr(path, '/');
	if (path[0] != '/' || slash[1] == '\0')
		return errf(err, errlen, "%s: want an absolute path to a file", path);
	if ((size_t)(slash - path) >= sizeof(dir) || strlen(slash + 1) >= sizeof(base))
		return errf(err, errlen, "%s: path too long", path);
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	snprintf(base, sizeof(base), "%s", slash + 1);
	/* Every step below is relative to this one directory, so a rename of
	 * a parent in between cannot redirect us. */
	int dfd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return errf(err, errlen, "%s: %s", dir, strerror(errno));

	*created = 0;
	for (int attempt = 0; attempt < 4; attempt++) {
		int have = reuse(dfd, base, path, out, err, errlen);
		if (have < 0)
			goto out;
		if (have == 1) {
			r = 0;
			goto out;
		}
		/* Missing, or ours but not a usable token: write a fresh one. */
		char suffix[17];
		if (random_hex(out, TOKEN_GENERATED_LEN / 2) != 0 || random_hex(suffix, 8) != 0) {
			errf(err, errlen, "getrandom: %s", strerror(errno));
			goto out;
		}
		out[TOKEN_GENERATED_LEN] = '\0';
		snprintf(tmp, sizeof(tmp), ".%s.%s", base, suffix);
		int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			errf(err, errlen, "%s/%s: %s", dir, tmp, strerror(errno));
			goto out;
		}
		char line[TOKEN_GENERATED_LEN + 1];
		memcpy(line, out, TOKEN_GENERATED_LEN);
		line[TOKEN_GENERATED_LEN] = '\n';
		int wrote = fchmod(fd, 0600) == 0 && write(fd, line, sizeof(line)) == (ssize_t)sizeof(line) &&
			    fsync(fd) == 0;
		explicit_bzero(line, sizeof(line));
		int e = errno;
		close(fd);
		if (!wrote) {
			unlinkat(dfd, tmp, 0);
			errf(err, errlen, "%s/%s: %s", dir, tmp, strerror(e));
			goto out;
		}
		/* link() never replaces: when another daemon of ours created the
		 * file meanwhile, EEXIST sends us back to reuse its token. A file
		 * of ours that held no usable token is replaced by rename. */
		int placed = have == 0 && faccessat(dfd, base, F_OK, AT_SYMLINK_NOFOLLOW) != 0
				 ? linkat(dfd, tmp, dfd, base, 0)
				 : renameat(dfd, tmp, dfd, base);
		e = errno;
		unlinkat(dfd, tmp, 0); /* after link: the extra name; after rename: gone already */
		if (placed == 0) {
			*created = 1;
			r = 0;
			goto out;
		}
		if (e != EEXIST) {
			errf(err, errlen, "%s: %s", path, strerror(e));
			goto out;
		}
	}
	errf(err, errlen, "%s keeps changing; refusing it", path);
out:
	if (r != 0)
		explicit_bzero(out, GUARD_TOKEN_MAX + 1);
	close(dfd);
	return r;
}
