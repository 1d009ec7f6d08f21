/*
 * watch: recursive inotify watch of a workspace tree (see watch.h). One
 * inotify instance holds a watch per directory of the tree, kept in a
 * table wd -> path relative to root, plus one watch on an ancestor: root's
 * parent while root is watched (to see root go), root's nearest existing
 * ancestor while root is missing (to see it come). Directories are listed
 * by walk.c in bounded steps (watch_work), never here at once; those that
 * could not be watched are kept by unwatched.c, oldest first, until a
 * retry watches them.
 */
#include "worker/watch.h"

#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/hmap.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "worker/relpath.h"
#include "worker/root.h"
#include "worker/unwatched.h"
#include "worker/walk.h"

#define TREE_MASK                                                                                            \
	(IN_CREATE | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF |             \
	 IN_MOVE_SELF | IN_ONLYDIR)
/* On an ancestor of a missing root: the next component appearing, or the
 * ancestor itself going away. */
#define WAIT_MASK (IN_CREATE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
/* On root's parent while root is watched: root going away, or another
 * directory renamed over its name. */
#define GUARD_MASK (IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define EVENT_MAX  (sizeof(struct inotify_event) + NAME_MAX + 1)
#define READ_SIZE  (64 * 1024)
#define BUF_SIZE   (READ_SIZE + 8 * EVENT_MAX)
/* Bound on re-resolving a missing root when components keep appearing
 * between our look and our watch (or exist but cannot be watched). */
#define ARM_TRIES 8
/* One watch_work call: units in chunks of WORK_CHUNK, for at most about
 * WORK_MAX_MS, so a slow filesystem cannot stretch a step either. A unit
 * can be slow: watching a directory makes the kernel mark each of its
 * children in the dentry cache (0.3 ms for 1,000 on tmpfs, where all
 * are cached), so chunks are small and the clock is cheap. */
#define WORK_CHUNK  8
#define WORK_MAX_MS 4
/* Unwatched directories are retried this long after a failure, doubling
 * up to the max; at once when one of our watches is freed. */
#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 60000
#define RETRY_BATCH  64
/* A changed list of unwatched directories is said at most this often. */
#define STATUS_EVERY_MS 1000
#define LIMIT_REASON	"fs.inotify.max_user_watches reached"

/* How a listing treats what it finds (flags; 0 lists quietly). */
#define M_ANNOUNCE 1 /* the directory is news: report every entry as created */
#define M_RELIST   2 /* list again directories listed already (rescan, repair) */
#define M_REPAIR   4 /* a directory that is news but was never listed is announced */
#define M_SINCE                                                                                              \
	8 /* the first walk: report entries changed since the watch opened                                   \
	   * and before their directory was watched (see report_since) */

/* One watched directory of the tree; owned by watch.dirs. */
struct wdir {
	hmap_node_t node; /* keyed by key, the wd in decimal */
	walk_node_t walk; /* queued for a listing, or being listed */
	char key[12];
	int wd;
	int scanned;	       /* a listing of it was read to its end */
	int news;	       /* it appeared while we watched: its contents are (being) reported */
	int qmode, lmode;      /* mode of the listing it is queued for / under way */
	int since;	       /* that listing reports changes since t0 */
	unsigned pass, lpass;  /* the walk that last queued it (loop guard) / listing */
	unsigned epoch;	       /* the last full walk that met it (see sweep) */
	struct timespec added; /* when its watch was added (CLOCK_REALTIME) */
	char *rel;	       /* relative to root; "" for root itself */
};

