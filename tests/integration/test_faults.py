"""
Fault injection (README "Crashes and misbehaving workers", SPEC §2
invariants 1, 3, 5): every fault here is real — a worker killed with a
signal, a worker that exits, a crash loop, and workers that break the
protocol of proto/PROTOCOL.md (fake_worker.py, run via --worker; with no
FAKE_WORKER_MODE it execs the real crush-worker, so the other workspaces
of the same daemon are normal ones). For every fault: the bad worker is
gone (killed and reaped, not a zombie), a fault during start answers the
waiting creates 500 with a JSON message, a fault after ready is a crash
(restart in place, `failed` once it keeps crashing), and a bystander
workspace in the same daemon never notices.

The lifecycle endpoints' edge cases not covered by test_lifecycle.py
(retire, control) are at the end.
"""

import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from crush import (WAIT, WORKER, alive, is_fs, is_ws_event, new_client_id, pid_exists, pid_live,
                   ready_with, stays_true, wait_until)

FAKE = Path(__file__).resolve().with_name("fake_worker.py")


# --------------------------------------------------------------------------
# helpers


def write(path, text=""):
    with open(path, "w") as f:
        f.write(text)


def json_error(r, status):
    """Asserts an HTTP error with a JSON {"message"} body; returns the message."""
    assert r.status == status, f"expected {status}, got {r.describe()}"
    assert r.content_type.split(";")[0].strip() == "application/json", r.describe()
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"], body
    return body["message"]


def ws_kinds(stream):
    """The event types of the `workspace` events a stream got, in order."""
    return [e.kind for e in stream.events if is_ws_event(e)]


def numbered_ids(stream):
    return [e.id for e in stream.events if e.id is not None]


def assert_ids_increase(stream):
    ids = numbered_ids(stream)
    assert all(isinstance(i, int) for i in ids), f"non-integer ids: {ids}"
    assert all(a < b for a, b in zip(ids, ids[1:])), f"event ids not strictly increasing: {ids}"


def reaped(pid):
    """Predicate: the pid is gone from /proc (reaped, so not a zombie)."""
    check = lambda: not pid_exists(pid)  # noqa: E731
    check.__name__ = f"worker {pid} killed and reaped (gone from /proc, not a zombie)"
    return check


def reap_line(sup, pid):
    """The supervisor's `Worker reaped` log line for pid, or None."""
    for line in sup.stderr().splitlines():
        if 'msg="Worker reaped"' in line and re.search(rf"\bpid={pid}\b", line):
            return line
    return None


def wait_reaped(sup, pid, how):
    """The worker is gone, and the supervisor reaped it with status `how`
    ("killed by signal KILL" proves the supervisor killed it)."""
    wait_until(reaped(pid))
    line = wait_until(lambda: reap_line(sup, pid), what=f"'Worker reaped' logged for {pid}")
    assert how in line, f"worker {pid} reaped with an unexpected status: {line}"
    assert sup.zombies() == []


def restart_cycle(stream, after=0):
    """Waits for `restarting` then `restarted` (at index >= after);
    returns both events."""
    restarting = stream.wait_for(lambda e: is_ws_event(e, "restarting"), after=after,
                                 what="workspace restarting event")
    i = stream.events.index(restarting)
    restarted = stream.wait_for(lambda e: is_ws_event(e, "restarted"), after=i + 1,
                                what="workspace restarted event")
    return restarting, restarted


def fs_roundtrip(stream, d, name):
    """Creates a file and waits for its `created` event on the stream."""
    mark = len(stream.events)
    write(os.path.join(d, name))
    return stream.wait_for(lambda e: is_fs(e, "created", name), after=mark, what=f"fs created {name}")


