/*
 * shell: the workspace's shell runs, POST /agent/sessions/{sid}/shell as
 * upstream answers it ({"output","exit_code"}): `/bin/sh -c` in the
 * workspace directory, in its own session and process group, stdin
 * /dev/null, environment = the worker's + the first creator's env + the
 * non-interactive overrides upstream forces. Output is read through
 * non-blocking pipes on the loop (never a blocking read or wait), streamed
 * to every client as `shell` events while it is produced, capped at
 * SHELL_MAX_OUTPUT (the answer says when it was cut), and the run is
 * recorded in its session as upstream records a bang command (a user
 * message with a shell_command part).
 *
 * A run ends by exiting, by its timeout, by its client leaving (the
 * call's cancel hook), or by POST /agent/sessions/{sid}/cancel; it is
 * stopped with SIGTERM to its whole process group, SIGKILL after
 * SHELL_KILL_TIMEOUT, and reaped by an ev_child watcher: never a zombie,
 * and whatever is left of its group is killed when it ends.
 * Ownership: shell_t owns every run; a run owns its pipes and child.
 */
#ifndef CRUSH_SHELL_H
#define CRUSH_SHELL_H

#include <ev.h>
#include <jansson.h>

#include "worker/calls.h"
#include "worker/store.h"

#define SHELL_MAX_RUNS	 16	    /* concurrent runs per workspace; 429 beyond */
#define SHELL_MAX_OUTPUT (1u << 20) /* bytes of output kept and streamed */
/* A command is one argv string of /bin/sh -c: Linux refuses a longer one
 * (MAX_ARG_STRLEN, 128 KiB with its NUL) with E2BIG. */
#define SHELL_MAX_COMMAND	 ((128u << 10) - 1)
#define SHELL_DEFAULT_TIMEOUT_MS (10 * 60 * 1000) /* as upstream's bang commands: 10 min */
#define SHELL_KILL_TIMEOUT	 2.0		  /* TERM -> KILL, as upstream's exec handler */

typedef struct shell shell_t;

/* Publishes one event envelope (consumed). */
typedef void (*shell_emit_cb)(void *arg, json_t *event);

/* root: the workspace directory (the runs' cwd); store may be NULL (the
 * runs are then not recorded). */
shell_t *shell_new(struct ev_loop *loop, const char *root, store_t *store, shell_emit_cb emit, void *arg);
/* The first creator's KEY=VALUE entries (copied), for every later run. */
void shell_set_env(shell_t *sh, const char *const *env);
/*
 * Starts a run answering c: body is upstream's ShellCommandRequest
 * ({"command","term_width"}, plus our "timeout_ms"). Answers at once
 * with 400 (bad body), 429 (SHELL_MAX_RUNS running) or 500 (no fork),
 * else when the run ends.
 */
void shell_run(shell_t *sh, call_t *c, const char *session_id, const char *client_id, const char *body,
	       size_t len);
/* Stops every run of session_id (answered with what they printed);
 * returns how many. */
unsigned shell_cancel_session(shell_t *sh, const char *session_id);
unsigned shell_active(const shell_t *sh);
/* Backpressure: while paused, no run's output is read (its command
 * blocks on a full pipe), so its events wait for the supervisor. */
void shell_pause(shell_t *sh, int paused);
/* At exit: TERM every run's group, KILL after SHELL_KILL_TIMEOUT, reap
 * all (blocking, bounded by the kill timeout), answer nothing. */
void shell_free(shell_t *sh);

#endif
