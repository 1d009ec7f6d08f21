/*
 * store: the session store shared with upstream Crush (see store.h). The
 * schema below is written to produce, statement by statement, the same
 * tables, columns (in the same order: upstream's generated code reads
 * `SELECT *` by position), indexes and triggers as upstream's goose
 * migrations, and each step is recorded in goose's own table the way
 * goose records it, so neither program sees the other's database as
 * foreign or out of date.
 */
#include "worker/store.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "common/id.h"
#include "common/log.h"
#include "common/utf8.h"

/* A write waits this long for a foreign lock (a sqlite3 shell, a backup)
 * before failing, holding the worker's loop meanwhile: bounded, and well
 * inside the supervisor's ping interval (10 s by default). */
#define BUSY_TIMEOUT_MS 2000

struct store {
	sqlite3 *db; /* NULL until connected */
	char *data_dir;
	/* attached_clients of a session: the supervisor's presence (api.c) */
	int (*attached)(void *arg, const char *session_id);
	void *attached_arg;
};

void store_set_attached(store_t *st, int (*fn)(void *arg, const char *session_id), void *arg)
{
	st->attached = fn;
	st->attached_arg = arg;
}

/* A session object gets its attached_clients from the supervisor's
 * presence (upstream computes it on read from the clients viewing it). */
static json_t *with_presence(const store_t *st, json_t *o)
{
	const char *id = json_string_value(json_object_get(o, "id"));
	if (o != NULL && id != NULL && st->attached != NULL)
		json_object_set_new(o, "attached_clients", json_integer(st->attached(st->attached_arg, id)));
	return o;
}

/*
 * Upstream's migrations (internal/db/migrations), by goose version. Each
 * runs in one transaction with its goose_db_version row, as goose does.
 */
static const struct migration {
	int64_t version;
	const char *sql;
} migrations[] = {
    {20250424200609,
     "create table if not exists sessions (\n"
     "  id text primary key,\n"
     "  parent_session_id text,\n"
     "  title text not null,\n"
     "  message_count integer not null default 0 check (message_count >= 0),\n"
     "  prompt_tokens integer not null default 0 check (prompt_tokens >= 0),\n"
     "  completion_tokens integer not null default 0 check (completion_tokens >= 0),\n"
     "  cost real not null default 0.0 check (cost >= 0.0),\n"
     "  updated_at integer not null,\n"
     "  created_at integer not null\n"
     ");\n"
     "create trigger if not exists update_sessions_updated_at after update on sessions begin\n"
     "  update sessions set updated_at = strftime('%s', 'now') where id = new.id;\n"
     "end;\n"
     "create table if not exists files (\n"
     "  id text primary key,\n"
     "  session_id text not null,\n"
     "  path text not null,\n"
     "  content text not null,\n"
     "  version integer not null default 0,\n"
     "  created_at integer not null,\n"
     "  updated_at integer not null,\n"
     "  foreign key (session_id) references sessions (id) on delete cascade,\n"
     "  unique (path, session_id, version)\n"
     ");\n"
     "create index if not exists idx_files_session_id on files (session_id);\n"
     "create index if not exists idx_files_path on files (path);\n"
     "create trigger if not exists update_files_updated_at after update on files begin\n"
     "  update files set updated_at = strftime('%s', 'now') where id = new.id;\n"
     "end;\n"
     "create table if not exists messages (\n"
     "  id text primary key,\n"
     "  session_id text not null,\n"
     "  role text not null,\n"
     "  parts text not null default '[]',\n"
     "  model text,\n"
     "  created_at integer not null,\n"
     "  updated_at integer not null,\n"
     "  finished_at integer,\n"
     "  foreign key (session_id) references sessions (id) on delete cascade\n"
     ");\n"
     "create index if not exists idx_messages_session_id on messages (session_id);\n"
     "create trigger if not exists update_messages_updated_at after update on messages begin\n"
     "  update messages set updated_at = strftime('%s', 'now') where id = new.id;\n"
     "end;\n"
     "create trigger if not exists update_session_message_count_on_insert after insert on messages begin\n"
     "  update sessions set message_count = message_count + 1 where id = new.session_id;\n"
     "end;\n"
     "create trigger if not exists update_session_message_count_on_delete after delete on messages begin\n"
     "  update sessions set message_count = message_count - 1 where id = old.session_id;\n"
     "end;\n"},
    {20250515105448, "alter table sessions add column summary_message_id text;"},
    {20250624000000, "create index if not exists idx_sessions_created_at on sessions (created_at);\n"
		     "create index if not exists idx_messages_created_at on messages (created_at);\n"
		     "create index if not exists idx_files_created_at on files (created_at);"},
    {20250627000000, "alter table messages add column provider text;"},
    {20250810000000, "alter table messages add column is_summary_message integer default 0 not null;"},
    {20250812000000, "alter table sessions add column todos text;"},
    {20260127000000, "create table if not exists read_files (\n"
		     "  session_id text not null check (session_id != ''),\n"
		     "  path text not null check (path != ''),\n"
		     "  read_at integer not null,\n"
		     "  foreign key (session_id) references sessions (id) on delete cascade,\n"
		     "  primary key (path, session_id)\n"
		     ");\n"
		     "create index if not exists idx_read_files_session_id on read_files (session_id);\n"
		     "create index if not exists idx_read_files_path on read_files (path);"},
};
#define NMIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

