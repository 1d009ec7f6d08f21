/*
 * token: where the TCP bearer token comes from (SPEC §7): a file the
 * operator names, or the per-user file in the runtime directory that the
 * first TCP daemon without a token creates. Files are read and written
 * without following planted links and refused when another user could
 * have written or read them. Runs once at start, before the loop.
 */
#ifndef CRUSH_TOKEN_H
#define CRUSH_TOKEN_H

#include <stddef.h>

#include "supervisor/guard.h"

/* 32 random bytes as lowercase hex. */
#define TOKEN_GENERATED_LEN 64

/* <$XDG_RUNTIME_DIR, else /tmp>/crush-<uid>.token, as crush-ps finds it.
 * Returns 0, or -1 when it does not fit. */
int token_default_path(char *out, size_t outlen);

/*
 * Reads the token of --token-file path into out (NUL-terminated): one
 * line, trailing whitespace removed. The file (symlinks followed: the
 * operator named it) must be a regular file owned by us or root and
 * readable by no one else. Returns 0, or -1 with a message in err.
 */
int token_read_file(const char *path, char out[GUARD_TOKEN_MAX + 1], char *err, size_t errlen);

/*
 * The generated token at path (token_default_path): an existing file of
 * ours (regular, mode 0600, a valid token) is reused, so daemons of one
 * user share it and clients keep it across restarts; otherwise a fresh
 * one is written to a new 0600 file (O_EXCL|O_NOFOLLOW on a temporary
 * name, then link or rename into place, all relative to the directory
 * opened once). A symlink, a non-regular file or another user's file at
 * path is refused. *created says which. Returns 0, or -1 with err.
 */
int token_load_or_create(const char *path, char out[GUARD_TOKEN_MAX + 1], int *created, char *err,
			 size_t errlen);

#endif
