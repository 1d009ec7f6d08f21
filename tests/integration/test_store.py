"""
The session store (SPEC §8 Store, issue 12): <data_dir>/crush.db with
upstream Crush's schema and goose bookkeeping, proved both ways against a
database built here from upstream's own migration SQL (read from the
mirror of charmbracelet/crush with git, applied by the sqlite3 tool as
goose applies it); and every store route, with the event a second client
sees for each change.
"""

import json
import os
import re
import shutil
import sqlite3
import subprocess

import pytest

import crush
from crush import StreamDrainer, new_client_id, open_events

MIRROR = os.environ.get("CRUSH_UPSTREAM_MIRROR", "/work/.mirror/charmbracelet+crush/repo")
MIGRATIONS = "internal/db/migrations"
NO_ROWS = "sql: no rows in result set"

# goose's bookkeeping table for the sqlite3 dialect, and its first row.
GOOSE_TABLE = """CREATE TABLE goose_db_version (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version_id INTEGER NOT NULL,
    is_applied INTEGER NOT NULL,
    tstamp TIMESTAMP DEFAULT (datetime('now'))
);
INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, 1);
"""


def _git(*args):
    return subprocess.run(["git", "-C", MIRROR, *args], capture_output=True, text=True, check=True).stdout


def upstream_migrations():
    """[(version, up_sql)] from the mirror, oldest first; skips the test
    when the mirror is not on this machine."""
    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 tool is not installed (scripts/deps.sh installs it)")
    if not os.path.isdir(MIRROR):
        pytest.skip(f"upstream Crush mirror not present at {MIRROR}: cannot build an upstream-made database")
    try:
        names = _git("ls-tree", "--name-only", "HEAD", MIGRATIONS + "/").split()
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        pytest.skip(f"cannot read upstream migrations from {MIRROR}: {e}")
    out = []
    for name in sorted(n for n in names if n.endswith(".sql")):
        text = _git("show", f"HEAD:{name}")
        up = text.split("-- +goose Up", 1)[1].split("-- +goose Down", 1)[0]
        out.append((int(os.path.basename(name).split("_", 1)[0]), up))
    assert out, "no migrations found in the mirror"
    return out


def build_upstream_db(path):
    """A database as upstream's goose.Up leaves it: the goose table, then
    each migration in its own transaction with its version row."""
    script = GOOSE_TABLE
    for version, up in upstream_migrations():
        script += f"BEGIN;\n{up}\nINSERT INTO goose_db_version (version_id, is_applied) VALUES ({version}, 1);\nCOMMIT;\n"
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    subprocess.run(["sqlite3", path], input=script, text=True, check=True, capture_output=True)


def sqlite_cli(path, sql):
    return subprocess.run(["sqlite3", path, sql], capture_output=True, text=True, check=True).stdout


def normalized_schema(path):
    """sqlite3's schema dump as a set of (type, name, table, sql) with
    comments, case and layout normalized away."""
    rows = []
    dump = sqlite_cli(path, "SELECT json_group_array(json_array(type, name, tbl_name, sql)) FROM sqlite_master")
    for typ, name, tbl, sql in json.loads(dump):
        s = re.sub(r"--[^\n]*", " ", sql or "").lower()
        s = re.sub(r"\bif not exists\b", " ", s)
        s = re.sub(r"\s+", " ", s)
        s = re.sub(r"\s*([(),;=<>!])\s*", r"\1", s).strip()
        rows.append((typ, name, tbl, s))
    return sorted(rows)


def goose_versions(path):
    """{version: applied} as goose reads it (the latest row per version)."""
    out = {}
    for line in sqlite_cli(path, "SELECT version_id, is_applied FROM goose_db_version ORDER BY id").split():
        v, applied = line.split("|")
        out[int(v)] = applied == "1"
    return out


def columns(path, table):
    return [c.split("|")[1] for c in sqlite_cli(path, f"PRAGMA table_info({table})").split()]


# --------------------------------------------------------------------------


