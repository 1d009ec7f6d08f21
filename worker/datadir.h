/*
 * datadir: where a workspace keeps its state, found as upstream Crush
 * finds it (internal/config/load.go setDefaults), created as it creates
 * it (mode 0700, a .gitignore of "*"), and owned through the exclusive
 * flock on <data_dir>/crush.lock that upstream takes
 * (internal/db/datadirlock.go), so a Go `crush` and a worker never own
 * one data dir at once. Small synchronous syscalls only: run at start
 * and from the config timer, never per request.
 */
#ifndef CRUSH_DATADIR_H
#define CRUSH_DATADIR_H

#include <stddef.h>
#include <sys/types.h>

#define DATADIR_NAME	  ".crush"
#define DATADIR_LOCK_FILE "crush.lock"

/* The owner of dir (through symlinks): 0, or -1 with errno. */
int datadir_owner(const char *dir, uid_t *uid);

/* The git working tree that holds dir (the nearest ancestor, dir
 * included, with a .git entry), or "" when none: upstream's project
 * boundary is that root, else dir itself. */
void datadir_git_root(const char *dir, char *out, size_t len);

/* Lexically cleans path into out (Go's filepath.Clean for absolute
 * paths); base is prefixed when path is relative. */
void datadir_clean(const char *base, const char *path, char *out, size_t len);

/*
 * The data dir of the workspace at root (absolute): option (the create's
 * data_dir), else configured (the chain's options.data_directory), else
 * the nearest existing ".crush" from root up to boundary (never $HOME's),
 * else <root>/.crush. Relative values are taken from root. NULL or "" is
 * "not given". As upstream's fsext lookup, a .crush only counts when its
 * owner is root's; a .git only when it is ours (git's ownership check).
 */
void datadir_resolve(const char *root, const char *boundary, const char *option, const char *configured,
		     char *out, size_t len);

/* Makes dir (and its parents) mode 0700 with a .gitignore of "*" when it
 * has none. 0, or -1 with errno. */
int datadir_prepare(const char *dir);

/*
 * Takes the exclusive non-blocking flock on <dir>/crush.lock and writes
 * upstream's owner info into it ({"pid","version","started_at"}, two-space
 * indented, newline-terminated). Returns the fd, to hold for the life of
 * the process (the file is never unlinked: flock is per inode). -1 with
 * errno: EWOULDBLOCK when another process holds it (*owner = the pid it
 * wrote, 0 if unreadable), anything else as open(2)/flock(2).
 */
int datadir_lock(const char *dir, const char *version, long *owner);

#endif