class Bystander:
    """A normal workspace (real worker) with an open stream in the same
    daemon: check() proves it noticed nothing — its stream is open and
    still gets fs events, its worker is the same live process, and no
    workspace event (restarting, ...) reached it after `ready`."""

    def __init__(self, sup, d):
        self.sup, self.dir = sup, d
        self.cid = new_client_id()
        self.ws = sup.api.create(d, self.cid)
        assert self.ws["state"] == "ready", self.ws
        self.stream = sup.api.events(self.ws["id"], self.cid)
        self.n = 0
        self.check()

    def check(self):
        self.n += 1
        fs_roundtrip(self.stream, self.dir, f"bystander-{self.n}.txt")
        assert not self.stream.eof, "bystander stream ended"
        w = self.sup.api.workspace(self.ws["id"])
        assert w is not None, "bystander workspace vanished"
        assert w["state"] == "ready" and w["pid"] == self.ws["pid"], w
        assert pid_live(self.ws["pid"]), "bystander worker died"
        assert [p.pid for p in self.sup.workers(path=self.dir)] == [self.ws["pid"]]
        assert ws_kinds(self.stream) == [], f"bystander got workspace events: {ws_kinds(self.stream)}"
        assert_ids_increase(self.stream)


# --------------------------------------------------------------------------
# Real workers, killed or exiting


def test_sigkilled_worker_is_restarted_in_place_and_the_stream_carries_on(sup, wsdir):
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    stream = sup.api.events(ws["id"], cid)
    before = fs_roundtrip(stream, wsdir, "before.txt")

    os.kill(ws["pid"], signal.SIGKILL)
    restarting, restarted = restart_cycle(stream)
    assert restarting.payload["workspace_id"] == ws["id"]
    assert restarting.payload["pid"] == ws["pid"], restarting.payload
    reason = restarting.payload["reason"]
    assert "signal" in reason and "KILL" in reason, f"reason does not name the signal: {reason!r}"
    newpid = restarted.payload["pid"]
    assert restarted.payload["workspace_id"] == ws["id"]
    assert isinstance(newpid, int) and newpid != ws["pid"], restarted.payload

    w = wait_until(ready_with(sup, ws["id"], newpid), what="same workspace, ready, new pid")
    assert w["id"] == ws["id"] and w["streams"] == 1 and w["clients"] == 1, w
    assert [p.pid for p in sup.workers(path=wsdir)] == [newpid], "not exactly one worker, the new one"
    assert not pid_exists(ws["pid"]), "the killed worker was not reaped"
    assert sup.zombies() == []

    after = fs_roundtrip(stream, wsdir, "after.txt")
    assert not stream.eof
    assert before.id < restarting.id < restarted.id < after.id
    assert_ids_increase(stream)
    stream.close()


def test_a_restarting_workspace_does_not_claim_a_complete_watch(sup, wsdir):
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    stream = sup.api.events(ws["id"], cid)
    wait_until(lambda: sup.api.workspace(ws["id"])["watch"]["complete"], what="the first scan is complete")
    os.kill(ws["pid"], signal.SIGKILL)
    restarting = stream.wait_for(lambda ev: ev.type == "workspace" and ev.kind == "restarting",
                                 what="restarting")
    assert restarting.payload["pid"] == ws["pid"]
    # The restart waits 100 ms (its backoff): no worker watches meanwhile.
    w = sup.api.workspace(ws["id"])
    assert w["state"] == "restarting", w
    assert w["watch"]["complete"] is False and w["watch"]["reason"] == "worker restarting", w["watch"]
    stream.close()


def test_worker_exiting_on_its_own_is_a_crash_with_its_exit_status(sup, wsdir):
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    stream = sup.api.events(ws["id"], cid)
    os.kill(ws["pid"], signal.SIGTERM)  # the worker alone: it exits 0
    restarting, restarted = restart_cycle(stream)
    assert restarting.payload["reason"] == "exited with status 0", restarting.payload
    newpid = restarted.payload["pid"]
    assert newpid != ws["pid"]
    wait_until(ready_with(sup, ws["id"], newpid))
    assert [p.pid for p in sup.workers(path=wsdir)] == [newpid]
    fs_roundtrip(stream, wsdir, "after.txt")
    assert_ids_increase(stream)
    stream.close()


