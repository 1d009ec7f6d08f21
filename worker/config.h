/*
 * config: the pure half of a workspace's config, no I/O: merging the
 * chain of files the way upstream Crush does (charmbracelet/crush
 * internal/config/load.go through qjebbs/go-jsons), the defaults its
 * client dereferences, dotted-key set/remove as upstream's sjson calls
 * do, and the redaction applied wherever config leaves the worker.
 * Reading, writing and watching the files is cfgfiles.c's.
 */
#ifndef CRUSH_CONFIG_H
#define CRUSH_CONFIG_H

#include <stddef.h>

#include <jansson.h>

/* What a redacted secret reads as. */
#define CONFIG_REDACTED "***"

/*
 * Merges src into dst (both objects) as go-jsons' standard merger: an
 * object merges key by key, recursively; an array is appended to; any
 * other value replaces; a null in src leaves dst's value. A value of
 * another type than dst's (numbers count as one type) is an error, as
 * upstream's (the whole load fails): -1 with err naming the key path.
 */
int config_merge(json_t *dst, const json_t *src, char *err, size_t errlen);

/*
 * Fills in what upstream's setDefaults guarantees and its client
 * dereferences without checking: options (with tui, context_paths holding
 * upstream's defaults, sorted and unique, initialize_as, data_directory =
 * data_dir, disable_metrics), providers, models, recent_models, mcp, lsp,
 * permissions, tools. cfg is changed in place.
 */
void config_defaults(json_t *cfg, const char *data_dir);

/*
 * 1 when a key names a secret: api_key/apikey, or a word token, secret,
 * password, passwd, credential(s) or authorization, compared without
 * case, words split on '_', '-', '.' and case changes. "max_tokens" (a
 * count) is not a secret: plural "tokens" is not the word "token".
 */
int config_key_is_secret(const char *key);

/* A deep copy of cfg with every string under a secret key, at any depth
 * (inside a secret object too), replaced by CONFIG_REDACTED. */
json_t *config_redact(const json_t *cfg);

/*
 * Dotted keys as upstream's sjson paths: "a.b.c" walks objects, "\." is a
 * literal dot, a number indexes an existing array ("-1" appends on set).
 * config_set makes the missing objects on the way (a scalar in the way is
 * replaced by an object, as sjson does) and steals value. config_remove
 * deletes the key; a key that is not there is a no-op (0), as sjson.
 * Both return -1 on an empty key or an empty segment.
 */
int config_set(json_t *root, const char *key, json_t *value);
int config_remove(json_t *root, const char *key);

#endif
