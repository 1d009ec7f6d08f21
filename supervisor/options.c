/*
 * options: crush-supervisor's flags, env fallbacks and --help text.
 */
#include "supervisor/options.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/version.h"
#include "supervisor/limits.h"

static const char usage[] =
    "usage: crush-supervisor [-H URL]... [--worker PATH] [--create-grace SECS]\n"
    "                        [--detach-grace SECS] [--idle-timeout SECS]\n"
    "                        [--kill-timeout SECS] [--log-level debug|info|warn|error]\n"
    "                        [--token-file PATH] [--allow-origin ORIGIN]...\n"
    "                        [--max-workspaces N] [--max-streams N]\n"
    "                        [--request-timeout SECS] [--pinned] [--version] [--help]\n"
    "\n"
    "Shares one workspace per directory between clients; each workspace runs in\n"
    "its own crush-worker process.\n"
    "\n"
    "  -H, --host URL        listen on unix:///abs/path.sock or tcp://127.0.0.1:PORT\n"
    "                        (repeatable; default %s)\n"
    "      --worker PATH     worker binary (default: crush-worker beside this program)\n"
    "      --create-grace S  how long a create's claim waits, from its answer, for\n"
    "                        a stream to attach [$CRUSH_SERVER_CREATE_GRACE, default 30]\n"
    "      --detach-grace S  reconnect window after a client's last stream closes\n"
    "                        [$CRUSH_SERVER_DETACH_GRACE, default 10]\n"
    "      --idle-timeout S  exit this long after the last workspace is gone\n"
    "                        [$CRUSH_SERVER_IDLE_TIMEOUT, default 60]\n"
    "      --kill-timeout S  SIGKILL a worker this long after SIGTERM\n"
    "                        [$CRUSH_SERVER_KILL_TIMEOUT, default 5]\n"
    "      --log-level L     debug, info, warn or error (default info)\n"
    "      --token-file PATH bearer token every tcp request must carry\n"
    "                        [$CRUSH_SERVER_TOKEN; default: generated once into\n"
    "                        $XDG_RUNTIME_DIR (else /tmp)/crush-$UID.token, mode 0600]\n"
    "      --allow-origin O  let web pages of origin O (scheme://host[:port], exact)\n"
    "                        call the API; any other Origin gets 403 (repeatable)\n"
    "      --max-workspaces N  live workspaces at most\n"
    "                        [$CRUSH_SERVER_MAX_WORKSPACES, default 512]\n"
    "      --max-streams N   open event streams at most\n"
    "                        [$CRUSH_SERVER_MAX_STREAMS, default 4096]\n"
    "      --request-timeout S  the longest a request routed to a workspace waits for\n"
    "                        its worker (ready, then its answer's head) before 504\n"
    "                        [$CRUSH_SERVER_REQUEST_TIMEOUT, default 30]\n"
    "      --pinned          refuse shutdown_if_idle and shutdown (409 server is\n"
    "                        pinned), so clients of another version keep this\n"
    "                        daemon instead of replacing it\n"
    "      --version         print the version and exit\n"
    "  -h, --help            print this help and exit\n"
    "\n"
    "Durations are seconds and take fractions (0.2); 0 disables the window.\n"
    "Workers are pinged every $CRUSH_SERVER_PING_INTERVAL seconds (default 10)\n"
    "and killed when they do not answer before the next ping; 0 disables it.\n"
    "A connection with no request in flight for $CRUSH_SERVER_HEADER_TIMEOUT\n"
    "seconds (default 15) is closed: it is trickling headers.\n"
    "Flags win over the environment. Unix sockets serve only this user (and\n"
    "root); tcp listeners need the token and bind loopback addresses only, unless\n"
    "a token was given with --token-file or $CRUSH_SERVER_TOKEN.\n";

int options_parse_secs(const char *s, uint64_t *ms)
{
	char *end;
	if (s == NULL || *s == '\0')
		return -1;
	double v = strtod(s, &end);
	if (*end != '\0' || !isfinite(v) || v < 0 || v > 1e6)
		return -1;
	*ms = (uint64_t)llround(v * 1000.0);
	return 0;
}

