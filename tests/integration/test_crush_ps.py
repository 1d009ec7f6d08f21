"""
scripts/crush-ps (now a thin wrapper for `crushctl ps`): the operator's view of a running supervisor.
"""

import json
import os
import subprocess

import pytest

from crush import CRUSH_PS, WAIT, free_tcp_port, new_client_id, short_tmpdir


def crush_ps(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([str(CRUSH_PS)] + list(args), capture_output=True, text=True,
                          timeout=WAIT, env=e)


@pytest.mark.no_daemon
def test_crush_ps_is_an_executable_script():
    assert os.access(CRUSH_PS, os.X_OK)
    with open(CRUSH_PS) as f:
        assert f.readline().strip() == "#!/usr/bin/env python3"


@pytest.mark.no_daemon
def test_crush_ps_help_exits_0():
    p = crush_ps("--help")
    assert p.returncode == 0, p.stderr
    assert "-H" in p.stdout and "--json" in p.stdout
    # Its own name, not crushctl's `crush-ps ps`: the usage line is one to copy.
    assert p.stdout.startswith("usage: crush-ps [-h]"), p.stdout


def test_crush_ps_table_shows_the_workspace(sup, make_dir):
    cid = new_client_id()
    a = sup.api.create(make_dir("alpha"), cid)
    b = sup.api.create(make_dir("beta-longer-name"))
    s = sup.api.events(a["id"], cid)
    p = crush_ps("-H", "unix://" + sup.sock)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.rstrip("\n").split("\n")
    assert lines[0].split() == ["ID", "PID", "STATE", "CLIENTS", "STREAMS", "PATH"], lines[0]
    assert len(lines) == 3, lines
    rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
    assert rows[a["id"]] == [a["id"], str(a["pid"]), "ready", "1", "1", a["path"]]
    assert rows[b["id"]] == [b["id"], str(b["pid"]), "ready", "1", "0", b["path"]]
    # Aligned: text columns start, and number columns end, where their header does.
    for name in ("STATE", "PATH"):
        col = lines[0].index(name)
        for ln in lines[1:]:
            assert ln[col - 1] == " " and ln[col] != " ", (name, lines)
    for name in ("PID", "CLIENTS", "STREAMS"):
        end = lines[0].index(name) + len(name)
        for ln in lines[1:]:
            assert ln[end - 1] != " " and ln[end] == " ", (name, lines)
    assert {ln[lines[0].index("PATH"):] for ln in lines[1:]} == {a["path"], b["path"]}
    s.close()


def test_crush_ps_json_is_the_workspace_array(sup, wsdir):
    ws = sup.api.create(wsdir)
    p = crush_ps("--json", "-H", "unix://" + sup.sock)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert isinstance(data, list) and [w["id"] for w in data] == [ws["id"]]
    assert data[0]["pid"] == ws["pid"]


def test_crush_ps_with_no_workspaces_prints_only_the_header(sup):
    p = crush_ps("-H", "unix://" + sup.sock)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["ID", "PID", "STATE", "CLIENTS", "STREAMS", "PATH"]


def test_crush_ps_finds_the_default_socket(start_supervisor, wsdir, tmp_path):
    xdg = str(tmp_path / "xdg")
    os.mkdir(xdg)
    sup = start_supervisor(hosts=[], env={"XDG_RUNTIME_DIR": xdg})
    ws = sup.api.create(wsdir)
    p = crush_ps("--json", env={"XDG_RUNTIME_DIR": xdg})
    assert p.returncode == 0, p.stderr
    assert [w["id"] for w in json.loads(p.stdout)] == [ws["id"]]


def test_crush_ps_over_tcp(start_supervisor, wsdir):
    port = free_tcp_port()
    sup = start_supervisor(hosts=["unix://{sock}", f"tcp://127.0.0.1:{port}"])
    ws = sup.api.create(wsdir)
    p = crush_ps("-H", f"tcp://127.0.0.1:{port}", env={"CRUSH_SERVER_TOKEN": sup.token})
    assert p.returncode == 0, p.stderr
    assert ws["id"] in p.stdout


@pytest.mark.no_daemon
def test_crush_ps_without_a_supervisor_fails_clearly():
    d = short_tmpdir()
    try:
        url = "unix://" + os.path.join(d, "none.sock")
        p = crush_ps("-H", url)
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        assert p.stderr.startswith(f"crush-ps: no supervisor at {url}: "), p.stderr
        assert p.stdout == ""
    finally:
        os.rmdir(d)


@pytest.mark.no_daemon
def test_crush_ps_default_falls_back_to_tmp_for_a_long_runtime_dir():
    if os.path.exists(f"/tmp/crush-{os.getuid()}.sock"):
        pytest.skip("a supervisor may be running on the shared default socket")
    long_dir = "/nonexistent/" + "d" * 100
    p = crush_ps(env={"XDG_RUNTIME_DIR": long_dir})
    assert p.returncode == 1
    assert f"no supervisor at unix:///tmp/crush-{os.getuid()}.sock: " in p.stderr, p.stderr


@pytest.mark.no_daemon
def test_crush_ps_default_uses_xdg_runtime_dir():
    d = short_tmpdir()
    try:
        p = crush_ps(env={"XDG_RUNTIME_DIR": d})
        assert p.returncode == 1
        assert f"no supervisor at unix://{d}/crush-{os.getuid()}.sock: " in p.stderr, p.stderr
    finally:
        os.rmdir(d)