class Ws:
    """A workspace with an explicit data dir, and its routes."""

    def __init__(self, sup, path, data_dir, **fields):
        self.sup = sup
        self.client = new_client_id()
        self.info = sup.api.create(path, self.client, data_dir=data_dir, **fields)
        self.id = self.info["id"]
        self.base = f"/v1/workspaces/{self.id}"

    def req(self, method, path, body=None, timeout=crush.WAIT):
        return self.sup.api.request(method, self.base + path, body, timeout=timeout)

    def ok(self, method, path, body=None):
        r = self.req(method, path, body)
        assert r.status == 200, f"{method} {path}: {r.describe()}"
        return r.json() if r.body else None

    def watch(self):
        return StreamDrainer(open_events(self.sup.api, self.id, new_client_id()))


def store_event(kind, typ):
    def pred(ev):
        return ev.type == typ and isinstance(ev.payload, dict) and ev.kind == kind
    return pred


SESSION_FIELDS = {"id", "parent_session_id", "title", "message_count", "prompt_tokens", "completion_tokens",
                  "summary_message_id", "cost", "created_at", "updated_at", "is_busy", "attached_clients"}


def test_a_session_request_never_makes_a_removed_workspace_appear(sup, tmp_path):
    """The store lives in the data dir, which only the holder of its lock
    makes (with its .gitignore). A workspace directory removed before the
    store was first used stays removed: the request fails, it does not
    recreate <root>/.crush (and the root with it)."""
    root = os.path.join(os.path.realpath(tmp_path), "gone")
    os.mkdir(root)
    ws = Ws(sup, root, os.path.join(root, ".crush"))
    with ws.watch() as w:
        shutil.rmtree(root)
        w.wait_for(lambda e: e.type == "watch" and e.kind == "root_gone", what="root_gone")
    r = ws.req("POST", "/sessions", {"title": "t"})
    assert r.status in (409, 500) and "message" in r.json(), r.describe()
    assert not os.path.exists(root), "the request recreated the workspace directory"


def test_session_routes_publish_events_to_a_second_client(sup, wsdir):
    data = os.path.join(wsdir, ".crush")
    ws = Ws(sup, wsdir, data)
    assert oct(os.stat(data).st_mode & 0o777) == "0o700"
    with ws.watch() as other:
        s = ws.ok("POST", "/sessions", {"title": "first"})
        assert SESSION_FIELDS <= set(s), s
        assert s["title"] == "first" and s["message_count"] == 0 and s["parent_session_id"] == ""
        assert "todos" not in s  # omitempty, as upstream
        ev = other.wait_for(store_event("created", "session"), what="session created event")
        assert ev.payload["id"] == s["id"]

        assert [x["id"] for x in ws.ok("GET", "/sessions")] == [s["id"]]
        assert ws.ok("GET", f"/sessions/{s['id']}")["title"] == "first"

        todos = [{"content": "write", "status": "pending", "active_form": "writing"}]
        u = ws.ok("PUT", f"/sessions/{s['id']}", {"id": s["id"], "title": "renamed", "cost": 0.5, "todos": todos})
        assert u["title"] == "renamed" and u["cost"] == 0.5 and u["todos"] == todos
        ev = other.wait_for(store_event("updated", "session"), what="session updated event")
        assert ev.payload["title"] == "renamed"

        assert ws.ok("GET", f"/sessions/{s['id']}/messages") == []
        assert ws.ok("GET", f"/sessions/{s['id']}/messages/user") == []
        assert ws.ok("GET", "/messages/user") == []
        assert ws.ok("GET", f"/sessions/{s['id']}/history") == []

        r = ws.req("DELETE", f"/sessions/{s['id']}")
        # Upstream answers w.WriteHeader(200): no body, no content type.
        assert r.status == 200 and r.body == b"", r.describe()
        assert "content-type" not in r.headers, r.describe()
        ev = other.wait_for(store_event("deleted", "session"), what="session deleted event")
        assert ev.payload["id"] == s["id"]
        assert ws.ok("GET", "/sessions") == []


