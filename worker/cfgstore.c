/*
 * cfgstore: the workspace's data dir and config service (see cfgstore.h).
 */
#include "worker/cfgstore.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "worker/config.h"
#include "worker/datadir.h"

#define SYSTEM_CONFIG "/etc/crush/crush.json"
#define CONFIG_NAME   "crush.json"
#define INIT_FLAG     "init"	 /* upstream's InitFlagFilename, in the data dir */
#define MAX_FILE      (8u << 20) /* a config file past this is refused */
#define LOCK_TRIES    20	 /* a scope file's .lock: 20 x 5 ms, then 500 */
#define LOCK_WAIT_US  5000
#define CHAIN_GLOBALS 3 /* system, global config, global data */
#define WHY_LEN	      (PATH_MAX + 256)

/* What tells a file changed without reading it. */
typedef struct filesig {
	int exists;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
} filesig_t;

struct cfgstore {
	struct ev_loop *loop;
	char root[PATH_MAX];
	char boundary[PATH_MAX]; /* git root, else root */
	char data_dir[PATH_MAX];
	char ws_file[PATH_MAX + 16];	 /* <data_dir>/crush.json: scope 1, last of the chain */
	char global_data[PATH_MAX + 16]; /* scope 0 */
	char **chain;			 /* the files before ws_file, lowest first */
	size_t nchain;
	filesig_t *sigs; /* nchain + 1: the chain, then ws_file */
	char *ws_id, *version;
	int lock_fd; /* crush.lock held, or -1 while the directory is not there */
	int started;
	char last_err[WHY_LEN]; /* the last reload's failure, logged once */
	json_t *config;		/* merged, defaults applied, NOT redacted */
	char *answer;		/* GET /config's body (redacted), until config changes */
	cfgstore_publish_cb publish;
	void *arg;
	ev_timer tick;
};

/* --- paths */

static void push(cfgstore_t *s, const char *path)
{
	char **n = realloc(s->chain, (s->nchain + 1) * sizeof(*n));
	if (n == NULL || (n[s->nchain] = strdup(path)) == NULL)
		abort();
	s->chain = n;
	s->nchain++;
}

static void global_paths(char *config, char *data, size_t len)
{
	const char *v, *home = getenv("HOME");

	if (home == NULL)
		home = "";
	if ((v = getenv("CRUSH_GLOBAL_CONFIG")) != NULL && *v != '\0')
		snprintf(config, len, "%s/%s", v, CONFIG_NAME);
	else if ((v = getenv("XDG_CONFIG_HOME")) != NULL && *v != '\0')
		snprintf(config, len, "%s/crush/%s", v, CONFIG_NAME);
	else
		snprintf(config, len, "%s/.config/crush/%s", home, CONFIG_NAME);
	if ((v = getenv("CRUSH_GLOBAL_DATA")) != NULL && *v != '\0')
		snprintf(data, len, "%s/%s", v, CONFIG_NAME);
	else if ((v = getenv("XDG_DATA_HOME")) != NULL && *v != '\0')
		snprintf(data, len, "%s/crush/%s", v, CONFIG_NAME);
	else
		snprintf(data, len, "%s/.local/share/crush/%s", home, CONFIG_NAME);
}

/* The chain before the workspace file (cfgstore.h lists it). */
static void build_chain(cfgstore_t *s)
{
	char config[PATH_MAX + 16], path[PATH_MAX + 16];
	size_t lens[PATH_MAX / 2], nd = 0, n = strlen(s->root);

	global_paths(config, s->global_data, sizeof(config));
	push(s, SYSTEM_CONFIG);
	push(s, config);
	push(s, s->global_data);
	/* The directories from the workspace up to the boundary are prefixes
	 * of root: their lengths, nearest first. */
	for (;;) {
		lens[nd++] = n;
		if ((n == strlen(s->boundary) && strncmp(s->root, s->boundary, n) == 0) || n <= 1)
			break;
		while (n > 1 && s->root[n - 1] != '/')
			n--;
		if (n > 1)
			n--; /* the slash: "/a/b" -> "/a"; "/a" -> "/" */
	}
	/* Walked back down so the nearest file is merged last (upstream
	 * reverses its lookup); within one, crush.json before .crush.json. */
	while (nd-- > 0) {
		int len = (int)lens[nd];
		const char *sep = len == 1 ? "" : "/";
		snprintf(path, sizeof(path), "%.*s%s%s", len, s->root, sep, CONFIG_NAME);
		push(s, path);
		snprintf(path, sizeof(path), "%.*s%s.%s", len, s->root, sep, CONFIG_NAME);
		push(s, path);
	}
}

