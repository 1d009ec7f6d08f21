"""
HTTP API v1 (SPEC §4): the routes, the Workspace object, join/dedup by
resolved directory, first-wins flags.
"""

import datetime
import os
import threading
import uuid

import pytest

from crush import (RFC3339_RE, UUID_RE, WAIT, UnixHTTPConnection, new_client_id, pid_live,
                   proc_cmdline, proc_environ, proc_stat, wait_until)


def test_health_returns_200(sup):
    r = sup.api.health()
    assert r.status == 200, r.describe()


def test_version_reports_version_commit_platform(sup):
    r = sup.api.request("GET", "/v1/version")
    assert r.status == 200, r.describe()
    assert r.content_type.startswith("application/json"), r.describe()
    v = r.json()
    for key in ("version", "commit", "platform"):
        assert isinstance(v.get(key), str) and v[key], f"{key} missing or empty in {v}"


def test_create_returns_ready_workspace_with_live_worker(sup, wsdir):
    cid = new_client_id()
    before = datetime.datetime.now(datetime.timezone.utc)
    r = sup.api.create_raw(wsdir, cid)
    assert r.status == 200, r.describe()
    assert r.content_type.startswith("application/json"), r.describe()
    ws = r.json()

    assert UUID_RE.match(ws["id"]), ws["id"]
    assert uuid.UUID(ws["id"]).version == 4, ws["id"]
    assert ws["path"] == wsdir
    assert ws["resolved_path"] == os.path.realpath(wsdir)
    assert ws["state"] == "ready"
    assert ws["clients"] == 1
    assert ws["streams"] == 0
    assert ws["data_dir"] == os.path.join(ws["resolved_path"], ".crush")
    assert RFC3339_RE.match(ws["created_at"]), ws["created_at"]
    created = datetime.datetime.fromisoformat(ws["created_at"].replace("Z", "+00:00").replace("z", "+00:00"))
    assert abs((created - before).total_seconds()) < 60, (ws["created_at"], before)

    pid = ws["pid"]
    assert isinstance(pid, int) and pid > 0
    assert pid_live(pid), f"worker pid {pid} is not running"
    args = proc_cmdline(pid)
    assert os.path.basename(args[0]) == "crush-worker", args
    assert args[1] == ws["id"], args
    assert args[2] in (wsdir, ws["resolved_path"]), args
    assert proc_stat(pid)[1] == sup.pid, "worker is not a child of the supervisor"


def test_get_workspace_returns_the_created_workspace(sup, wsdir):
    ws = sup.api.create(wsdir)
    r = sup.api.get(ws["id"])
    assert r.status == 200, r.describe()
    got = r.json()
    for key in ("id", "path", "resolved_path", "pid", "state", "clients", "data_dir", "created_at"):
        assert got[key] == ws[key], key


def test_list_workspaces_returns_every_workspace(sup, make_dir):
    assert sup.api.list() == []
    a = sup.api.create(make_dir("a"))
    b = sup.api.create(make_dir("b"))
    listed = {w["id"]: w for w in sup.api.list()}
    assert set(listed) == {a["id"], b["id"]}
    assert listed[a["id"]]["path"] == a["path"]
    assert listed[b["id"]]["pid"] == b["pid"]


def test_second_client_joins_the_same_workspace(sup, wsdir):
    a = sup.api.create(wsdir, new_client_id())
    b = sup.api.create(wsdir, new_client_id())
    assert b["id"] == a["id"]
    assert b["pid"] == a["pid"]
    assert b["clients"] == 2
    assert sup.api.workspace(a["id"])["clients"] == 2


def test_same_client_creating_twice_counts_once(sup, wsdir):
    cid = new_client_id()
    a = sup.api.create(wsdir, cid)
    b = sup.api.create(wsdir, cid)
    assert b["id"] == a["id"]
    assert b["clients"] == 1
    assert sup.api.workspace(a["id"])["clients"] == 1


def test_client_id_is_case_insensitive_for_claims(sup, wsdir):
    cid = new_client_id()
    a = sup.api.create(wsdir, cid.lower())
    b = sup.api.create(wsdir, cid.upper())
    assert b["id"] == a["id"]
    assert b["clients"] == 1, "the same UUID in upper case is the same client"


def test_join_through_symlink_shares_the_workspace(sup, make_dir, tmp_path):
    real = make_dir("real")
    link = str(tmp_path / "link")
    os.symlink(real, link)
    a = sup.api.create(real)
    b = sup.api.create(link)
    assert b["id"] == a["id"]
    assert b["resolved_path"] == real
    assert b["path"] == real, "path stays as the first creator sent it"
    assert b["clients"] == 2


def test_missing_path_under_symlink_and_real_dir_share_the_workspace(sup, make_dir, tmp_path):
    real = make_dir("real")
    link = str(tmp_path / "link")
    os.symlink(real, link)
    via_link = os.path.join(link, "missing", "deeper")
    via_real = os.path.join(real, "missing", "deeper")
    a = sup.api.create(via_link)
    assert a["path"] == via_link
    assert a["resolved_path"] == via_real
    assert a["state"] == "ready"
    assert pid_live(a["pid"])
    b = sup.api.create(via_real)
    assert b["id"] == a["id"]
    assert b["clients"] == 2


def test_missing_path_with_dot_dot_is_cleaned_into_the_key(sup, make_dir):
    real = make_dir("real")
    a = sup.api.create(os.path.join(real, "missing", "x", "..", "y"))
    assert a["resolved_path"] == os.path.join(real, "missing", "y")
    b = sup.api.create(os.path.join(real, "missing", "y"))
    assert b["id"] == a["id"]