int options_parse_count(const char *s, unsigned *out)
{
	char *end;
	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (*end != '\0' || errno != 0 || v < 1 || v > OPTIONS_MAX_COUNT)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* unix:///absolute/path or tcp://host:port with a numeric port. */
static int url_ok(const char *url)
{
	if (strncmp(url, "unix://", 7) == 0)
		return url[7] == '/' && strlen(url + 7) < 108;
	if (strncmp(url, "tcp://", 6) != 0)
		return 0;
	const char *colon = strrchr(url + 6, ':');
	if (colon == NULL || colon == url + 6 || colon[1] == '\0')
		return 0;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	return *end == '\0' && port > 0 && port < 65536;
}

static void default_host(options_t *o)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	unsigned uid = (unsigned)getuid();
	/* As upstream: fall back to /tmp when the path would not fit sun_path
	 * on every platform (104 bytes). */
	if (xdg != NULL && *xdg != '\0') {
		char path[128];
		int n = snprintf(path, sizeof(path), "%s/crush-%u.sock", xdg, uid);
		if (n > 0 && n <= 104 && (size_t)n < sizeof(path)) {
			snprintf(o->default_host, sizeof(o->default_host), "unix://%s", path);
			return;
		}
	}
	snprintf(o->default_host, sizeof(o->default_host), "unix:///tmp/crush-%u.sock", uid);
}

static int env_secs(const char *name, uint64_t *ms, FILE *err)
{
	const char *v = getenv(name);
	if (v == NULL || *v == '\0')
		return 0;
	if (options_parse_secs(v, ms) != 0) {
		fprintf(err, "crush-supervisor: %s: invalid duration %s\n", name, v);
		return -1;
	}
	return 0;
}

static int env_count(const char *name, unsigned *out, FILE *err)
{
	const char *v = getenv(name);
	if (v == NULL || *v == '\0')
		return 0;
	if (options_parse_count(v, out) != 0) {
		fprintf(err, "crush-supervisor: %s: invalid count %s: want 1 to %d\n", name, v,
			OPTIONS_MAX_COUNT);
		return -1;
	}
	return 0;
}

/* $CRUSH_SERVER_TOKEN, copied (gate_init unsets it). Never printed. */
static int env_token(options_t *o, FILE *err)
{
	const char *v = getenv("CRUSH_SERVER_TOKEN");
	if (v == NULL || *v == '\0')
		return 0;
	if (!guard_token_valid(v, strlen(v))) {
		fprintf(
		    err,
		    "crush-supervisor: CRUSH_SERVER_TOKEN: want %d to %d printable characters, no spaces\n",
		    GUARD_TOKEN_MIN, GUARD_TOKEN_MAX);
		return -1;
	}
	snprintf(o->token_env, sizeof(o->token_env), "%s", v);
	return 0;
}