/* --- loading */

/* Reads a whole small file: 1 with *out (malloc'ed, NUL-terminated),
 * 0 when it does not exist, -1 with why. */
static int read_file(const char *path, char **out, size_t *len, mode_t *mode, char *why, size_t whylen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	size_t n = 0;

	if (fd < 0) {
		struct stat st;
		/* Not there, or behind a directory we may not search: upstream's
		 * lookup skips both (fsext.Lookup on ErrPermission). */
		if (errno == ENOENT || errno == ENOTDIR || (errno == EACCES && stat(path, &st) != 0))
			return 0;
		snprintf(why, whylen, "failed to open config file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)MAX_FILE) {
		snprintf(why, whylen, "config file %s is not a regular file under %u bytes", path, MAX_FILE);
		close(fd);
		return -1;
	}
	if (mode != NULL)
		*mode = st.st_mode & 07777;
	char *buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL)
		abort();
	for (;;) {
		ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || (n += (size_t)r) == (size_t)st.st_size)
			break;
	}
	close(fd);
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 1;
}

static int blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!isspace((unsigned char)s[i]))
			return 0;
	return 1;
}

/* Parses one config file: 1 with *obj, 0 when absent or empty (upstream
 * skips both), -1 with why naming the file and the position. */
static int load_file(const char *path, json_t **obj, mode_t *mode, char *why, size_t whylen)
{
	char *text = NULL;
	size_t len = 0;
	json_error_t e;
	int r = read_file(path, &text, &len, mode, why, whylen);

	if (r <= 0)
		return r;
	if (blank(text, len)) {
		free(text);
		return 0;
	}
	*obj = json_loadb(text, len, 0, &e);
	free(text);
	if (*obj == NULL) {
		/* jansson quotes the token it stopped at ("... near '<token>'"),
		 * which may be a secret's value: the position says enough. */
		char *near = strstr(e.text, " near '");
		if (near != NULL)
			*near = '\0';
		snprintf(why, whylen, "invalid JSON in config file %s: %s (line %d, column %d)", path, e.text,
			 e.line, e.column);
		return -1;
	}
	if (!json_is_object(*obj)) {
		json_decref(*obj);
		*obj = NULL;
		snprintf(why, whylen, "config file %s is not a JSON object", path);
		return -1;
	}
	return 1;
}

/* The merged chain before the workspace file; NULL with why. */
static json_t *load_chain(cfgstore_t *s, char *why, size_t whylen)
{
	json_t *merged = json_object();
	char err[256];

	/* Project files (after the three global ones) count only when the
	 * workspace's owner owns them, and not at all while it is not there,
	 * as upstream's bounded lookup (fsext.probeEnt) has it. */
	uid_t owner = 0;
	int have_owner = datadir_owner(s->root, &owner) == 0;
	for (size_t i = 0; i < s->nchain; i++) {
		json_t *obj = NULL;
		struct stat st;
		if (i >= CHAIN_GLOBALS &&
		    (!have_owner || (stat(s->chain[i], &st) == 0 && st.st_uid != owner)))
			continue;
		int r = load_file(s->chain[i], &obj, NULL, why, whylen);
		if (r < 0) {
			json_decref(merged);
			return NULL;
		}
		if (r == 0)
			continue;
		r = config_merge(merged, obj, err, sizeof(err));
		json_decref(obj);
		if (r < 0) {
			snprintf(why, whylen, "config file %s: %s", s->chain[i], err);
			json_decref(merged);
			return NULL;
		}
	}
	return merged;
}

