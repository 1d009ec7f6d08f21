/*
 * path: the one path-resolution function. The dedup key of a workspace is
 * realpath(path); for a path that does not exist yet it is the realpath of
 * its longest existing ancestor joined with the remaining cleaned
 * components, so /link/missing and /real/missing share one workspace.
 */
#ifndef CRUSH_PATH_H
#define CRUSH_PATH_H

#include <stddef.h>

/*
 * Resolves absolute path `in` into `out` (PATH_MAX bytes). Returns 0, or
 * -1 with errno: EINVAL (empty or relative), ENAMETOOLONG, ENOTDIR (it,
 * or an existing ancestor, is not a directory), or what realpath(3) set.
 * Components "." and ".." of the missing tail are cleaned lexically.
 */
int path_resolve_key(const char *in, char *out);

#endif
