/*
 * root: the workspace directory as the supervisor resolved it, its dedup
 * key (argv[2]), opened without resolving it a second time (SPEC
 * invariant 1). The key is absolute and canonical; once a symlink lies on
 * its way it no longer names the directory it named (another workspace's
 * key may), so it is refused rather than followed.
 */
#ifndef CRUSH_ROOT_H
#define CRUSH_ROOT_H

#include <stddef.h>

/* 1 when key is absolute and lexically canonical: no empty, "." or ".."
 * component and no trailing '/' ("/" itself is canonical); else 0. */
int root_canonical(const char *key);

/*
 * Opens key (O_PATH | O_DIRECTORY, close-on-exec) without following any
 * symlink: openat2 with RESOLVE_NO_SYMLINKS, or where the kernel lacks it,
 * a realpath comparison before an O_NOFOLLOW open. Returns the fd, or -1
 * with errno:
 *   ENOENT, ENOTDIR  not there (yet) as a directory: wait for it;
 *   ELOOP            there, through a symlink: it resolves elsewhere now;
 *   anything else    as open(2) (EACCES: an ancestor cannot be searched).
 * A symlink that leads nowhere (dangling) counts as not there yet.
 */
int root_open(const char *key);

/* The reason a key was refused with ELOOP, for people:
 * "directory changed under the workspace: <key> now resolves to <path>". */
void root_describe_change(const char *key, char *out, size_t len);

#endif
