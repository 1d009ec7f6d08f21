/*
 * listen: opens the -H listeners (unix sockets with stale-file recovery,
 * loopback tcp) and removes unix socket files on exit.
 */
#ifndef CRUSH_LISTEN_H
#define CRUSH_LISTEN_H

#include <stddef.h>
#include <sys/types.h>

typedef struct listener {
	int fd; /* handed to the event loop, which closes it */
	ino_t ino;
	dev_t dev;
	char url[256];
	char unix_path[108]; /* "" for tcp */
} listener_t;

/*
 * Binds url. Unix sockets are created mode 0600, in a directory no other
 * user can write to (or a sticky one, like /tmp). A path that exists is
 * used only when it is a socket of ours: a symlink or another user's file
 * is refused, never followed or removed. Our socket is probed: a live
 * listener is "address already in use" (never unlinked); a dead one is
 * removed with a warning. A tcp address that is not loopback is refused
 * unless allow_remote (a token was given explicitly, SPEC §7). Returns 0,
 * or -1 with a message in err.
 */
int listener_open(listener_t *l, const char *url, int allow_remote, char *err, size_t errlen);
/*
 * Socket activation (SPEC §5, systemd's sd_listen_fds protocol): when
 * LISTEN_PID is our pid, takes the LISTEN_FDS sockets from fd 3 on as the
 * listeners (up to max), made close-on-exec and non-blocking, each url
 * from getsockname. Their unix_path stays "": a passed socket file is
 * never unlinked. A tcp one that is not loopback is refused unless
 * allow_remote, as for -H. LISTEN_* are removed from the environment
 * either way, so no worker inherits them. Returns how many (0: not
 * activated), or -1 with a message in err.
 */
int listener_activated(listener_t *ls, int max, int allow_remote, char *err, size_t errlen);
/* Removes the unix socket file if it is still the one we bound. */
void listener_remove_file(listener_t *l);

#endif