def test_crash_loop_fails_the_workspace_and_a_later_create_starts_clean(sup, wsdir, make_dir):
    by = Bystander(sup, make_dir("bystander"))
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    stream = sup.api.events(ws["id"], cid)
    pid, pids = ws["pid"], [ws["pid"]]
    for i in range(4):
        mark = len(stream.events)
        os.kill(pid, signal.SIGKILL)
        _, restarted = restart_cycle(stream, after=mark)
        pid = restarted.payload["pid"]
        pids.append(pid)
        wait_until(ready_with(sup, ws["id"], pid), what=f"ready after restart {i + 1}")
    os.kill(pid, signal.SIGKILL)  # the fifth crash within 30 s
    failed = stream.wait_for(lambda e: is_ws_event(e, "failed"), what="workspace failed event")
    assert failed.payload["workspace_id"] == ws["id"]
    assert "KILL" in failed.payload["reason"], failed.payload
    assert stream.wait_eof(), "stream not ended after `failed`"
    assert ws_kinds(stream) == ["restarting", "restarted"] * 4 + ["failed"], ws_kinds(stream)
    assert_ids_increase(stream)

    wait_until(lambda: sup.api.workspace(ws["id"]) is None, what="failed workspace gone (404)")
    for p in pids:
        wait_until(reaped(p))
    assert sup.workers(path=wsdir) == [], "a worker is left for the failed directory"
    assert sup.zombies() == []
    assert sup.api.request("GET", f"/v1/workspaces/{ws['id']}/events?client_id={cid}").status == 404

    again = sup.api.create(wsdir, cid)
    assert again["id"] != ws["id"] and again["state"] == "ready", again
    assert again["pid"] not in pids and pid_live(again["pid"])
    s2 = sup.api.events(again["id"], cid)
    fs_roundtrip(s2, wsdir, "fresh.txt")
    assert ws_kinds(s2) == [], "the fresh workspace inherited the failed one's events"
    by.check()
    s2.close()


def test_restart_backoff_join_answers_at_once_and_release_cancels_the_restart(sup, wsdir):
    """During a restart's backoff (800 ms after the fourth crash) a join
    is answered at once as `restarting`; if every claim then goes, the
    workspace is torn down and no worker is started for it any more."""
    a, b = new_client_id(), new_client_id()
    ws = sup.api.create(wsdir, a)
    stream = sup.api.events(ws["id"], a)
    pid = ws["pid"]
    for _ in range(3):  # backoffs 100, 200, 400 ms
        mark = len(stream.events)
        os.kill(pid, signal.SIGKILL)
        _, restarted = restart_cycle(stream, after=mark)
        pid = restarted.payload["pid"]
        wait_until(ready_with(sup, ws["id"], pid))
    mark = len(stream.events)
    os.kill(pid, signal.SIGKILL)  # the fourth: 800 ms before the next start
    stream.wait_for(lambda e: is_ws_event(e, "restarting"), after=mark)
    t0 = time.monotonic()
    joined = sup.api.create(wsdir, b)
    assert time.monotonic() - t0 < 0.6, "the join waited for the restart"
    assert joined["id"] == ws["id"] and joined["state"] == "restarting", joined
    stream.close()
    sup.api.release(ws["id"], a)
    sup.api.release(ws["id"], b)
    assert time.monotonic() - t0 < 0.7, "too slow to land inside the backoff; test void"
    wait_until(lambda: sup.api.workspace(ws["id"]) is None, what="torn down during the backoff")
    stays_true(lambda: sup.workers(path=wsdir) == [] and sup.api.list() == [], 1.2,
               what="no worker started after the teardown")
    wait_until(reaped(pid))
    assert sup.zombies() == []


# --------------------------------------------------------------------------
# Protocol-breaking workers (fake_worker.py)


