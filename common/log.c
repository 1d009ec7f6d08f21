/*
 * log: logfmt records on stderr, as Go's slog text handler writes them.
 */
#include "common/log.h"

#include <stdarg.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/utf8.h"

enum log_level log_min_level = LOG_INFO;

static const struct {
	const char *name;
	enum log_level level;
} names[] = {{"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warn", LOG_WARN}, {"error", LOG_ERROR}};

const char *log_level_arg(enum log_level level)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].level == level)
			return names[i].name;
	return "error";
}

int log_parse_level(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(s, names[i].name) == 0) {
			*out = names[i].level;
			return 0;
		}
	}
	return -1;
}

static const char *level_name(enum log_level l)
{
	switch (l) {
	case LOG_DEBUG:
		return "DEBUG";
	case LOG_INFO:
		return "INFO";
	case LOG_WARN:
		return "WARN";
	default:
		return "ERROR";
	}
}

/* slog quotes a value that is empty or holds a space, '=', '"', a
 * non-printable byte or invalid UTF-8; inside quotes it escapes like
 * strconv.Quote (an invalid byte as \xNN). Values longer than
 * LOG_MAX_VALUE bytes are cut at a character boundary and marked with
 * "…", so a client-chosen field cannot flood the log. */
static void append_value(buf_t *b, const char *v)
{
	const unsigned char *p = (const unsigned char *)v, *end = p + strlen(v);
	int cut = 0;
	if (end - p > LOG_MAX_VALUE) {
		end = p + LOG_MAX_VALUE;
		while (end > p && (*end & 0xc0) == 0x80)
			end--; /* never split a character */
		cut = 1;
	}
	int quote = p == end;
	for (const unsigned char *q = p; q < end && !quote;) {
		size_t n = utf8_seq_len((const char *)q, (size_t)(end - q));
		quote = *q <= ' ' || *q == '=' || *q == '"' || *q == 0x7f || n == 0;
		q += n ? n : 1;
	}
	if (!quote) {
		buf_append(b, p, (size_t)(end - p));
		if (cut)
			buf_append(b, "\xe2\x80\xa6", 3);
		return;
	}
	buf_append(b, "\"", 1);
	while (p < end) {
		size_t n;
		switch (*p) {
		case '"':
			buf_append(b, "\\\"", 2);
			break;
		case '\\':
			buf_append(b, "\\\\", 2);
			break;
		case '\n':
			buf_append(b, "\\n", 2);
			break;
		case '\t':
			buf_append(b, "\\t", 2);
			break;
		case '\r':
			buf_append(b, "\\r", 2);
			break;
		default:
			if (*p < ' ' || *p == 0x7f) {
				buf_appendf(b, "\\x%02x", *p);
			} else if (*p >= 0x80 && (n = utf8_seq_len((const char *)p, (size_t)(end - p))) > 0) {
				buf_append(b, p, n);
				p += n;
				continue;
			} else if (*p >= 0x80) {
				buf_appendf(b, "\\x%02x", *p);
			} else {
				buf_append(b, p, 1);
			}
		}
		p++;
	}
	if (cut)
		buf_append(b, "\xe2\x80\xa6", 3);
	buf_append(b, "\"", 1);
}

void log_kv(enum log_level level, const char *msg, ...)
{
	/* Both processes are single-threaded: one line buffer, reused. */
	static buf_t b = BUF_INIT;
	if (level < log_min_level)
		return;
	buf_reset(&b);

	struct timeval tv;
	struct tm tm;
	char ts[32], tz[8];
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	strftime(tz, sizeof(tz), "%z", &tm);
	/* RFC 3339 with milliseconds, as slog (Go's time) writes it: UTC is
	 * "Z" (2026-11-24T01:02:03.456Z), else the offset (+01:00). */
	if (tm.tm_gmtoff == 0)
		buf_appendf(&b, "time=%s.%03ldZ level=%s msg=", ts, (long)tv.tv_usec / 1000,
			    level_name(level));
	else
		buf_appendf(&b, "time=%s.%03ld%.3s:%.2s level=%s msg=", ts, (long)tv.tv_usec / 1000, tz,
			    tz + 3, level_name(level));
	append_value(&b, msg);

	va_list ap;
	va_start(ap, msg);
	const char *k;
	while ((k = va_arg(ap, const char *)) != NULL) {
		const char *v = va_arg(ap, const char *);
		buf_append(&b, " ", 1);
		buf_append(&b, k, strlen(k));
		buf_append(&b, "=", 1);
		append_value(&b, v ? v : "");
	}
	va_end(ap);
	buf_append(&b, "\n", 1);
	ssize_t w = write(STDERR_FILENO, buf_data(&b), buf_size(&b));
	(void)w;
}
