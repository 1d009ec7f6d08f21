"""
Issue 11, data dir and config, against the real worker through the
supervisor: the data dir resolved as upstream Crush resolves it, created
0700 with a .gitignore, locked through crush.lock with upstream's owner
info (a second owner, Go crush or another daemon, makes the create 409 and
leaves nothing running); upstream's config chain merged in its order,
reloaded on an edit or a file that appears (config_changed), redacted
wherever it leaves the worker; set/remove rewriting a scope's file
atomically and keeping what they do not touch; a broken file reported,
never overwritten; the project init routes.

Every supervisor here runs with HOME, XDG_CONFIG_HOME and XDG_DATA_HOME
in temp dirs, so no test reads or writes the real user's config.
"""

import fcntl
import json
import os
import re
import stat
import time

import pytest

from crush import new_client_id, wait_until, stays_true

SECRET = "sk-test-0123456789abcdef"


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def write_json(path, obj):
    write(path, json.dumps(obj, indent=2))


def read_json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture
def home(tmp_path):
    """The daemon's user: HOME and the XDG config/data homes, empty."""
    h = tmp_path / "home"
    for d in ("", ".config", ".local/share"):
        (h / d).mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(h),
        "XDG_CONFIG_HOME": str(h / ".config"),
        "XDG_DATA_HOME": str(h / ".local/share"),
        "CRUSH_GLOBAL_CONFIG": "",
        "CRUSH_GLOBAL_DATA": "",
    }


@pytest.fixture
def csup(start_supervisor, home):
    return start_supervisor(env=home)


def global_config(home):
    return os.path.join(home["XDG_CONFIG_HOME"], "crush", "crush.json")


def global_data(home):
    return os.path.join(home["XDG_DATA_HOME"], "crush", "crush.json")


def route(sup, ws, method, path, body=None):
    return sup.api.request(method, f"/v1/workspaces/{ws['id']}{path}", body)


def get_config(sup, ws):
    r = route(sup, ws, "GET", "/config")
    assert r.status == 200, r.describe()
    return r.json()


def json_error(r, status):
    assert r.status == status, f"expected {status}, got {r.describe()}"
    return r.json()["message"]


# Streams attach as a client of their own: the creator's claim keeps the
# workspace when a stream closes (detach grace is 0 here).
def config_events(stream):
    return [e for e in stream.events if e.type == "config_changed"]


def wait_config_event(stream, after, what):
    return stream.wait_for(lambda e: e.type == "config_changed", after=after, what=what)


# --------------------------------------------------------------------------
# Data dir and lock


def test_data_dir_is_made_0700_with_a_gitignore_and_locked_with_upstreams_owner_info(csup, wsdir):
    ws = csup.api.create(wsdir)
    dd = os.path.join(wsdir, ".crush")
    assert ws["data_dir"] == dd
    assert ws["config"]["options"]["data_directory"] == dd
    assert stat.S_IMODE(os.stat(dd).st_mode) == 0o700
    with open(os.path.join(dd, ".gitignore")) as f:
        assert f.read() == "*\n"
    lock = os.path.join(dd, "crush.lock")
    with open(lock) as f:
        text = f.read()
    # json.MarshalIndent(info, "", "  ") plus a newline, as upstream writes it.
    info = json.loads(text)
    assert text == json.dumps(info, indent=2) + "\n", text
    assert list(info) == ["pid", "version", "started_at"]
    assert info["pid"] == ws["pid"]
    assert info["version"] == ws["version"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["started_at"]), info
    with open(lock, "r+") as f, pytest.raises(BlockingIOError):
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_data_dir_is_the_nearest_dot_crush_up_to_the_git_root(csup, make_dir):
    repo = make_dir("top/repo")
    os.mkdir(os.path.join(repo, ".git"))
    os.mkdir(os.path.join(repo, ".crush"))
    deep = make_dir("top/repo/src/pkg")
    ws = csup.api.create(deep)
    assert ws["data_dir"] == os.path.join(repo, ".crush")
    assert get_config(csup, ws)["options"]["data_directory"] == os.path.join(repo, ".crush")
    assert os.path.exists(os.path.join(repo, ".crush", "crush.lock"))
    assert not os.path.exists(os.path.join(deep, ".crush"))


