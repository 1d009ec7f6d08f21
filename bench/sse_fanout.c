/*
 * sse_fanout: the fan-out benchmark's client. It holds S event streams of
 * one workspace (HTTP/1.1, chunked, one connection per stream, one epoll
 * thread), then per round signals the bench worker (SIGUSR1: N events),
 * reads until every stream has all N, and checks them:
 *
 *   - every event is {"type":"bench","payload":{"seq":k}} with k = 0..N-1
 *     in order on every stream (nothing lost, nothing duplicated);
 *   - ids strictly increase on every stream;
 *   - the (id, data) sequence is the same on every stream (a 64-bit FNV-1a
 *     over it per stream, compared, plus equal first and last ids);
 *   - no stream ends early (the server ends streams of slow readers).
 *
 * deliveries/s = S * N / (time from the signal to the last stream done).
 *
 * --self: the anchor. No HTTP server: a forked writer process writes the
 * same SSE bytes, chunk-framed as h2o frames them, in batches to S
 * socketpairs (one write per batch per socket, blocking), and this same
 * reader reads them. That is this machine's fan-out ceiling with this
 * reader, and shows how fast the reader itself goes.
 *
 * Usage:
 *   sse_fanout --unix PATH --ws ID --pid WORKER_PID [--sup-pid PID]
 *              [--streams S] [--events N] [--rounds R] [--timeout SECS]
 *   sse_fanout --self [--writer-cpu C] [--streams S] [--events N] [--rounds R]
 * Prints one JSON object on stdout; exit 0 only when every check passed.
 */
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { H_HDR, H_SIZE, H_DATA, H_CRLF, H_RAW, H_END };

struct stream {
	int fd;
	int hstate;
	char hdr[4096];
	size_t hlen;
	size_t chunk_left; /* H_DATA: bytes of the chunk still to come */
	int crlf_left;
	char *sse; /* decoded body bytes not yet parsed */
	size_t slen, scap;
	int connected; /* ": connected" seen */
	int eof;
	/* per round */
	long count;
	uint64_t last_id, first_id;
	uint64_t hash;
	int done;
	char err[160];
};

