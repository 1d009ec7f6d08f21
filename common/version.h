/*
 * version: what both programs report as their version.
 */
#ifndef CRUSH_VERSION_H
#define CRUSH_VERSION_H

#define CRUSH_VERSION "0.1.0"

/* Set at build time from git (common/version.c). */
extern const char crush_commit[];
/* "linux/amd64", as Go's runtime.GOOS/GOARCH name it. */
extern const char crush_platform[];

#endif
