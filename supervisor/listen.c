/*
 * listen: listener sockets for the HTTP API (SPEC §3).
 */
#include "supervisor/listen.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/errf.h"
#include "common/log.h"
#include "supervisor/guard.h"

/* 1: something accepts connections at path; 0: nothing does (stale). */
static int unix_is_live(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 1; /* cannot tell: never unlink what may be live */
	int r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	int e = errno;
	close(fd);
	if (r == 0)
		return 1;
	return !(e == ECONNREFUSED || e == ENOENT);
}

/*
 * The directory a socket goes in must not let another user swap what we
 * bind or remove: owned by us or root, and writable by no one else unless
 * sticky (as /tmp is). Checked by lstat on the directory itself.
 */
static int dir_is_safe(const char *path, char *err, size_t errlen, const char *url)
{
	char dir[108];
	struct stat st;
	const char *slash = strrchr(path, '/');
	size_t n = slash == path ? 1 : (size_t)(slash - path);
	memcpy(dir, path, n);
	dir[n] = '\0';
	if (lstat(dir, &st) != 0)
		return errf(err, errlen, "%s: %s: %s", url, dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return errf(err, errlen, "%s: %s is not a directory", url, dir);
	if (st.st_uid != geteuid() && st.st_uid != 0)
		return errf(err, errlen, "%s: directory %s belongs to uid %u; refusing to put a socket there",
			    url, dir, (unsigned)st.st_uid);
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0)
		return errf(err, errlen,
			    "%s: directory %s is writable by other users and not sticky; refusing to put a "
			    "socket there",
			    url, dir);
	return 0;
}

static int open_unix(listener_t *l, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;

	if (path[0] != '/')
		return errf(err, errlen, "%s: unix socket path must be absolute", l->url);
	if (strlen(path) >= sizeof(sa.sun_path))
		return errf(err, errlen, "%s: socket path too long", l->url);
	strcpy(sa.sun_path, path);
	if (dir_is_safe(path, err, errlen, l->url) != 0)
		return -1;

	/* lstat: a symlink is judged as itself, never followed. Only a stale
	 * socket of our own is removed; in a sticky /tmp nobody else can then
	 * replace it before the unlink, and bind() below never follows a
	 * symlink planted after it (it fails with EADDRINUSE instead). */
	if (lstat(path, &st) == 0) {
		if (S_ISLNK(st.st_mode))
			return errf(err, errlen, "%s: %s is a symbolic link; refusing to use or remove it",
				    l->url, path);
		if (!S_ISSOCK(st.st_mode))
			return errf(err, errlen, "%s: %s exists and is not a socket", l->url, path);
		if (st.st_uid != geteuid())
			return errf(err, errlen,
				    "%s: %s belongs to uid %u, not to us; refusing to use or remove it",
				    l->url, path, (unsigned)st.st_uid);
		if (unix_is_live(&sa))
			return errf(err, errlen, "%s: address already in use", l->url);
		log_warn("Removing stale socket", "path", path, NULL);
		if (unlink(path) != 0 && errno != ENOENT)
			return errf(err, errlen, "%s: cannot remove stale socket: %s", l->url,
				    strerror(errno));
	}

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return errf(err, errlen, "%s: socket: %s", l->url, strerror(errno));
	/* Created 0600 from the start: no window where others may connect. */
	mode_t old = umask(0177);
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	int e = errno;
	umask(old);
	if (r != 0) {
		close(fd);
		return errf(err, errlen, "%s: bind: %s", l->url,
			    e == EADDRINUSE ? "address already in use" : strerror(e));
	}
	if (listen(fd, SOMAXCONN) != 0) {
		e = errno;
		close(fd);
		unlink(path);
		return errf(err, errlen, "%s: listen: %s", l->url, strerror(e));
	}
	if (lstat(path, &st) == 0) {
		l->ino = st.st_ino;
		l->dev = st.st_dev;
	}
	/* Never follows a link: the umask made it 0600 already. */
	fchmodat(AT_FDCWD, path, 0600, AT_SYMLINK_NOFOLLOW);
	l->fd = fd;
	snprintf(l->unix_path, sizeof(l->unix_path), "%s", path);
	return 0;
}

