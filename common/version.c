/*
 * version: build-time identity (the Makefile passes CRUSH_COMMIT).
 */
#include "common/version.h"

#ifndef CRUSH_COMMIT
#define CRUSH_COMMIT "unknown"
#endif

const char crush_commit[] = CRUSH_COMMIT;

#if defined(__x86_64__)
#define ARCH "amd64"
#elif defined(__aarch64__)
#define ARCH "arm64"
#elif defined(__i386__)
#define ARCH "386"
#else
#define ARCH "unknown"
#endif
const char crush_platform[] = "linux/" ARCH;