static struct stream *streams;
static int nstreams = 200, nevents = 20000;
static int ndone;
static char failure[512];

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_self(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime of a process, in seconds; -1 when unknown. */
static double cpu_of(int pid)
{
	char path[64], buf[1024];
	if (pid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (p == NULL)
		return -1;
	unsigned long ut = 0, st = 0;
	/* fields after ") ": state(3) ... utime(14) stime(15) */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void fnv(uint64_t *h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++) {
		*h ^= c[i];
		*h *= 1099511628211ULL;
	}
}

static void __attribute__((format(printf, 2, 3))) stream_fail(struct stream *s, const char *fmt, ...)
{
	if (s->err[0] == '\0') {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(s->err, sizeof(s->err), fmt, ap);
		va_end(ap);
	}
	if (failure[0] == '\0')
		snprintf(failure, sizeof(failure), "stream %d: %s", (int)(s - streams), s->err);
}

/* One SSE event block (without the blank line). */
static void on_event(struct stream *s, const char *b, size_t n)
{
	const char *end = b + n, *p = b;
	uint64_t id = 0;
	int have_id = 0;
	const char *data = NULL;
	size_t dlen = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		if (le - p >= 4 && memcmp(p, "id: ", 4) == 0) {
			id = strtoull(p + 4, NULL, 10);
			have_id = 1;
		} else if (le - p >= 6 && memcmp(p, "data: ", 6) == 0) {
			data = p + 6;
			dlen = (size_t)(le - data);
		} else if (p < le && *p == ':') {
			if (le - p >= 11 && memcmp(p, ": connected", 11) == 0)
				s->connected = 1;
		}
		p = le + 1;
	}
	if (data == NULL)
		return; /* a comment (connected, keep-alive) */
	if (!have_id) {
		stream_fail(s, "event without id after %ld events", s->count);
		return;
	}
	if (s->done) {
		stream_fail(s, "extra event id %ld after all %ld", (long)id, s->count);
		return;
	}
	static const char pre[] = "{\"type\":\"bench\",\"payload\":{\"seq\":";
	char *q;
	long seq = -1;
	if (dlen > sizeof(pre) - 1 && memcmp(data, pre, sizeof(pre) - 1) == 0) {
		seq = strtol(data + sizeof(pre) - 1, &q, 10);
		if ((size_t)(data + dlen - q) != 2 || memcmp(q, "}}", 2) != 0)
			seq = -1;
	}
	if (seq != s->count) {
		stream_fail(s, "expected seq %ld, got %ld (lost or reordered)", s->count, seq);
		return;
	}
	if (s->count == 0)
		s->first_id = id;
	else if (id <= s->last_id) {
		stream_fail(s, "id %ld after %ld: not increasing", (long)id, (long)s->last_id);
		return;
	}
	s->last_id = id;
	fnv(&s->hash, &id, sizeof(id));
	fnv(&s->hash, data, dlen);
	if (++s->count == nevents) {
		s->done = 1;
		ndone++;
	}
}

static void sse_feed(struct stream *s, const char *d, size_t n)
{
	if (s->slen + n > s->scap) {
		s->scap = (s->slen + n) * 2 + 4096;
		s->sse = realloc(s->sse, s->scap);
		if (s->sse == NULL)
			abort();
	}
	memcpy(s->sse + s->slen, d, n);
	s->slen += n;
	size_t off = 0;
	for (;;) {
		char *p = s->sse + off, *e = s->sse + s->slen;
		char *bl = NULL;
		/* find "\n\n" */
		for (char *nl = memchr(p, '\n', (size_t)(e - p)); nl != NULL && nl + 1 < e;
		     nl = memchr(nl + 1, '\n', (size_t)(e - nl - 1))) {
			if (nl[1] == '\n') {
				bl = nl;
				break;
			}
		}
		if (bl == NULL)
			break;
		on_event(s, p, (size_t)(bl - p));
		off = (size_t)(bl + 2 - s->sse);
	}
	if (off > 0) {
		memmove(s->sse, s->sse + off, s->slen - off);
		s->slen -= off;
	}
}

/* Response bytes: headers, then the chunked (or raw) body into sse_feed. */
static void on_bytes(struct stream *s, const char *p, size_t n)
{
	const char *end = p + n;
	while (p < end) {
		switch (s->hstate) {
		case H_HDR: {
			size_t take = (size_t)(end - p);
			if (take > sizeof(s->hdr) - 1 - s->hlen)
				take = sizeof(s->hdr) - 1 - s->hlen;
			memcpy(s->hdr + s->hlen, p, take);
			size_t old = s->hlen;
			s->hlen += take;
			s->hdr[s->hlen] = '\0';
			char *eoh = strstr(s->hdr, "\r\n\r\n");
			if (eoh == NULL) {
				if (s->hlen == sizeof(s->hdr) - 1) {
					stream_fail(s, "response headers too long");
					s->hstate = H_END;
				}
				p += take;
				break;
			}
			size_t used = (size_t)(eoh + 4 - s->hdr) - old;
			p += used;
			if (strncmp(s->hdr, "HTTP/1.1 200", 12) != 0 && strncmp(s->hdr, "HTTP/1.0 200", 12) != 0) {
				char *cr = strchr(s->hdr, '\r');
				if (cr)
					*cr = '\0';
				stream_fail(s, "status: %.100s", s->hdr);
				s->hstate = H_END;
				break;
			}
			s->hstate = strcasestr(s->hdr, "transfer-encoding: chunked") ? H_SIZE : H_RAW;
			s->hlen = 0;
			break;
		}
		case H_SIZE: {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t take = nl ? (size_t)(nl + 1 - p) : (size_t)(end - p);
			if (s->hlen + take >= sizeof(s->hdr)) {
				stream_fail(s, "bad chunk header");
				s->hstate = H_END;
				break;
			}
			memcpy(s->hdr + s->hlen, p, take);
			s->hlen += take;
			p += take;
			if (nl == NULL)
				break;
			s->hdr[s->hlen] = '\0';
			s->chunk_left = strtoul(s->hdr, NULL, 16);
			s->hlen = 0;
			s->hstate = s->chunk_left == 0 ? H_END : H_DATA;
			break;
		}
		case H_DATA: {
			size_t take = (size_t)(end - p) < s->chunk_left ? (size_t)(end - p) : s->chunk_left;
			sse_feed(s, p, take);
			p += take;
			s->chunk_left -= take;
			if (s->chunk_left == 0) {
				s->hstate = H_CRLF;
				s->crlf_left = 2;
			}
			break;
		}
		case H_CRLF:
			p++;
			if (--s->crlf_left == 0)
				s->hstate = H_SIZE;
			break;
		case H_RAW:
			sse_feed(s, p, (size_t)(end - p));
			p = end;
			break;
		default:
			p = end;
			break;
		}
	}
}

static void uuid4(char out[37])
{
	unsigned char r[16];
	for (int i = 0; i < 16; i++)
		r[i] = (unsigned char)(random() & 0xff);
	r[6] = (r[6] & 0x0f) | 0x40;
	r[8] = (r[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
		 r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
}

static int epfd;
static char rbuf[1 << 18];

/* Reads whatever is ready; returns -1 on timeout. */
static int pump(double deadline, int (*until)(void))
{
	struct epoll_event ev[256];
	while (!until()) {
		double left = deadline - now_s();
		if (left <= 0)
			return -1;
		int n = epoll_wait(epfd, ev, 256, (int)(left * 1000) + 1);
		if (n < 0 && errno != EINTR)
			return -1;
		for (int i = 0; i < n; i++) {
			struct stream *s = ev[i].data.ptr;
			for (;;) {
				ssize_t r = read(s->fd, rbuf, sizeof(rbuf));
				if (r > 0) {
					on_bytes(s, rbuf, (size_t)r);
					if ((size_t)r < sizeof(rbuf))
						break;
					continue;
				}
				if (r < 0 && errno == EINTR)
					continue;
				if (r < 0 && errno == EAGAIN)
					break;
				/* EOF or error: the server ended this stream. */
				if (!s->eof) {
					s->eof = 1;
					epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
					if (!s->done)
						stream_fail(s, "stream ended by the server after %ld of %d events",
							    s->count, nevents);
				}
				break;
			}
		}
		if (failure[0] != '\0')
			return -1;
	}
	return 0;
}

static int all_connected(void)
{
	for (int i = 0; i < nstreams; i++)
		if (!streams[i].connected)
			return 0;
	return 1;
}

static int all_done(void)
{
	return ndone == nstreams;
}

/* The anchor's writer: chunks of `batch` events, each written to every
 * socket in turn, blocking; waits for one byte on ctl per round. */
static void writer(int *fds, int ctl, int rounds)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
				   "Transfer-Encoding: chunked\r\n\r\nd\r\n: connected\n\n\r\n";
	for (int i = 0; i < nstreams; i++)
		if (write(fds[i], head, sizeof(head) - 1) < 0)
			_exit(1);
	uint64_t id = 1;
	const int batch = 64;
	char *chunk = malloc((size_t)batch * 128 + 32), *body = malloc((size_t)batch * 128);
	for (int r = 0; r < rounds; r++) {
		char c;
		if (read(ctl, &c, 1) != 1)
			_exit(0);
		for (int k = 0; k < nevents; k += batch) {
			size_t bl = 0;
			for (int j = k; j < k + batch && j < nevents; j++)
				bl += (size_t)sprintf(body + bl,
						      "id: %llu\ndata: {\"type\":\"bench\",\"payload\":{\"seq\":%d}}\n\n",
						      (unsigned long long)id++, j);
			int hl = sprintf(chunk, "%zx\r\n", bl);
			memcpy(chunk + hl, body, bl);
			memcpy(chunk + hl + bl, "\r\n", 2);
			size_t cl = (size_t)hl + bl + 2;
			for (int i = 0; i < nstreams; i++) {
				size_t off = 0;
				while (off < cl) {
					ssize_t w = write(fds[i], chunk + off, cl - off);
					if (w < 0 && errno == EINTR)
						continue;
					if (w <= 0)
						_exit(1);
					off += (size_t)w;
				}
			}
		}
	}
	_exit(0);
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	const char *unix_path = NULL, *ws = NULL;
	int worker_pid = 0, sup_pid = 0, rounds = 3, self = 0, hold = 0, writer_cpu = -1;
	double timeout = 60;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--self") == 0) {
			self = 1;
			continue;
		}
		if (strcmp(a, "--hold") == 0) {
			hold = 1;
			continue;
		}
		if (v == NULL) {
			fprintf(stderr, "sse_fanout: %s needs a value\n", a);
			return 2;
		}
		i++;
		if (strcmp(a, "--unix") == 0)
			unix_path = v;
		else if (strcmp(a, "--ws") == 0)
			ws = v;
		else if (strcmp(a, "--pid") == 0)
			worker_pid = atoi(v);
		else if (strcmp(a, "--sup-pid") == 0)
			sup_pid = atoi(v);
		else if (strcmp(a, "--streams") == 0)
			nstreams = atoi(v);
		else if (strcmp(a, "--events") == 0)
			nevents = atoi(v);
		else if (strcmp(a, "--rounds") == 0)
			rounds = atoi(v);
		else if (strcmp(a, "--timeout") == 0)
			timeout = atof(v);
		else if (strcmp(a, "--writer-cpu") == 0)
			writer_cpu = atoi(v);
		else {
			fprintf(stderr, "sse_fanout: unknown %s\n", a);
			return 2;
		}
	}
	if (!self && (unix_path == NULL || ws == NULL || worker_pid <= 0)) {
		fprintf(stderr, "usage: sse_fanout --unix PATH --ws ID --pid WORKER_PID ... | --self ...\n");
		return 2;
	}
	srandom((unsigned)(getpid() ^ (unsigned)(now_s() * 1e6)));
	signal(SIGPIPE, SIG_IGN);
	streams = calloc((size_t)nstreams, sizeof(*streams));
	epfd = epoll_create1(EPOLL_CLOEXEC);

	int ctl[2] = {-1, -1};
	pid_t wpid = 0;
	if (self) {
		int *wfds = calloc((size_t)nstreams, sizeof(int));
		for (int i = 0; i < nstreams; i++) {
			int sv[2];
			if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
				perror("socketpair");
				return 1;
			}
			streams[i].fd = sv[0];
			wfds[i] = sv[1];
		}
		if (pipe(ctl) != 0)
			return 1;
		wpid = fork();
		if (wpid == 0) {
			if (writer_cpu >= 0) {
				cpu_set_t set;
				CPU_ZERO(&set);
				CPU_SET(writer_cpu, &set);
				sched_setaffinity(0, sizeof(set), &set);
			}
			close(ctl[1]);
			for (int i = 0; i < nstreams; i++)
				close(streams[i].fd);
			writer(wfds, ctl[0], rounds);
		}
		close(ctl[0]);
		for (int i = 0; i < nstreams; i++)
			close(wfds[i]);
		free(wfds);
		sup_pid = wpid;
	} else {
		for (int i = 0; i < nstreams; i++) {
			struct sockaddr_un sa = {.sun_family = AF_UNIX};
			snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", unix_path);
			int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
			if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
				printf("{\"ok\":false,\"error\":\"connect %d: %s\"}\n", i, strerror(errno));
				return 1;
			}
			char cid[37], req[512];
			uuid4(cid);
			int n = snprintf(req, sizeof(req),
					 "GET /v1/workspaces/%s/events?client_id=%s HTTP/1.1\r\nHost: bench\r\n"
					 "Accept: text/event-stream\r\n\r\n",
					 ws, cid);
			if (write(fd, req, (size_t)n) != n) {
				printf("{\"ok\":false,\"error\":\"write request %d\"}\n", i);
				return 1;
			}
			streams[i].fd = fd;
		}
	}
	for (int i = 0; i < nstreams; i++) {
		struct stream *s = &streams[i];
		s->hstate = H_HDR;
		fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
		epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev);
	}
	if (pump(now_s() + 30, all_connected) != 0) {
		int c = 0;
		for (int i = 0; i < nstreams; i++)
			c += streams[i].connected;
		printf("{\"ok\":false,\"error\":\"only %d of %d streams connected: %s\"}\n", c, nstreams,
		       failure);
		return 1;
	}

	double *secs = calloc((size_t)rounds, sizeof(double));
	double *rate = calloc((size_t)rounds, sizeof(double));
	double *rcpu = calloc((size_t)rounds, sizeof(double));
	double *scpu = calloc((size_t)rounds, sizeof(double));
	long lost = 0;
	int ok = 1, done_rounds = 0;
	for (int r = 0; r < rounds && ok; r++) {
		usleep(200000);
		for (int i = 0; i < nstreams; i++) {
			struct stream *s = &streams[i];
			s->count = 0;
			s->done = 0;
			s->hash = 1469598103934665603ULL;
		}
		ndone = 0;
		double c0 = cpu_self(), s0 = cpu_of(sup_pid), t0 = now_s();
		if (self) {
			if (write(ctl[1], "g", 1) != 1)
				return 1;
		} else if (kill(worker_pid, SIGUSR1) != 0) {
			printf("{\"ok\":false,\"error\":\"kill worker %d: %s\"}\n", worker_pid, strerror(errno));
			return 1;
		}
		int pr = pump(t0 + timeout, all_done);
		double t1 = now_s(), c1 = cpu_self(), s1 = cpu_of(sup_pid);
		if (pr != 0) {
			ok = 0;
			for (int i = 0; i < nstreams; i++)
				lost += nevents - streams[i].count;
			if (failure[0] == '\0')
				snprintf(failure, sizeof(failure), "timeout after %.0f s: %d of %d streams complete",
					 timeout, ndone, nstreams);
			break;
		}
		for (int i = 1; i < nstreams; i++) {
			if (streams[i].hash != streams[0].hash || streams[i].first_id != streams[0].first_id ||
			    streams[i].last_id != streams[0].last_id) {
				ok = 0;
				snprintf(failure, sizeof(failure),
					 "round %d: stream %d's (id, data) sequence differs from stream 0's", r, i);
				break;
			}
		}
		secs[r] = t1 - t0;
		rate[r] = (double)nstreams * nevents / secs[r];
		rcpu[r] = (c1 - c0) / secs[r];
		scpu[r] = s0 >= 0 && s1 >= 0 ? (s1 - s0) / secs[r] : -1;
		done_rounds++;
	}
	if (self) {
		close(ctl[1]);
		kill(wpid, SIGTERM);
		waitpid(wpid, NULL, 0);
	}

	printf("{\"ok\":%s,\"streams\":%d,\"events\":%d,\"rounds\":%d,\"lost\":%ld,", ok ? "true" : "false",
	       nstreams, nevents, done_rounds, lost);
	printf("\"secs\":[");
	for (int r = 0; r < done_rounds; r++)
		printf("%s%.4f", r ? "," : "", secs[r]);
	printf("],\"rate\":[");
	for (int r = 0; r < done_rounds; r++)
		printf("%s%.0f", r ? "," : "", rate[r]);
	printf("],\"reader_cpu\":[");
	for (int r = 0; r < done_rounds; r++)
		printf("%s%.3f", r ? "," : "", rcpu[r]);
	printf("],\"server_cpu\":[");
	for (int r = 0; r < done_rounds; r++)
		printf("%s%.3f", r ? "," : "", scpu[r]);
	double med = 0;
	if (done_rounds > 0) {
		qsort(rate, (size_t)done_rounds, sizeof(double), cmpd);
		med = rate[done_rounds / 2];
	}
	printf("],\"median_rate\":%.0f,\"error\":\"", med);
	for (const char *p = failure; *p; p++)
		if (*p != '"' && *p != '\\')
			putchar(*p);
	printf("\"}\n");
	fflush(stdout);
	if (hold) {
		/* Keep the streams open (reading what comes) until stdin closes,
		 * at most 60 s: the caller samples the server meanwhile. */
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
		epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);
		double end = now_s() + 60;
		for (;;) {
			struct epoll_event got[64];
			int n = epoll_wait(epfd, got, 64, 200);
			int quit = now_s() > end;
			for (int i = 0; i < n; i++) {
				if (got[i].data.ptr == NULL) {
					quit = 1;
					continue;
				}
				struct stream *st = got[i].data.ptr;
				ssize_t r = read(st->fd, rbuf, sizeof(rbuf));
				if (r <= 0)
					epoll_ctl(epfd, EPOLL_CTL_DEL, st->fd, NULL);
			}
			if (quit)
				break;
		}
	}
	return ok ? 0 : 1;
}