/* The whole config: the chain, the workspace file on top, defaults. */
static json_t *load_all(cfgstore_t *s, char *why, size_t whylen)
{
	json_t *merged = load_chain(s, why, whylen), *ws = NULL;
	char err[256];

	if (merged == NULL)
		return NULL;
	int r = load_file(s->ws_file, &ws, NULL, why, whylen);
	if (r < 0) {
		json_decref(merged);
		return NULL;
	}
	if (r > 0) {
		/* Upstream merges the workspace file over the loaded config and
		 * keeps the config as it was when that merge fails. */
		json_t *copy = json_deep_copy(merged);
		if (config_merge(copy, ws, err, sizeof(err)) == 0) {
			json_decref(merged);
			merged = copy;
		} else {
			log_warn("Workspace config not merged", "path", s->ws_file, "err", err, NULL);
			json_decref(copy);
		}
		json_decref(ws);
	}
	config_defaults(merged, s->data_dir);
	return merged;
}

static void stat_sig(const char *path, filesig_t *g)
{
	struct stat st;

	memset(g, 0, sizeof(*g));
	if (stat(path, &st) != 0)
		return;
	g->exists = 1;
	g->ino = st.st_ino;
	g->size = st.st_size;
	g->mtime = st.st_mtim;
	g->ctime = st.st_ctim;
}

/* Takes a fresh look at every file; 1 when any differs from the last. */
static int resnap(cfgstore_t *s)
{
	int changed = 0;

	for (size_t i = 0; i <= s->nchain; i++) {
		filesig_t g;
		stat_sig(i < s->nchain ? s->chain[i] : s->ws_file, &g);
		if (memcmp(&g, &s->sigs[i], sizeof(g)) != 0)
			changed = 1;
		s->sigs[i] = g;
	}
	return changed;
}

/* --- events */

static json_t *redacted(const cfgstore_t *s)
{
	return config_redact(s->config);
}

/* Upstream's pubsub envelope for proto.ConfigChanged; the redacted config
 * rides along for the supervisor's copy of the Workspace object. */
static void publish_changed(cfgstore_t *s)
{
	if (!s->started || s->publish == NULL)
		return;
	s->publish(s->arg,
		   json_pack("{s:s, s:{s:s, s:{s:s, s:o}}}", "type", "config_changed", "payload", "type",
			     "updated", "payload", "workspace_id", s->ws_id, "config", redacted(s)));
}

/* Reloads; publishes when the result differs (or always, after a write,
 * as upstream's backend does). 0, or -1 with why (the old config stays). */
static int reload(cfgstore_t *s, int always, char *why, size_t whylen)
{
	json_t *next = load_all(s, why, whylen);

	if (next == NULL)
		return -1;
	int same = json_equal(next, s->config);
	json_decref(s->config);
	s->config = next;
	free(s->answer);
	s->answer = NULL;
	if (!same || always)
		publish_changed(s);
	return 0;
}

/* --- the data dir and its lock */

/* Upstream's escape hatch for filesystems without advisory locks:
 * CRUSH_SKIP_DATADIR_LOCK true as Go's strconv.ParseBool reads it. */
static int skip_lock(void)
{
	static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True"};
	const char *v = getenv("CRUSH_SKIP_DATADIR_LOCK");

	for (size_t i = 0; v != NULL && i < sizeof(yes) / sizeof(yes[0]); i++)
		if (strcmp(v, yes[i]) == 0)
			return 1;
	return 0;
}

/* 0 with the lock held, 1 when the workspace is not there yet (tried
 * again later), -1 with *err and why. */