const int64_t store_versions[] = {20250424200609, 20250515105448, 20250624000000, 20250627000000,
				  20250810000000, 20250812000000, 20260127000000};
const size_t store_nversions = sizeof(store_versions) / sizeof(store_versions[0]);

/* goose's table for the sqlite3 dialect, and the row it starts with. */
static const char goose_table[] = "create table goose_db_version (\n"
				  "  id integer primary key autoincrement,\n"
				  "  version_id integer not null,\n"
				  "  is_applied integer not null,\n"
				  "  tstamp timestamp default (datetime('now'))\n"
				  ");\n"
				  "insert into goose_db_version (version_id, is_applied) values (0, 1);";

#define SESSION_COLS                                                                                         \
	"id, parent_session_id, title, message_count, prompt_tokens, completion_tokens, "                    \
	"summary_message_id, cost, todos, created_at, updated_at"
#define MESSAGE_COLS                                                                                         \
	"id, session_id, role, parts, model, provider, is_summary_message, created_at, updated_at"
#define FILE_COLS "id, session_id, path, content, version, created_at, updated_at"

static const char no_rows[] = "sql: no rows in result set"; /* Go's sql.ErrNoRows */

static void seterr(char *err, size_t errlen, const char *fmt, const char *what)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, fmt, what);
}

static int exec(store_t *st, const char *sql, char *err, size_t errlen)
{
	char *msg = NULL;
	if (st->db == NULL && store_connect(st, err, errlen) != 0)
		return -1;
	if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	seterr(err, errlen, "%s", msg ? msg : sqlite3_errmsg(st->db));
	sqlite3_free(msg);
	return -1;
}

static sqlite3_stmt *prepare(store_t *st, const char *sql, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	if (st->db == NULL && store_connect(st, err, errlen) != 0)
		return NULL;
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
		seterr(err, errlen, "%s", sqlite3_errmsg(st->db));
		return NULL;
	}
	return s;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v == NULL)
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
}

/* 1 if goose recorded version v as applied (its latest row says so). */
static int applied(store_t *st, int64_t v)
{
	sqlite3_stmt *s = prepare(
	    st, "select is_applied from goose_db_version where version_id = ? order by id desc limit 1", NULL,
	    0);
	int r = 0;
	if (s == NULL)
		return 0;
	sqlite3_bind_int64(s, 1, v);
	if (sqlite3_step(s) == SQLITE_ROW)
		r = sqlite3_column_int(s, 0) != 0;
	sqlite3_finalize(s);
	return r;
}

