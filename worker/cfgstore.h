/*
 * cfgstore: a workspace's data dir and config as a service. At start it
 * resolves and locks the data dir (datadir.c) and loads upstream Crush's
 * chain of config files, merged in upstream's order (config.c); then a
 * timer polls the files' (and the would-be files') stat every
 * CFGSTORE_POLL_MS and reloads on a change, publishing `config_changed`
 * when the merged result differs. It answers the config and project
 * routes (api.c's table points here), writing a scope's file atomically.
 * Everything that leaves it is redacted (config_redact).
 *
 * The chain, lowest priority first (internal/config/load.go):
 *   /etc/crush/crush.json
 *   $CRUSH_GLOBAL_CONFIG/crush.json, else ${XDG_CONFIG_HOME:-~/.config}/crush/crush.json
 *   $CRUSH_GLOBAL_DATA/crush.json, else ${XDG_DATA_HOME:-~/.local/share}/crush/crush.json
 *   crush.json then .crush.json of each directory from the git root (or
 *     the workspace itself outside git) down to the workspace
 *   <data_dir>/crush.json
 * Shell configs (crushrc) are upstream's Bash and are not run here.
 * Scopes of set/remove: 0 global (the global data file), 1 workspace.
 *
 * I/O: a few stat(2)s per tick and small file reads/writes, on the loop.
 */
#ifndef CRUSH_CFGSTORE_H
#define CRUSH_CFGSTORE_H

#include <stddef.h>

#include <ev.h>
#include <jansson.h>

#include "worker/calls.h"

#define CFGSTORE_POLL_MS 250

typedef struct cfgstore cfgstore_t;

/* Receives each event to publish (consumed), envelope included. */
typedef void (*cfgstore_publish_cb)(void *arg, json_t *event);

/* Why cfgstore_open failed, for the worker's FAIL frame. */
enum cfgstore_err {
	CFGSTORE_OK,
	CFGSTORE_LOCKED, /* another process holds crush.lock: why has "... by pid N" */
	CFGSTORE_CONFIG, /* a config file does not parse: why names it and where */
	CFGSTORE_DATADIR /* the data dir cannot be made or locked */
};

/*
 * Resolves the data dir (option: --data-dir, NULL when not given) and
 * loads the config. NULL with *err and why.
 */
cfgstore_t *cfgstore_open(struct ev_loop *loop, const char *root, const char *option, const char *ws_id,
			  const char *version, cfgstore_publish_cb publish, void *arg, enum cfgstore_err *err,
			  char *why, size_t whylen);
void cfgstore_free(cfgstore_t *s);
/* Makes and locks the data dir when the workspace directory exists (else
 * the timer does, once it appears). 0, or -1 with *err and why. */
int cfgstore_lock(cfgstore_t *s, enum cfgstore_err *err, char *why, size_t whylen);
/* Starts the change watch (after READY: no event may precede it). */
void cfgstore_start(cfgstore_t *s);

const char *cfgstore_data_dir(const cfgstore_t *s);
/* 1 once crush.lock is ours (taken when the data dir exists; kept from
 * then on, and always 1 when the lock is skipped). */
int cfgstore_locked(const cfgstore_t *s);
/* The merged config, redacted: what READY, GET /config and events carry.
 * New reference; never NULL. */
json_t *cfgstore_config(const cfgstore_t *s);

/* Routes (answer c): GET /config, POST /config/set, POST /config/remove,
 * GET /project/needs-init, GET /project/init-prompt, POST /project/init. */
void cfgstore_get(cfgstore_t *s, call_t *c, const call_req_t *req);
void cfgstore_set(cfgstore_t *s, call_t *c, const call_req_t *req);
void cfgstore_remove(cfgstore_t *s, call_t *c, const call_req_t *req);
void cfgstore_needs_init(cfgstore_t *s, call_t *c, const call_req_t *req);
void cfgstore_init_prompt(cfgstore_t *s, call_t *c, const call_req_t *req);
void cfgstore_init(cfgstore_t *s, call_t *c, const call_req_t *req);

#endif