def test_a_dot_crush_above_the_git_root_or_outside_git_is_not_adopted(csup, make_dir):
    top = make_dir("top")
    os.mkdir(os.path.join(top, ".crush"))
    repo = make_dir("top/repo")
    os.mkdir(os.path.join(repo, ".git"))
    inside = make_dir("top/repo/sub")
    plain = make_dir("top/plain/sub")
    assert csup.api.create(inside)["data_dir"] == os.path.join(inside, ".crush")
    assert csup.api.create(plain)["data_dir"] == os.path.join(plain, ".crush")


def test_a_data_dir_sent_by_the_creator_is_used_as_sent(csup, wsdir, make_dir):
    d = os.path.join(make_dir("elsewhere"), "state")
    ws = csup.api.create(wsdir, data_dir=d)
    assert ws["data_dir"] == d
    assert os.path.exists(os.path.join(d, "crush.lock"))


def test_a_lock_held_by_another_process_is_409_naming_its_pid_and_leaves_nothing(csup, wsdir):
    dd = os.path.join(wsdir, ".crush")
    os.makedirs(dd)
    with open(os.path.join(dd, "crush.lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write(json.dumps({"pid": os.getpid(), "version": "v0.0.0-go", "started_at": "2026-01-01T00:00:00Z"}))
        f.flush()
        r = csup.api.create_raw(wsdir, new_client_id())
        msg = json_error(r, 409)
        assert msg == f"data directory is in use by pid {os.getpid()}", msg  # SPEC §8, exactly
        assert csup.api.list() == []
        wait_until(lambda: csup.worker_pids() == set(), what="no worker left running")
    # The lock gone, the directory is ours again; the file was kept.
    ws = csup.api.create(wsdir)
    assert read_json(os.path.join(dd, "crush.lock"))["pid"] == ws["pid"]


def test_crush_skip_datadir_lock_is_upstreams_escape_hatch(start_supervisor, home, wsdir):
    sup = start_supervisor(env=dict(home, CRUSH_SKIP_DATADIR_LOCK="true"))
    dd = os.path.join(wsdir, ".crush")
    os.makedirs(dd)
    with open(os.path.join(dd, "crush.lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert sup.api.create(wsdir)["state"] == "ready"


def test_a_second_daemon_on_the_same_directory_gets_409_until_the_first_lets_go(start_supervisor, home, wsdir):
    a = start_supervisor(env=home)
    b = start_supervisor(env=home)
    assert a.sock != b.sock
    cid = new_client_id()
    wa = a.api.create(wsdir, cid)
    msg = json_error(b.api.create_raw(wsdir, new_client_id()), 409)
    assert msg == f"data directory is in use by pid {wa['pid']}", msg
    assert b.api.list() == [] and b.worker_pids() == set()
    assert a.api.workspace(wa["id"])["state"] == "ready"
    assert a.api.release(wa["id"], cid).status == 200
    wait_until(lambda: a.worker_pids() == set(), what="the first daemon's worker gone")
    wb = b.api.create(wsdir)
    assert read_json(os.path.join(wsdir, ".crush", "crush.lock"))["pid"] == wb["pid"]


# --------------------------------------------------------------------------
# Config: the chain, reload, redaction


def test_the_chain_merges_in_upstreams_order(csup, home, make_dir):
    repo = make_dir("repo")
    os.mkdir(os.path.join(repo, ".git"))
    sub = make_dir("repo/sub")
    write_json(global_config(home), {"options": {"debug": False, "context_paths": ["g.md"]},
                                     "who": "global", "g": 1})
    write_json(global_data(home), {"who": "data", "d": 1})
    write_json(os.path.join(repo, "crush.json"), {"who": "root", "r": 1, "options": {"context_paths": ["r.md"]}})
    write_json(os.path.join(repo, ".crush.json"), {"who": "root-dot", "rd": 1})
    write_json(os.path.join(sub, "crush.json"), {"who": "sub", "s": 1})
    write_json(os.path.join(sub, ".crush", "crush.json"), {"options": {"debug": True}, "w": 1})
    cfg = csup.api.create(sub)["config"]
    assert cfg["who"] == "sub"
    assert {k: cfg.get(k) for k in ("g", "d", "r", "rd", "s", "w")} == dict.fromkeys(("g", "d", "r", "rd", "s", "w"), 1)
    assert cfg["options"]["debug"] is True  # the workspace file last
    # Arrays append, then upstream's defaults join them, sorted.
    assert {"g.md", "r.md", "AGENTS.md", "CRUSH.md"} <= set(cfg["options"]["context_paths"])
    assert cfg["options"]["context_paths"] == sorted(set(cfg["options"]["context_paths"]))
    assert get_config(csup, {"id": csup.api.list()[0]["id"]}) == cfg


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_files_of_another_owner_are_not_adopted(csup, make_dir):
    repo = make_dir("shared")
    os.mkdir(os.path.join(repo, ".git"))
    sub = make_dir("shared/ws")
    planted = os.path.join(repo, "crush.json")
    write_json(planted, {"planted": True})
    os.mkdir(os.path.join(repo, ".crush"))
    for p in (planted, os.path.join(repo, ".crush")):
        os.chown(p, 65534, 65534)
    ws = csup.api.create(sub)
    assert "planted" not in ws["config"]
    assert ws["data_dir"] == os.path.join(sub, ".crush")


def test_config_is_never_null_and_has_what_the_client_dereferences(csup, wsdir):
    ws = csup.api.create(wsdir)
    for cfg in (ws["config"], get_config(csup, ws)):
        assert isinstance(cfg["options"], dict) and isinstance(cfg["providers"], dict)
        assert cfg["options"]["data_directory"] == ws["data_dir"]
        assert cfg["options"]["disable_metrics"] is False


def test_an_edit_and_a_file_that_appears_reload_and_publish_config_changed(csup, home, wsdir):
    ws = csup.api.create(wsdir)
    with csup.api.events(ws["id"], new_client_id()) as s:
        # A project file where none was.
        mark = len(s.events)
        write_json(os.path.join(wsdir, "crush.json"), {"options": {"tui": {"theme": "one"}}})
        ev = wait_config_event(s, mark, "config_changed after crush.json appeared")
        assert ev.json["payload"]["type"] == "updated"
        assert ev.json["payload"]["payload"]["workspace_id"] == ws["id"]
        assert ev.json["payload"]["payload"]["config"]["options"]["tui"]["theme"] == "one"
        assert get_config(csup, ws)["options"]["tui"]["theme"] == "one"
        assert csup.api.workspace(ws["id"])["config"]["options"]["tui"]["theme"] == "one"
        # An edit of the global file.
        mark = len(s.events)
        write_json(global_config(home), {"options": {"tui": {"compact_mode": True}}})
        ev = wait_config_event(s, mark, "config_changed after the global file changed")
        assert ev.json["payload"]["payload"]["config"]["options"]["tui"] == {"theme": "one", "compact_mode": True}
        # Rewriting the same content is no change: no event.
        mark = len(s.events)
        write_json(global_config(home), {"options": {"tui": {"compact_mode": True}}})

        def quiet():
            s.pump(0.05)
            return not any(e.type == "config_changed" for e in s.events[mark:])
        stays_true(quiet, 1.0, what="no config_changed for an identical rewrite")


def test_secrets_are_redacted_in_the_workspace_get_config_and_events(csup, home, wsdir):
    write_json(global_config(home), {
        "providers": {"openai": {"api_key": SECRET, "base_url": "https://x",
                                 "oauth": {"access_token": SECRET, "refresh_token": SECRET, "expires_in": 5},
                                 "models": [{"id": "m", "max_tokens": 9}]}},
        "mcp": {"gh": {"headers": {"Authorization": "Bearer " + SECRET}, "env": {"GITHUB_TOKEN": SECRET}}},
        "options": {"client_secret": SECRET, "db_password": SECRET},
    })
    ws = csup.api.create(wsdir)
    p = ws["config"]["providers"]["openai"]
    assert p["api_key"] == "***" and p["oauth"]["access_token"] == "***" and p["oauth"]["expires_in"] == 5
    assert p["models"][0]["max_tokens"] == 9 and p["base_url"] == "https://x"
    assert ws["config"]["mcp"]["gh"]["headers"]["Authorization"] == "***"
    for text in (json.dumps(ws), route(csup, ws, "GET", "/config").body.decode(),
                 csup.api.get(ws["id"]).body.decode(), json.dumps(csup.api.list())):
        assert SECRET not in text
    with csup.api.events(ws["id"], new_client_id()) as s:
        mark = len(s.events)
        write_json(os.path.join(wsdir, "crush.json"), {"providers": {"anthropic": {"api_key": SECRET}}})
        ev = wait_config_event(s, mark, "config_changed")
        assert SECRET not in ev.data
        assert ev.json["payload"]["payload"]["config"]["providers"]["anthropic"]["api_key"] == "***"
    assert SECRET not in csup.stderr()


# --------------------------------------------------------------------------
# set / remove


def test_set_and_remove_rewrite_the_workspace_file_atomically_keeping_other_keys(csup, wsdir):
    ws = csup.api.create(wsdir)
    path = os.path.join(ws["data_dir"], "crush.json")
    write_json(path, {"options": {"debug": True, "tui": {"theme": "t"}}, "keep": [1, 2], "zz": "last"})
    os.chmod(path, 0o640)
    ino = os.stat(path).st_ino
    wait_until(lambda: get_config(csup, ws).get("keep") == [1, 2], what="the workspace file loaded")
    with csup.api.events(ws["id"], new_client_id()) as s:
        mark = len(s.events)
        r = route(csup, ws, "POST", "/config/set", {"scope": 1, "key": "options.tui.compact_mode", "value": True})
        assert r.status == 200, r.describe()
        wait_config_event(s, mark, "config_changed after set")
    got = read_json(path)
    assert got == {"options": {"debug": True, "tui": {"theme": "t", "compact_mode": True}}, "keep": [1, 2],
                   "zz": "last"}
    assert list(got) == ["options", "keep", "zz"]  # order kept
    st = os.stat(path)
    assert st.st_ino != ino, "not replaced by a rename"
    assert stat.S_IMODE(st.st_mode) == 0o640
    # No temp file left behind (the session store's crush.db* are not ours).
    left = sorted(n for n in os.listdir(ws["data_dir"]) if not n.startswith("crush.db"))
    assert left == sorted([".gitignore", "crush.lock", "crush.json", "crush.json.lock"]), left
    assert get_config(csup, ws)["options"]["tui"]["compact_mode"] is True
    r = route(csup, ws, "POST", "/config/set", {"scope": 1, "key": "models.large", "value": {"model": "m", "provider": "p"}})
    assert r.status == 200, r.describe()
    assert read_json(path)["models"] == {"large": {"model": "m", "provider": "p"}}
    r = route(csup, ws, "POST", "/config/remove", {"scope": 1, "key": "options.tui.theme"})
    assert r.status == 200, r.describe()
    got = read_json(path)
    assert got["options"] == {"debug": True, "tui": {"compact_mode": True}} and got["keep"] == [1, 2]
    assert "theme" not in get_config(csup, ws)["options"]["tui"]
    # A key that is not there: nothing to remove, nothing lost.
    assert route(csup, ws, "POST", "/config/remove", {"scope": 1, "key": "nope.deeper"}).status == 200
    assert read_json(path) == got


def test_global_scope_writes_the_global_data_file(csup, home, wsdir):
    ws = csup.api.create(wsdir)
    write_json(global_data(home), {"recent_models": {"large": []}, "other": True})
    r = route(csup, ws, "POST", "/config/set", {"scope": 0, "key": "options.disable_metrics", "value": True})
    assert r.status == 200, r.describe()
    assert read_json(global_data(home)) == {"recent_models": {"large": []}, "other": True,
                                            "options": {"disable_metrics": True}}
    assert get_config(csup, ws)["options"]["disable_metrics"] is True
    assert not os.path.exists(os.path.join(ws["data_dir"], "crush.json"))


def test_a_set_with_a_body_that_does_not_decode_is_400(csup, wsdir):
    ws = csup.api.create(wsdir)
    for body in (b"not json", b"[1]", {"scope": "workspace", "key": "a"}, {"scope": 1, "key": 5}):
        assert json_error(route(csup, ws, "POST", "/config/set", body), 400) == "failed to decode request"
    assert json_error(route(csup, ws, "POST", "/config/remove", b"{"), 400) == "failed to decode request"


def test_a_set_that_would_make_the_file_unreadable_is_refused(csup, wsdir):
    """A config file over 8 MiB is never read (nor edited again): a set that
    would write one is 400 and leaves the file as it was."""
    ws = csup.api.create(wsdir)
    path = os.path.join(ws["data_dir"], "crush.json")
    r = route(csup, ws, "POST", "/config/set", {"scope": 1, "key": "options.debug", "value": True})
    assert r.status == 200, r.describe()
    before = read_json(path)
    msg = json_error(route(csup, ws, "POST", "/config/set", {"scope": 1, "key": "big", "value": "x" * (9 << 20)}),
                     400)
    assert "over the 8388608 allowed" in msg, msg
    assert read_json(path) == before
    r = route(csup, ws, "POST", "/config/set", {"scope": 1, "key": "options.debug", "value": False})
    assert r.status == 200, r.describe()


def test_a_broken_file_is_reported_with_its_place_and_never_overwritten(csup, wsdir):
    ws = csup.api.create(wsdir)
    path = os.path.join(ws["data_dir"], "crush.json")
    broken = '{\n  "options": {\n    "debug": true,,\n  }\n}\n'
    write(path, broken)
    for body, verb in (({"scope": 1, "key": "a", "value": 1}, "set"), ({"scope": 1, "key": "options"}, "remove")):
        msg = json_error(route(csup, ws, "POST", f"/config/{verb}", body), 500)
        assert path in msg and "line 3" in msg, msg
        with open(path) as f:
            assert f.read() == broken
    # The last good config stays in service meanwhile.
    assert get_config(csup, ws)["options"]["data_directory"] == ws["data_dir"]


def test_a_parse_error_never_quotes_a_secret(csup, wsdir):
    ws = csup.api.create(wsdir)
    path = os.path.join(ws["data_dir"], "crush.json")
    write(path, '{"providers": {"x": {"api_key" "%s"}}}' % SECRET)  # the parser stops at the secret
    msg = json_error(route(csup, ws, "POST", "/config/set", {"scope": 1, "key": "a", "value": 1}), 500)
    assert path in msg and "line 1" in msg and SECRET not in msg, msg
    wait_until(lambda: "Config not reloaded" in csup.stderr(), what="the failed reload logged")
    assert SECRET not in csup.stderr()


def test_a_create_with_a_broken_config_file_names_it(csup, wsdir):
    path = os.path.join(wsdir, "crush.json")
    write(path, '{"options": [}')
    msg = json_error(csup.api.create_raw(wsdir, new_client_id()), 500)
    assert msg.startswith("worker failed to start: ") and path in msg and "line 1" in msg, msg
    assert csup.api.list() == []


# --------------------------------------------------------------------------
# Project init


def test_project_needs_init_init_and_init_prompt(csup, wsdir):
    ws = csup.api.create(wsdir)

    def needs():
        r = route(csup, ws, "GET", "/project/needs-init")
        assert r.status == 200, r.describe()
        return r.json()["needs_init"]

    assert needs() is False  # nothing visible in it
    write(os.path.join(wsdir, ".hidden"), "x")
    write(os.path.join(wsdir, "debug.log"), "x")
    os.makedirs(os.path.join(wsdir, "node_modules", "m"))
    assert needs() is False  # nor with what upstream's listing ignores
    write(os.path.join(wsdir, "main.go"), "package main\n")
    assert needs() is True
    write(os.path.join(wsdir, "claude.md"), "# ctx\n")  # any case of a context file
    assert needs() is False
    os.unlink(os.path.join(wsdir, "claude.md"))
    assert needs() is True
    with csup.api.events(ws["id"], new_client_id()) as s:
        mark = len(s.events)
        r = route(csup, ws, "POST", "/project/init")
        assert r.status == 200, r.describe()
        wait_config_event(s, mark, "config_changed after project init")
    assert os.path.exists(os.path.join(ws["data_dir"], "init"))
    assert needs() is False
    r = route(csup, ws, "GET", "/project/init-prompt")
    assert r.status == 200, r.describe()
    assert "AGENTS.md" in r.json()["prompt"]
    write_json(os.path.join(wsdir, "crush.json"), {"options": {"initialize_as": "CRUSH.md"}})
    wait_until(lambda: "CRUSH.md" in route(csup, ws, "GET", "/project/init-prompt").json()["prompt"],
               what="the prompt names options.initialize_as")
