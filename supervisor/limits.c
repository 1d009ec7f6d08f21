/*
 * limits: the limit table, refusal counts and their log lines (see
 * limits.h).
 */
#include "supervisor/limits.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"

static const char *const names[LIMIT_N] = {
    [LIMIT_WORKSPACES] = "workspaces",
    [LIMIT_STREAMS] = "streams",
    [LIMIT_CLIENT_STREAMS] = "client_streams",
    [LIMIT_CONNECTIONS] = "connections",
    [LIMIT_RESETS] = "resets",
    [LIMIT_HEADERS] = "headers",
    [LIMIT_IDLE] = "idle",
    [LIMIT_SLOW_READERS] = "slow_readers",
    [LIMIT_QUEUED_BYTES] = "queued_bytes",
    [LIMIT_CALLS] = "calls",
    [LIMIT_LOOKUPS] = "lookups",
};

void limits_init(limits_t *l)
{
	memset(l, 0, sizeof(*l));
	l->max[LIMIT_WORKSPACES] = LIMIT_DEFAULT_WORKSPACES;
	l->max[LIMIT_STREAMS] = LIMIT_DEFAULT_STREAMS;
	l->max[LIMIT_CLIENT_STREAMS] = LIMIT_DEFAULT_CLIENT_STREAMS;
	l->max[LIMIT_RESETS] = LIMIT_DEFAULT_RESETS;
	l->max[LIMIT_HEADERS] = LIMIT_DEFAULT_HEADERS;
	l->max[LIMIT_IDLE] = LIMIT_DEFAULT_IDLE_MS;
	l->max[LIMIT_QUEUED_BYTES] = LIMIT_DEFAULT_QUEUED_BYTES;
	l->max[LIMIT_CALLS] = LIMIT_DEFAULT_CALLS;
	l->max[LIMIT_LOOKUPS] = LIMIT_DEFAULT_LOOKUPS;
}

const char *limit_name(limit_id_t id)
{
	return id < LIMIT_N ? names[id] : "?";
}

void limits_refuse(limits_t *l, limit_id_t id, uint64_t now, const char *detail)
{
	l->refused[id]++;
	l->unlogged[id]++;
	if (l->logged_at[id] != 0 && now - l->logged_at[id] < LIMIT_LOG_EVERY_MS)
		return;
	char max[24], n[24];
	snprintf(max, sizeof(max), "%llu", (unsigned long long)l->max[id]);
	snprintf(n, sizeof(n), "%llu", (unsigned long long)l->unlogged[id]);
	log_warn("Limit reached; refusing", "limit", names[id], "max", max, "refused", n, "detail",
		 detail ? detail : "", NULL);
	l->logged_at[id] = now ? now : 1;
	l->unlogged[id] = 0;
}