class Fake:
    """The create-request env of one fake worker, and what it logged."""

    def __init__(self, tmp_path, mode, once=False, trigger=False, armed=False):
        self.log = tmp_path / f"fake-{mode}.log"
        self.once = tmp_path / f"fake-{mode}.once"
        self.trigger = tmp_path / f"fake-{mode}.trigger"
        self.armed = tmp_path / f"fake-{mode}.armed"
        self.env = [f"FAKE_WORKER_MODE={mode}", f"FAKE_WORKER_LOG={self.log}"]
        if once:
            self.env.append(f"FAKE_WORKER_ONCE={self.once}")
        if trigger:
            self.env.append(f"FAKE_WORKER_TRIGGER={self.trigger}")
        if armed:
            self.env.append(f"FAKE_WORKER_ARMED={self.armed}")

    def arm(self):
        self.armed.touch()

    def starts(self):
        """[(pid, mode)] of every start, "real" for an exec of the real worker."""
        try:
            text = self.log.read_text()
        except FileNotFoundError:
            return []
        return [(int(p), m) for p, m in (ln.split() for ln in text.splitlines())]

    def fire(self):
        self.trigger.touch()


START_FAULTS = [
    # mode, what the 500's message and the reap must say
    ("garbage", "protocol error", "killed by signal KILL"),
    ("oversize", "frame too large", "killed by signal KILL"),
    ("bad_header_version", "bad protocol version", "killed by signal KILL"),
    ("hello_version", "unsupported version", "killed by signal KILL"),
    ("not_hello", "first frame is not hello", "killed by signal KILL"),
    ("newline", "newline in payload", "killed by signal KILL"),
    ("exit_before_ready", "exited with status 3", "exited with status 3"),
]


@pytest.mark.parametrize("mode,reason,how", START_FAULTS, ids=[m for m, _, _ in START_FAULTS])
def test_worker_fault_during_start_gives_500_and_kills_it(fake_sup, make_dir, tmp_path, mode, reason, how):
    sup = fake_sup()
    by = Bystander(sup, make_dir("bystander"))
    d = make_dir("bad")
    fake = Fake(tmp_path, mode)
    r = sup.api.create_raw(d, new_client_id(), env=fake.env)
    msg = json_error(r, 500)
    assert msg.startswith("worker failed to start: "), msg
    assert reason in msg, f"{reason!r} not in {msg!r}"
    starts = fake.starts()
    assert [m for _, m in starts] == [mode], starts
    wait_reaped(sup, starts[0][0], how)
    assert sup.api.ids() == {by.ws["id"]}, "the failed workspace was left behind"
    by.check()
    # Nothing of it is left: the directory starts clean with a good worker.
    again = sup.api.create(d, new_client_id())
    assert again["state"] == "ready" and pid_live(again["pid"]) and again["pid"] != starts[0][0]
    assert [p.pid for p in sup.workers(path=d)] == [again["pid"]]
    assert sup.running()


def test_worker_never_ready_fails_every_waiting_create_after_10s(fake_sup, make_dir, tmp_path):
    """The one test that waits out the fixed 10 s start timeout; meanwhile
    the daemon keeps serving everything else."""
    sup = fake_sup()
    by = Bystander(sup, make_dir("bystander"))
    d = make_dir("bad")
    fake = Fake(tmp_path, "never_ready")
    results = {}

    def create(key):
        body = {"path": d, "client_id": new_client_id(), "env": fake.env}
        results[key] = sup.api.request("POST", "/v1/workspaces", body, timeout=WAIT + 15)

    t0 = time.monotonic()
    threads = [threading.Thread(target=create, args=(k,)) for k in ("first", "joiner")]
    threads[0].start()
    wait_until(lambda: fake.starts(), what="fake worker started")
    listed = wait_until(lambda: [w for w in sup.api.list() if w["resolved_path"] == d])
    assert listed[0]["state"] == "starting", listed
    threads[1].start()  # joins the starting workspace and waits with it
    # The daemon is not blocked by a worker that never gets ready.
    other = sup.api.create(make_dir("other"), new_client_id())
    assert other["state"] == "ready"
    by.check()
    assert sup.api.health().status == 200
    assert "first" not in results and "joiner" not in results
    for t in threads:
        t.join(WAIT + 20)
    elapsed = time.monotonic() - t0
    for key in ("first", "joiner"):
        msg = json_error(results[key], 500)
        assert msg.startswith("worker failed to start: ") and "not ready within 10 s" in msg, msg
    assert elapsed >= 9.5, f"answered after {elapsed:.1f}s; the start timeout is 10 s"
    [(pid, _)] = fake.starts()
    wait_reaped(sup, pid, "killed by signal KILL")
    assert not [w for w in sup.api.list() if w["resolved_path"] == d]
    by.check()