static int migrate(store_t *st, char *err, size_t errlen)
{
	sqlite3_stmt *s =
	    prepare(st, "select 1 from sqlite_master where type = 'table' and name = 'goose_db_version'", err,
		    errlen);
	if (s == NULL)
		return -1;
	int have = sqlite3_step(s) == SQLITE_ROW;
	sqlite3_finalize(s);
	if (!have && exec(st, goose_table, err, errlen) != 0)
		return -1;
	for (size_t i = 0; i < NMIGRATIONS; i++) {
		const struct migration *m = &migrations[i];
		char row[128];
		if (applied(st, m->version))
			continue;
		snprintf(row, sizeof(row),
			 "insert into goose_db_version (version_id, is_applied) values (%lld, 1);",
			 (long long)m->version);
		if (exec(st, "begin immediate", err, errlen) != 0)
			return -1;
		if (exec(st, m->sql, err, errlen) != 0 || exec(st, row, err, errlen) != 0) {
			exec(st, "rollback", NULL, 0);
			return -1;
		}
		if (exec(st, "commit", err, errlen) != 0)
			return -1;
		snprintf(row, sizeof(row), "%lld", (long long)m->version);
		log_debug("Applied store migration", "version", row, NULL);
	}
	return 0;
}

store_t *store_new(const char *data_dir)
{
	store_t *st = calloc(1, sizeof(*st));
	if (st == NULL || (st->data_dir = strdup(data_dir)) == NULL)
		abort();
	return st;
}

int store_connect(store_t *st, char *err, size_t errlen)
{
	char path[PATH_MAX];
	if (st->db != NULL)
		return 0;
	/* The data dir is cfgstore's to make, under its lock (api.c asks
	 * for the lock before any store route): never made here. */
	if (snprintf(path, sizeof(path), "%s/crush.db", st->data_dir) >= (int)sizeof(path)) {
		seterr(err, errlen, "%s", "data directory path too long");
		return -1;
	}
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
	if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
		seterr(err, errlen, "cannot open crush.db: %s",
		       st->db ? sqlite3_errmsg(st->db) : "out of memory");
		sqlite3_close_v2(st->db);
		st->db = NULL;
		return -1;
	}
	sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
	/* Upstream's pragmas (internal/db/connect.go), with a shorter wait. */
	if (exec(st,
		 "pragma foreign_keys = on; pragma journal_mode = wal; pragma synchronous = normal;"
		 "pragma secure_delete = on; pragma temp_store = memory; pragma cache_size = -8000;",
		 err, errlen) != 0 ||
	    migrate(st, err, errlen) != 0) {
		sqlite3_close_v2(st->db);
		st->db = NULL;
		return -1;
	}
	return 0;
}

store_t *store_open(const char *data_dir, char *err, size_t errlen)
{
	store_t *st = store_new(data_dir);
	if (store_connect(st, err, errlen) != 0) {
		store_close(st);
		return NULL;
	}
	return st;
}

void store_close(store_t *st)
{
	if (st == NULL)
		return;
	sqlite3_close_v2(st->db);
	free(st->data_dir);
	free(st);
}

/* --- rows as upstream's JSON */

static json_t *col_str(sqlite3_stmt *s, int i)
{
	const char *t = (const char *)sqlite3_column_text(s, i);
	return t ? utf8_json_stringn(t, (size_t)sqlite3_column_bytes(s, i)) : json_string("");
}

static json_t *todos_proto(const char *text)
{
	json_t *in = text ? json_loads(text, 0, NULL) : NULL, *out = json_array();
	size_t i;
	json_t *t;
	json_array_foreach(in, i, t)
	{
		const char *keys[] = {"content", "status", "active_form"};
		json_t *o = json_object();
		for (size_t k = 0; k < 3; k++) {
			const char *v = json_string_value(json_object_get(t, keys[k]));
			json_object_set_new(o, keys[k], json_string(v ? v : ""));
		}
		json_array_append_new(out, o);
	}
	json_decref(in);
	return out;
}

/* proto.Session; attached_clients is filled by with_presence, is_busy
 * is false here (no agent runs in this worker). */