static int take_lock(cfgstore_t *s, enum cfgstore_err *err, char *why, size_t whylen)
{
	struct stat st;
	long owner = 0;

	if (s->lock_fd >= 0)
		return 0;
	/* Making a data dir inside a workspace that does not exist would make
	 * the workspace appear: wait for it, as the watch does. */
	if (stat(s->root, &st) != 0 || !S_ISDIR(st.st_mode))
		return 1;
	if (datadir_prepare(s->data_dir) != 0) {
		*err = CFGSTORE_DATADIR;
		snprintf(why, whylen, "failed to create data directory %s: %s", s->data_dir, strerror(errno));
		return -1;
	}
	if (skip_lock()) {
		s->lock_fd = open("/dev/null", O_RDONLY | O_CLOEXEC); /* held: nothing */
		if (s->lock_fd >= 0)
			return 0;
	}
	s->lock_fd = datadir_lock(s->data_dir, s->version, &owner);
	if (s->lock_fd >= 0)
		return 0;
	if (errno == EWOULDBLOCK) {
		*err = CFGSTORE_LOCKED;
		snprintf(why, whylen, "data directory is in use by pid %ld", owner);
	} else {
		*err = CFGSTORE_DATADIR;
		snprintf(why, whylen, "failed to lock data directory %s: %s", s->data_dir, strerror(errno));
	}
	return -1;
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
	cfgstore_t *s = t->data;
	char why[WHY_LEN];
	enum cfgstore_err err;

	(void)loop, (void)revents;
	if (s->lock_fd < 0 && take_lock(s, &err, why, sizeof(why)) < 0 && strcmp(why, s->last_err) != 0) {
		/* Too late to fail the create: say it, and refuse workspace
		 * writes until it is ours. */
		log_warn("Data directory not ours", "workspace_id", s->ws_id, "err", why, NULL);
		snprintf(s->last_err, sizeof(s->last_err), "%s", why);
	}
	if (!resnap(s))
		return;
	if (reload(s, 0, why, sizeof(why)) < 0) {
		log_warn("Config not reloaded; keeping the previous one", "workspace_id", s->ws_id, "err",
			 why, NULL);
		return;
	}
	log_debug("Config reloaded", "workspace_id", s->ws_id, NULL);
}

/* --- life */

cfgstore_t *cfgstore_open(struct ev_loop *loop, const char *root, const char *option, const char *ws_id,
			  const char *version, cfgstore_publish_cb publish, void *arg, enum cfgstore_err *err,
			  char *why, size_t whylen)
{
	cfgstore_t *s = calloc(1, sizeof(*s));
	char gitroot[PATH_MAX];

	if (s == NULL || (s->ws_id = strdup(ws_id)) == NULL || (s->version = strdup(version)) == NULL)
		abort();
	*err = CFGSTORE_OK;
	s->loop = loop;
	s->lock_fd = -1;
	s->publish = publish;
	s->arg = arg;
	snprintf(s->root, sizeof(s->root), "%s", root);
	datadir_git_root(root, gitroot, sizeof(gitroot));
	snprintf(s->boundary, sizeof(s->boundary), "%s", gitroot[0] != '\0' ? gitroot : root);
	build_chain(s);
	if ((s->sigs = calloc(s->nchain + 1, sizeof(*s->sigs))) == NULL)
		abort();

	/* The data dir may come from the chain's options.data_directory
	 * (upstream's setDefaults), so the chain loads first. */
	json_t *chain = load_chain(s, why, whylen);
	if (chain == NULL) {
		*err = CFGSTORE_CONFIG;
		cfgstore_free(s);
		return NULL;
	}
	const char *configured =
	    json_string_value(json_object_get(json_object_get(chain, "options"), "data_directory"));
	datadir_resolve(root, s->boundary, option, configured, s->data_dir, sizeof(s->data_dir));
	json_decref(chain);
	snprintf(s->ws_file, sizeof(s->ws_file), "%s/%s", s->data_dir, CONFIG_NAME);

	resnap(s);
	if ((s->config = load_all(s, why, whylen)) == NULL) {
		*err = CFGSTORE_CONFIG;
		cfgstore_free(s);
		return NULL;
	}
	ev_timer_init(&s->tick, on_tick, CFGSTORE_POLL_MS / 1000.0, CFGSTORE_POLL_MS / 1000.0);
	s->tick.data = s;
	return s;
}

int cfgstore_lock(cfgstore_t *s, enum cfgstore_err *err, char *why, size_t whylen)
{
	*err = CFGSTORE_OK;
	return take_lock(s, err, why, whylen) < 0 ? -1 : 0;
}

void cfgstore_start(cfgstore_t *s)
{
	if (s == NULL || s->started)
		return;
	s->started = 1;
	ev_timer_start(s->loop, &s->tick);
}

void cfgstore_free(cfgstore_t *s)
{
	if (s == NULL)
		return;
	if (s->started)
		ev_timer_stop(s->loop, &s->tick);
	/* Closing drops the flock; the file stays (flock is per inode). */
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	for (size_t i = 0; i < s->nchain; i++)
		free(s->chain[i]);
	free(s->chain);
	free(s->sigs);
	json_decref(s->config);
	free(s->answer);
	free(s->ws_id);
	free(s->version);
	free(s);
}

