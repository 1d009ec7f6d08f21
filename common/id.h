/*
 * id: UUIDs for workspace ids (minted) and client ids (validated).
 */
#ifndef CRUSH_ID_H
#define CRUSH_ID_H

#include <stddef.h>

#define ID_LEN 36 /* canonical text form, without NUL */

/* Writes a fresh random (v4) UUID, lower case, NUL-terminated. */
void id_new(char out[ID_LEN + 1]);

/*
 * Accepts exactly the canonical 8-4-4-4-12 hex form (any case) and writes
 * it lower-cased to out. Returns 0, or -1 for anything else (empty, braces,
 * urn: prefix, wrong length). len is the input's length (no NUL needed).
 */
int id_parse(const char *in, size_t len, char out[ID_LEN + 1]);

#endif
