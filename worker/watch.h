/*
 * watch: a recursive inotify watch of one workspace directory. It reports
 * changes in the tree (created / modified / deleted / renamed / overflow,
 * paths relative to the root) and, as `watch` events, whenever its own
 * view of the tree may be incomplete or the root itself comes or goes
 * (PROTOCOL.md, "Events"). It knows nothing of event loops or sockets: the
 * owner polls watch_fd() for readability and calls watch_process(), and
 * calls watch_work() when watch_next() asks, which walks the tree in
 * bounded steps: opening never walks it, so readiness never waits for a
 * big tree, and no step holds the owner's loop for long.
 *
 * The root is the supervisor's dedup key and is never resolved again: a
 * root that turns out to go through a symlink is refused (see root.h).
 * A root that does not exist yet is waited for: its longest existing
 * ancestor is watched for the next component, step by step, and the
 * recursive watch starts once the directory itself appears (root_appeared,
 * then its contents as created). A root removed or moved away is reported
 * (root_gone, root_moved) and waited for again.
 *
 * The view may be incomplete, and is then said to be: while a walk is
 * under way (scanning ... scan_complete), and while directories cannot be
 * watched for want of inotify watches (incomplete ... complete): those are
 * retried when watches are freed and on a backoff timer. After a queue
 * overflow the tree is walked again and every watch the walk did not meet
 * is dropped (a directory moved out of the tree meanwhile keeps none).
 *
 * Ignored, never watched nor reported: <root>/.git and everything under
 * it, and the data dir when it lies inside the tree.
 *
 * Ownership: watch_open allocates the watch; watch_close frees it and
 * closes the inotify fd. What the callback gets lives only for the
 * duration of the call. The callback must not call back into the watch.
 */
#ifndef CRUSH_WATCH_H
#define CRUSH_WATCH_H

#include <stddef.h>
#include <stdint.h>

enum watch_kind {
	/* fs: a change in the tree */
	WATCH_CREATED,
	WATCH_MODIFIED, /* a file was closed after writing (IN_CLOSE_WRITE) */
	WATCH_DELETED,
	WATCH_RENAMED,	/* within the tree; `from` is the old path */
	WATCH_OVERFLOW, /* the kernel queue overflowed: events were lost; path "" */
	/* watch: the root itself (path "") */
	WATCH_ROOT_GONE,     /* removed */
	WATCH_ROOT_MOVED,    /* renamed away, or replaced */
	WATCH_ROOT_APPEARED, /* exists (again) at its path and is watched */
	/* watch: the completeness of the view */
	WATCH_SCANNING,	     /* a walk of the whole tree began (cause) */
	WATCH_SCAN_COMPLETE, /* it ended (cause, dirs, ms) */
	WATCH_INCOMPLETE,    /* path (and maybe more) cannot be watched (reason) */
	WATCH_COMPLETE,	     /* every directory is watched again */
};
#define WATCH_KIND_FS_LAST WATCH_OVERFLOW

/* At most this many unwatched paths are named in a status. */
#define WATCH_SAMPLE 8

/* The watch's view, as every `watch` event carries it. */
struct watch_status {
	int complete;			  /* no walk under way, nothing unwatched (a missing root
					   * is complete: there is nothing to miss) */
	int scanning;			  /* a walk of the whole tree is under way */
	int root_exists;		  /* root is watched (0: waited for) */
	size_t unwatched;		  /* directories that cannot be watched (tops of subtrees) */
	const char *sample[WATCH_SAMPLE]; /* the first of them, oldest first */
	size_t nsample;
	const char *reason; /* why not complete: "fs.inotify.max_user_watches
			     * reached", "scanning"; "" when complete */
};

struct watch_event {
	enum watch_kind kind;
	const char *path; /* relative to root; "" for root, overflow and status events */
	const char *from; /* WATCH_RENAMED: the old path; else NULL */
	int is_dir;
	const char *cause;		   /* SCANNING, SCAN_COMPLETE: "start", "overflow", "root_appeared" */
	const char *reason;		   /* INCOMPLETE: why path is not watched */
	size_t dirs;			   /* SCAN_COMPLETE: directories watched */
	uint64_t ms;			   /* SCAN_COMPLETE: how long the walk took */
	const struct watch_status *status; /* every watch (non-fs) event: the view after it */
};

typedef void (*watch_cb)(void *arg, const struct watch_event *ev);

typedef struct watch watch_t;

/*
 * Starts watching `root`, the workspace's dedup key: absolute and
 * canonical (root_canonical, else EINVAL), never resolved again; it must
 * not go through a symlink when it exists (root_open). `data_dir` is the
 * workspace's data dir (absolute, or relative to root); NULL means
 * <root>/.crush. A missing root is not an error: it is waited for. Only
 * the root is watched here; the rest of the tree is walked by watch_work.
 * Returns NULL with errno when the watch cannot be set up:
 *   EMFILE   no inotify instance left (fs.inotify.max_user_instances);
 *   ENOSPC   no inotify watch left for the root (fs.inotify.max_user_watches);
 *   EACCES   root (or an ancestor) cannot be read;
 *   ELOOP    root exists through a symlink: it names another directory now.
 * No callback is invoked from here.
 */
watch_t *watch_open(const char *root, const char *data_dir, watch_cb cb, void *arg);

/* The inotify fd (non-blocking, close-on-exec) to poll for readability. */
int watch_fd(const watch_t *w);

/*
 * Reads one batch of pending inotify events and reports them. A rename's
 * two halves are paired when both are in the batch. Returns the number of
 * inotify events read (0 when none were pending), or -1 with errno on a
 * read error, or with ELOOP once a missing or lost root came back through
 * a symlink: the watch is then dead for good (it never watches what the
 * symlink leads to) and the owner should give up.
 */
int watch_process(watch_t *w);

/*
 * Does at most `budget` units of pending work (a directory opened, an
 * entry read, a retry), and at most a few milliseconds of it: walks, due
 * retries of unwatched directories, a due status. Reports as it goes.
 */
void watch_work(watch_t *w, unsigned budget);

/* When watch_work wants calling: 0 now, > 0 in that many milliseconds,
 * -1 not until something else happens (watch_process). */
long watch_next(const watch_t *w);

/* 1 while root itself is watched, 0 while it is waited for. */
int watch_active(const watch_t *w);

/* The current view (strings valid until the next call into the watch). */
void watch_status(const watch_t *w, struct watch_status *st);

/*
 * Test knob: at most n tree watches (root's included), as if
 * fs.inotify.max_user_watches were reached past them; 0: no cap.
 */
void watch_set_max_watches(watch_t *w, unsigned n);

/* Test knob: each directory opened for a walk first sleeps us
 * microseconds, as on a slow filesystem. */
void watch_set_walk_delay(watch_t *w, unsigned us);

/* "created", ..., "overflow", "root_gone", ..., "complete". */
const char *watch_kind_name(enum watch_kind kind);

void watch_close(watch_t *w);

#endif
