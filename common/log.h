/*
 * log: one logfmt line per record on stderr, the shape Go's slog text
 * handler writes (time=… level=INFO msg="…" key=value), so operators can
 * grep the supervisor and the upstream server alike.
 */
#ifndef CRUSH_LOG_H
#define CRUSH_LOG_H

/* Longest value written whole; longer ones are cut and marked "…". */
#define LOG_MAX_VALUE 256

enum log_level { LOG_DEBUG = -4, LOG_INFO = 0, LOG_WARN = 4, LOG_ERROR = 8 };

extern enum log_level log_min_level;

/* Parses "debug|info|warn|error"; returns 0 on success. */
int log_parse_level(const char *s, enum log_level *out);
/* "debug", "info", "warn" or "error": what log_parse_level takes. */
const char *log_level_arg(enum log_level level);

/*
 * Writes one record. kv is a NULL-terminated list of key, value string
 * pairs; values are quoted when they need it (space, quote, '=', control
 * characters, invalid UTF-8, or empty) and cut past LOG_MAX_VALUE bytes. One write(2) per record so lines
 * never interleave. log_kv(LOG_INFO, "Worker started", "workspace_id", id, "pid", pidstr, NULL);
 */
void log_kv(enum log_level level, const char *msg, ...) __attribute__((sentinel));

#define log_debug(...) log_kv(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_kv(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_kv(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_kv(LOG_ERROR, __VA_ARGS__)

#endif