READY_FAULTS = [
    # mode, the kill reason the `restarting` event must carry
    ("bad_event", "protocol error: malformed event"),
    ("stray_response", "protocol error: response to no request"),
    ("ignore_pings", "protocol error: unanswered request"),
    ("request_to_supervisor", "protocol error: unexpected frame type"),
]


@pytest.mark.parametrize("mode,reason", READY_FAULTS, ids=[m for m, _ in READY_FAULTS])
def test_worker_fault_after_ready_is_a_crash_restarted_in_place(fake_sup, make_dir, tmp_path, mode, reason):
    sup = fake_sup(env={"CRUSH_SERVER_PING_INTERVAL": "0.3"})
    by = Bystander(sup, make_dir("bystander"))
    d = make_dir("bad")
    fake = Fake(tmp_path, mode, once=True, trigger=True)  # one bad start, then the real worker
    cid = new_client_id()
    ws = sup.api.create(d, cid, env=fake.env)
    assert ws["state"] == "ready", ws
    badpid = ws["pid"]
    stream = sup.api.events(ws["id"], cid)
    # Until triggered the fake behaves (and answers pings).
    stays_true(ready_with(sup, ws["id"], badpid), 0.4, what="fake worker accepted while it behaves")

    fake.fire()
    restarting, restarted = restart_cycle(stream)
    assert restarting.payload["pid"] == badpid
    assert reason in restarting.payload["reason"], restarting.payload
    assert "killed by signal KILL" in restarting.payload["reason"], restarting.payload
    wait_reaped(sup, badpid, "killed by signal KILL")
    newpid = restarted.payload["pid"]
    assert [m for _, m in fake.starts()] == [mode, "real"], fake.starts()
    assert fake.starts()[1][0] == newpid
    wait_until(ready_with(sup, ws["id"], newpid), what="same workspace ready with the real worker")
    assert [p.pid for p in sup.workers(path=d)] == [newpid]
    fs_roundtrip(stream, d, "after.txt")
    assert not stream.eof
    assert_ids_increase(stream)
    by.check()
    stream.close()


def test_worker_that_keeps_breaking_the_protocol_fails_the_workspace(fake_sup, make_dir, tmp_path):
    sup = fake_sup()
    by = Bystander(sup, make_dir("bystander"))
    d = make_dir("bad")
    fake = Fake(tmp_path, "bad_event", trigger=True)  # every incarnation, once triggered
    cid = new_client_id()
    ws = sup.api.create(d, cid, env=fake.env)
    stream = sup.api.events(ws["id"], cid)
    fake.fire()
    failed = stream.wait_for(lambda e: is_ws_event(e, "failed"), timeout=WAIT + 10,
                             what="workspace failed event")
    assert "crash loop" in failed.payload["reason"] and "malformed event" in failed.payload["reason"], \
        failed.payload
    assert stream.wait_eof(), "stream not ended after `failed`"
    assert ws_kinds(stream) == ["restarting", "restarted"] * 4 + ["failed"], ws_kinds(stream)
    assert_ids_increase(stream)
    wait_until(lambda: sup.api.workspace(ws["id"]) is None, what="failed workspace gone (404)")
    starts = fake.starts()
    assert [m for _, m in starts] == ["bad_event"] * 5, starts
    for pid, _ in starts:
        wait_reaped(sup, pid, "killed by signal KILL")
    by.check()
    # A later create (a good worker this time) starts afresh.
    again = sup.api.create(d, cid)
    assert again["id"] != ws["id"] and again["state"] == "ready"
    assert [p.pid for p in sup.workers(path=d)] == [again["pid"]]


