"""
Worker processes as the OS sees them (SPEC §2 invariants 1, 3, 4; §3
signals; §6): process groups, inherited descriptors, reaping, no two
workers for one directory, graceful and ungraceful supervisor death.
"""

import os
import signal
import threading
import time

import pytest

from crush import (WAIT, Race, alive, all_pids, is_worker_cmdline, new_client_id, open_fds, pid_exists,
                   pid_live, proc_cmdline, proc_environ, proc_stat, ready_with, run_apart, unix_socket_inodes,
                   wait_until)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_stop_signal_ends_streams_reaps_workers_removes_socket_exits_0(start_supervisor, make_dir, sig):
    sup = start_supervisor()
    workspaces, streams = [], []
    for name in ("one", "two"):
        cid = new_client_id()
        ws = sup.api.create(make_dir(name), cid)
        workspaces.append(ws)
        streams.append(sup.api.events(ws["id"], cid))
    sup.signal(sig)
    for s in streams:
        assert s.wait_eof(), "event stream not ended by the graceful stop"
    sup.assert_exit_0()
    assert not os.path.exists(sup.sock), "socket file left behind"
    for ws in workspaces:
        assert not pid_live(ws["pid"]), f"worker {ws['pid']} survived the supervisor"


def test_stop_kills_a_worker_that_ignores_sigterm_after_the_kill_timeout(start_supervisor, wsdir):
    sup = start_supervisor(kill_timeout=0.5)
    ws = sup.api.create(wsdir)
    os.kill(ws["pid"], signal.SIGSTOP)  # a stopped worker cannot act on SIGTERM
    t0 = time.monotonic()
    sup.signal(signal.SIGTERM)
    sup.assert_exit_0()
    assert time.monotonic() - t0 >= 0.4, "exited before the kill timeout: was the worker waited for?"
    assert not pid_live(ws["pid"])


def test_teardown_kills_a_worker_that_ignores_sigterm_after_the_kill_timeout(start_supervisor, wsdir):
    sup = start_supervisor(kill_timeout=0.5)
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    os.kill(ws["pid"], signal.SIGSTOP)
    sup.api.release(ws["id"], cid)
    wait_until(lambda: not pid_exists(ws["pid"]), what="stopped worker SIGKILLed and reaped")
    assert sup.zombies() == []
    # The directory is free again: a new workspace gets a new worker.
    again = sup.api.create(wsdir)
    assert again["id"] != ws["id"] and pid_live(again["pid"])


def test_sigkill_of_the_supervisor_kills_its_workers(start_supervisor, make_dir):
    sup = start_supervisor()
    pids = [sup.api.create(make_dir(n))["pid"] for n in ("one", "two")]
    sup.signal(signal.SIGKILL)
    sup.wait_exit()
    for pid in pids:
        wait_until(lambda: not pid_live(pid), what=f"orphaned worker {pid} died")


def test_worker_runs_in_its_own_process_group_and_session(sup, wsdir):
    pid = sup.api.create(wsdir)["pid"]
    state, ppid, pgrp, session, comm = proc_stat(pid)
    assert ppid == sup.pid
    assert pgrp == pid, f"worker pgrp {pgrp} != its pid {pid}"
    assert session == pid, f"worker session {session} != its pid {pid} (setsid)"


def test_worker_command_line_and_cwd_are_the_resolved_directory(sup, make_dir, tmp_path):
    """SPEC §6: `ps` shows `crush-worker <id> <resolved key>`, never the
    path as the client wrote it (here through a symlink), and the worker
    runs in that directory."""
    real = make_dir("real")
    link = tmp_path / "link"
    os.symlink(real, link)
    ws = sup.api.create(str(link) + "/")
    args = proc_cmdline(ws["pid"])
    assert args[1:3] == [ws["id"], real], args
    assert ws["resolved_path"] == real
    assert os.readlink(f"/proc/{ws['pid']}/cwd") == real


def test_worker_environment_is_exactly_the_supervisors(sup, wsdir):
    """Invariant 8: whatever a client sends, the worker's environment is
    the supervisor's, entry for entry."""
    ws = sup.api.create(wsdir, env=["PATH=/evil", "LD_AUDIT=/tmp/x.so", "HOME=/nowhere"])
    assert sorted(proc_environ(ws["pid"])) == sorted(proc_environ(sup.pid))