def test_unknown_session_and_bad_bodies_answer_as_upstream(sup, wsdir):
    ws = Ws(sup, wsdir, os.path.join(wsdir, ".crush"))
    for method in ("GET", "DELETE"):
        r = ws.req(method, "/sessions/no-such-session")
        assert r.status == 500 and r.json() == {"message": NO_ROWS}, r.describe()
    r = ws.req("PUT", "/sessions/no-such-session", {"title": "x"})
    assert r.status == 500 and r.json() == {"message": NO_ROWS}, r.describe()
    for path in ("/sessions", "/sessions/x"):
        r = ws.req("POST" if path == "/sessions" else "PUT", path, "not json")
        assert r.status == 400 and r.json() == {"message": "failed to decode request"}, r.describe()


def test_file_tracker_records_reads_relative_to_the_workspace(sup, wsdir):
    ws = Ws(sup, wsdir, os.path.join(wsdir, ".crush"))
    sid = ws.ok("POST", "/sessions", {"title": "t"})["id"]
    never = ws.ok("GET", f"/filetracker/lastread?session_id={sid}&path=a.txt")
    assert never == "0001-01-01T00:00:00Z"
    assert ws.req("POST", "/filetracker/read", {"session_id": sid, "path": os.path.join(wsdir, "a.txt")}).status == 200
    assert ws.ok("GET", f"/sessions/{sid}/filetracker/files") == [os.path.join(wsdir, "a.txt")]
    last = ws.ok("GET", f"/filetracker/lastread?session_id={sid}&path={os.path.join(wsdir, 'a.txt')}")
    assert crush.RFC3339_RE.match(last) and not last.startswith("0001"), last
    # Stored as upstream stores it: relative to the workspace.
    db = os.path.join(wsdir, ".crush", "crush.db")
    assert sqlite_cli(db, "SELECT path FROM read_files").split() == ["a.txt"]


def test_a_large_listing_comes_whole_and_in_order(sup, wsdir):
    data = os.path.join(wsdir, ".crush")
    ws = Ws(sup, wsdir, data)
    ws.ok("POST", "/sessions", {"title": "seed"})  # the store exists now
    db = os.path.join(data, "crush.db")
    sqlite_cli(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
                   "INSERT INTO sessions (id, title, updated_at, created_at) "
                   "SELECT 'bulk-' || i, 'bulk ' || i, 1000000 + i, 1000000 + i FROM n")
    got = ws.ok("GET", "/sessions")
    assert len(got) == 3001
    stamps = [s["updated_at"] for s in got]
    assert stamps == sorted(stamps, reverse=True)


# --------------------------------------------------------------------------
# Interop with upstream's own database


def test_a_database_made_here_is_upstreams_schema_and_versions(start_supervisor, make_dir, tmp_path):
    migrations = upstream_migrations()
    ours = make_dir("ours")
    sup = start_supervisor()
    ws = Ws(sup, ours, os.path.join(ours, ".crush"))
    sid = ws.ok("POST", "/sessions", {"title": "made here"})["id"]
    ws.ok("POST", f"/agent/sessions/{sid}/shell", {"command": "echo recorded"})
    sup.api.release(ws.id, ws.client)
    crush.wait_until(lambda: not sup.workers(), what="worker gone")
    db = os.path.join(ours, ".crush", "crush.db")

    ref = str(tmp_path / "upstream" / "crush.db")
    build_upstream_db(ref)
    assert normalized_schema(db) == normalized_schema(ref)
    # goose.Up in upstream finds every version applied: nothing to do,
    # nothing "missing" (goose refuses out-of-order gaps).
    versions = goose_versions(db)
    assert versions == goose_versions(ref) == {0: True, **{v: True for v, _ in migrations}}
    assert sqlite_cli(db, "PRAGMA journal_mode").strip() == "wal"
    # Upstream's generated code reads SELECT * by position.
    for table in ("sessions", "messages", "files", "read_files"):
        assert columns(db, table) == columns(ref, table), table
    # Rows as upstream's queries read them.
    con = sqlite3.connect(db)
    try:
        title, count = con.execute("SELECT title, message_count FROM sessions WHERE id = ?", (sid,)).fetchone()
        assert (title, count) == ("made here", 1)
        role, parts, model, provider = con.execute(
            "SELECT role, parts, model, provider FROM messages WHERE session_id = ?", (sid,)).fetchone()
        assert role == "user" and model == "" and provider is None
        assert json.loads(parts) == [
            {"type": "shell_command", "data": {"command": "echo recorded", "output": "recorded\n", "exit_code": 0}},
            {"type": "finish", "data": {"reason": "stop", "time": 0}},
        ]
    finally:
        con.close()