static json_t *session_json(sqlite3_stmt *s)
{
	json_t *o = json_object();
	json_object_set_new(o, "id", col_str(s, 0));
	json_object_set_new(o, "parent_session_id", col_str(s, 1));
	json_object_set_new(o, "title", col_str(s, 2));
	json_object_set_new(o, "message_count", json_integer(sqlite3_column_int64(s, 3)));
	json_object_set_new(o, "prompt_tokens", json_integer(sqlite3_column_int64(s, 4)));
	json_object_set_new(o, "completion_tokens", json_integer(sqlite3_column_int64(s, 5)));
	json_object_set_new(o, "summary_message_id", col_str(s, 6));
	json_object_set_new(o, "cost", json_real(sqlite3_column_double(s, 7)));
	json_t *todos = todos_proto((const char *)sqlite3_column_text(s, 8));
	if (json_array_size(todos) > 0) /* omitempty */
		json_object_set_new(o, "todos", todos);
	else
		json_decref(todos);
	json_object_set_new(o, "created_at", json_integer(sqlite3_column_int64(s, 9)));
	json_object_set_new(o, "updated_at", json_integer(sqlite3_column_int64(s, 10)));
	json_object_set_new(o, "is_busy", json_false());
	json_object_set_new(o, "attached_clients", json_integer(0));
	return o;
}

/*
 * Which fields of each stored part reach the wire (proto.*), and which
 * are left out when zero (omitempty). Stored parts carry more
 * (provider_executed); unknown types pass through as stored.
 */
static const struct part_shape {
	const char *type;
	const char *fields[8]; /* "name" or "?name" for omitempty */
} part_shapes[] = {
    {"reasoning", {"thinking", "signature", "?started_at", "?finished_at"}},
    {"text", {"text"}},
    {"image_url", {"url", "?detail"}},
    {"tool_call", {"id", "name", "input", "?type", "?finished"}},
    {"tool_result", {"tool_call_id", "name", "content", "?data", "?mime_type", "metadata", "is_error"}},
    {"finish", {"reason", "time", "?message", "?details"}},
    {"shell_command", {"command", "output", "exit_code"}},
};

static int is_zero(const json_t *v)
{
	return v == NULL || json_is_null(v) || json_is_false(v) ||
	       (json_is_string(v) && json_string_length(v) == 0) ||
	       (json_is_integer(v) && json_integer_value(v) == 0);
}

static json_t *part_proto(const char *type, json_t *data)
{
	for (size_t i = 0; i < sizeof(part_shapes) / sizeof(part_shapes[0]); i++) {
		if (strcmp(part_shapes[i].type, type) != 0)
			continue;
		json_t *o = json_object();
		for (size_t f = 0; f < 8 && part_shapes[i].fields[f]; f++) {
			const char *name = part_shapes[i].fields[f];
			int omit = name[0] == '?';
			name += omit;
			json_t *v = json_object_get(data, name);
			if (omit && is_zero(v))
				continue;
			json_object_set(o, name, v ? v : json_null());
		}
		return o;
	}
	return json_incref(data);
}

json_t *store_parts_to_proto(const char *parts_text)
{
	json_t *in = parts_text ? json_loads(parts_text, 0, NULL) : NULL, *out = json_array();
	size_t i;
	json_t *p;
	json_array_foreach(in, i, p)
	{
		const char *type = json_string_value(json_object_get(p, "type"));
		json_t *data = json_object_get(p, "data");
		if (type == NULL)
			continue;
		json_array_append_new(out,
				      json_pack("{s:s, s:o}", "type", type, "data", part_proto(type, data)));
	}
	json_decref(in);
	return out;
}

/* proto.Message. */
static json_t *message_json(sqlite3_stmt *s)
{
	json_t *o = json_object();
	json_object_set_new(o, "id", col_str(s, 0));
	json_object_set_new(o, "role", col_str(s, 2));
	json_object_set_new(o, "session_id", col_str(s, 1));
	json_object_set_new(o, "parts", store_parts_to_proto((const char *)sqlite3_column_text(s, 3)));
	json_object_set_new(o, "model", col_str(s, 4));
	json_object_set_new(o, "provider", col_str(s, 5));
	json_object_set_new(o, "created_at", json_integer(sqlite3_column_int64(s, 7)));
	json_object_set_new(o, "updated_at", json_integer(sqlite3_column_int64(s, 8)));
	if (sqlite3_column_int64(s, 6) != 0)
		json_object_set_new(o, "is_summary_message", json_true());
	return o;
}

