/*
 * watch: a recursive inotify watch of one workspace directory that reports
 * created / modified / deleted / renamed / overflow with paths relative to
 * it. It knows nothing of event loops or sockets: the owner polls
 * watch_fd() for readability and calls watch_process(), which invokes the
 * callback once per event.
 *
 * The root is the supervisor's dedup key and is never resolved again: a
 * root that turns out to go through a symlink is refused (see root.h).
 * A directory that does not exist yet is waited for: its longest existing
 * ancestor is watched for the next component, step by step, and the
 * recursive watch starts once the directory itself appears (its contents
 * at that moment are reported as created; the ancestors never are). If the
 * directory is later removed or moved away it is waited for again.
 *
 * Ignored, never watched nor reported: <root>/.git and everything under
 * it, and the data dir when it lies inside the tree.
 *
 * Ownership: watch_open allocates the watch; watch_close frees it and
 * closes the inotify fd. Strings passed to the callback live only for the
 * duration of the call. The callback must not call watch_close.
 */
#ifndef CRUSH_WATCH_H
#define CRUSH_WATCH_H

enum watch_kind {
	WATCH_CREATED,
	WATCH_MODIFIED, /* a file was closed after writing (IN_CLOSE_WRITE) */
	WATCH_DELETED,
	WATCH_RENAMED,	/* within the tree; `from` is the old path */
	WATCH_OVERFLOW, /* the kernel queue overflowed: events were lost; path "" */
};

/* path and from are relative to the root, never "" except for overflow;
 * from is NULL unless kind is WATCH_RENAMED. */
typedef void (*watch_cb)(void *arg, enum watch_kind kind, const char *path, int is_dir, const char *from);

typedef struct watch watch_t;

/*
 * Starts watching `root`, the workspace's dedup key: absolute and
 * canonical (root_canonical, else EINVAL), never resolved again; it must
 * not go through a symlink when it exists (root_open). `data_dir` is the
 * workspace's data dir (absolute, or relative to root); NULL means
 * <root>/.crush. A missing root is not an error: it is waited for. Returns
 * NULL with errno when the watch cannot be set up:
 *   EMFILE   no inotify instance left (fs.inotify.max_user_instances);
 *   ENOSPC   no inotify watch left (fs.inotify.max_user_watches);
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

/* 1 while root itself is watched, 0 while it is waited for. */
int watch_active(const watch_t *w);

/* "created", "modified", "deleted", "renamed", "overflow". */
const char *watch_kind_name(enum watch_kind kind);

void watch_close(watch_t *w);

#endif
