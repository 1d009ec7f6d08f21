/*
 * watch: recursive inotify watch of a workspace tree (see watch.h). One
 * inotify instance holds a watch per directory of the tree, kept in a
 * table wd -> path relative to root, plus one watch on an ancestor: root's
 * parent while root is watched (to see root go), root's nearest existing
 * ancestor while root is missing (to see it come).
 */
#include "worker/watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/hmap.h"
#include "common/log.h"
#include "worker/relpath.h"
#include "worker/root.h"

#define TREE_MASK                                                                                            \
	(IN_CREATE | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF |             \
	 IN_MOVE_SELF | IN_ONLYDIR)
/* On an ancestor of a missing root: the next component appearing, or the
 * ancestor itself going away. */
#define WAIT_MASK (IN_CREATE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
/* On root's parent while root is watched: root going away. */
#define GUARD_MASK (IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define EVENT_MAX  (sizeof(struct inotify_event) + NAME_MAX + 1)
#define READ_SIZE  (64 * 1024)
#define BUF_SIZE   (READ_SIZE + 8 * EVENT_MAX)
/* Bound on re-resolving a missing root when components keep appearing
 * between our look and our watch (or exist but cannot be watched). */
#define ARM_TRIES 8

/* How a directory scan treats what it finds. */
enum scan_mode {
	SCAN_QUIET,    /* at open: watch, report nothing */
	SCAN_ANNOUNCE, /* a directory appeared: report its contents as created */
	SCAN_RESCAN,   /* after an overflow: re-walk watched directories too */
	SCAN_REPAIR,   /* after a directory rename: re-walk it, and report the
			* contents of any directory in it not yet watched */
};

/* One watched directory of the tree; owned by watch.dirs. */
struct wdir {
	hmap_node_t node; /* keyed by key, the wd in decimal */
	char key[12];
	int wd;
	unsigned gen; /* the scan that last visited it: guards against loops */
	int scanned;  /* its listing was read (it may have moved first) */
	char *rel;    /* relative to root; "" for root itself */
};

struct watch {
	int fd;
	char *root;	/* absolute, no trailing '/' unless it is "/" */
	char *data_rel; /* data dir relative to root; NULL when outside */
	watch_cb cb;
	void *arg;
	hmap_t dirs;	/* wd -> struct wdir, while root is watched */
	int root_wd;	/* -1 while waiting for root */
	dev_t root_dev; /* the directory root_wd watches */
	ino_t root_ino;
	int anc_wd;	/* watch on an ancestor (see arm), or -1 */
	size_t next_at; /* offset in root of the component after that ancestor */
	size_t next_len;
	unsigned gen;
	int warned_limit;
	int dead;  /* errno that ended the watch (ELOOP: root resolves elsewhere) */
	char *buf; /* BUF_SIZE bytes for read(2) */
};

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (p == NULL)
		abort();
	return p;
}

static char *xstrdup(const char *s)
{
	return strcpy(xmalloc(strlen(s) + 1), s);
}

static char *abs_path(const watch_t *w, const char *rel)
{
	if (*rel == '\0')
		return xstrdup(w->root);
	return relpath_join(strcmp(w->root, "/") == 0 ? "" : w->root, rel);
}

static int ignored(const watch_t *w, const char *rel)
{
	return relpath_under(rel, ".git") || (w->data_rel != NULL && relpath_under(rel, w->data_rel));
}

static struct wdir *find_dir(const watch_t *w, int wd)
{
	char key[12];

	snprintf(key, sizeof(key), "%d", wd);
	return (struct wdir *)hmap_get(&w->dirs, key);
}

static void free_dir(watch_t *w, struct wdir *d)
{
	hmap_del(&w->dirs, &d->node);
	free(d->rel);
	free(d);
}

static void emit(watch_t *w, enum watch_kind kind, const char *rel, int is_dir, const char *from)
{
	w->cb(w->arg, kind, rel, is_dir, from);
}

static void add_dir(watch_t *w, const char *rel, enum scan_mode mode);

/*
 * Walks the directory rel: reports its entries (SCAN_ANNOUNCE) and watches
 * its subdirectories. Subdirectories are collected and the directory closed
 * before descending, so a deep tree costs one open fd, not one per level.
 * Returns -1 when rel cannot be listed (typically: renamed meanwhile).
 */
