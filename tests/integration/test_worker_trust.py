"""
What a worker takes from a client, and what it trusts (SPEC §2 invariants
1 and 8, §6): a client's `env` never reaches the worker's own environment
(it is handed over the socketpair as data, proto/PROTOCOL.md `setup`); the
worker is given the resolved directory once and never resolves the client's
path again, so swapping a symlink cannot move a workspace; and a worker
that cannot start says why, so the create's 500 names the cause.

Limits are lowered only inside a private user namespace (`unshare -Ur`),
and permissions are tested by dropping the DAC capabilities of the daemon
(`setpriv`): nothing machine-global changes.
"""

import os
import re
import shutil
import signal
import stat
import subprocess
import threading

import pytest

import crush
from crush import (WAIT, all_pids, is_fs, is_worker_cmdline, is_ws_event, new_client_id, pid_live,
                   proc_cmdline, proc_environ, proc_stat, stays_true, wait_until)


def json_error(r, status):
    assert r.status == status, f"expected {status}, got {r.describe()}"
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("message"), str), body
    return body["message"]


def write(path, text="x"):
    with open(path, "w") as f:
        f.write(text)


def log_lines(sup, msg):
    return [ln for ln in sup.stderr().splitlines() if f'msg="{msg}"' in ln]


def never(stream, pred, duration, what):
    """Reads the stream for `duration` seconds; no event may satisfy pred."""
    def none_yet():
        stream.pump(0.05)
        return not any(pred(e) for e in stream.events)
    stays_true(none_yet, duration, what=what)


def worker_cwd(pid):
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


class DirSampler(threading.Thread):
    """Scans /proc for live workers of one supervisor and records every
    instant two of them served one directory, by their directory argument
    (argv[2]) or by the directory they run in (cwd)."""

    def __init__(self, ppid):
        super().__init__(daemon=True)
        self.ppid = ppid
        self.stop = threading.Event()
        self.samples = 0
        self.violations = []

    def run(self):
        while not self.stop.is_set():
            by_arg, by_cwd = {}, {}
            for pid in all_pids():
                args = proc_cmdline(pid)
                st = proc_stat(pid)
                if not (is_worker_cmdline(args) and len(args) > 2 and st and st[0] not in "ZX"
                        and st[1] == self.ppid):
                    continue
                by_arg.setdefault(args[2], []).append(pid)
                cwd = worker_cwd(pid)
                if cwd is not None:
                    by_cwd.setdefault(cwd, []).append(pid)
            for key, pids in list(by_arg.items()) + list(by_cwd.items()):
                # Each pid was live when read; still live now means together.
                if len(pids) >= 2 and all(pid_live(p) for p in pids):
                    self.violations.append((key, pids))
            self.samples += 1

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join(WAIT)


@pytest.fixture
def start_prefixed(start_supervisor, monkeypatch):
    """start(prefix, **opts): a supervisor run as `prefix... crush-supervisor
    ...` (same pid: every prefix used here execs), so the usual fixture
    still stops it and reports its stderr."""
    orig = crush.Supervisor.start

    def start(prefix, **opts):
        def start_with_prefix(self, wait_ready=True):
            self.args = list(prefix) + self.args
            return orig(self, wait_ready)

        monkeypatch.setattr(crush.Supervisor, "start", start_with_prefix)
        try:
            return start_supervisor(**opts)
        finally:
            monkeypatch.setattr(crush.Supervisor, "start", orig)
    return start