def test_restarts_that_fail_to_start_end_in_failed_without_restarted(fake_sup, make_dir, tmp_path):
    """A workspace whose worker crashes and whose every replacement dies
    before ready: `restarting` per attempt, never `restarted`, then
    `failed`; no process is left."""
    sup = fake_sup()
    by = Bystander(sup, make_dir("bystander"))
    d = make_dir("bad")
    fake = Fake(tmp_path, "exit_before_ready", armed=True)  # good until armed
    cid = new_client_id()
    ws = sup.api.create(d, cid, env=fake.env)
    stream = sup.api.events(ws["id"], cid)
    fs_roundtrip(stream, d, "before.txt")  # a real worker so far
    fake.arm()
    os.kill(ws["pid"], signal.SIGKILL)
    failed = stream.wait_for(lambda e: is_ws_event(e, "failed"), timeout=WAIT + 10,
                             what="workspace failed event")
    assert stream.wait_eof()
    assert ws_kinds(stream) == ["restarting"] * 4 + ["failed"], ws_kinds(stream)
    reasons = [e.payload["reason"] for e in stream.events if is_ws_event(e)]
    assert "KILL" in reasons[0], reasons
    assert all("exited with status 3" in r for r in reasons[1:]), reasons
    assert_ids_increase(stream)
    starts = fake.starts()
    assert [m for _, m in starts] == ["real"] + ["exit_before_ready"] * 4, starts
    for pid, _ in starts:
        wait_until(reaped(pid))
    wait_until(lambda: sup.api.workspace(ws["id"]) is None)
    assert sup.zombies() == []
    by.check()


def test_hung_worker_is_killed_for_an_unanswered_ping_and_restarted(start_supervisor, wsdir, make_dir):
    """A real worker that stops responding (SIGSTOP) is a protocol fault:
    its ping goes unanswered, it is SIGKILLed and restarted in place."""
    sup = start_supervisor(env={"CRUSH_SERVER_PING_INTERVAL": "0.3"})
    by = Bystander(sup, make_dir("bystander"))
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    stream = sup.api.events(ws["id"], cid)
    stays_true(ready_with(sup, ws["id"], ws["pid"]), 0.7, what="a responsive worker survives the pings")
    os.kill(ws["pid"], signal.SIGSTOP)
    restarting, restarted = restart_cycle(stream)
    assert "unanswered request" in restarting.payload["reason"], restarting.payload
    assert "killed by signal KILL" in restarting.payload["reason"], restarting.payload
    wait_reaped(sup, ws["pid"], "killed by signal KILL")
    newpid = restarted.payload["pid"]
    wait_until(ready_with(sup, ws["id"], newpid))
    assert [p.pid for p in sup.workers(path=wsdir)] == [newpid]
    fs_roundtrip(stream, wsdir, "after.txt")
    assert_ids_increase(stream)
    by.check()
    stream.close()


# --------------------------------------------------------------------------
# Lifecycle endpoints: what test_lifecycle.py / test_errors.py do not cover


def test_retire_is_idempotent(sup, wsdir):
    a = new_client_id()
    ws = sup.api.create(wsdir, a)
    stream = sup.api.events(ws["id"], a)
    for _ in range(3):
        r = sup.api.request("DELETE", f"/v1/clients/{a}")
        assert r.status == 200, r.describe()
    assert stream.wait_eof()
    wait_until(lambda: sup.api.workspace(ws["id"]) is None)
    wait_until(reaped(ws["pid"]))
    # A client that never did anything can be retired too, repeatedly.
    stranger = new_client_id()
    for _ in range(2):
        assert sup.api.request("DELETE", f"/v1/clients/{stranger}").status == 200
    assert sup.api.health().status == 200