def test_a_database_made_by_upstream_opens_here(start_supervisor, make_dir):
    path = make_dir("theirs")
    data = os.path.join(path, ".crush")
    db = os.path.join(data, "crush.db")
    build_upstream_db(db)
    before = sqlite_cli(db, "SELECT count(*) FROM goose_db_version").strip()
    parts = json.dumps([
        {"type": "text", "data": {"text": "hello"}},
        {"type": "tool_call", "data": {"id": "t1", "name": "ls", "input": "{}", "provider_executed": False,
                                       "finished": True}},
        {"type": "finish", "data": {"reason": "end_turn", "time": 7}},
    ])
    # Rows as upstream's CreateSession / CreateMessage write them.
    sqlite_cli(db, "INSERT INTO sessions (id, parent_session_id, title, message_count, prompt_tokens, "
                   "completion_tokens, cost, summary_message_id, updated_at, created_at) VALUES "
                   "('up-1', NULL, 'from upstream', 0, 10, 20, 0.25, NULL, 100, 100);"
                   "INSERT INTO messages (id, session_id, role, parts, model, provider, is_summary_message, "
                   f"created_at, updated_at) VALUES ('m-1', 'up-1', 'user', '{parts}', 'gpt', 'openai', 0, 101, 101);"
                   "INSERT INTO files (id, session_id, path, content, version, created_at, updated_at) VALUES "
                   "('f-1', 'up-1', 'a.go', 'package a', 0, 102, 102);")
    sup = start_supervisor()
    ws = Ws(sup, path, data)
    [s] = ws.ok("GET", "/sessions")
    assert (s["id"], s["title"], s["message_count"], s["prompt_tokens"], s["cost"]) == \
        ("up-1", "from upstream", 1, 10, 0.25)
    [m] = ws.ok("GET", "/sessions/up-1/messages")
    assert m["model"] == "gpt" and m["provider"] == "openai" and m["role"] == "user"
    assert m["parts"] == [
        {"type": "text", "data": {"text": "hello"}},
        {"type": "tool_call", "data": {"id": "t1", "name": "ls", "input": "{}", "finished": True}},
        {"type": "finish", "data": {"reason": "end_turn", "time": 7}},
    ]
    assert [x["id"] for x in ws.ok("GET", "/messages/user")] == ["m-1"]
    [f] = ws.ok("GET", "/sessions/up-1/history")
    assert f == {"ID": "f-1", "SessionID": "up-1", "Path": "a.go", "Content": "package a", "Version": 0,
                 "CreatedAt": 102, "UpdatedAt": 102}
    # Nothing migrated twice; new rows land in upstream's tables.
    ws.ok("POST", "/sessions", {"title": "added here"})
    assert sqlite_cli(db, "SELECT count(*) FROM goose_db_version").strip() == before
    assert "added here" in sqlite_cli(db, "SELECT title FROM sessions")
    r = ws.req("DELETE", "/sessions/up-1")
    assert r.status == 200, r.describe()
    assert sqlite_cli(db, "SELECT count(*) FROM messages WHERE session_id = 'up-1'").strip() == "0"
    assert sqlite_cli(db, "SELECT count(*) FROM files WHERE session_id = 'up-1'").strip() == "0"