const char *cfgstore_data_dir(const cfgstore_t *s)
{
	return s->data_dir;
}

int cfgstore_locked(const cfgstore_t *s)
{
	return s->lock_fd >= 0;
}

json_t *cfgstore_config(const cfgstore_t *s)
{
	return redacted(s);
}

/* --- writing a scope's file */

static int mkdir_parents(const char *file)
{
	char dir[PATH_MAX + 32];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", file);
	if ((slash = strrchr(dir, '/')) == NULL || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(dir, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* upstream's cross-process lock beside the file (path + ".lock"), taken
 * without blocking the loop for more than LOCK_TRIES x LOCK_WAIT_US. */
static int lock_beside(const char *path)
{
	char lp[PATH_MAX + 32];
	int fd;

	snprintf(lp, sizeof(lp), "%s.lock", path);
	if ((fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0)
		return -1;
	for (int i = 0; i < LOCK_TRIES; i++) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return fd;
		if (errno != EWOULDBLOCK)
			break;
		usleep(LOCK_WAIT_US);
	}
	close(fd);
	errno = EWOULDBLOCK;
	return -1;
}

/* Writes text into path atomically: a temp file beside it, the mode
 * given, fsync, rename. 0, or -1 with errno (the temp file removed). */
static int write_atomic(const char *path, const char *text, size_t len, mode_t mode)
{
	char tmp[PATH_MAX + 32];
	int fd, e;
	size_t off = 0;

	snprintf(tmp, sizeof(tmp), "%s.XXXXXX.tmp", path);
	if ((fd = mkostemps(tmp, 4, O_CLOEXEC)) < 0)
		return -1;
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		off += (size_t)n;
	}
	if (fchmod(fd, mode) != 0 || fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto fail;
	return 0;
fail:
	e = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = e;
	return -1;
}

/*
 * Sets (value != NULL, stolen) or removes key in the file at path,
 * keeping everything else. A file that does not parse is never written:
 * 500 naming it and where. Returns the status; why on failure.
 */
static int edit_file(const char *path, const char *key, json_t *value, char *why, size_t whylen)
{
	json_t *doc = NULL;
	mode_t mode = 0600;
	int lockfd, r, status = 500;

	if (mkdir_parents(path) != 0) {
		snprintf(why, whylen, "create config directory for %s: %s", path, strerror(errno));
		json_decref(value);
		return 500;
	}
	if ((lockfd = lock_beside(path)) < 0) {
		snprintf(why, whylen, "acquire config lock for %s: %s", path, strerror(errno));
		json_decref(value);
		return 500;
	}
	r = load_file(path, &doc, &mode, why, whylen);
	if (r < 0) {
		json_decref(value);
		goto out;
	}
	if (r == 0)
		doc = json_object();
	if (value != NULL)
		r = config_set(doc, key, value);
	else
		r = config_remove(doc, key);
	if (r < 0) {
		snprintf(why, whylen, "failed to %s config field %s: invalid path", value ? "set" : "delete",
			 key);
		goto out;
	}
	char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (text == NULL)
		abort();
	size_t len = strlen(text);
	char *nl = realloc(text, len + 2);
	if (nl == NULL)
		abort();
	text = nl;
	memcpy(text + len, "\n", 2);
	if (len + 1 > MAX_FILE) { /* it could never be read back (read_file), nor edited again */
		snprintf(why, whylen, "config file %s would be %zu bytes, over the %u allowed", path, len + 1,
			 MAX_FILE);
		status = 400;
	} else if (write_atomic(path, text, len + 1, mode) != 0)
		snprintf(why, whylen, "write config file %s: %s", path, strerror(errno));
	else
		status = 200;
	free(text);
out:
	json_decref(doc);
	close(lockfd);
	return status;
}

/* --- routes */

void cfgstore_get(cfgstore_t *s, call_t *c, const call_req_t *req)
{
	(void)req;
	/* Clients ask for it often and it changes seldom: redacted and
	 * encoded once per change. */
	if (s->answer == NULL) {
		json_t *j = redacted(s);
		s->answer = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		if (s->answer == NULL)
			abort(); /* only out of memory: the config's strings are UTF-8 */
	}
	calls_respond(c, 200, NULL, s->answer, strlen(s->answer));
}

/* The decoded body of a set/remove: NULL after answering 400, as
 * upstream's handlers do on a body that does not decode. */
static json_t *decode(call_t *c, const call_req_t *req, const char **key, int *scope)
{
	json_t *body = json_loadb(req->body, req->body_len, JSON_DECODE_ANY, NULL);
	json_t *jscope = json_object_get(body, "scope"), *jkey = json_object_get(body, "key");

	/* Go decodes the struct's fields by type: a scope that is not an
	 * integer or a key that is not a string fails the decode. */
	if (!json_is_object(body) || (jscope != NULL && !json_is_integer(jscope) && !json_is_null(jscope)) ||
	    (jkey != NULL && !json_is_string(jkey) && !json_is_null(jkey))) {
		json_decref(body);
		calls_error(c, 400, "failed to decode request");
		return NULL;
	}
	*scope = json_is_integer(jscope) ? (int)json_integer_value(jscope) : 0;
	*key = json_is_string(jkey) ? json_string_value(jkey) : "";
	return body;
}

static void edit(cfgstore_t *s, call_t *c, const call_req_t *req, int set)
{
	const char *key, *path;
	int scope, status;
	char why[WHY_LEN];
	json_t *body = decode(c, req, &key, &scope);

	if (body == NULL)
		return;
	/* upstream's configPath: workspace for 1, the global data file for
	 * anything else. */
	if (scope == 1) {
		if (s->lock_fd < 0) {
			json_decref(body);
			calls_error(c, 409,
				    "data directory is not available: the workspace directory does not exist "
				    "yet or another process holds its lock");
			return;
		}
		path = s->ws_file;
	} else {
		path = s->global_data;
	}
	if (*key == '\0') {
		json_decref(body);
		calls_error(c, 500,
			    set ? "failed to set config field: path cannot be empty"
				: "failed to delete config field: path cannot be empty");
		return;
	}
	json_t *value = NULL;
	if (set) {
		value = json_object_get(body, "value");
		value = value != NULL ? json_incref(value) : json_null();
	}
	status = edit_file(path, key, value, why, sizeof(why));
	json_decref(body);
	if (status != 200) {
		log_warn("Config write failed", "workspace_id", s->ws_id, "err", why, NULL);
		calls_error(c, status, why);
		return;
	}
	resnap(s);
	if (reload(s, 1, why, sizeof(why)) < 0)
		/* The write is done; upstream logs a failed reload and answers
		 * 200 all the same. */
		log_warn("Config file updated but failed to reload", "workspace_id", s->ws_id, "err", why,
			 NULL);
	calls_respond(c, 200, NULL, "", 0);
}

void cfgstore_set(cfgstore_t *s, call_t *c, const call_req_t *req)
{
	edit(s, c, req, 1);
}

void cfgstore_remove(cfgstore_t *s, call_t *c, const call_req_t *req)
{
	edit(s, c, req, 0);
}

/* Upstream's defaultContextPaths by file name, lowercased (a directory
 * entry like ".cursor/rules/" has no file name and never matches). */
static int is_context_file(const char *name)
{
	static const char *const names[] = {"copilot-instructions.md", ".cursorrules", "claude.md",
					    "claude.local.md",	       "gemini.md",    "crush.md",
					    "crush.local.md",	       "agents.md"};
	char low[NAME_MAX + 1];
	size_t i;

	for (i = 0; name[i] != '\0' && i < NAME_MAX; i++)
		low[i] = (char)tolower((unsigned char)name[i]);
	low[i] = '\0';
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(low, names[i]) == 0)
			return 1;
	return 0;
}

/* What upstream's directory listing (fsext.ListDirectory) leaves out at
 * the top level: hidden entries, its always-ignored directories and its
 * common build/editor/log patterns. The workspace's own .gitignore is not
 * read here: a simplification. */
static int ignored(const char *name, int is_dir)
{
	static const char *const names[] = {"node_modules",
					    "__pycache__",
					    "OrbStack",
					    "Thumbs.db",
					    "target",
					    "build",
					    "dist",
					    "out",
					    "bin",
					    "obj",
					    "vendor",
					    "Cargo.lock",
					    "package-lock.json",
					    "yarn.lock",
					    "pnpm-lock.yaml"};
	static const char *const suffixes[] = {".swp", ".swo", "~",    ".o",	".so",	".dylib", ".dll",
					       ".exe", ".log", ".tmp", ".temp", ".pyc", ".pyo"};
	size_t n = strlen(name);

	(void)is_dir;
	if (name[0] == '.')
		return 1;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i]) == 0)
			return 1;
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		size_t l = strlen(suffixes[i]);
		if (n >= l && strcmp(name + n - l, suffixes[i]) == 0)
			return 1;
	}
	return 0;
}