def test_retired_client_gets_409_on_create_and_on_attach(sup, wsdir):
    a, b = new_client_id(), new_client_id()
    ws = sup.api.create(wsdir, b)
    assert sup.api.request("DELETE", f"/v1/clients/{a}").status == 200
    json_error(sup.api.create_raw(wsdir, a), 409)
    json_error(sup.api.request("GET", f"/v1/workspaces/{ws['id']}/events?client_id={a}"), 409)
    w = sup.api.workspace(ws["id"])
    assert (w["clients"], w["streams"], w["pid"]) == (1, 0, ws["pid"]), w
    # Retirement is by id: the other client is unaffected.
    s = sup.api.events(ws["id"], b)
    assert s.pump(0.05)
    s.close()


def test_retire_with_a_bad_id_is_400(sup):
    for bad in ("not-a-uuid", "12345678-1234-4234-8234-123456789abcd", "12345678123442348234123456789abc-",
                "zzzzzzzz-1234-4234-8234-123456789abc"):
        json_error(sup.api.request("DELETE", f"/v1/clients/{bad}"), 400)
    assert sup.api.health().status == 200


def test_shutdown_command_is_conditional_too(sup, wsdir):
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    json_error(sup.api.request("POST", "/v1/control", {"command": "shutdown"}), 409)
    assert sup.running() and pid_live(ws["pid"])
    sup.api.release(ws["id"], cid)
    wait_until(lambda: sup.api.list() == [])
    wait_until(reaped(ws["pid"]))
    r = sup.api.request("POST", "/v1/control", {"command": "shutdown"})
    assert r.status == 200, r.describe()
    sup.assert_exit_0()
    assert not os.path.exists(sup.sock)


def test_control_is_409_while_only_a_stream_holds_a_workspace(sup, wsdir):
    a, b = new_client_id(), new_client_id()
    ws = sup.api.create(wsdir, a)
    s = sup.api.events(ws["id"], b)
    sup.api.release(ws["id"], a)
    wait_until(alive(sup, ws, clients=1))
    for cmd in ("shutdown_if_idle", "shutdown"):
        json_error(sup.api.request("POST", "/v1/control", {"command": cmd}), 409)
    assert s.pump(0.05), "a refused control ended a stream"
    s.close()


def test_shutdown_if_idle_after_activity_exits_0_with_every_worker_reaped(start_supervisor, make_dir):
    sup = start_supervisor(detach_grace=0)
    pids = []
    for name in ("one", "two"):
        cid = new_client_id()
        ws = sup.api.create(make_dir(name), cid)
        s = sup.api.events(ws["id"], cid)
        s.close()
        pids.append(ws["pid"])
    wait_until(lambda: sup.api.list() == [])
    r = sup.api.request("POST", "/v1/control", {"command": "shutdown_if_idle"})
    assert r.status == 200, r.describe()
    sup.assert_exit_0()
    assert not os.path.exists(sup.sock)
    for p in pids:
        assert not pid_exists(p)


def test_control_with_a_bad_body_or_an_unknown_command_is_400_and_keeps_running(sup):
    """Even on an idle daemon, where a good command would stop it."""
    bodies = [b"not json", b"", b"[]", b'"shutdown"', b'{"cmd":"shutdown"}', b'{"command":7}',
              b'{"command":null}', b'{"command":["shutdown"]}']
    for body in bodies:
        r = sup.api.request("POST", "/v1/control", body, {"Content-Type": "application/json"})
        json_error(r, 400)
    for cmd in ("SHUTDOWN", "shutdown_now", "", "restart", "shutdown_if_idle "):
        json_error(sup.api.request("POST", "/v1/control", {"command": cmd}), 400)
    stays_true(sup.running, 0.2, what="daemon still running after refused commands")
    assert sup.api.health().status == 200