def test_different_dirs_get_different_workspaces_and_workers(sup, make_dir):
    a = sup.api.create(make_dir("one"))
    b = sup.api.create(make_dir("two"))
    assert a["id"] != b["id"]
    assert a["pid"] != b["pid"]
    assert pid_live(a["pid"]) and pid_live(b["pid"])
    assert sup.worker_pids() == {a["pid"], b["pid"]}


def test_parallel_creates_converge_on_one_workspace_and_one_worker(sup, wsdir):
    n = 8
    barrier = threading.Barrier(n)
    results = [None] * n
    cids = [new_client_id() for _ in range(n)]

    def create(i):
        barrier.wait()
        results[i] = sup.api.create_raw(wsdir, cids[i])

    threads = [threading.Thread(target=create, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    assert all(r is not None for r in results), "a create did not return"
    for r in results:
        assert r.status == 200, r.describe()
    bodies = [r.json() for r in results]
    assert len({b["id"] for b in bodies}) == 1, [b["id"] for b in bodies]
    assert len({b["pid"] for b in bodies}) == 1
    assert all(b["state"] == "ready" for b in bodies), [b["state"] for b in bodies]
    assert len(sup.workers(path=wsdir)) == 1
    assert len(sup.workers()) == 1
    assert sup.api.workspace(bodies[0]["id"])["clients"] == n


def test_first_creator_flags_win_on_join(sup, wsdir, make_dir):
    d1, d2 = make_dir("data1"), make_dir("data2")
    a = sup.api.create(wsdir, yolo=False, debug=False, data_dir=d1, env=["FOO=bar"])
    b = sup.api.create(wsdir, yolo=True, debug=True, data_dir=d2, env=["NEW=val"])
    assert b["id"] == a["id"]
    for ws in (a, b, sup.api.workspace(a["id"])):
        assert ws.get("yolo", False) is False
        assert ws.get("debug", False) is False
        assert ws["data_dir"] == d1
        assert ws.get("env") == ["FOO=bar"]


def test_worker_environment_is_the_supervisors_never_a_creators_env(sup, wsdir):
    # SPEC invariant 8: the first creator's env is data for the commands a
    # workspace runs (test_worker_trust.py), never the worker's own.
    a = sup.api.create(wsdir, env=["CRUSH_TEST_FIRST=one"])
    sup.api.create(wsdir, env=["CRUSH_TEST_SECOND=two"])
    env = proc_environ(a["pid"])
    assert not any(e.startswith(("CRUSH_TEST_FIRST=", "CRUSH_TEST_SECOND=")) for e in env), env
    assert "PATH=" + os.environ.get("PATH", "") in env, "the supervisor's environment is inherited"


def test_worker_cwd_is_the_workspace_directory(sup, wsdir):
    a = sup.api.create(wsdir)
    assert os.readlink(f"/proc/{a['pid']}/cwd") == a["resolved_path"]


def test_workspace_version_is_the_server_version(sup, wsdir):
    v = sup.api.request("GET", "/v1/version").json()
    ws = sup.api.create(wsdir, version="some-client-version")
    assert ws["version"] == v["version"]


MISMATCH = "Workspace flag mismatch on duplicate create; first wins"


def _first_wins_args(data_dir):
    return {"yolo": False, "debug": False, "data_dir": data_dir, "env": ["FOO=bar"]}


@pytest.mark.parametrize("field,value", [
    ("yolo", True),
    ("debug", True),
    ("data_dir", ""),
    ("env", ["NEW=val"]),
])
def test_flag_mismatch_on_duplicate_create_is_logged_at_debug(start_supervisor, wsdir, make_dir,
                                                              field, value):
    sup = start_supervisor(log_level="debug")
    first = _first_wins_args(make_dir("data"))
    a = sup.api.create(wsdir, **first)
    second = dict(first, **{field: value})
    b = sup.api.create(wsdir, **second)
    assert b["id"] == a["id"]
    line = wait_until(lambda: next((ln for ln in sup.stderr().splitlines() if MISMATCH in ln), None),
                      what=f"debug log {MISMATCH!r}")
    assert "level=DEBUG" in line, line
    assert a["id"] in line, "the log names the workspace"


def test_identical_duplicate_create_does_not_log_a_mismatch(start_supervisor, wsdir, make_dir):
    sup = start_supervisor(log_level="debug")
    args = _first_wins_args(make_dir("data"))
    a = sup.api.create(wsdir, **args)
    sup.api.create(wsdir, **args)
    # A third, differing create logs once; the identical one before it
    # must not have logged (records are written in order).
    sup.api.create(wsdir, **dict(args, yolo=True))
    wait_until(lambda: MISMATCH in sup.stderr(), what="mismatch log for the third create")
    lines = [ln for ln in sup.stderr().splitlines() if MISMATCH in ln]
    assert len(lines) == 1, lines
    assert a["id"]


def test_one_http_connection_serves_several_requests(sup):
    conn = UnixHTTPConnection(sup.sock)
    try:
        for method, path, status in [("GET", "/v1/health", 200), ("GET", "/v1/nope", 404),
                                     ("GET", "/v1/workspaces", 200), ("GET", "/v1/version", 200)]:
            conn.request(method, path)
            r = conn.getresponse()
            r.read()
            assert r.status == status, (method, path, r.status)
    finally:
        conn.close()