void cfgstore_needs_init(cfgstore_t *s, call_t *c, const call_req_t *req)
{
	char path[PATH_MAX + 16], why[WHY_LEN];
	struct stat st;
	int visible = 0, context = 0;
	DIR *d;
	struct dirent *e;

	(void)req;
	/* ProjectNeedsInitialization: the init flag in the data dir says no;
	 * so does a context file in the workspace, or a workspace with
	 * nothing visible in it. */
	snprintf(path, sizeof(path), "%s/%s", s->data_dir, INIT_FLAG);
	if (stat(path, &st) == 0) {
		calls_json(c, 200, json_pack("{s:b}", "needs_init", 0));
		return;
	}
	if (errno != ENOENT) {
		snprintf(why, sizeof(why), "failed to check init flag file: %s", strerror(errno));
		calls_error(c, 500, why);
		return;
	}
	if ((d = opendir(s->root)) == NULL) {
		snprintf(why, sizeof(why), "failed to check for context files: %s: %s", s->root,
			 strerror(errno));
		calls_error(c, 500, why);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		int is_dir = e->d_type == DT_DIR;
		if (e->d_type == DT_UNKNOWN && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			is_dir = S_ISDIR(st.st_mode);
		if (!is_dir && is_context_file(e->d_name))
			context = 1;
		if (!ignored(e->d_name, is_dir))
			visible = 1;
	}
	closedir(d);
	calls_json(c, 200, json_pack("{s:b}", "needs_init", !context && visible));
}

void cfgstore_init(cfgstore_t *s, call_t *c, const call_req_t *req)
{
	char path[PATH_MAX + 16], why[WHY_LEN];
	int fd;

	(void)req;
	/* MarkProjectInitialized: an empty flag file, then config_changed. */
	if (s->lock_fd < 0) {
		calls_error(c, 409,
			    "data directory is not available: the workspace directory does not exist yet");
		return;
	}
	snprintf(path, sizeof(path), "%s/%s", s->data_dir, INIT_FLAG);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666)) < 0) {
		snprintf(why, sizeof(why), "failed to create init flag file: %s", strerror(errno));
		calls_error(c, 500, why);
		return;
	}
	close(fd);
	publish_changed(s);
	calls_respond(c, 200, NULL, "", 0);
}