def _inherited_fd_problems(wpid, sup):
    """What the worker holds beyond stdio and its own socketpair end."""
    fds = open_fds(wpid)
    problems = []
    if fds.get(0) != "/dev/null":
        problems.append(f"stdin is {fds.get(0)!r}, not /dev/null")
    sockets = {fd: t for fd, t in fds.items() if t.startswith("socket:")}
    if len(sockets) != 1:
        problems.append(f"{len(sockets)} sockets (want exactly its socketpair end): {sockets}")
    listeners = unix_socket_inodes(sup.sock)
    for fd, t in sockets.items():
        if t[len("socket:["):-1] in listeners:
            problems.append(f"fd {fd} is the supervisor's listening socket")
    sup_targets = {t for fd, t in open_fds(sup.pid).items() if fd > 2 and not t.startswith("anon_inode:")}
    for fd, t in sorted(fds.items()):
        if fd > 2 and not t.startswith(("socket:", "anon_inode:")) and t in sup_targets:
            problems.append(f"fd {fd} -> {t} is shared with the supervisor (inherited)")
    return fds, sockets, problems


def test_worker_holds_only_stdio_and_its_own_socketpair(sup, make_dir):
    cid = new_client_id()
    one = sup.api.create(make_dir("one"), cid)
    # A live client connection and another worker's pair exist while the
    # second worker is forked: neither may leak into it.
    stream = sup.api.events(one["id"], cid)
    two = sup.api.create(make_dir("two"))
    socks = []
    for ws in (one, two):
        fds, sockets, problems = _inherited_fd_problems(ws["pid"], sup)
        assert problems == [], f"worker {ws['pid']} fds {fds}: {problems}"
        socks.append(next(iter(sockets.values())))
    assert socks[0] != socks[1], "two workers share one socket"
    stream.close()


def test_no_zombies_after_create_release_churn(sup, make_dir):
    pids = []
    for i in range(20):
        cid = new_client_id()
        ws = sup.api.create(make_dir(f"churn{i}"), cid)
        assert pid_live(ws["pid"])
        pids.append(ws["pid"])
        sup.api.release(ws["id"], cid)
    # Gone from /proc means reaped. (A worker between exit and zombie
    # has no cmdline and is not yet 'Z', so "no workers and no zombies"
    # alone can hold before the reap.)
    wait_until(lambda: not any(pid_exists(p) for p in pids), what="every churned worker reaped")
    assert sup.workers() == []
    assert sup.zombies() == []
    assert sup.api.list() == []
    assert sup.api.health().status == 200


class WorkerSampler(threading.Thread):
    """Scans /proc continuously for live workers of one directory (children
    of the supervisor: a sanitizer's helper task shares its worker's
    cmdline but not its parent) and records every instant at which two
    were alive together."""

    def __init__(self, path, ppid):
        super().__init__(daemon=True)
        self.path = path
        self.ppid = ppid
        self.stop = threading.Event()
        self.samples = 0
        self.max_seen = 0
        self.violations = []

    def run(self):
        while not self.stop.is_set():
            seen = []
            for pid in all_pids():
                args = proc_cmdline(pid)
                if not (is_worker_cmdline(args) and self.path in args[1:]):
                    continue
                st = proc_stat(pid)
                if st and st[0] not in "ZX" and st[1] == self.ppid:
                    seen.append(pid)
            # Each pid was live when read; if the earlier ones are still
            # live now, all were live together when the last was read.
            if len(seen) >= 2 and all(pid_live(p) for p in seen[:-1]):
                self.violations.append(seen)
            self.max_seen = max(self.max_seen, len(seen))
            self.samples += 1

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join(WAIT)