static int open_tcp(listener_t *l, const char *hostport, int allow_remote, char *err, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(hostport, ':');
	if (colon == NULL || colon == hostport || colon[1] == '\0' ||
	    (size_t)(colon - hostport) >= sizeof(host))
		return errf(err, errlen, "%s: want tcp://host:port", l->url);
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	/* [::1]:port */
	char *h = host;
	if (h[0] == '[' && h[strlen(h) - 1] == ']') {
		h[strlen(h) - 1] = '\0';
		h++;
	}

	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
	int gai = getaddrinfo(h, colon + 1, &hints, &res);
	if (gai != 0)
		return errf(err, errlen, "%s: %s", l->url, gai_strerror(gai));
	/* Without a token the operator chose, the generated one must not be
	 * the only thing between the network and the API: every address the
	 * name resolves to must be loopback (0.0.0.0, :: and public ones are
	 * not). */
	for (struct addrinfo *a = res; a != NULL && !allow_remote; a = a->ai_next) {
		if (!guard_addr_is_loopback(a->ai_addr)) {
			freeaddrinfo(res);
			return errf(
			    err, errlen,
			    "%s: refusing to listen on a non-loopback address without an explicit "
			    "token (give --token-file or CRUSH_SERVER_TOKEN, or use 127.0.0.1 / [::1])",
			    l->url);
		}
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		freeaddrinfo(res);
		return errf(err, errlen, "%s: socket: %s", l->url, strerror(errno));
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
		int e = errno;
		close(fd);
		freeaddrinfo(res);
		return errf(err, errlen, "%s: %s", l->url,
			    e == EADDRINUSE ? "address already in use" : strerror(e));
	}
	freeaddrinfo(res);
	l->fd = fd;
	return 0;
}

int listener_open(listener_t *l, const char *url, int allow_remote, char *err, size_t errlen)
{
	memset(l, 0, sizeof(*l));
	l->fd = -1;
	snprintf(l->url, sizeof(l->url), "%s", url);
	if (strncmp(url, "unix://", 7) == 0)
		return open_unix(l, url + 7, err, errlen);
	if (strncmp(url, "tcp://", 6) == 0)
		return open_tcp(l, url + 6, allow_remote, err, errlen);
	return errf(err, errlen, "%s: want unix:///path or tcp://host:port", url);
}

/* One passed socket: a listening stream socket, described as a url. */
static int adopt(listener_t *l, int fd, int allow_remote, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int type = 0, acc = 0;
	socklen_t tl = sizeof(type), al = sizeof(acc);
	memset(l, 0, sizeof(*l));
	l->fd = -1;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) != 0 || type != SOCK_STREAM || !acc ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return errf(err, errlen, "LISTEN_FDS: fd %d is not a listening stream socket", fd);
	if (ss.ss_family == AF_UNIX) {
		const struct sockaddr_un *su = (const struct sockaddr_un *)&ss;
		snprintf(l->url, sizeof(l->url), "unix://%s", su->sun_path[0] ? su->sun_path : "@abstract");
	} else if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
		char host[INET6_ADDRSTRLEN] = "?";
		int port;
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *si = (const struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &si->sin_addr, host, sizeof(host));
			port = ntohs(si->sin_port);
			snprintf(l->url, sizeof(l->url), "tcp://%s:%d", host, port);
		} else {
			const struct sockaddr_in6 *si = (const struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &si->sin6_addr, host, sizeof(host));
			port = ntohs(si->sin6_port);
			snprintf(l->url, sizeof(l->url), "tcp://[%s]:%d", host, port);
		}
		if (!allow_remote && !guard_addr_is_loopback((const struct sockaddr *)&ss))
			return errf(
			    err, errlen,
			    "%s (LISTEN_FDS): refusing a non-loopback address without an explicit token",
			    l->url);
	} else {
		return errf(err, errlen, "LISTEN_FDS: fd %d is neither a unix nor a tcp socket", fd);
	}
	int fl = fcntl(fd, F_GETFL);
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 || fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
		return errf(err, errlen, "LISTEN_FDS: fd %d: %s", fd, strerror(errno));
	l->fd = fd;
	return 0;
}

int listener_activated(listener_t *ls, int max, int allow_remote, char *err, size_t errlen)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	char *end;
	long n = 0;
	int ours = pid != NULL && fds != NULL && strtol(pid, &end, 10) == (long)getpid() && *end == '\0';
	if (ours) {
		n = strtol(fds, &end, 10);
		if (*end != '\0' || n <= 0 || n > max)
			ours = errf(err, errlen, "LISTEN_FDS=%.16s: want 1 to %d sockets", fds, max);
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (ours <= 0)
		return ours;
	for (int i = 0; i < n; i++)
		if (adopt(&ls[i], 3 + i, allow_remote, err, errlen) != 0)
			return -1;
	return (int)n;
}

void listener_remove_file(listener_t *l)
{
	struct stat st;
	/* Remove the file only while it is still the socket we bound: another
	 * supervisor may have replaced it after an operator removed ours. */
	if (l->unix_path[0] != '\0' && lstat(l->unix_path, &st) == 0 && st.st_ino == l->ino &&
	    st.st_dev == l->dev)
		unlink(l->unix_path);
	l->unix_path[0] = '\0';
}
