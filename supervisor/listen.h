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
 * Binds url. A unix socket file that exists is probed: a live listener is
 * "address already in use" (never unlinked); a dead one is removed with a
 * warning. Unix sockets are created mode 0600. Returns 0, or -1 with a
 * message in err.
 */
int listener_open(listener_t *l, const char *url, char *err, size_t errlen);
/* Removes the unix socket file if it is still the one we bound. */
void listener_remove_file(listener_t *l);

#endif