void cfgstore_init_prompt(cfgstore_t *s, call_t *c, const call_req_t *req)
{
	const char *as =
	    json_string_value(json_object_get(json_object_get(s->config, "options"), "initialize_as"));
	char *prompt = NULL;

	(void)req;
	/* Our wording of the task upstream's initialize template sets: the
	 * context file named by options.initialize_as. */
	if (asprintf(&prompt,
		     "Study this repository and write or improve %s, the file future coding agents read "
		     "first to work here well.\n\n"
		     "If the directory is empty or holds only configuration, stop and say that %s can be "
		     "written once there is source code.\n\n"
		     "Find out, from the files themselves: how to build, test, lint and run the project "
		     "(exact commands, with their surprising flags); how the code is organised and how "
		     "data and control flow through it; naming and style conventions; how tests are "
		     "written; and the gotchas a newcomer would trip on. Read existing rule files "
		     "(.cursorrules, .cursor/rules/, .github/copilot-instructions.md, CLAUDE.md, "
		     "AGENTS.md) when they exist, and improve %s if it exists already.\n\n"
		     "Write what is not obvious from reading one file. Record only what you observed: "
		     "never invent a command or a convention. Use clear Markdown sections.\n",
		     as ? as : "AGENTS.md", as ? as : "AGENTS.md", as ? as : "AGENTS.md") < 0)
		abort();
	calls_json(c, 200, json_pack("{s:s}", "prompt", prompt));
	free(prompt);
}