/* history.File, which upstream encodes without JSON tags. */
static json_t *file_json(sqlite3_stmt *s)
{
	json_t *o = json_object();
	json_object_set_new(o, "ID", col_str(s, 0));
	json_object_set_new(o, "SessionID", col_str(s, 1));
	json_object_set_new(o, "Path", col_str(s, 2));
	json_object_set_new(o, "Content", col_str(s, 3));
	json_object_set_new(o, "Version", json_integer(sqlite3_column_int64(s, 4)));
	json_object_set_new(o, "CreatedAt", json_integer(sqlite3_column_int64(s, 5)));
	json_object_set_new(o, "UpdatedAt", json_integer(sqlite3_column_int64(s, 6)));
	return o;
}

/* Steps s once: its row as JSON via conv, or NULL with status/err. */
static json_t *one_row(store_t *st, sqlite3_stmt *s, json_t *(*conv)(sqlite3_stmt *), int *status, char *err,
		       size_t errlen)
{
	int rc = sqlite3_step(s);
	json_t *r = NULL;
	if (rc == SQLITE_ROW) {
		r = conv(s);
	} else if (rc == SQLITE_DONE) {
		*status = 500;
		seterr(err, errlen, "%s", no_rows);
	} else {
		*status = (sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_FOREIGNKEY) ? 404 : 500;
		seterr(err, errlen, "%s", sqlite3_errmsg(st->db));
	}
	sqlite3_finalize(s);
	return r;
}

json_t *store_session_create(store_t *st, const char *title, int *status, char *err, size_t errlen)
{
	char id[ID_LEN + 1];
	id_new(id);
	sqlite3_stmt *s =
	    prepare(st,
		    "insert into sessions (id, parent_session_id, title, message_count, prompt_tokens,"
		    " completion_tokens, cost, summary_message_id, updated_at, created_at)"
		    " values (?, null, ?, 0, 0, 0, 0.0, null, strftime('%s', 'now'),"
		    " strftime('%s', 'now')) returning " SESSION_COLS,
		    err, errlen);
	if (s == NULL) {
		*status = 500;
		return NULL;
	}
	bind_text(s, 1, id);
	bind_text(s, 2, title ? title : "");
	return with_presence(st, one_row(st, s, session_json, status, err, errlen));
}

json_t *store_session_get(store_t *st, const char *id, int *status, char *err, size_t errlen)
{
	sqlite3_stmt *s =
	    prepare(st, "select " SESSION_COLS " from sessions where id = ? limit 1", err, errlen);
	if (s == NULL) {
		*status = 500;
		return NULL;
	}
	bind_text(s, 1, id);
	return with_presence(st, one_row(st, s, session_json, status, err, errlen));
}

/* Go's encoding/json picks a struct field for a key case-insensitively. */
static json_t *go_field(const json_t *o, const char *name)
{
	const char *k;
	json_t *v, *found = NULL;
	json_object_foreach((json_t *)o, k, v)
	{
		if (strcmp(k, name) == 0)
			return v;
		if (found == NULL && strcasecmp(k, name) == 0)
			found = v;
	}
	return found;
}

