/*
 * spawn_floor: this machine's floor for starting a worker, the anchor of
 * the create->ready latency. Per round:
 *
 *   t0  socketpair + fork; the child moves its end to fd 3 and execs
 *       bench/spawn_child, which writes one byte and waits for one back;
 *   t1  the parent has read that byte and written one back (one round trip
 *       over the pair, like HELLO/READY then the first answer);
 *   t2  SIGTERM to the child, then waitpid until it is reaped: t3.
 *
 * spawn = t1 - t0 (the floor of "create -> ready"), reap = t3 - t2 (the
 * floor of "release -> reaped"). Prints one JSON object with p50/p99/min
 * of both, in microseconds. Usage: spawn_floor CHILD [ROUNDS]
 *
 * spawn_floor CHILD --serve: one round per line read on stdin, answered
 * with one line "SPAWN_US REAP_US" (flushed), until EOF. bench.py uses it
 * to interleave floor rounds with the daemon's creates, so both are
 * measured under the same background load. A line "w WORKER DIR" instead
 * starts the real worker binary (WORKER <id> DIR --fd 3, in its own
 * session, as the supervisor does), queues the setup request the
 * supervisor queues, and times it until its READY frame:
 * the worker's own start-up cost, without the supervisor.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *v, int n, double p)
{
	int i = (int)(p / 100.0 * n + 0.999999) - 1;
	if (i < 0)
		i = 0;
	if (i >= n)
		i = n - 1;
	return v[i];
}

/* Reads frames (12-byte header: u32 length, version, type, ...) until
 * one of type 2 (READY); 0, or -1 at EOF. */
static int wait_ready(int fd)
{
	unsigned char buf[8192];
	size_t have = 0;
	for (;;) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - have);
		if (n <= 0)
			return -1;
		have += (size_t)n;
		size_t off = 0;
		while (have - off >= 12) {
			size_t len = (size_t)buf[off] << 24 | (size_t)buf[off + 1] << 16 |
				     (size_t)buf[off + 2] << 8 | buf[off + 3];
			if (buf[off + 5] == 2)
				return 0;
			if (have - off < 12 + len)
				break;
			off += 12 + len;
		}
		memmove(buf, buf + off, have - off);
		have -= off;
		if (have == sizeof(buf))
			return -1;
	}
}

/* One round; 0, or -1 on failure. With dir, child is the real worker. */
static int round_trip(const char *child, const char *dir, double *spawn_us, double *reap_us)
{
	char *cargv[] = {(char *)child, "3", NULL};
	char parent[16];
	snprintf(parent, sizeof(parent), "%d", (int)getpid());
	char *wargv[] = {(char *)child, "00000000-0000-4000-8000-000000000000", (char *)dir, "--fd", "3",
			 "--parent", parent, "--log-level", "warn", NULL};
	int sv[2];
	char c;
	double t0 = now_us();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		perror("socketpair");
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return -1;
	}
	if (pid == 0) {
		if (dir != NULL)
			setsid();
		/* dup2 clears FD_CLOEXEC on the copy: fd 3 is all it keeps. */
		if (dup2(sv[1], 3) < 0)
			_exit(127);
		execve(child, dir != NULL ? wargv : cargv, environ);
		_exit(127);
	}
	close(sv[1]);
	/* The worker answers its setup request before READY (PROTOCOL.md,
	 * handshake), as the supervisor queues it at spawn. */
	static const char setup[] = "{\"method\":\"setup\",\"env\":[]}";
	unsigned char frame[12 + sizeof(setup) - 1] = {0, 0, 0, (unsigned char)(sizeof(setup) - 1), 1, 4, 0, 0,
							0, 0, 0, 1};
	memcpy(frame + 12, setup, sizeof(setup) - 1);
	if (dir != NULL && write(sv[0], frame, sizeof(frame)) != (ssize_t)sizeof(frame)) {
		perror("spawn_floor: setup");
		return -1;
	}
	if (dir != NULL ? wait_ready(sv[0]) != 0 : read(sv[0], &c, 1) != 1 || write(sv[0], &c, 1) != 1) {
		fprintf(stderr, "spawn_floor: %s did not answer\n", child);
		return -1;
	}
	double t1 = now_us();

	double t2 = now_us();
	kill(dir != NULL ? -pid : pid, SIGTERM);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
	}
	double t3 = now_us();
	close(sv[0]);
	*spawn_us = t1 - t0;
	*reap_us = t3 - t2;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: spawn_floor CHILD [ROUNDS | --serve]\n");
		return 2;
	}
	const char *child = argv[1];
	if (argc > 2 && strcmp(argv[2], "--serve") == 0) {
		char line[8192], wpath[4096], wdir[4096];
		double s, r;
		while (fgets(line, sizeof(line), stdin) != NULL) {
			int w = sscanf(line, "w %4095s %4095s", wpath, wdir) == 2;
			if (round_trip(w ? wpath : child, w ? wdir : NULL, &s, &r) != 0)
				return 1;
			printf("%.1f %.1f\n", s, r);
			fflush(stdout);
		}
		return 0;
	}
	int rounds = argc > 2 ? atoi(argv[2]) : 300;
	int warm = 10;
	double *spawn = calloc((size_t)rounds, sizeof(double));
	double *reap = calloc((size_t)rounds, sizeof(double));

	for (int r = -warm; r < rounds; r++) {
		double s, rp;
		if (round_trip(child, NULL, &s, &rp) != 0)
			return 1;
		if (r >= 0) {
			spawn[r] = s;
			reap[r] = rp;
		}
	}
	qsort(spawn, (size_t)rounds, sizeof(double), cmp);
	qsort(reap, (size_t)rounds, sizeof(double), cmp);
	printf("{\"rounds\":%d,\"spawn_p50_us\":%.1f,\"spawn_p99_us\":%.1f,\"spawn_min_us\":%.1f,"
	       "\"reap_p50_us\":%.1f,\"reap_p99_us\":%.1f}\n",
	       rounds, pct(spawn, rounds, 50), pct(spawn, rounds, 99), spawn[0], pct(reap, rounds, 50),
	       pct(reap, rounds, 99));
	return 0;
}
