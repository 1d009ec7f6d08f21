"""
Shell runs (SPEC §8 Shell, issue 12): POST /agent/sessions/{sid}/shell
through the supervisor to the real worker. Output, exit code, env and
working directory as upstream answers them; the cap, the timeout, the
cancels (client gone, POST .../cancel), the kill at teardown (nothing left
for pgrep), the stream every client sees, the record in the session, and
the limit of 16 concurrent runs.
"""

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid

import crush
from crush import StreamDrainer, new_client_id, open_events, wait_until


class Ws:
    def __init__(self, sup, path, **fields):
        self.sup = sup
        self.path = path
        self.client = new_client_id()
        self.id = sup.api.create(path, self.client, data_dir=os.path.join(path, ".crush"), **fields)["id"]
        self.base = f"/v1/workspaces/{self.id}"
        r = sup.api.request("POST", self.base + "/sessions", {"title": "shell"})
        assert r.status == 200, r.describe()
        self.sid = r.json()["id"]

    def shell(self, command, timeout=crush.WAIT, **extra):
        body = {"command": command, "term_width": 80, **extra}
        return self.sup.api.request("POST", f"{self.base}/agent/sessions/{self.sid}/shell?client_id={self.client}",
                                    body, timeout=timeout)

    def run(self, command, **extra):
        r = self.shell(command, **extra)
        assert r.status == 200, r.describe()
        return r.json()

    def watch(self):
        return StreamDrainer(open_events(self.sup.api, self.id, new_client_id()))


def marker():
    """A unique sleep duration: a pgrep pattern no other process matches."""
    return "1%d.%06d" % (os.getpid() % 89 + 10, uuid.uuid4().int % 1000000)


def pgrep(pattern):
    """The pids whose command line matches. pgrep exits 1 for no match; 2
    or more is its own failure (bad pattern, no /proc), never "none left"."""
    r = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    if r.returncode >= 2 or r.returncode < 0:
        raise RuntimeError(f"pgrep -f {pattern!r} failed (exit {r.returncode}): {r.stderr.strip()}")
    return [int(p) for p in r.stdout.split()]


def shell_event(kind, run_id=None):
    def pred(ev):
        if ev.type != "shell" or not isinstance(ev.payload, dict) or ev.kind != kind:
            return False
        return run_id is None or ev.payload.get("run_id") == run_id
    return pred


def test_output_exit_code_and_stderr_as_upstream_joins_them(sup, wsdir):
    ws = Ws(sup, wsdir)
    r = ws.run("echo out; echo err >&2; exit 3")
    assert r["output"] == "out\n\nerr\n" and r["exit_code"] == 3
    assert r["truncated"] is False and r["timed_out"] is False
    r = ws.run("true")
    assert r["output"] == "" and r["exit_code"] == 0 and crush.UUID_RE.match(r["run_id"])


def test_env_is_ours_plus_the_creators_and_cwd_is_the_workspace(sup, make_dir):
    path = make_dir("envws")
    ws = Ws(sup, path, env=["CRUSH_SHELL_T=from-creator", "PATH=" + os.environ.get("PATH", "/usr/bin:/bin")])
    out = ws.run('printf "%s|%s|%s|%s" "$CRUSH_SHELL_T" "$(pwd)" "$PAGER" "$HOME"')["output"]
    creator, cwd, pager, home = out.split("|")
    assert creator == "from-creator"
    assert cwd == path
    assert pager == "cat"  # upstream forces the non-interactive set
    assert home == os.environ.get("HOME", "")  # the worker's own environment
    # stdin is /dev/null: a reader gets EOF at once.
    assert ws.run("cat; echo done")["output"] == "done\n"
    # Its own session and process group, not the worker's.
    sid, pgid = ws.run("ps -o sid=,pgid= -p $$")["output"].split()
    assert sid == pgid and int(pgid) not in {w.pid for w in sup.workers()}


def test_output_is_capped_and_the_answer_says_so(sup, wsdir):
    ws = Ws(sup, wsdir)
    r = ws.run("head -c 3000000 /dev/zero | tr '\\0' a; echo tail >&2", timeout=60)
    assert r["truncated"] is True
    assert r["output"].startswith("a" * 1000)
    assert len(r["output"]) <= (1 << 20) + 200
    assert "output truncated" in r["output"].splitlines()[-1]