int options_parse(options_t *o, int argc, char **argv, FILE *out, FILE *err)
{
	enum {
		O_WORKER = 256,
		O_CREATE,
		O_DETACH,
		O_IDLE,
		O_KILL,
		O_LEVEL,
		O_VERSION,
		O_TOKEN_FILE,
		O_ALLOW_ORIGIN,
		O_MAX_WS,
		O_MAX_STREAMS,
		O_REQUEST_TIMEOUT,
		O_PINNED,
	};
	static const struct option longopts[] = {
	    {"host", required_argument, NULL, 'H'},
	    {"worker", required_argument, NULL, O_WORKER},
	    {"create-grace", required_argument, NULL, O_CREATE},
	    {"detach-grace", required_argument, NULL, O_DETACH},
	    {"idle-timeout", required_argument, NULL, O_IDLE},
	    {"kill-timeout", required_argument, NULL, O_KILL},
	    {"log-level", required_argument, NULL, O_LEVEL},
	    {"token-file", required_argument, NULL, O_TOKEN_FILE},
	    {"allow-origin", required_argument, NULL, O_ALLOW_ORIGIN},
	    {"max-workspaces", required_argument, NULL, O_MAX_WS},
	    {"max-streams", required_argument, NULL, O_MAX_STREAMS},
	    {"request-timeout", required_argument, NULL, O_REQUEST_TIMEOUT},
	    {"pinned", no_argument, NULL, O_PINNED},
	    {"version", no_argument, NULL, O_VERSION},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};

	memset(o, 0, sizeof(*o));
	default_host(o);
	o->create_grace_ms = 30000;
	o->detach_grace_ms = 10000;
	o->idle_ms = 60000;
	o->kill_ms = 5000;
	o->ping_ms = 10000; /* a ready worker must answer each ping before the next */
	o->log_level = LOG_INFO;
	o->max_workspaces = LIMIT_DEFAULT_WORKSPACES;
	o->max_streams = LIMIT_DEFAULT_STREAMS;
	o->request_timeout_ms = 30000;
	o->header_timeout_ms = LIMIT_DEFAULT_IDLE_MS;
	if (env_secs("CRUSH_SERVER_REQUEST_TIMEOUT", &o->request_timeout_ms, err) != 0 ||
	    env_secs("CRUSH_SERVER_HEADER_TIMEOUT", &o->header_timeout_ms, err) != 0 ||
	    env_secs("CRUSH_SERVER_CREATE_GRACE", &o->create_grace_ms, err) != 0 ||
	    env_secs("CRUSH_SERVER_DETACH_GRACE", &o->detach_grace_ms, err) != 0 ||
	    env_secs("CRUSH_SERVER_IDLE_TIMEOUT", &o->idle_ms, err) != 0 ||
	    env_secs("CRUSH_SERVER_KILL_TIMEOUT", &o->kill_ms, err) != 0 ||
	    env_secs("CRUSH_SERVER_PING_INTERVAL", &o->ping_ms, err) != 0 ||
	    env_count("CRUSH_SERVER_MAX_WORKSPACES", &o->max_workspaces, err) != 0 ||
	    env_count("CRUSH_SERVER_MAX_STREAMS", &o->max_streams, err) != 0 || env_token(o, err) != 0)
		goto bad;

	optind = 1;
	opterr = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, ":H:h", longopts, NULL)) != -1) {
		uint64_t *target = NULL;
		switch (ch) {
		case 'H':
			if (o->nhosts == OPTIONS_MAX_HOSTS) {
				fprintf(err, "crush-supervisor: at most %d listeners\n", OPTIONS_MAX_HOSTS);
				goto bad;
			}
			if (!url_ok(optarg)) {
				fprintf(err,
					"crush-supervisor: --host %s: want unix:///path or tcp://host:port\n",
					optarg);
				goto bad;
			}
			o->hosts[o->nhosts++] = optarg;
			break;
		case O_WORKER:
			o->worker = optarg;
			break;
		case O_CREATE:
			target = &o->create_grace_ms;
			break;
		case O_DETACH:
			target = &o->detach_grace_ms;
			break;
		case O_IDLE:
			target = &o->idle_ms;
			break;
		case O_KILL:
			target = &o->kill_ms;
			break;
		case O_REQUEST_TIMEOUT:
			target = &o->request_timeout_ms;
			break;
		case O_PINNED:
			o->pinned = 1;
			break;
		case O_LEVEL:
			if (log_parse_level(optarg, &o->log_level) != 0) {
				fprintf(err,
					"crush-supervisor: --log-level %s: want debug, info, warn or error\n",
					optarg);
				goto bad;
			}
			break;
		case O_TOKEN_FILE:
			if (optarg[0] == '\0') {
				fprintf(err, "crush-supervisor: --token-file needs a path\n");
				goto bad;
			}
			o->token_file = optarg;
			break;
		case O_ALLOW_ORIGIN:
			if (o->norigins == OPTIONS_MAX_ORIGINS) {
				fprintf(err, "crush-supervisor: at most %d --allow-origin\n",
					OPTIONS_MAX_ORIGINS);
				goto bad;
			}
			if (!guard_origin_valid(optarg)) {
				fprintf(err,
					"crush-supervisor: --allow-origin %s: want scheme://host[:port] "
					"exactly as "
					"a browser sends it (never null or *)\n",
					optarg);
				goto bad;
			}
			o->allow_origins[o->norigins++] = optarg;
			break;
		case O_MAX_WS:
		case O_MAX_STREAMS:
			if (options_parse_count(optarg,
						ch == O_MAX_WS ? &o->max_workspaces : &o->max_streams) != 0) {
				fprintf(err, "crush-supervisor: %s %s: want a count from 1 to %d\n",
					ch == O_MAX_WS ? "--max-workspaces" : "--max-streams", optarg,
					OPTIONS_MAX_COUNT);
				goto bad;
			}
			break;
		case O_VERSION:
			fprintf(out, "crush-supervisor %s (commit %s)\n", CRUSH_VERSION, crush_commit);
			return OPTIONS_EXIT_OK;
		case 'h':
			fprintf(out, usage, o->default_host);
			return OPTIONS_EXIT_OK;
		case ':':
			fprintf(err, "crush-supervisor: %s needs a value\n", argv[optind - 1]);
			goto bad;
		default:
			fprintf(err, "crush-supervisor: unknown flag %s\n", argv[optind - 1]);
			goto bad;
		}
		if (target != NULL && options_parse_secs(optarg, target) != 0) {
			fprintf(err, "crush-supervisor: invalid duration %s: want a number of seconds >= 0\n",
				optarg);
			goto bad;
		}
	}
	if (optind < argc) {
		fprintf(err, "crush-supervisor: unexpected argument %s\n", argv[optind]);
		goto bad;
	}
	if (o->nhosts == 0)
		o->hosts[o->nhosts++] = o->default_host;
	return OPTIONS_RUN;
bad:
	/* The one error line above, then where the usage is: 25 lines of it
	 * would bury the error. */
	fprintf(err, "try 'crush-supervisor --help' for the usage\n");
	return OPTIONS_EXIT_USAGE;
}