struct watch {
	int fd;
	char *root;	/* absolute, no trailing '/' unless it is "/" */
	char *data_rel; /* data dir relative to root; NULL when outside */
	watch_cb cb;
	void *arg;
	int opened;	/* watch_open returned: events may be reported */
	hmap_t dirs;	/* wd -> struct wdir, while root is watched */
	int root_wd;	/* -1 while waiting for root */
	int root_fd;	/* O_PATH fd of the watched root: was it deleted or moved? */
	dev_t root_dev; /* the directory root_wd watches */
	ino_t root_ino;
	int anc_wd;	/* watch on an ancestor (see arm), or -1 */
	size_t next_at; /* offset in root of the component after that ancestor */
	size_t next_len;
	int dead;  /* errno that ended the watch (ELOOP: root resolves elsewhere) */
	char *buf; /* BUF_SIZE bytes for read(2) */
	walk_t walk;
	unsigned pass;
	unsigned epoch;
	/* The walk of the whole tree under way (scanning .. scan_complete). */
	const char *scan_cause; /* NULL when none */
	int scan_said;		/* its scanning event went out */
	int sweep;		/* when it ends, drop what it did not meet */
	uint64_t scan_start;	/* clock_ms() */
	uint64_t longest_us;	/* its longest watch_work call (logged at its end) */
	struct timespec t0;	/* when the watch opened (CLOCK_REALTIME_COARSE) */
	/* Directories that could not be watched. */
	unwatched_t unw;    /* directories that could not be watched */
	uint64_t retry_at;  /* clock_ms() of the next retry; 0: none */
	unsigned retry_ms;  /* backoff */
	int status_dirty;   /* the list changed since the last status said */
	uint64_t status_at; /* no status before then */
	unsigned max_watches;
	unsigned walk_delay_us;
};

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