json_t *store_session_save(store_t *st, const json_t *in, int *status, char *err, size_t errlen)
{
	json_t *id = go_field(in, "ID"), *title = go_field(in, "Title"), *pt = go_field(in, "PromptTokens"),
	       *ct = go_field(in, "CompletionTokens"), *sm = go_field(in, "SummaryMessageID"),
	       *cost = go_field(in, "Cost"), *todos = go_field(in, "Todos");
	*status = 400;
	seterr(err, errlen, "%s", "failed to decode request");
	if ((id && !json_is_string(id) && !json_is_null(id)) ||
	    (title && !json_is_string(title) && !json_is_null(title)) ||
	    (pt && !json_is_integer(pt) && !json_is_null(pt)) ||
	    (ct && !json_is_integer(ct) && !json_is_null(ct)) ||
	    (sm && !json_is_string(sm) && !json_is_null(sm)) ||
	    (cost && !json_is_number(cost) && !json_is_null(cost)) ||
	    (todos && !json_is_array(todos) && !json_is_null(todos)))
		return NULL;
	/* Todos as upstream marshals them: none is NULL. */
	char *todos_text = NULL;
	if (json_array_size(todos) > 0) {
		json_t *arr = json_array();
		size_t i;
		json_t *t;
		json_array_foreach(todos, i, t)
		{
			json_t *o = json_object();
			const char *keys[] = {"content", "status", "active_form"};
			if (!json_is_object(t)) {
				json_decref(o);
				json_decref(arr);
				return NULL;
			}
			for (size_t k = 0; k < 3; k++) {
				const char *v = json_string_value(go_field(t, keys[k]));
				json_object_set_new(o, keys[k], json_string(v ? v : ""));
			}
			json_array_append_new(arr, o);
		}
		todos_text = json_dumps(arr, JSON_COMPACT);
		json_decref(arr);
	}
	sqlite3_stmt *s =
	    prepare(st,
		    "update sessions set title = ?, prompt_tokens = ?, completion_tokens = ?,"
		    " summary_message_id = ?, cost = ?, todos = ? where id = ? returning " SESSION_COLS,
		    err, errlen);
	if (s == NULL) {
		free(todos_text);
		*status = 500;
		return NULL;
	}
	const char *smv = json_string_value(sm);
	bind_text(s, 1, json_string_value(title) ? json_string_value(title) : "");
	sqlite3_bind_int64(s, 2, json_integer_value(pt));
	sqlite3_bind_int64(s, 3, json_integer_value(ct));
	bind_text(s, 4, smv && *smv ? smv : NULL);
	sqlite3_bind_double(s, 5, json_number_value(cost));
	bind_text(s, 6, todos_text);
	bind_text(s, 7, json_string_value(id) ? json_string_value(id) : "");
	free(todos_text);
	return with_presence(st, one_row(st, s, session_json, status, err, errlen));
}

json_t *store_session_delete(store_t *st, const char *id, int *status, char *err, size_t errlen)
{
	*status = 500;
	if (exec(st, "begin immediate", err, errlen) != 0)
		return NULL;
	json_t *before = store_session_get(st, id, status, err, errlen);
	static const char *const dels[] = {"delete from messages where session_id = ?",
					   "delete from files where session_id = ?",
					   "delete from sessions where id = ?"};
	for (size_t i = 0; before != NULL && i < 3; i++) {
		sqlite3_stmt *s = prepare(st, dels[i], err, errlen);
		int rc = SQLITE_ERROR;
		if (s != NULL) {
			bind_text(s, 1, id);
			rc = sqlite3_step(s);
			if (rc != SQLITE_DONE)
				seterr(err, errlen, "%s", sqlite3_errmsg(st->db));
			sqlite3_finalize(s);
		}
		if (rc != SQLITE_DONE) {
			json_decref(before);
			before = NULL;
			*status = 500;
		}
	}
	if (before == NULL || exec(st, "commit", err, errlen) != 0) {
		exec(st, "rollback", NULL, 0);
		json_decref(before);
		return NULL;
	}
	return before;
}

json_t *store_message_create(store_t *st, const char *session_id, const char *role, const json_t *parts,
			     int *status, char *err, size_t errlen)
{
	char id[ID_LEN + 1];
	char *text = json_dumps(parts, JSON_COMPACT);
	id_new(id);
	sqlite3_stmt *s =
	    prepare(st,
		    "insert into messages (id, session_id, role, parts, model, provider,"
		    " is_summary_message, created_at, updated_at) values (?, ?, ?, ?, '', null, 0,"
		    " strftime('%s', 'now'), strftime('%s', 'now')) returning " MESSAGE_COLS,
		    err, errlen);
	if (s == NULL || text == NULL) {
		sqlite3_finalize(s);
		free(text);
		*status = 500;
		return NULL;
	}
	bind_text(s, 1, id);
	bind_text(s, 2, session_id);
	bind_text(s, 3, role);
	bind_text(s, 4, text);
	free(text);
	return one_row(st, s, message_json, status, err, errlen);
}

