"""
Command line and configuration (SPEC §3): flags, exit statuses, env
fallbacks, the default socket, logfmt logs.
"""

import os
import re
import signal

import pytest

from crush import (RFC3339_RE, alive, new_client_id, pid_exists, run_cli, short_tmpdir, stays_true,
                   wait_until)


@pytest.fixture
def host():
    """A private -H so a daemon started by mistake never takes the default socket."""
    d = short_tmpdir()
    yield "unix://" + os.path.join(d, "s.sock")
    try:
        os.unlink(os.path.join(d, "s.sock"))
    except FileNotFoundError:
        pass
    os.rmdir(d)


def test_unknown_flag_exits_2_with_one_error_line_and_a_pointer_to_help(host):
    p = run_cli(["-H", host, "--no-such-flag"], timeout=5)
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert lines == ["crush-supervisor: unknown flag --no-such-flag",
                     "try 'crush-supervisor --help' for the usage"], p.stderr


@pytest.mark.parametrize("flag,value", [
    ("--create-grace", "abc"),
    ("--detach-grace", "-1"),
    ("--idle-timeout", "1x"),
    ("--kill-timeout", ""),
    ("--create-grace", "nan"),
])
def test_bad_duration_exits_2(host, flag, value):
    p = run_cli(["-H", host, flag, value], timeout=5)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.strip(), "no message on stderr"


def test_bad_duration_in_the_environment_exits_2(host):
    p = run_cli(["-H", host], timeout=5, env={"CRUSH_SERVER_CREATE_GRACE": "soon"})
    assert p.returncode == 2, (p.returncode, p.stderr)


def test_bad_log_level_exits_2(host):
    p = run_cli(["-H", host, "--log-level", "loud"], timeout=5)
    assert p.returncode == 2, (p.returncode, p.stderr)


@pytest.mark.parametrize("url", ["http://127.0.0.1:1", "unix://relative.sock", "tcp://127.0.0.1",
                                 "tcp://127.0.0.1:notaport", "nonsense"])
def test_bad_host_url_exits_2(url):
    p = run_cli(["-H", url], timeout=5)
    assert p.returncode == 2, (p.returncode, p.stderr)


def test_flag_without_its_value_exits_2(host):
    p = run_cli(["-H", host, "--create-grace"], timeout=5)
    assert p.returncode == 2, (p.returncode, p.stderr)


def test_help_exits_0_with_usage_on_stdout():
    p = run_cli(["--help"], timeout=5)
    assert p.returncode == 0, (p.returncode, p.stderr)
    assert "usage" in p.stdout.lower(), p.stdout
    for flag in ("-H", "--worker", "--create-grace", "--detach-grace", "--idle-timeout",
                 "--kill-timeout", "--log-level"):
        assert flag in p.stdout, f"{flag} not in usage"


def test_version_flag_exits_0_and_matches_the_api(sup):
    p = run_cli(["--version"], timeout=5)
    assert p.returncode == 0, (p.returncode, p.stderr)
    v = sup.api.request("GET", "/v1/version").json()
    assert v["version"] in p.stdout, (p.stdout, v)


def test_create_grace_from_the_environment(start_supervisor, wsdir):
    sup = start_supervisor(create_grace=None, env={"CRUSH_SERVER_CREATE_GRACE": "0.3"})
    ws = sup.api.create(wsdir)
    wait_until(lambda: sup.api.workspace(ws["id"]) is None, what="expired by the env create grace")
    wait_until(lambda: not pid_exists(ws["pid"]))


def test_flag_wins_over_the_environment(start_supervisor, wsdir):
    sup = start_supervisor(create_grace=30, env={"CRUSH_SERVER_CREATE_GRACE": "0.2"})
    ws = sup.api.create(wsdir)
    stays_true(alive(sup, ws), 0.8, what="flag's 30s grace holds")


def test_idle_timeout_from_the_environment(start_supervisor, wsdir):
    sup = start_supervisor(idle_timeout=None, create_grace=0.2,
                           env={"CRUSH_SERVER_IDLE_TIMEOUT": "0"})
    sup.api.create(wsdir)
    sup.assert_exit_0()


def test_detach_grace_from_the_environment(start_supervisor, wsdir):
    sup = start_supervisor(detach_grace=None, create_grace=0.2,
                           env={"CRUSH_SERVER_DETACH_GRACE": "0.8"})
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    s = sup.api.events(ws["id"], cid)
    wait_until(alive(sup, ws, streams=1))
    s.close()
    wait_until(alive(sup, ws, streams=0))
    stays_true(alive(sup, ws), 0.4, what="held by the env detach grace")
    wait_until(lambda: sup.api.workspace(ws["id"]) is None)


def test_default_socket_is_under_xdg_runtime_dir(start_supervisor, tmp_path):
    xdg = str(tmp_path / "xdg")
    os.mkdir(xdg)
    sup = start_supervisor(hosts=[], env={"XDG_RUNTIME_DIR": xdg})
    assert sup.sock == os.path.join(xdg, f"crush-{os.getuid()}.sock")
    assert os.path.exists(sup.sock)
    sup.signal(signal.SIGTERM)
    sup.assert_exit_0()
    assert not os.path.exists(sup.sock)


LOGFMT = re.compile(r'^time=(\S+) level=(DEBUG|INFO|WARN|ERROR) msg=("(?:[^"\\]|\\.)*"|[^\s"=]+)'
                    r'(?: [^\s="]+=(?:"(?:[^"\\]|\\.)*"|[^\s"]*))*$')


def test_logs_are_one_logfmt_record_per_line(start_supervisor, wsdir):
    sup = start_supervisor(log_level="debug")
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    sup.api.create(wsdir, new_client_id(), yolo=True)
    sup.api.release(ws["id"], cid)
    sup.signal(signal.SIGTERM)
    sup.assert_exit_0()
    lines = [ln for ln in sup.stderr().splitlines() if ln.strip()]
    assert lines, "no log output at debug level"
    bad = [ln for ln in lines if not LOGFMT.match(ln)]
    assert bad == [], f"not logfmt: {bad[:5]}"
    for ln in lines:
        t = LOGFMT.match(ln).group(1)
        assert RFC3339_RE.match(t), f"time {t!r} is not RFC 3339"


def test_log_level_warn_hides_info(start_supervisor, wsdir):
    sup = start_supervisor(log_level="warn")
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    sup.api.release(ws["id"], cid)
    sup.signal(signal.SIGTERM)
    sup.assert_exit_0()
    assert not [ln for ln in sup.stderr().splitlines() if "level=INFO" in ln or "level=DEBUG" in ln]