static int ts_before(struct timespec a, struct timespec b)
{
	return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

static struct wdir *find_dir(const watch_t *w, int wd)
{
	char key[12];

	snprintf(key, sizeof(key), "%d", wd);
	return (struct wdir *)hmap_get(&w->dirs, key);
}

static struct wdir *dir_of(walk_node_t *n)
{
	return (struct wdir *)((char *)n - offsetof(struct wdir, walk));
}

/* --- reporting */

static void emit(watch_t *w, struct watch_event *ev)
{
	struct watch_status st;

	if (!w->opened)
		return;
	if (ev->kind > WATCH_KIND_FS_LAST) {
		watch_status(w, &st);
		ev->status = &st;
	}
	w->cb(w->arg, ev);
}

static void emit_fs(watch_t *w, enum watch_kind kind, const char *rel, int is_dir, const char *from)
{
	struct watch_event ev = {.kind = kind, .path = rel, .is_dir = is_dir, .from = from};

	emit(w, &ev);
}

/* A watch event about the view (path "" unless given). */
static void emit_view(watch_t *w, enum watch_kind kind, const char *path)
{
	struct watch_event ev = {.kind = kind, .path = path ? path : "", .is_dir = 1, .cause = w->scan_cause};

	if (kind == WATCH_INCOMPLETE)
		ev.reason = LIMIT_REASON;
	if (kind == WATCH_INCOMPLETE || kind == WATCH_COMPLETE) {
		w->status_dirty = 0;
		w->status_at = clock_ms() + STATUS_EVERY_MS;
	}
	emit(w, &ev);
}

/* --- unwatched directories (what to say and when to retry them) */

/* The list lost entries: said at once when it is empty now, else soon. */
static void unw_shrunk(watch_t *w)
{
	if (unwatched_count(&w->unw) > 0) {
		w->status_dirty = 1;
		return;
	}
	w->retry_at = 0;
	w->retry_ms = RETRY_MIN_MS;
	log_info("Every directory of the workspace is watched again", "root", w->root, NULL);
	emit_view(w, WATCH_COMPLETE, NULL);
}

/* rel could not be watched for want of inotify watches. */
static void unw_add(watch_t *w, const char *rel)
{
	if (!unwatched_add(&w->unw, rel, w->epoch))
		return;
	if (w->retry_at == 0)
		w->retry_at = clock_ms() + w->retry_ms;
	if (unwatched_count(&w->unw) > 1) {
		w->status_dirty = 1;
		return;
	}
	log_warn("inotify watch limit reached; part of the workspace tree is not watched (raise the "
		 "fs.inotify.max_user_watches sysctl)",
		 "root", w->root, "dir", *rel ? rel : ".", NULL);
	emit_view(w, WATCH_INCOMPLETE, rel);
}

/* Entries at or under rel leave the list (gone from the tree, or watched). */
static void unw_drop_under(watch_t *w, const char *rel)
{
	if (unwatched_count(&w->unw) > 0 && unwatched_drop_under(&w->unw, rel) > 0)
		unw_shrunk(w);
}

/* Forgets the list without a word (the root went: nothing to watch). */
static void unw_forget_all(watch_t *w)
{
	unwatched_clear(&w->unw);
	w->retry_at = 0;
	w->retry_ms = RETRY_MIN_MS;
	w->status_dirty = 0;
}

/* One of our watches went away: the kernel has one more to give. */
static void watches_freed(watch_t *w)
{
	uint64_t now = clock_ms();

	if (unwatched_count(&w->unw) > 0 && (w->retry_at == 0 || w->retry_at > now))
		w->retry_at = now;
}

/* --- the table of watched directories */

static void free_dir(watch_t *w, struct wdir *d)
{
	walk_cancel(&w->walk, &d->walk);
	hmap_del(&w->dirs, &d->node);
	free(d->rel);
	free(d);
}

/* Records wd as the watch of rel. */
static struct wdir *new_dir(watch_t *w, int wd, const char *rel, int news)
{
	struct wdir *d = calloc(1, sizeof(*d));

	if (d == NULL)
		abort();
	d->wd = wd;
	d->news = news;
	d->epoch = w->epoch;
	d->rel = xstrdup(rel);
	clock_gettime(CLOCK_REALTIME, &d->added);
	snprintf(d->key, sizeof(d->key), "%d", wd);
	hmap_put(&w->dirs, &d->node, d->key);
	return d;
}

/* inotify_add_watch, within the test cap (a watch we hold already, which
 * the kernel hands back, is never refused). */
static int add_watch(watch_t *w, const char *path, uint32_t mask)
{
	int wd = inotify_add_watch(w->fd, path, mask);

	if (wd >= 0 && w->max_watches > 0 && w->dirs.count >= w->max_watches && find_dir(w, wd) == NULL &&
	    wd != w->anc_wd) {
		inotify_rm_watch(w->fd, wd);
		errno = ENOSPC;
		return -1;
	}
	return wd;
}

/* Queues d's listing in mode, within walk `pass`. Announcing listings
 * (what just appeared, what a rename may hide) go before the rest. */
static void queue_dir(watch_t *w, struct wdir *d, int mode, unsigned pass)
{
	d->qmode = walk_queued(&d->walk) ? d->qmode | mode : mode;
	d->pass = pass;
	d->epoch = w->epoch;
	walk_push(&w->walk, &d->walk, (d->qmode & (M_ANNOUNCE | M_REPAIR)) != 0);
}

/*
 * Watches the subdirectory rel and queues its listing (which watches what
 * is under it). Returns 1 when rel is watched, -1 when it cannot be for
 * want of watches (it is then on the unwatched list), 0 when it is gone.
 */
static int add_dir(watch_t *w, const char *rel, int mode, unsigned pass)
{
	char *path = abs_path(w, rel);
	int wd = add_watch(w, path, TREE_MASK | IN_DONT_FOLLOW);
	struct wdir *d;

	free(path);
	if (wd < 0) {
		/* ENOENT/ENOTDIR: gone or replaced already. Its deletion is (or
		 * will be) reported by the parent's watch; if it was renamed
		 * within the tree, the rename's repair watches it there. */
		if (errno != ENOSPC)
			return 0;
		unw_add(w, rel);
		return -1;
	}
	if (unwatched_has(&w->unw, rel))
		unw_drop_under(w, rel);
	d = find_dir(w, wd);
	if (d == NULL) {
		d = new_dir(w, wd, rel, (mode & (M_ANNOUNCE | M_REPAIR)) != 0);
		/* Unwatched until now: whatever it holds was never seen. */
		if (mode & M_REPAIR)
			mode = M_ANNOUNCE;
	} else {
		int same = strcmp(d->rel, rel) == 0;

		d->epoch = w->epoch;
		/* Met in this walk already (bind mounts can show one
		 * directory twice): done. */
		if (d->pass == pass)
			return 1;
		/* An event says it is new, but a walk (a rescan) met it first,
		 * quietly: what it holds is news too. */
		if ((mode & M_ANNOUNCE) && !d->news) {
			d->news = 1;
			mode = M_ANNOUNCE;
		}
		/* News, but moved before it could be listed: its contents
		 * were never seen. */
		else if (!d->scanned && d->news && (mode & (M_ANNOUNCE | M_REPAIR)))
			mode = M_ANNOUNCE;
		/* Listed, or about to be: only a rescan or a repair lists it
		 * again, and what it held was seen. */
		else if (same && !(mode & M_RELIST) && (d->scanned || walk_queued(&d->walk)))
			return 1;
		else if (same && d->scanned)
			mode &= ~M_ANNOUNCE;
		if (!same) {
			free(d->rel);
			d->rel = xstrdup(rel);
		}
	}
	queue_dir(w, d, mode, pass);
	return 1;
}

/* Forgets (and unwatches) rel and every watched directory under it. */
static void forget(watch_t *w, const char *rel)
{
	hmap_node_t *n, *nxt;
	int freed = 0;

	hmap_foreach (&w->dirs, n, nxt) {
		struct wdir *d = (struct wdir *)n;

		if (relpath_under(d->rel, rel)) {
			inotify_rm_watch(w->fd, d->wd);
			free_dir(w, d);
			freed = 1;
		}
	}
	unw_drop_under(w, rel);
	if (freed)
		watches_freed(w);
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
	unwatched_rename(&w->unw, from, to);
}

/* --- walks */

/*
 * The first walk reaches a directory some time after READY; what changed
 * in it meanwhile, before its watch was added, no event told. An entry
 * whose ctime lies between the watch's opening and its directory's watch
 * is reported now: created when it was born after the opening (or the
 * filesystem keeps no birth time), else modified. Entries whose ctime is
 * later were changed under the watch and reported by it. File times are
 * coarse (a tick of a few ms): both bounds err towards reporting, so a
 * change within a tick of either may be reported twice, never not at all.
 */
static void report_since(watch_t *w, const struct wdir *d, int dfd, const char *name, const char *rel,
			 int is_dir)
{
	struct statx sx;
	struct timespec ct, bt;

	if (statx(dfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_CTIME | STATX_BTIME, &sx) != 0)
		return;
	ct.tv_sec = sx.stx_ctime.tv_sec;
	ct.tv_nsec = sx.stx_ctime.tv_nsec;
	if (ts_before(ct, w->t0) || ts_before(d->added, ct))
		return;
	bt.tv_sec = sx.stx_btime.tv_sec;
	bt.tv_nsec = sx.stx_btime.tv_nsec;
	if ((sx.stx_mask & STATX_BTIME) && ts_before(bt, w->t0)) {
		/* A directory's own change is its entries', reported there. */
		if (!is_dir)
			emit_fs(w, WATCH_MODIFIED, rel, 0, NULL);
		return;
	}
	emit_fs(w, WATCH_CREATED, rel, is_dir, NULL);
}

static int walk_open(void *arg, walk_node_t *n)
{
	watch_t *w = arg;
	struct wdir *d = dir_of(n);
	char *path = abs_path(w, d->rel);
	struct stat st;
	int fd;

	d->lmode = d->qmode;
	d->lpass = d->pass;
	d->qmode = 0;
	d->since = 0;
	if (w->walk_delay_us > 0)
		usleep(w->walk_delay_us);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	free(path);
	/* Only a directory whose entries changed since the opening can hold
	 * one to report (entries made, removed or renamed change its ctime). */
	if (fd >= 0 && (d->lmode & M_SINCE) && fstat(fd, &st) == 0)
		d->since = !ts_before(st.st_ctim, w->t0);
	/* Reported from here: an event saying it is new adds nothing. */
	if (d->since)
		d->news = 1;
	return fd;
}

static void walk_entry(void *arg, walk_node_t *n, int dfd, const char *name, unsigned char type)
{
	watch_t *w = arg;
	struct wdir *d = dir_of(n);
	int is_dir = type == DT_DIR;
	struct stat st;
	char *child;

	if (type == DT_UNKNOWN && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		is_dir = S_ISDIR(st.st_mode);
	/* The common case of a big walk: a file, listed quietly. */
	if (!is_dir && !(d->lmode & M_ANNOUNCE) && !d->since)
		return;
	child = relpath_join(d->rel, name);
	if (!ignored(w, child)) {
		if (d->lmode & M_ANNOUNCE)
			emit_fs(w, WATCH_CREATED, child, is_dir, NULL);
		else if (d->since)
			report_since(w, d, dfd, name, child, is_dir);
		if (is_dir)
			add_dir(w, child, d->lmode, d->lpass);
	}
	free(child);
}

static void walk_done(void *arg, walk_node_t *n, int ok)
{
	(void)arg;
	if (ok)
		dir_of(n)->scanned = 1;
}

static const walk_ops_t walk_ops = {.open = walk_open, .entry = walk_entry, .done = walk_done};

static void say_scanning(watch_t *w)
{
	w->scan_said = 1;
	log_debug("Walking the workspace tree", "root", w->root, "cause", w->scan_cause, NULL);
	emit_view(w, WATCH_SCANNING, NULL);
}

/* A walk of the whole tree, from root, in mode: the first (start), after
 * an overflow (a rescan: what it does not meet is swept), or of a root
 * that appeared. With root missing it ends at once, having met nothing. */
static void start_full_walk(watch_t *w, const char *cause, int mode)
{
	struct wdir *d = w->root_wd >= 0 ? find_dir(w, w->root_wd) : NULL;

	w->epoch++;
	if (w->scan_cause == NULL) {
		w->scan_start = clock_ms();
		w->longest_us = 0;
	}
	w->scan_cause = cause;
	w->sweep = w->sweep || (mode & M_RELIST) != 0;
	if (d != NULL)
		queue_dir(w, d, mode, ++w->pass);
	w->scan_said = 0;
	if (w->opened)
		say_scanning(w);
}

/* After a rescan: every watch it did not meet belongs to a directory no
 * longer in the tree (moved out while the queue overflowed): dropped, or
 * later writes there would be reported under its old name. */
static void sweep(watch_t *w)
{
	hmap_node_t *n, *nxt;
	size_t swept = 0;
	char count[24];

	hmap_foreach (&w->dirs, n, nxt) {
		struct wdir *d = (struct wdir *)n;

		if (d->epoch != w->epoch && d->wd != w->root_wd) {
			inotify_rm_watch(w->fd, d->wd);
			free_dir(w, d);
			swept++;
		}
	}
	w->sweep = 0;
	if (swept > 0) {
		snprintf(count, sizeof(count), "%zu", swept);
		log_debug("Dropped the watches of directories the rescan did not meet", "root", w->root,
			  "count", count, NULL);
		watches_freed(w);
	}
	if (unwatched_count(&w->unw) > 0 && unwatched_sweep(&w->unw, w->epoch) > 0)
		unw_shrunk(w);
}

static void finish_full_walk(watch_t *w)
{
	struct watch_event ev = {.kind = WATCH_SCAN_COMPLETE, .path = "", .is_dir = 1};
	char dirs[24], ms[24], longest[24];

	if (w->sweep)
		sweep(w);
	ev.cause = w->scan_cause;
	ev.dirs = w->dirs.count;
	ev.ms = clock_ms() - w->scan_start;
	w->scan_cause = NULL;
	snprintf(dirs, sizeof(dirs), "%zu", ev.dirs);
	snprintf(ms, sizeof(ms), "%llu", (unsigned long long)ev.ms);
	snprintf(longest, sizeof(longest), "%.1f", (double)w->longest_us / 1000.0);
	log_debug("Walked the workspace tree", "root", w->root, "cause", ev.cause, "dirs", dirs, "ms", ms,
		  "longest_step_ms", longest, NULL);
	w->status_dirty = 0; /* the event carries the status */
	emit(w, &ev);
}

/* --- the root and its ancestors */

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
 * Returns the wd with *st describing it and *fdp its O_PATH fd, or -1
 * with errno as root_open's.
 */
static int watch_root_dir(watch_t *w, struct stat *st, int *fdp)
{
	char proc[32];
	int fd = root_open(w->root), wd, saved;

	if (fd < 0)
		return -1;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	wd = add_watch(w, proc, TREE_MASK);
	if (wd < 0 && errno == ENOENT)
		wd = add_watch(w, w->root, TREE_MASK | IN_DONT_FOLLOW);
	saved = errno;
	if (wd >= 0 && fstat(fd, st) != 0)
		memset(st, 0, sizeof(*st));
	if (wd >= 0)
		*fdp = fd;
	else
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
 * Watches root if it is a directory now and starts walking it (cause
 * "start": the first walk, quiet; else it appeared, and its contents are
 * reported as created), else waits for it. Returns 0, or -1 with errno
 * when root exists but cannot be watched (ELOOP: it exists through a
 * symlink, see root.h; ENOSPC: no watch left for it).
 */
static int arm(watch_t *w, const char *cause)
{
	int first = strcmp(cause, "start") == 0;
	struct stat st;

	for (int tries = 0; tries < ARM_TRIES; tries++) {
		int fd = -1, wd = watch_root_dir(w, &st, &fd);

		if (wd >= 0) {
			w->root_dev = st.st_dev;
			w->root_ino = st.st_ino;
			w->root_wd = wd;
			w->root_fd = fd;
			new_dir(w, wd, "", !first);
			guard_root(w);
			if (!first) {
				log_info("Workspace directory appeared; watching it", "root", w->root, NULL);
				emit_view(w, WATCH_ROOT_APPEARED, NULL);
			}
			start_full_walk(w, cause, first ? M_SINCE : M_ANNOUNCE);
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
	if (arm(w, "root_appeared") == 0)
		return;
	/* Root came back through a symlink: another directory under our
	 * name. Never watch it; the owner learns from watch_process. */
	if (errno == ELOOP) {
		w->dead = ELOOP;
		return;
	}
	/* No watch left for it: said, and retried like any directory. */
	if (errno == ENOSPC) {
		unw_add(w, "");
		return;
	}
	log_warn("Cannot watch the workspace directory", "root", w->root, "err", strerror(errno), NULL);
}

/* Root was removed or moved away: drop the tree, say so, wait for root
 * again. Whether it was removed is its link count, through the fd we kept
 * (our own cwd keeps a removed root's inode alive until we leave it). */
static void root_lost(watch_t *w)
{
	hmap_node_t *n, *nxt;
	struct stat st;
	int gone = w->root_fd < 0 || fstat(w->root_fd, &st) != 0 || st.st_nlink == 0;

	walk_clear(&w->walk);
	hmap_foreach (&w->dirs, n, nxt) {
		struct wdir *d = (struct wdir *)n;

		inotify_rm_watch(w->fd, d->wd);
		free_dir(w, d);
	}
	unw_forget_all(w);
	if (w->root_fd >= 0)
		close(w->root_fd);
	w->root_fd = -1;
	w->root_wd = -1;
	w->scan_cause = NULL;
	w->sweep = 0;
	log_info(gone ? "Workspace directory removed; waiting for it"
		      : "Workspace directory moved away; waiting for it",
		 "root", w->root, NULL);
	emit_view(w, gone ? WATCH_ROOT_GONE : WATCH_ROOT_MOVED, NULL);
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
	/* Waiting for root by no watch at all (it could not be watched): the
	 * retry does it. */
	if (unwatched_has(&w->unw, ""))
		return;
	/* Step down (or, if the ancestor went away, back up). */
	rearm(w);
}

/* --- events */

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
		emit_fs(w, WATCH_RENAMED, to_rel, is_dir, rel);
		if (is_dir) {
			rename_dirs(w, rel, to_rel);
			/* Directories under it that appeared but moved before
			 * we could watch them are found (and reported) here:
			 * mkdir -p a/b; mv a c loses nothing. */
			add_dir(w, to_rel, M_RELIST | M_REPAIR, ++w->pass);
		}
		free(to_rel);
		return;
	}
	emit_fs(w, WATCH_DELETED, rel, is_dir, NULL);
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
		emit_fs(w, WATCH_OVERFLOW, "", 0, NULL);
		/* Directories created meanwhile are unwatched, and directories
		 * moved out are still watched: walk it all again. */
		if (w->root_wd >= 0)
			start_full_walk(w, "overflow", M_RELIST);
		else if (!unwatched_has(&w->unw, ""))
			rearm(w);
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
		watches_freed(w);
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
		emit_fs(w, WATCH_CREATED, rel, is_dir, NULL);
		if (is_dir)
			add_dir(w, rel, M_ANNOUNCE, ++w->pass);
	} else if (ev->mask & IN_DELETE) {
		emit_fs(w, WATCH_DELETED, rel, is_dir, NULL);
		/* Its watch goes with it (IN_IGNORED); one that could not be
		 * made goes now. */
		if (is_dir)
			unw_drop_under(w, rel);
	} else if ((ev->mask & IN_CLOSE_WRITE) && !is_dir) {
		emit_fs(w, WATCH_MODIFIED, rel, 0, NULL);
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
	if (w->scan_cause != NULL && !w->scan_said)
		say_scanning(w);
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

/* --- retries and the timetable */

/* Tries the unwatched directories again, oldest first, until one still
 * cannot be watched: then backs off. */
static void retry(watch_t *w, unsigned budget)
{
	const char *first;
	int stuck = 0;

	w->retry_at = 0;
	/* Each try takes the oldest off the list (watched, or gone), or
	 * finds there is still no watch to be had. */
	for (; budget > 0 && !w->dead && (first = unwatched_first(&w->unw)) != NULL; budget--) {
		char *rel = xstrdup(first);
		int r;

		if (*rel == '\0') {
			/* Root itself: arm it again (it may be missing by now,
			 * and is then waited for as usual). */
			int a = arm(w, "root_appeared");

			r = a < 0 && errno == ENOSPC ? -1 : 1;
			if (a < 0 && errno == ELOOP)
				w->dead = ELOOP;
		} else {
			r = add_dir(w, rel, 0, ++w->pass);
		}
		/* Watched (add_dir took it off already), or gone from the tree. */
		if (r >= 0 && unwatched_has(&w->unw, rel))
			unw_drop_under(w, rel);
		free(rel);
		if (r < 0) {
			stuck = 1;
			break;
		}
	}
	if (unwatched_count(&w->unw) == 0)
		return;
	if (stuck)
		w->retry_ms = w->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : w->retry_ms * 2;
	w->retry_at = clock_ms() + (stuck ? w->retry_ms : 0);
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void watch_work(watch_t *w, unsigned budget)
{
	uint64_t start = now_us(), now;

	if (w->dead != 0)
		return;
	if (w->scan_cause != NULL && !w->scan_said)
		say_scanning(w);
	while (budget > 0 && walk_busy(&w->walk)) {
		unsigned chunk = budget < WORK_CHUNK ? budget : WORK_CHUNK;

		walk_step(&w->walk, chunk);
		budget -= chunk;
		if (now_us() - start >= WORK_MAX_MS * 1000)
			break;
	}
	if (w->scan_cause != NULL && now_us() - start > w->longest_us)
		w->longest_us = now_us() - start;
	if (!walk_busy(&w->walk) && w->scan_cause != NULL)
		finish_full_walk(w);
	now = clock_ms();
	if (w->retry_at != 0 && now >= w->retry_at)
		retry(w, RETRY_BATCH);
	if (w->status_dirty && unwatched_count(&w->unw) > 0 && now >= w->status_at)
		emit_view(w, WATCH_INCOMPLETE, unwatched_first(&w->unw));
}

long watch_next(const watch_t *w)
{
	uint64_t now, at = 0;

	if (w->dead != 0)
		return -1;
	if ((w->scan_cause != NULL) || walk_busy(&w->walk))
		return 0;
	if (w->retry_at != 0)
		at = w->retry_at;
	if (w->status_dirty && unwatched_count(&w->unw) > 0 && (at == 0 || w->status_at < at))
		at = w->status_at;
	if (at == 0)
		return -1;
	now = clock_ms();
	return at <= now ? 0 : (long)(at - now);
}

/* --- the rest of the interface */

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
	w->root_fd = -1;
	w->anc_wd = -1;
	w->buf = xmalloc(BUF_SIZE);
	unwatched_init(&w->unw);
	w->retry_ms = RETRY_MIN_MS;
	walk_init(&w->walk, &walk_ops, w);
	/* The kernel stamps files with this coarse clock: whatever changes
	 * from now on gets a time at or after it (so is never missed), and
	 * what changed in the last tick before may be reported too. */
	clock_gettime(CLOCK_REALTIME_COARSE, &w->t0);
	if (arm(w, "start") < 0) {
		saved = errno;
		watch_close(w);
		errno = saved;
		return NULL;
	}
	/* A missing root's first walk ends at once: nothing to miss. */
	if (w->root_wd < 0)
		start_full_walk(w, "start", 0);
	w->opened = 1;
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

void watch_status(const watch_t *w, struct watch_status *st)
{
	memset(st, 0, sizeof(*st));
	st->root_exists = w->root_wd >= 0;
	st->scanning = w->scan_cause != NULL;
	st->unwatched = unwatched_count(&w->unw);
	st->nsample = unwatched_sample(&w->unw, st->sample, WATCH_SAMPLE);
	st->complete = st->unwatched == 0 && !st->scanning;
	st->reason = st->unwatched > 0 ? LIMIT_REASON : st->scanning ? "scanning" : "";
}

void watch_set_max_watches(watch_t *w, unsigned n)
{
	w->max_watches = n;
}

void watch_set_walk_delay(watch_t *w, unsigned us)
{
	w->walk_delay_us = us;
}

const char *watch_kind_name(enum watch_kind kind)
{
	static const char *const names[] = {
	    [WATCH_CREATED] = "created",       [WATCH_MODIFIED] = "modified",
	    [WATCH_DELETED] = "deleted",       [WATCH_RENAMED] = "renamed",
	    [WATCH_OVERFLOW] = "overflow",     [WATCH_ROOT_GONE] = "root_gone",
	    [WATCH_ROOT_MOVED] = "root_moved", [WATCH_ROOT_APPEARED] = "root_appeared",
	    [WATCH_SCANNING] = "scanning",     [WATCH_SCAN_COMPLETE] = "scan_complete",
	    [WATCH_INCOMPLETE] = "incomplete", [WATCH_COMPLETE] = "complete",
	};

	return (unsigned)kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "unknown";
}

void watch_close(watch_t *w)
{
	hmap_node_t *n, *nxt;

	if (w == NULL)
		return;
	walk_clear(&w->walk);
	hmap_foreach (&w->dirs, n, nxt) {
		struct wdir *d = (struct wdir *)n;

		free(d->rel);
		free(d);
	}
	hmap_free(&w->dirs);
	unwatched_clear(&w->unw);
	if (w->root_fd >= 0)
		close(w->root_fd);
	close(w->fd);
	free(w->root);
	free(w->data_rel);
	free(w->buf);
	free(w);
}
