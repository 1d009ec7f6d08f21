/*
 * relpath: the watch's lexical path helpers, for paths relative to the
 * workspace root as events report them ("src/a.c", never "", "./a" or
 * "a//b"). String work only, save relpath_data_dir, which resolves the
 * data dir through common/path when comparing it as written fails.
 *
 * Ownership: every char * returned is malloc'ed and the caller's to free.
 * Out of memory aborts (as buf does); NULL always means "no such path".
 */
#ifndef CRUSH_RELPATH_H
#define CRUSH_RELPATH_H

/* a "/" b, or a copy of b when a is "". */
char *relpath_join(const char *a, const char *b);

/* A copy of s with each run of '/' made one. */
char *relpath_squeeze(const char *s);

/* 1 when rel is prefix itself or lies under it ("a/b" is under "a", "ab"
 * is not), else 0. */
int relpath_under(const char *rel, const char *prefix);

/* The components of s joined by '/', without "" and "."; NULL when s is
 * empty, climbs with "..", or cleans to nothing. Idempotent. */
char *relpath_clean(const char *s);

/* path relative to root (both absolute) when strictly inside it, cleaned;
 * else NULL. */
char *relpath_inside(const char *root, const char *path);

/*
 * The data dir relative to the root, or NULL when it lies outside it.
 * raw_root is the root as the client wrote it, root its resolved key;
 * data_dir is absolute, relative to the root, or NULL/"" for ".crush".
 * An absolute data_dir is compared as written first, then both resolved
 * (the supervisor may pass the root as written and the data dir resolved).
 */
char *relpath_data_dir(const char *raw_root, const char *root, const char *data_dir);

#endif