def test_a_command_too_long_for_exec_is_400_not_a_silent_127(sup, wsdir):
    """/bin/sh -c takes the command as one argv string, which Linux caps
    at 128 KiB: a longer one used to start, fail in exec (E2BIG) and come
    back as exit 127 with no word why, its whole text in the events."""
    ws = Ws(sup, wsdir)
    r = ws.shell("true #" + "x" * (128 << 10))
    assert r.status == 400 and r.json()["message"] == "command too long: at most 131071 bytes", r.describe()
    assert ws.run("true #" + "x" * ((128 << 10) - 8))["exit_code"] == 0


def test_a_run_past_its_timeout_is_killed(sup, wsdir):
    ws = Ws(sup, wsdir)
    m = marker()
    t0 = time.monotonic()
    r = ws.run(f"echo started; sleep {m}", timeout_ms=300)
    assert time.monotonic() - t0 < 5
    assert r["timed_out"] is True and r["output"] == "started\n" and r["exit_code"] == 128 + 15
    wait_until(lambda: not pgrep(f"sleep {m}"), what="the timed-out command is gone")


def test_a_client_that_goes_away_cancels_its_run(sup, wsdir):
    ws = Ws(sup, wsdir)
    m = marker()
    with ws.watch() as other:
        body = json.dumps({"command": f"sleep {m}"}).encode()
        req = (f"POST {ws.base}/agent/sessions/{ws.sid}/shell HTTP/1.1\r\nHost: localhost\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        s = sup.api.endpoint.connect()
        s.sendall(req)
        other.wait_for(shell_event("started"), what="run started")
        wait_until(lambda: pgrep(f"sleep {m}"), what="the command runs")
        s.close()
        fin = other.wait_for(shell_event("finished"), what="run finished after the client left")
        assert fin.payload["cancelled"] is True
    wait_until(lambda: not pgrep(f"sleep {m}"), what="the command is gone")
    assert not sup.zombies()


def test_cancel_route_stops_the_sessions_runs(sup, wsdir):
    ws = Ws(sup, wsdir)
    m = marker()
    result = {}
    t = threading.Thread(target=lambda: result.update(r=ws.shell(f"echo before; sleep {m}")))
    t.start()
    wait_until(lambda: pgrep(f"sleep {m}"), what="the command runs")
    r = sup.api.request("POST", f"{ws.base}/agent/sessions/{ws.sid}/cancel")
    assert r.status == 200, r.describe()
    t.join(crush.WAIT)
    assert result["r"].status == 200, result["r"].describe()
    assert result["r"].json()["output"] == "before\n"
    assert not pgrep(f"sleep {m}")


def test_teardown_kills_every_run_and_its_children(sup, wsdir):
    ws = Ws(sup, wsdir)
    m1, m2 = marker(), marker()
    threads = [threading.Thread(target=ws.shell, args=(f"sleep {m1} & sleep {m2}; wait",), daemon=True)]
    for t in threads:
        t.start()
    wait_until(lambda: pgrep(f"sleep {m1}") and pgrep(f"sleep {m2}"), what="both commands run")
    sup.api.release(ws.id, ws.client)
    wait_until(lambda: not sup.workers(), what="the worker is gone")
    wait_until(lambda: not pgrep(f"sleep {m1}") and not pgrep(f"sleep {m2}"), what="no command left")
    assert not sup.zombies()


def parent_of(pid):
    """pid's parent (None once it is reaped)."""
    st = crush.proc_stat(pid)
    return st[1] if st else None


def leave_group(ws, wsdir, *marks):
    """One run that starts `sleep MARK` for each mark in a session of its
    own (setsid), out of the run's group, and waits (bounded) until each
    has left before it ends: the run's end kills what is still in it."""
    starts, waits = [], []
    for i, m in enumerate(marks):
        left = os.path.join(wsdir, f"left{i}")
        starts.append(f"setsid sh -c 'echo > {left}; exec sleep {m}' </dev/null >/dev/null 2>&1 &")
        waits.append(f"[ ! -e {left} ]")
    command = (" ".join(starts) + f" i=0; while {{ {' || '.join(waits)}; }} && [ $i -lt 1000 ]; do "
               "sleep 0.01; i=$((i+1)); done")
    assert ws.run(command)["exit_code"] == 0


def kill_quietly(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_a_killed_workers_background_jobs_do_not_outlive_it(sup, wsdir):
    ws = Ws(sup, wsdir)
    m = marker()
    threading.Thread(target=ws.shell, args=(f"sleep {m} & wait",), daemon=True).start()
    pids = wait_until(lambda: pgrep(f"sleep {m}"), what="the background job runs")
    try:
        # Its shell dies with the worker (a parent-death signal); the job
        # it left comes to the supervisor, which kills it.
        os.kill(sup.api.workspace(ws.id)["pid"], signal.SIGKILL)
        wait_until(lambda: not pgrep(f"sleep {m}"), what="the background job is gone")
    finally:
        kill_quietly(pids)
    wait_until(lambda: not sup.zombies(), what="every child reaped")


def test_a_leftover_with_a_hostile_name_is_still_found(sup, wsdir):
    # The supervisor reads each leftover's parent from /proc/PID/stat,
    # after its name: a name that looks like the fields must not fool it.
    ws = Ws(sup, wsdir)
    m = marker()
    shutil.copy("/bin/sleep", os.path.join(wsdir, "j) Z 1 1 (x"))
    threading.Thread(target=ws.shell, args=(f"'./j) Z 1 1 (x' {m} & wait",), daemon=True).start()
    def job():
        return [p for p in pgrep(f" {m}") if (crush.proc_stat(p) or "?????")[4] == "j) Z 1 1 (x"]
    pids = wait_until(job, what="the background job runs")
    try:
        os.kill(sup.api.workspace(ws.id)["pid"], signal.SIGKILL)
        wait_until(lambda: not job(), what="the background job is gone")
    finally:
        kill_quietly(pids)


def test_a_command_that_left_its_group_ends_with_its_workspace(sup, wsdir):
    ws = Ws(sup, wsdir)
    m1, m2 = marker(), marker()
    leave_group(ws, wsdir, m1, m2)
    pids = wait_until(lambda: pgrep(f"sleep {m1}") + pgrep(f"sleep {m2}"), what="the commands run")
    try:
        # Their shell is gone and each is in a session of its own, out of
        # the run's group: the worker (a child subreaper) adopted them ...
        worker = sup.api.workspace(ws.id)["pid"]
        p1, p2 = pgrep(f"sleep {m1}")[0], pgrep(f"sleep {m2}")[0]
        assert parent_of(p1) == worker and parent_of(p2) == worker
        # ... reaps one that ends while it lives (no zombie left) ...
        os.kill(p1, signal.SIGKILL)
        wait_until(lambda: crush.proc_stat(p1) is None, what="the worker reaped its adopted child")
        # ... and the other does not outlive the workspace.
        sup.api.release(ws.id, ws.client)
        wait_until(lambda: not sup.workers(), what="the worker is gone")
        wait_until(lambda: not pgrep(f"sleep {m2}"), what="the command is gone with its workspace")
    finally:
        kill_quietly(pids)
    wait_until(lambda: not sup.zombies(), what="every child reaped")


def test_a_leftover_of_the_last_worker_is_killed_before_the_daemon_exits(start_supervisor, wsdir):
    # The daemon exits right after reaping its last worker: what that
    # worker's commands left is still killed (procs_finish), not left to
    # init.
    sup = start_supervisor(idle_timeout=0)
    ws = Ws(sup, wsdir)
    m = marker()
    leave_group(ws, wsdir, m)
    pids = wait_until(lambda: pgrep(f"sleep {m}"), what="the command runs")
    try:
        sup.api.release(ws.id, ws.client)
        sup.assert_exit_0()
        wait_until(lambda: not pgrep(f"sleep {m}"), what="the command is gone with the daemon")
    finally:
        kill_quietly(pids)


def test_a_child_the_daemon_had_before_its_workers_is_not_a_leftover(start_supervisor, wsdir):
    # A script that started something and then exec'd the daemon: that
    # process is the daemon's child from the start, not a worker's
    # leftover, and a dead worker's sweep leaves it alone.
    mine, m = marker(), marker()
    sup = start_supervisor(wrapper=["sh", "-c", f'sleep {mine} & exec "$0" "$@"'])
    pre = wait_until(lambda: pgrep(f"sleep {mine}"), what="the daemon's own child runs")
    try:
        assert parent_of(pre[0]) == sup.pid
        ws = Ws(sup, wsdir)
        threading.Thread(target=ws.shell, args=(f"sleep {m} & wait",), daemon=True).start()
        job = wait_until(lambda: pgrep(f"sleep {m}"), what="the background job runs")
        os.kill(sup.api.workspace(ws.id)["pid"], signal.SIGKILL)
        wait_until(lambda: not pgrep(f"sleep {m}"), what="the leftover is gone")
        assert pgrep(f"sleep {mine}") == pre, "the daemon's own child was killed as a leftover"
    finally:
        kill_quietly(pre + pgrep(f"sleep {m}"))


def test_two_clients_see_the_same_output_stream(sup, wsdir):
    ws = Ws(sup, wsdir)
    with ws.watch() as a, ws.watch() as b:
        r = ws.run("echo one; echo two >&2; printf 'caf\\303\\251'")
        for d in (a, b):
            fin = d.wait_for(shell_event("finished", r["run_id"]), what="finished")
            assert fin.payload["exit_code"] == 0
            chunks = [e.payload for e in d.stream.events if shell_event("output", r["run_id"])(e)]
            out = "".join(c["data"] for c in chunks if c["stream"] == "stdout")
            err = "".join(c["data"] for c in chunks if c["stream"] == "stderr")
            assert out == "one\ncafé" and err == "two\n"
            d.wait_for(lambda e: e.type == "message" and e.kind == "created", what="message event")


def test_the_run_is_recorded_in_its_session(sup, wsdir):
    ws = Ws(sup, wsdir)
    ws.run("echo recorded; exit 2")
    r = sup.api.request("GET", f"{ws.base}/sessions/{ws.sid}/messages")
    [m] = r.json()
    assert m["role"] == "user"
    assert m["parts"] == [
        {"type": "shell_command", "data": {"command": "echo recorded; exit 2", "output": "recorded\n",
                                           "exit_code": 2}},
        {"type": "finish", "data": {"reason": "stop", "time": 0}},
    ]
    # A session that does not exist: the run still answers, nothing is kept.
    r = sup.api.request("POST", f"{ws.base}/agent/sessions/nope/shell", {"command": "echo x"})
    assert r.status == 200 and r.json()["output"] == "x\n", r.describe()


def test_sixteen_runs_at_once_then_429(sup, wsdir):
    ws = Ws(sup, wsdir)
    m = marker()
    results = []
    with ws.watch() as d:
        threads = [threading.Thread(target=lambda: results.append(ws.shell(f"sleep {m}")), daemon=True)
                   for _ in range(16)]
        for t in threads:
            t.start()
        wait_until(lambda: len([e for e in d.stream.events if shell_event("started")(e)]) == 16,
                   what="16 runs started")
        # Seen running first, so the "none left" below means they were stopped.
        wait_until(lambda: len(pgrep(f"sleep {m}")) >= 16, what="the 16 commands run")
        r = ws.shell("echo one too many")
        assert r.status == 429, r.describe()
        assert sup.api.request("POST", f"{ws.base}/agent/sessions/{ws.sid}/cancel").status == 200
        for t in threads:
            t.join(crush.WAIT)
    assert [x.status for x in results] == [200] * 16
    assert ws.run("echo room again")["output"] == "room again\n"
    assert not pgrep(f"sleep {m}")


def test_a_run_longer_than_the_request_timeout_is_not_cut(start_supervisor, wsdir):
    sup = start_supervisor(request_timeout=0.5)
    ws = Ws(sup, wsdir)
    r = ws.run("sleep 1.2; echo late")
    assert r["output"] == "late\n"