def test_close_and_recreate_never_runs_two_workers_for_one_directory(sup, wsdir):
    ids = []
    with WorkerSampler(wsdir, sup.pid) as sampler:
        for _ in range(15):
            cid = new_client_id()
            ws = sup.api.create(wsdir, cid)
            ids.append(ws["id"])
            sup.api.release(ws["id"], cid)
        wait_until(lambda: sup.workers() == [], what="all workers gone")
    assert sampler.samples > 0
    assert sampler.violations == [], f"two live workers for {wsdir} at once: {sampler.violations[:5]}"
    assert len(set(ids)) == len(ids), "a create joined a closing workspace"
    assert sup.zombies() == []


def test_concurrent_release_and_create_never_run_two_workers_for_one_directory(sup, wsdir):
    """A create races the release of the directory's only claim: it either
    joins the workspace before the release (same workspace, kept by the new
    client) or comes after it and gets a new workspace, whose worker must
    not overlap the old one's. The create starts `delay` seconds before the
    release (after, when negative); the Race steers that delay around the
    point where either can win, and both must occur."""
    errors = []
    race = Race(early="replaced", late="joined", n=10, start=0.0, step=0.0005, lo=-0.1, hi=0.1)
    with WorkerSampler(wsdir, sup.pid) as sampler:
        cid = new_client_id()
        ws = sup.api.create(wsdir, cid)
        for delay in race:
            nxt = new_client_id()
            r = run_apart(lambda: sup.api.create_raw(wsdir, nxt),
                          lambda: sup.api.release(ws["id"], cid), delay, timeout=WAIT * 2)
            if r is None or r.status != 200:
                errors.append(r and r.describe())
                break
            old, ws, cid = ws, r.json(), nxt
            race.record("joined" if ws["id"] == old["id"] else "replaced")
            # Whichever won, the answer is a live workspace with a live worker.
            assert pid_live(ws["pid"]), ws
            wait_until(alive(sup, ws))
        sup.api.release(ws["id"], cid)
        wait_until(lambda: sup.workers() == [], what="all workers gone")
    assert errors == []
    assert sampler.violations == [], f"two live workers for {wsdir} at once: {sampler.violations[:5]}"
    race.assert_covered()


def test_killed_worker_is_reaped_and_the_supervisor_stays_healthy(sup, wsdir):
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    os.kill(ws["pid"], signal.SIGKILL)
    wait_until(lambda: not pid_exists(ws["pid"]), what="killed worker reaped")
    assert sup.api.health().status == 200
    assert sup.zombies() == []
    # Restarted or replaced, the directory ends up with one ready worker
    # (a join may answer while the workspace is still "restarting").
    again = sup.api.create(wsdir, new_client_id())

    w = wait_until(ready_with(sup, again["id"]), what="workspace ready again with a live worker")
    assert w["pid"] != ws["pid"]
    wait_until(lambda: [p.pid for p in sup.workers(path=wsdir)] == [w["pid"]],
               what="exactly one worker for the directory, the listed one")


def test_daemon_exits_cleanly_under_the_sanitizers(start_supervisor, make_dir):
    """A typical session (create, join, stream, events, release, a worker
    crash, stop) leaves no sanitizer report from the supervisor or its
    workers, and the exit status stays 0 (the ASan build exits 99 on a
    leak). Meaningful with CRUSH_BUILD=build/asan; passes trivially otherwise."""
    sup = start_supervisor()
    a, b = new_client_id(), new_client_id()
    one = sup.api.create(make_dir("one"), a)
    sup.api.create(make_dir("one"), b, yolo=True)
    s = sup.api.events(one["id"], a)
    with open(os.path.join(one["resolved_path"], "f.txt"), "w") as f:
        f.write("x")
    s.wait_for(lambda e: e.type == "fs")
    two = sup.api.create(make_dir("two"), a)
    os.kill(two["pid"], signal.SIGKILL)
    sup.api.release(one["id"], b)
    sup.api.request("POST", "/v1/workspaces", b"not json")
    s.close()
    wait_until(lambda: not pid_exists(two["pid"]))
    sup.signal(signal.SIGTERM)
    rc = sup.wait_exit()
    leaks = sup.leak_reports()
    assert not leaks, f"LeakSanitizer at exit (status {rc}):\n" + "\n".join(leaks)[-4000:]
    assert sup.sanitizer_errors() is None, sup.stderr()[-4000:]
    assert rc == 0, f"exit status {rc}"