int store_read_record(store_t *st, const char *session_id, const char *relpath, char *err, size_t errlen)
{
	sqlite3_stmt *s = prepare(st,
				  "insert into read_files (session_id, path, read_at) values (?, ?,"
				  " strftime('%s', 'now')) on conflict (path, session_id) do update set"
				  " read_at = excluded.read_at",
				  err, errlen);
	if (s == NULL)
		return -1;
	bind_text(s, 1, session_id);
	bind_text(s, 2, relpath);
	int rc = sqlite3_step(s);
	if (rc != SQLITE_DONE)
		seterr(err, errlen, "%s", sqlite3_errmsg(st->db));
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

int64_t store_read_last(store_t *st, const char *session_id, const char *relpath)
{
	sqlite3_stmt *s =
	    prepare(st, "select read_at from read_files where session_id = ? and path = ? limit 1", NULL, 0);
	int64_t t = 0;
	if (s == NULL)
		return 0;
	bind_text(s, 1, session_id);
	bind_text(s, 2, relpath);
	if (sqlite3_step(s) == SQLITE_ROW)
		t = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return t;
}

/* --- listings in steps */

struct store_cursor {
	store_t *st;
	sqlite3_stmt *s;
	enum store_list what;
	char *prefix;
	size_t rows;
	int opened, done;
};

store_cursor_t *store_list(store_t *st, enum store_list what, const char *arg, const char *prefix, char *err,
			   size_t errlen)
{
	static const char *const sql[] = {
	    [STORE_LIST_SESSIONS] = "select " SESSION_COLS
				    " from sessions where parent_session_id is null order by updated_at desc",
	    [STORE_LIST_MESSAGES] =
		"select " MESSAGE_COLS " from messages where session_id = ? order by created_at asc",
	    [STORE_LIST_USER_MESSAGES] = "select " MESSAGE_COLS " from messages where session_id = ? and"
					 " role = 'user' order by created_at desc",
	    [STORE_LIST_ALL_USER] =
		"select " MESSAGE_COLS " from messages where role = 'user' order by created_at desc",
	    [STORE_LIST_HISTORY] =
		"select " FILE_COLS " from files where session_id = ? order by version asc, created_at asc",
	    [STORE_LIST_READ_FILES] =
		"select path from read_files where session_id = ? order by read_at desc",
	};
	sqlite3_stmt *s = prepare(st, sql[what], err, errlen);
	if (s == NULL)
		return NULL;
	if (sqlite3_bind_parameter_count(s) > 0)
		bind_text(s, 1, arg ? arg : "");
	store_cursor_t *c = calloc(1, sizeof(*c));
	if (c == NULL || (prefix && (c->prefix = strdup(prefix)) == NULL))
		abort();
	c->st = st;
	c->s = s;
	c->what = what;
	return c;
}

static json_t *read_path_json(store_cursor_t *c)
{
	const char *p = (const char *)sqlite3_column_text(c->s, 0);
	buf_t b = BUF_INIT;
	if (p == NULL)
		p = "";
	if (c->prefix != NULL && p[0] != '/')
		buf_appendf(&b, "%s%s%s", c->prefix, strcmp(p, ".") == 0 ? "" : "/",
			    strcmp(p, ".") == 0 ? "" : p);
	else
		buf_appendf(&b, "%s", p);
	json_t *j = utf8_json_stringn(buf_data(&b), buf_size(&b));
	buf_free(&b);
	return j;
}

int store_cursor_step(store_cursor_t *c, buf_t *out, unsigned max_rows, size_t max_bytes)
{
	size_t start = buf_size(out);
	if (c->done)
		return 1;
	if (!c->opened) {
		buf_append(out, "[", 1);
		c->opened = 1;
	}
	for (unsigned n = 0; n < max_rows && buf_size(out) - start < max_bytes; n++) {
		int rc = sqlite3_step(c->s);
		if (rc == SQLITE_DONE) {
			buf_append(out, "]", 1);
			c->done = 1;
			return 1;
		}
		if (rc != SQLITE_ROW)
			return -1;
		json_t *j;
		switch (c->what) {
		case STORE_LIST_SESSIONS:
			j = with_presence(c->st, session_json(c->s));
			break;
		case STORE_LIST_HISTORY:
			j = file_json(c->s);
			break;
		case STORE_LIST_READ_FILES:
			j = read_path_json(c);
			break;
		default:
			j = message_json(c->s);
		}
		char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
		json_decref(j);
		if (text == NULL)
			abort();
		if (c->rows++ > 0)
			buf_append(out, ",", 1);
		buf_append(out, text, strlen(text));
		free(text);
	}
	return 0;
}

void store_cursor_free(store_cursor_t *c)
{
	if (c == NULL)
		return;
	sqlite3_finalize(c->s);
	free(c->prefix);
	free(c);
}