static int scan(watch_t *w, const char *rel, enum scan_mode mode)
{
	char *path = abs_path(w, rel), **subs = NULL;
	size_t nsubs = 0, cap = 0;
	struct dirent *de;
	struct stat st;
	DIR *dp = opendir(path);

	free(path);
	if (dp == NULL)
		return -1;
	while ((de = readdir(dp)) != NULL) {
		char *child;
		int is_dir;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		child = relpath_join(rel, de->d_name);
		if (ignored(w, child)) {
			free(child);
			continue;
		}
		is_dir = de->d_type == DT_DIR;
		if (de->d_type == DT_UNKNOWN && fstatat(dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			is_dir = S_ISDIR(st.st_mode);
		if (mode == SCAN_ANNOUNCE)
			emit(w, WATCH_CREATED, child, is_dir, NULL);
		if (!is_dir) {
			free(child);
			continue;
		}
		if (nsubs == cap) {
			cap = cap ? cap * 2 : 16;
			subs = realloc(subs, cap * sizeof(*subs));
			if (subs == NULL)
				abort();
		}
		subs[nsubs++] = child;
	}
	closedir(dp);
	for (size_t i = 0; i < nsubs; i++) {
		add_dir(w, subs[i], mode);
		free(subs[i]);
	}
	free(subs);
	return 0;
}

/* Records wd as the watch of rel. */
static struct wdir *new_dir(watch_t *w, int wd, const char *rel)
{
	struct wdir *d = xmalloc(sizeof(*d));

	d->wd = wd;
	d->gen = w->gen;
	d->scanned = 0;
	d->rel = xstrdup(rel);
	snprintf(d->key, sizeof(d->key), "%d", wd);
	hmap_put(&w->dirs, &d->node, d->key);
	return d;
}

/* Watches the subdirectory rel and everything under it. */
static void add_dir(watch_t *w, const char *rel, enum scan_mode mode)
{
	char *path = abs_path(w, rel);
	int wd = inotify_add_watch(w->fd, path, TREE_MASK | IN_DONT_FOLLOW);
	struct wdir *d;

	free(path);
	if (wd < 0) {
		/* ENOENT/ENOTDIR: gone or replaced already. Its deletion is (or
		 * will be) reported by the parent's watch; if it was renamed
		 * within the tree, the rename's SCAN_REPAIR watches it there. */
		if (errno == ENOSPC && !w->warned_limit) {
			w->warned_limit = 1;
			log_warn("inotify watch limit reached; part of the tree is not watched", "root",
				 w->root, "dir", rel, NULL);
		}
		return;
	}
	d = find_dir(w, wd);
	if (d == NULL) {
		d = new_dir(w, wd, rel);
		/* Unwatched until now: whatever it holds was never seen. */
		if (mode == SCAN_REPAIR)
			mode = SCAN_ANNOUNCE;
	} else {
		/* Already watched, and seen in this pass (bind mounts can show
		 * one directory twice): done. */
		if (d->gen == w->gen)
			return;
		/* Watched, but it moved before we could list it: its contents
		 * were never seen. */
		if (!d->scanned && (mode == SCAN_ANNOUNCE || mode == SCAN_REPAIR))
			mode = SCAN_ANNOUNCE;
		/* Watched and listed: only a rescan or a repair walks it again. */
		else if (mode != SCAN_RESCAN && mode != SCAN_REPAIR && strcmp(d->rel, rel) == 0)
			return;
		free(d->rel);
		d->rel = xstrdup(rel);
		d->gen = w->gen;
	}
	/* The wdir stays put meanwhile: nothing frees one during a walk. */
	if (scan(w, rel, mode) == 0)
		d->scanned = 1;
}

/* Forgets (and unwatches) rel and every watched directory under it. */
static void forget(watch_t *w, const char *rel)
{
	hmap_node_t *n, *nxt;

	hmap_foreach (&w->dirs, n, nxt) {
		struct wdir *d = (struct wdir *)n;

		if (relpath_under(d->rel, rel)) {
			inotify_rm_watch(w->fd, d->wd);
			free_dir(w, d);
		}
	}
}

/* A watched directory moved from `from` to `to`: re-root its subtree. */
static void rename_dirs(watch_t *w, const char *from, const char *to)
{
	size_t n = strlen(from);
	hmap_node_t *node, *nxt;

	hmap_foreach (&w->dirs, node, nxt) {
		struct wdir *d = (struct wdir *)node;

		if (relpath_under(d->rel, from)) {
			char *rel = xmalloc(strlen(to) + strlen(d->rel + n) + 1);

			strcpy(rel, to);
			strcat(rel, d->rel + n);
			free(d->rel);
			d->rel = rel;
		}
	}
}

/* Length of the parent's prefix of root[0, len): "/a/b" -> "/a" -> "/". */
static size_t parent_len(const char *root, size_t len)
{
	while (len > 1 && root[len - 1] != '/')
		len--;
	return len > 1 ? len - 1 : 1;
}

/*
 * Puts the ancestor watch on root[0, len) with mask, replacing the one
 * before (the same directory keeps its wd and just changes mask). Events
 * there matter only for the component of root that follows it. Returns 0,
 * or -1 with errno.
 */
static int watch_ancestor(watch_t *w, size_t len, uint32_t mask)
{
	char *p = strndup(w->root, len);
	int wd;

	if (p == NULL)
		abort();
	wd = inotify_add_watch(w->fd, p, mask);
	free(p);
	if (wd < 0)
		return -1;
	if (w->anc_wd >= 0 && w->anc_wd != wd)
		inotify_rm_watch(w->fd, w->anc_wd);
	w->anc_wd = wd;
	w->next_at = len == 1 ? 1 : len + 1;
	w->next_len = strcspn(w->root + w->next_at, "/");
	return 0;
}

static void drop_ancestor(watch_t *w)
{
	if (w->anc_wd >= 0)
		inotify_rm_watch(w->fd, w->anc_wd);
	w->anc_wd = -1;
}

/* While waiting: watches the nearest existing ancestor of root for the
 * next component. Returns 0, or -1 with errno when none can be watched. */
static int wait_ancestor(watch_t *w)
{
	size_t len = strlen(w->root);

	do {
		len = parent_len(w->root, len);
		if (watch_ancestor(w, len, WAIT_MASK) == 0)
			return 0;
	} while ((errno == ENOENT || errno == ENOTDIR || errno == EACCES) && len > 1);
	return -1;
}

/*
 * While watching: guards root from its parent. Our own cwd is root (the
 * supervisor puts it there), and while any process holds a reference the
 * kernel delays root's DELETE_SELF until it goes; the parent's DELETE (or
 * MOVED_FROM) for root's name is the only prompt sign that root is gone.
 */
static void guard_root(watch_t *w)
{
	size_t len = strlen(w->root);

	if (len == 1 || watch_ancestor(w, parent_len(w->root, len), GUARD_MASK) < 0)
		drop_ancestor(w);
}

/* root still names the directory we watch, with no symlink on its way
 * (root_open: a symlink to the same directory is a change too, since the
 * supervisor would resolve the key to another one). */
static int root_unchanged(const watch_t *w)
{
	struct stat st;
	int fd = root_open(w->root), same;

	if (fd < 0)
		return 0;
	same = fstat(fd, &st) == 0 && st.st_dev == w->root_dev && st.st_ino == w->root_ino;
	close(fd);
	return same;
}

/*
 * Watches root itself: the directory root_open found, through its fd
 * (/proc/self/fd/N), so no symlink swapped in after the check can divert
 * the watch. Without /proc, root by name, not following a last symlink.
 * Returns the wd with *st describing it, or -1 with errno as root_open's.
 */
static int watch_root_dir(watch_t *w, struct stat *st)
{
	char proc[32];
	int fd = root_open(w->root), wd, saved;

	if (fd < 0)
		return -1;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	wd = inotify_add_watch(w->fd, proc, TREE_MASK);
	if (wd < 0 && errno == ENOENT)
		wd = inotify_add_watch(w->fd, w->root, TREE_MASK | IN_DONT_FOLLOW);
	saved = errno;
	if (wd >= 0 && fstat(fd, st) != 0)
		memset(st, 0, sizeof(*st));
	close(fd);
	errno = saved;
	return wd;
}

/* The component waited for already exists as a directory (it appeared
 * before the ancestor's watch was in place). */
static int next_is_dir(const watch_t *w)
{
	char *p = strndup(w->root, w->next_at + w->next_len);
	struct stat st;
	int r;

	if (p == NULL)
		abort();
	r = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
	free(p);
	return r;
}

/*
 * Watches root recursively if it is a directory now, else waits for it.
 * Returns 0, or -1 with errno when root exists but cannot be watched
 * (ELOOP: it exists through a symlink, see root.h).
 */
static int arm(watch_t *w, enum scan_mode mode)
{
	struct wdir *d;
	struct stat st;

	for (int tries = 0; tries < ARM_TRIES; tries++) {
		int wd = watch_root_dir(w, &st);

		if (wd >= 0) {
			w->root_dev = st.st_dev;
			w->root_ino = st.st_ino;
			w->root_wd = wd;
			w->gen++;
			d = new_dir(w, wd, "");
			guard_root(w);
			d->scanned = scan(w, "", mode) == 0;
			return 0;
		}
		if (errno != ENOENT && errno != ENOTDIR)
			return -1;
		if (wait_ancestor(w) < 0)
			return -1;
		if (!next_is_dir(w)) {
			log_debug("Waiting for the workspace directory to appear", "root", w->root, NULL);
			return 0;
		}
	}
	log_warn("Workspace directory exists but cannot be watched; waiting", "root", w->root, NULL);
	return 0;
}

static void rearm(watch_t *w)
{
	if (arm(w, SCAN_ANNOUNCE) == 0)
		return;
	/* Root came back through a symlink: another directory under our
	 * name. Never watch it; the owner learns from watch_process. */
	if (errno == ELOOP) {
		w->dead = ELOOP;
		return;
	}
	log_warn("Cannot watch the workspace directory", "root", w->root, "err", strerror(errno), NULL);
}

/* Root was removed or moved away: drop the tree, wait for root again. */
static void root_lost(watch_t *w)
{
	hmap_node_t *n, *nxt;

	hmap_foreach (&w->dirs, n, nxt) {
		struct wdir *d = (struct wdir *)n;

		inotify_rm_watch(w->fd, d->wd);
		free_dir(w, d);
	}
	w->root_wd = -1;
	log_info("Workspace directory gone; waiting for it", "root", w->root, NULL);
	rearm(w);
}

/* An event on the ancestor watch: the guard (root watched) or the wait. */
static void on_ancestor_event(watch_t *w, const struct inotify_event *ev)
{
	int self = (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) != 0;

	if (ev->mask & IN_IGNORED)
		w->anc_wd = -1;
	if (!self && (ev->len == 0 || strlen(ev->name) != w->next_len ||
		      strncmp(ev->name, w->root + w->next_at, w->next_len) != 0))
		return;
	if (w->root_wd >= 0) {
		/* A stale event, or a rename that left root in place. */
		if (!root_unchanged(w))
			root_lost(w);
		else if (self)
			guard_root(w);
		return;
	}
	/* Step down (or, if the ancestor went away, back up). */
	rearm(w);
}

/* The MOVED_TO with this cookie later in [p, end), if any. */
static struct inotify_event *find_moved_to(char *p, char *end, uint32_t cookie)
{
	while (p < end) {
		struct inotify_event *ev = (struct inotify_event *)p;

		if ((ev->mask & IN_MOVED_TO) && ev->cookie == cookie)
			return ev;
		p += sizeof(*ev) + ev->len;
	}
	return NULL;
}

/* A rename's first half: pairs it with its MOVED_TO in the rest of the
 * batch (which is then marked consumed) into one `renamed`; alone, it is a
 * deletion from the tree. */
static void moved_from(watch_t *w, const char *rel, int is_dir, uint32_t cookie, char *rest, char *end)
{
	struct inotify_event *to = find_moved_to(rest, end, cookie);
	char *to_rel = NULL;

	if (to != NULL) {
		struct wdir *td = find_dir(w, to->wd);

		if (td != NULL && to->len > 0) {
			to_rel = relpath_join(td->rel, to->name);
			if (ignored(w, to_rel)) {
				free(to_rel);
				to_rel = NULL;
			}
		}
		to->mask = 0;
	}
	if (to_rel != NULL) {
		emit(w, WATCH_RENAMED, to_rel, is_dir, rel);
		if (is_dir) {
			rename_dirs(w, rel, to_rel);
			/* Directories under it that appeared but moved before
			 * we could watch them are found (and reported) here:
			 * mkdir -p a/b; mv a c loses nothing. */
			w->gen++;
			add_dir(w, to_rel, SCAN_REPAIR);
		}
		free(to_rel);
		return;
	}
	emit(w, WATCH_DELETED, rel, is_dir, NULL);
	if (is_dir)
		forget(w, rel);
}

static void dispatch(watch_t *w, struct inotify_event *ev, char *rest, char *end)
{
	struct wdir *d;
	char *rel;
	int is_dir = (ev->mask & IN_ISDIR) != 0;

	if (ev->mask == 0) /* the second half of a rename, reported already */
		return;
	if (ev->mask & IN_Q_OVERFLOW) {
		emit(w, WATCH_OVERFLOW, "", 0, NULL);
		/* Directories created meanwhile are unwatched; find them. */
		d = w->root_wd >= 0 ? find_dir(w, w->root_wd) : NULL;
		if (d != NULL) {
			d->gen = ++w->gen;
			d->scanned = scan(w, "", SCAN_RESCAN) == 0;
		} else {
			rearm(w);
		}
		return;
	}
	if (w->anc_wd >= 0 && ev->wd == w->anc_wd) {
		on_ancestor_event(w, ev);
		return;
	}
	d = find_dir(w, ev->wd);
	if (d == NULL) /* a watch we dropped already */
		return;
	/* Root's own watch gone, or root deleted (when no cwd pins it) or
	 * renamed away; a rename there and back again leaves it in place. */
	if (ev->wd == w->root_wd && ((ev->mask & (IN_DELETE_SELF | IN_IGNORED)) ||
				     ((ev->mask & IN_MOVE_SELF) && !root_unchanged(w)))) {
		root_lost(w);
		return;
	}
	if (ev->mask & IN_IGNORED) {
		free_dir(w, d);
		return;
	}
	/* A subdirectory's own DELETE_SELF/MOVE_SELF: its parent reports it. */
	if (ev->len == 0)
		return;
	rel = relpath_join(d->rel, ev->name);
	if (ignored(w, rel)) {
		free(rel);
		return;
	}
	if (ev->mask & IN_MOVED_FROM) {
		moved_from(w, rel, is_dir, ev->cookie, rest, end);
	} else if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
		emit(w, WATCH_CREATED, rel, is_dir, NULL);
		if (is_dir) {
			w->gen++;
			add_dir(w, rel, SCAN_ANNOUNCE);
		}
	} else if (ev->mask & IN_DELETE) {
		emit(w, WATCH_DELETED, rel, is_dir, NULL);
	} else if ((ev->mask & IN_CLOSE_WRITE) && !is_dir) {
		emit(w, WATCH_MODIFIED, rel, 0, NULL);
	}
	free(rel);
}

/* The last event of [buf, buf + len) is a MOVED_FROM. */
static int ends_with_moved_from(char *buf, size_t len)
{
	struct inotify_event *last = NULL;

	for (char *p = buf; p < buf + len; p += sizeof(*last) + last->len)
		last = (struct inotify_event *)p;
	return last != NULL && (last->mask & IN_MOVED_FROM);
}

int watch_process(watch_t *w)
{
	size_t len = 0;
	int count = 0;

	if (w->dead != 0) {
		errno = w->dead;
		return -1;
	}
	/* One batch is one read, extended while it ends with a MOVED_FROM
	 * whose MOVED_TO may be next in the queue. */
	for (;;) {
		ssize_t n = read(w->fd, w->buf + len, len == 0 ? READ_SIZE : BUF_SIZE - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && len == 0)
			return -1;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (!ends_with_moved_from(w->buf, len) || BUF_SIZE - len < EVENT_MAX)
			break;
	}
	for (char *p = w->buf, *end = w->buf + len; p < end; count++) {
		struct inotify_event *ev = (struct inotify_event *)p;

		p += sizeof(*ev) + ev->len;
		dispatch(w, ev, p, end);
	}
	if (w->dead != 0) {
		errno = w->dead;
		return -1;
	}
	return count;
}

watch_t *watch_open(const char *root, const char *data_dir, watch_cb cb, void *arg)
{
	watch_t *w;
	int saved;

	/* The supervisor's dedup key, taken as it is: resolving it again is
	 * what would let a swapped symlink move the workspace (root.h). */
	if (!root_canonical(root)) {
		errno = EINVAL;
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0) {
		free(w);
		return NULL;
	}
	w->root = xstrdup(root);
	w->data_rel = relpath_data_dir(root, root, data_dir);
	w->cb = cb;
	w->arg = arg;
	w->root_wd = -1;
	w->anc_wd = -1;
	w->buf = xmalloc(BUF_SIZE);
	if (arm(w, SCAN_QUIET) < 0) {
		saved = errno;
		watch_close(w);
		errno = saved;
		return NULL;
	}
	return w;
}

int watch_fd(const watch_t *w)
{
	return w->fd;
}

int watch_active(const watch_t *w)
{
	return w->root_wd >= 0;
}

const char *watch_kind_name(enum watch_kind kind)
{
	static const char *const names[] = {
	    [WATCH_CREATED] = "created", [WATCH_MODIFIED] = "modified", [WATCH_DELETED] = "deleted",
	    [WATCH_RENAMED] = "renamed", [WATCH_OVERFLOW] = "overflow",
	};

	return (unsigned)kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "unknown";
}

void watch_close(watch_t *w)
{
	hmap_node_t *n, *nxt;

	if (w == NULL)
		return;
	hmap_foreach (&w->dirs, n, nxt) {
		struct wdir *d = (struct wdir *)n;

		free(d->rel);
		free(d);
	}
	hmap_free(&w->dirs);
	close(w->fd);
	free(w->root);
	free(w->data_rel);
	free(w->buf);
	free(w);
}