def userns_with(sysctl, value):
    """A prefix running the daemon in a new user namespace whose per-user
    limit /proc/sys/user/<sysctl> is `value`; skips when the kernel does not
    let us (the limit only ever applies inside that namespace)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) not installed")
    probe = subprocess.run(["unshare", "-Ur", "sh", "-c", f"echo {value} > /proc/sys/user/{sysctl}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot lower {sysctl} in a user namespace: {probe.stderr.strip()}")
    return ["unshare", "-Ur", "sh", "-c", f'echo {value} > /proc/sys/user/{sysctl} && exec "$0" "$@"']


# --------------------------------------------------------------------------
# Invariant 8: the client's env is data, never the worker's environment


def test_client_env_never_reaches_the_worker_environment(sup, wsdir):
    ws = sup.api.create(wsdir, env=["LD_PRELOAD=/nonexistent/x.so", "CRUSH_TEST_MARK=1"])
    env = proc_environ(ws["pid"])
    assert env, f"cannot read /proc/{ws['pid']}/environ"
    assert not any(e.startswith("LD_PRELOAD=") for e in env), env
    assert not any(e.startswith("CRUSH_TEST_MARK=") for e in env), env
    assert "PATH=" + os.environ.get("PATH", "") in env, "the supervisor's environment is inherited"
    # The Workspace still reports the env as the first creator sent it.
    assert ws["env"] == ["LD_PRELOAD=/nonexistent/x.so", "CRUSH_TEST_MARK=1"]


def test_worker_gets_the_creators_env_as_data_and_logs_only_its_keys(sup, wsdir):
    secret = "s3cret-value-" + new_client_id()
    ws = sup.api.create(wsdir, env=["CRUSH_TEST_TOKEN=" + secret, "CRUSH_TEST_MARK=1", "EMPTY="])

    def setup_line():
        for ln in log_lines(sup, "Workspace setup"):
            if f"pid={ws['pid']}" in ln:
                return ln
        return None

    line = wait_until(setup_line, what="the worker's debug line for its setup")
    assert re.search(r'env_keys="?CRUSH_TEST_TOKEN,CRUSH_TEST_MARK,EMPTY\b', line), line
    assert secret not in sup.stderr(), "an env value reached the log"
    assert not any(e.startswith("CRUSH_TEST_TOKEN=") for e in proc_environ(ws["pid"]))


def test_a_joiners_env_never_reaches_the_worker_either(sup, wsdir):
    first = sup.api.create(wsdir, env=["CRUSH_TEST_FIRST=one"])
    sup.api.create(wsdir, env=["LD_PRELOAD=/nonexistent/y.so"])
    env = proc_environ(first["pid"])
    assert not any(e.startswith(("CRUSH_TEST_FIRST=", "LD_PRELOAD=")) for e in env), env


# --------------------------------------------------------------------------
# Invariant 1: the resolved key, once


def test_swapped_symlink_never_moves_a_workspace_to_another_directory(sup, make_dir, tmp_path):
    a, b = make_dir("a"), make_dir("b")
    link = str(tmp_path / "L")
    os.symlink(a, link)
    cid = new_client_id()
    with DirSampler(sup.pid) as sampler:
        ws = sup.api.create(link, cid)
        assert ws["resolved_path"] == a
        assert proc_cmdline(ws["pid"])[2] == a, "the worker was not given the resolved key"
        stream = sup.api.events(ws["id"], cid)
        # Swap L -> b (atomically, as an attacker would) and crash the worker.
        os.symlink(b, link + ".new")
        os.replace(link + ".new", link)
        os.kill(ws["pid"], signal.SIGKILL)
        restarted = stream.wait_for(lambda e: is_ws_event(e, "restarted"), what="workspace restarted")
        newpid = restarted.payload["pid"]
        wait_until(lambda: pid_live(newpid))
        assert proc_cmdline(newpid)[2] == a, proc_cmdline(newpid)
        assert worker_cwd(newpid) == a
        assert [p.pid for p in sup.workers()] == [newpid]

        # It watches a ...
        write(os.path.join(a, "in-a.txt"))
        stream.wait_for(lambda e: is_fs(e, "created", "in-a.txt"), what="event for a file in a")
        # ... and b gets its own workspace and worker, which alone sees b.
        cid_b = new_client_id()
        wb = sup.api.create(b, cid_b)
        assert wb["id"] != ws["id"] and wb["pid"] != newpid
        assert proc_cmdline(wb["pid"])[2] == b
        sb = sup.api.events(wb["id"], cid_b)
        write(os.path.join(b, "in-b.txt"))
        sb.wait_for(lambda e: is_fs(e, "created", "in-b.txt"), what="b's own workspace sees b")
        never(stream, lambda e: is_fs(e, path="in-b.txt"), 0.5, "no event for b on the workspace of a")
        # The link now resolving to b, a create on it joins b's workspace.
        assert sup.api.create(link, new_client_id())["id"] == wb["id"]
        assert sorted(p.pid for p in sup.workers()) == sorted([newpid, wb["pid"]])
        stream.close()
        sb.close()
    assert sampler.samples > 0
    assert sampler.violations == [], f"two workers for one directory: {sampler.violations[:5]}"


def _restart_reasons(stream):
    return [e.payload.get("reason", "") for e in stream.events if is_ws_event(e, "restarting")]


def test_worker_refuses_a_directory_replaced_by_a_symlink(sup, make_dir, tmp_path):
    ws_dir, other = make_dir("ws"), make_dir("other")
    cid = new_client_id()
    ws = sup.api.create(ws_dir, cid)
    stream = sup.api.events(ws["id"], cid)
    os.rename(ws_dir, ws_dir + ".old")
    os.symlink(other, ws_dir)
    os.kill(ws["pid"], signal.SIGKILL)
    want = f"directory changed under the workspace: {ws_dir} now resolves to {other}"
    stream.wait_for(lambda e: is_ws_event(e, "restarting") and want in e.payload.get("reason", ""),
                    timeout=WAIT + 5, what="a restart refused with the reason")
    failed = stream.wait_for(lambda e: is_ws_event(e, "failed"), timeout=WAIT + 10, what="failed")
    assert want in failed.payload["reason"], failed.payload
    assert any("code=directory_changed" in ln for ln in log_lines(sup, "Worker failed")), \
        log_lines(sup, "Worker failed")
    # No worker ever ran in the other directory on this workspace's behalf.
    assert not [p for p in sup.workers() if worker_cwd(p.pid) == other]
    stream.close()


def test_missing_directory_that_appears_as_a_symlink_is_refused(sup, make_dir, tmp_path):
    other = make_dir("other")
    missing = str(tmp_path / "later")
    cid = new_client_id()
    ws = sup.api.create(missing, cid)
    assert ws["resolved_path"] == missing and ws["state"] == "ready"
    stream = sup.api.events(ws["id"], cid)
    os.symlink(other, missing)
    want = f"directory changed under the workspace: {missing} now resolves to {other}"
    ev = stream.wait_for(lambda e: is_ws_event(e, "restarting"), what="the worker gave up")
    assert want in ev.payload["reason"], ev.payload
    write(os.path.join(other, "seen.txt"))
    never(stream, is_fs, 0.5, "nothing of the symlink's target is reported")
    stream.close()


# --------------------------------------------------------------------------
# Start failures say why


def test_inotify_instance_limit_is_a_503_naming_the_sysctl(start_prefixed, wsdir):
    """A per-user kernel resource ran out: the machine is busy, not the
    request wrong or the daemon broken (issue 8: a 503-class error)."""
    sup = start_prefixed(userns_with("max_inotify_instances", 0))
    r = sup.api.create_raw(wsdir, new_client_id())
    msg = json_error(r, 503)
    assert msg.startswith("worker failed to start: "), msg
    assert "fs.inotify.max_user_instances" in msg, msg
    lines = log_lines(sup, "Worker failed")
    assert any("code=inotify_instances" in ln for ln in lines), lines
    assert sup.api.list() == []
    assert sup.api.health().status == 200


def test_inotify_watch_limit_is_a_503_naming_the_sysctl(start_prefixed, wsdir):
    sup = start_prefixed(userns_with("max_inotify_watches", 0))
    msg = json_error(sup.api.create_raw(wsdir, new_client_id()), 503)
    assert msg.startswith("worker failed to start: ") and "fs.inotify.max_user_watches" in msg, msg
    assert any("code=inotify_watches" in ln for ln in log_lines(sup, "Worker failed"))


def test_unreadable_directory_is_permission_denied(start_prefixed, make_dir):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv(1) not installed")
    # Root reads anything through CAP_DAC_OVERRIDE/READ_SEARCH: take them
    # away from the daemon and every process it starts.
    drop = "-dac_override,-dac_read_search"
    sup = start_prefixed(["setpriv", "--bounding-set", drop, "--inh-caps", drop])
    d = make_dir("locked")
    os.chmod(d, 0)
    try:
        msg = json_error(sup.api.create_raw(d, new_client_id()), 500)
    finally:
        os.chmod(d, stat.S_IRWXU)
    assert msg.startswith("worker failed to start: "), msg
    assert f"permission denied: {d}" in msg, msg
    assert any("code=permission_denied" in ln for ln in log_lines(sup, "Worker failed"))


def test_a_worker_wrapper_that_does_not_exec_is_refused_with_a_reason(start_supervisor, wsdir, tmp_path):
    wrapper = tmp_path / "wrap.sh"
    wrapper.write_text(f'#!/bin/sh\n"{crush.WORKER}" "$@"\nexit 3\n')
    wrapper.chmod(0o755)
    sup = start_supervisor(worker=str(wrapper))
    msg = json_error(sup.api.create_raw(wsdir, new_client_id()), 500)
    assert msg.startswith("worker failed to start: "), msg
    assert "exec" in msg and "wrapper" in msg, msg
    assert "exited with status 3" in msg, msg
    lines = log_lines(sup, "Worker failed")
    assert any("code=wrong_parent" in ln for ln in lines), sup.stderr()[-3000:]
    wait_until(lambda: not sup.workers(), what="no worker left")
    assert sup.zombies() == []


# --------------------------------------------------------------------------
# The supervisor's side of setup and FAIL, against a worker that gets them
# wrong (fake_worker.py)

FAKE = os.path.join(os.path.dirname(__file__), "fake_worker.py")

SETUP_FAULTS = [
    # mode, what the 500 must say
    ("ready_before_setup", "protocol error: ready before its setup was answered (killed by signal KILL)"),
    ("refuse_setup", "worker refused its setup: bad request: env[0] is not KEY=VALUE (killed by signal KILL)"),
    ("fail_bad_code", "protocol error: malformed fail"),
    ("fail_then_ready", "giving up; protocol error: frame after fail (killed by signal KILL)"),
]


@pytest.mark.parametrize("mode,reason", SETUP_FAULTS, ids=[m for m, _ in SETUP_FAULTS])
def test_setup_and_fail_faults_fail_the_start_with_a_reason(start_supervisor, wsdir, mode, reason):
    sup = start_supervisor(worker=FAKE, env={"CRUSH_REAL_WORKER": str(crush.WORKER)})
    msg = json_error(sup.api.create_raw(wsdir, new_client_id(), env=[f"FAKE_WORKER_MODE={mode}"]), 500)
    assert msg.startswith("worker failed to start: ") and reason in msg, msg
    wait_until(lambda: not sup.workers(), what="the fake is gone")
    assert sup.zombies() == []
    # The directory is not poisoned: a real worker starts there next.
    assert sup.api.create(wsdir, new_client_id())["state"] == "ready"


def test_a_workers_fail_reason_is_bounded_and_cleaned(start_supervisor, wsdir):
    sup = start_supervisor(worker=FAKE, env={"CRUSH_REAL_WORKER": str(crush.WORKER)})
    msg = json_error(sup.api.create_raw(wsdir, new_client_id(), env=["FAKE_WORKER_MODE=fail_noisy"]), 503)
    assert msg.startswith("worker failed to start: line one line two [31m \u00e9\u00e9"), msg
    assert msg.endswith("\u00e9 (exited with status 1)"), msg
    assert not any(ord(c) < 0x20 or c == "\x7f" for c in msg), repr(msg)
    assert len(msg.encode()) <= len("worker failed to start: ") + 255, len(msg.encode())
    assert any("code=inotify_instances" in ln for ln in log_lines(sup, "Worker failed"))
