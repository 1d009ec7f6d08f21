#!/usr/bin/python3
"""
soak: random clients and worker kills against a real crush-supervisor,
checking the invariants of SPEC §2 the whole time. See tests/soak/README.md.

    python3 tests/soak/soak.py --build build --minutes 5 [--seed S] [--clients N]
    python3 tests/soak/soak.py --build build/asan --seconds 30

Ends with one line, `soak: N passed, N failed` (one check per invariant),
and exits 1 when a check failed (2 on a harness error).
"""

import argparse
import collections
import http.client
import json
import os
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The integration suite's HTTP and /proc helpers (stdlib only, no pytest needed).
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from crush import Endpoint, Response, http_request, parse_head  # noqa: E402
from crush import SANITIZER_ERRORS  # noqa: E402
from crush import all_pids, open_fds as fd_table, proc_cmdline, proc_stat  # noqa: E402
from crush import is_worker_cmdline as is_worker  # noqa: E402

# Every request waits this long at most (the crush.py default is shorter).
HTTP_TIMEOUT = 30.0

# --------------------------------------------------------------------------
# Results: figures and invariant violations, shared by every thread


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = collections.Counter()  # "create 200", ...
        self.faults = collections.Counter()
        self.events = collections.Counter()  # by type / workspace payload type
        self.violations = collections.defaultdict(list)  # check -> [detail]
        self.figures = {}

    def op(self, name):
        with self.lock:
            self.ops[name] += 1

    def fault(self, name):
        with self.lock:
            self.faults[name] += 1

    def event(self, name, n=1):
        with self.lock:
            self.events[name] += n

    def violation(self, check, detail):
        with self.lock:
            v = self.violations[check]
            if len(v) < 20:
                v.append(detail)
            self.figures[check + " violations"] = self.figures.get(check + " violations", 0) + 1


R = Results()

CHECKS = [
    ("zombies", "no zombie children of the supervisor (a Z child older than 2 s), sampled throughout"),
    ("orphans", "no crush-worker for the soak's dirs outside the supervisor (during, at the end, after stop), "
                "and no background job of a shell run alive 5 s (the run ends it; a killed worker's is killed)"),
    ("fds", "supervisor fd count equal at the quiet points (after warm-up, after release)"),
    ("one-worker", "at most one live worker per directory at every /proc sample"),
    ("one-workspace", "at most one non-closing workspace per directory in every listing"),
    ("event-ids", "every stream's event ids strictly increasing (resumes: above Last-Event-ID)"),
    ("api", "every response a valid status (no 5xx, 503 only while stopping), errors JSON {message}"),
    ("exit", "after the last release: workers reaped, exit 0 after the idle timeout, socket removed"),
    ("routed", "every routed answer whole and right (an echo is its body, /_test/bytes its n bytes, a "
               "session reads back, a shell run echoes), or a documented failure (404 gone, 409 failed or no "
               "directory, 502/503 its worker killed)"),
    ("sanitizers", "no sanitizer report in the daemon's stderr"),
    ("rss", "supervisor RSS at the last quiet point at most 8 MiB above the first (plain builds; printed under ASan)"),
]

RSS_SLACK_KIB = 8 << 10


def rss_kib(pid):
    """VmRSS of pid in KiB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------
# Event streams: one hub thread reads every open stream (never a slow reader)


class Stream:
    def __init__(self, sock, ws_id, client, after=None):
        self.sock = sock
        self.ws_id = ws_id
        self.client = client
        self.last_id = after  # ids must stay above the resume point
        self.raw = b""  # undecoded chunked bytes
        self.body = b""  # SSE text not yet parsed
        self.chunked = False
        self.ended = False  # by the server (last chunk or EOF)
        self.finished = False  # the last chunk arrived
        self.closed = False  # by us
        self.nevents = 0
        self.kinds = []  # workspace payload types seen
        self.ended = False  # its stream/ended event (the last one) came

    def feed(self, data):
        if self.chunked:
            self.raw += data
            while True:
                line, sep, rest = self.raw.partition(b"\r\n")
                if not sep:
                    break
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:  # the last chunk: the server ended the stream
                    self.raw = b""
                    self.finished = True
                    break
                if len(rest) < size + 2:
                    break
                self.body += rest[:size]
                self.raw = rest[size + 2:]
        else:
            self.body += data
        while b"\n\n" in self.body:
            block, _, self.body = self.body.partition(b"\n\n")
            self.parse(block.decode("utf-8", errors="replace"))

    def parse(self, block):
        ev_id, data = None, []
        for line in block.split("\n"):
            if line.startswith(":") or not line:
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                ev_id = value
            elif name == "data":
                data.append(value)
        if not data:
            return
        self.nevents += 1
        try:
            obj = json.loads("\n".join(data))
            kind = obj.get("type")
        except ValueError:
            obj, kind = None, "unparsable"
            R.violation("event-ids", f"stream {self.ws_id[:8]}: data is not JSON: {data[:1]}")
        R.event(kind or "?")
        # Upstream's nested envelope: {"type","payload":{"type","payload"}}.
        if isinstance(obj, dict) and not (isinstance(obj.get("payload"), dict)
                                          and isinstance(obj["payload"].get("type"), str)
                                          and isinstance(obj["payload"].get("payload"), dict)):
            R.violation("event-ids", f"stream {self.ws_id[:8]}: not the nested envelope: {data[0][:120]}")
        if kind == "workspace" and isinstance(obj.get("payload"), dict):
            t = obj["payload"].get("type")
            self.kinds.append(t)
            R.event("workspace/" + str(t))
        if self.ended:
            R.violation("event-ids", f"stream {self.ws_id[:8]}: an event after stream/ended: {data[0][:120]}")
        if kind == "stream" and isinstance(obj.get("payload"), dict) and obj["payload"].get("type") == "ended":
            self.ended = True  # the stream's own last event: no id
        if ev_id is None:
            if not (self.ended or (kind == "workspace" and self.kinds and self.kinds[-1] == "gap")):
                R.violation("event-ids", f"stream {self.ws_id[:8]}: event without id: {data[0][:120]}")
            return
        try:
            n = int(ev_id)
        except ValueError:
            R.violation("event-ids", f"stream {self.ws_id[:8]}: non-integer id {ev_id!r}")
            return
        if self.last_id is not None and n <= self.last_id:
            R.violation("event-ids", f"stream {self.ws_id[:8]} client {self.client.cid[:8]}: "
                                     f"id {n} after {self.last_id}")
        self.last_id = n
        self.client.seen[self.ws_id] = max(self.client.seen.get(self.ws_id, 0), n)


class Hub(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True, name="hub")
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.todo = []
        self.wr, self.ww = socket.socketpair()
        self.wr.setblocking(False)
        self.sel.register(self.wr, selectors.EVENT_READ, None)
        self.stop_flag = False
        self.open = set()

    def _wake(self):
        try:
            self.ww.send(b"x")
        except OSError:
            pass

    def add(self, st):
        with self.lock:
            self.todo.append(("add", st))
        self._wake()

    def close(self, st):
        with self.lock:
            self.todo.append(("close", st))
        self._wake()

    def stop(self):
        self.stop_flag = True
        self._wake()
        self.join(10)

    def _drop(self, st):
        if st in self.open:
            self.open.discard(st)
            try:
                self.sel.unregister(st.sock)
            except (KeyError, ValueError):
                pass
        try:
            st.sock.close()
        except OSError:
            pass

    def run(self):
        while not self.stop_flag:
            with self.lock:
                todo, self.todo = self.todo, []
            for op, st in todo:
                if op == "add":
                    if st.closed:
                        st.sock.close()
                        continue
                    st.sock.setblocking(False)
                    self.sel.register(st.sock, selectors.EVENT_READ, st)
                    self.open.add(st)
                    if st.body or st.raw:  # bytes read with the head
                        pending, st.body, st.raw = (st.raw if st.chunked else st.body), b"", b""
                        st.feed(pending)
                else:
                    st.closed = True
                    self._drop(st)
            for key, _ in self.sel.select(0.2):
                if key.data is None:
                    try:
                        self.wr.recv(4096)
                    except OSError:
                        pass
                    continue
                st = key.data
                try:
                    data = st.sock.recv(262144)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    st.feed(data)
                if not data or st.finished:
                    st.ended = True
                    with Client.lock:
                        Client.streams_ended_by_server += 1
                    self._drop(st)
        for st in list(self.open):
            self._drop(st)


def open_stream(endpoint, ws_id, client, after=None, timeout=HTTP_TIMEOUT):
    """Opens an event stream (blocking until the head); returns (status,
    Stream or error Response)."""
    s = endpoint.connect(timeout)
    try:
        extra = f"Last-Event-ID: {after}\r\n" if after is not None else ""
        s.sendall((f"GET /v1/workspaces/{ws_id}/events?client_id={client.cid} HTTP/1.1\r\n"
                   f"Host: x\r\nAccept: text/event-stream\r\n{extra}\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before the head: {buf[:200]!r}")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        status, headers = parse_head(head)
        if status != 200:
            n = int(headers.get("content-length", "0"))
            while len(rest) < n:
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
            s.close()
            return status, Response(status, headers, rest)
        st = Stream(s, ws_id, client, after)
        st.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if st.chunked:
            st.raw = rest
        else:
            st.body = rest
        return 200, st
    except BaseException:
        s.close()
        raise


# --------------------------------------------------------------------------
# The soak


class Soak:
    def __init__(self, args):
        self.args = args
        self.rnd = random.Random(args.seed)
        build = args.build if os.path.isabs(args.build) else os.path.join(REPO, args.build)
        self.supervisor = os.path.join(build, "crush-supervisor")
        self.worker = os.path.join(build, "crush-worker")
        self.tmp = os.path.realpath(tempfile.mkdtemp(prefix="soak-", dir="/tmp"))
        self.sock = os.path.join(self.tmp, "s.sock")
        self.endpoint = Endpoint("unix", self.sock)
        self.root = os.path.join(self.tmp, "dirs")
        self.proc = None
        self.stopping = False  # 503 allowed from here on
        self.hub = Hub()
        self.dirs = []  # resolved directories
        self.paths = []  # (path as a client sends it, resolved key)
        self.keeper_dir = None
        self.stop_sampler = threading.Event()
        self.sampler_thread = None
        self.samples = 0
        self.max_workers_per_dir = 0
        self.max_workers = 0
        self.zombie_first_seen = {}
        self.orphan_first_seen = {}
        self.zombie_sightings = 0
        # Shell runs leave `sleep JOB_MARK` in the background: a duration
        # no other process on the machine runs with.
        self.job_mark = f"3{os.getpid() % 10000:04d}.5"
        self.job_first_seen = {}

    # -- setup

    def make_dirs(self):
        os.makedirs(self.root)
        for i in range(self.args.dirs):
            d = os.path.join(self.root, f"d{i}")
            os.makedirs(d)
            self.dirs.append(d)
            self.paths.append((d, d))
            if i % 2 == 0:  # some through symlinks
                link = os.path.join(self.root, f"link{i}")
                os.symlink(d, link)
                self.paths.append((link, d))
                self.paths.append((link + "/./", d))
        # A directory that does not exist (yet), reached through a symlink
        # too: /root/linkm/missing and /root/real-m/missing share a key.
        realm = os.path.join(self.root, "real-m")
        os.makedirs(realm)
        os.symlink(realm, os.path.join(self.root, "linkm"))
        missing = os.path.join(realm, "missing")
        self.dirs.append(missing)
        self.paths.append((missing, missing))
        self.paths.append((os.path.join(self.root, "linkm", "missing"), missing))
        self.keeper_dir = os.path.join(self.root, "keeper")
        os.makedirs(self.keeper_dir)
        self.soak_keys = set(self.dirs) | {self.keeper_dir}

    def start_daemon(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRUSH_SERVER_")}
        env["CRUSH_SERVER_PING_INTERVAL"] = str(self.args.ping)
        env["CRUSH_TEST_ROUTES"] = "1"  # the workers' /_test routes: echo, bytes, sleep
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=99")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=99")
        self.stderr_path = os.path.join(self.tmp, "supervisor.stderr")
        argv = [self.supervisor, "-H", "unix://" + self.sock,
                "--create-grace", "0.5", "--detach-grace", "0.3",
                "--idle-timeout", str(self.args.idle), "--kill-timeout", "0.5", "--log-level", "info"]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err, env=env, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode} at start:\n{self.stderr()}")
            try:
                if http_request(self.endpoint, "GET", "/v1/health", timeout=HTTP_TIMEOUT).status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("daemon did not answer /v1/health within 20 s")
            time.sleep(0.05)

    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # -- API wrapper: every response is checked

    def api(self, op, method, path, body=None, allowed=(200,), client=None):
        try:
            r = http_request(self.endpoint, method, path, body, timeout=HTTP_TIMEOUT)
        except OSError as e:
            R.op(f"{op} transport-error")
            R.violation("api", f"{op} {method} {path}: {type(e).__name__}: {e}")
            return None
        R.op(f"{op} {r.status}")
        if r.status not in allowed and not (r.status == 503 and self.stopping):
            R.violation("api", f"{op} {method} {path}: HTTP {r.status} {r.body[:200]!r}")
        if r.status >= 400:
            self.check_error_body(op, r)
        return r

    def check_error_body(self, op, r):
        try:
            body = r.json()
            ok = "application/json" in r.content_type and isinstance(body.get("message"), str) and body["message"]
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            R.violation("api", f"{op}: HTTP {r.status} error body not JSON {{message}}: "
                               f"{r.content_type!r} {r.body[:200]!r}")

    def listing(self):
        r = self.api("list", "GET", "/v1/workspaces")
        if r is None or r.status != 200:
            return None
        try:
            items = r.json()
        except ValueError:
            R.violation("api", f"list: not JSON {r.body[:200]!r}")
            return None
        live = collections.Counter(w["resolved_path"] for w in items if w["state"] != "closing")
        for key, n in live.items():
            if n > 1:
                R.violation("one-workspace", f"{n} non-closing workspaces for {key}: "
                                             f"{[(w['id'][:8], w['state']) for w in items if w['resolved_path'] == key]}")
        return items

    # -- /proc sampler

    def sampler(self):
        sup = self.proc.pid
        while not self.stop_sampler.is_set():
            self.sample(sup)
            time.sleep(0.01)

    def sample(self, sup):
        now = time.monotonic()
        per_dir = collections.defaultdict(list)
        procs = {}
        zombies = set()
        jobs = set()
        for pid in all_pids():
            st = proc_stat(pid)
            if st is None:
                continue
            if st[1] == sup and st[0] == "Z":
                zombies.add(pid)
                continue
            args = proc_cmdline(pid)
            if args == ["sleep", self.job_mark] and st[0] not in "ZX":
                jobs.add(pid)
                self.watch_job(pid, st[1], now)
            if not is_worker(args) or st[0] in "ZX":
                continue
            procs[pid] = (st[1], args)
        suspects = set()
        for pid, (ppid, args) in procs.items():
            key = os.path.realpath(args[2]) if len(args) > 2 else "?"
            if key not in self.soak_keys:
                continue
            if ppid == sup:
                per_dir[key].append(pid)
            elif ppid not in procs:
                # Not ours and not a sanitizer helper task of one of ours,
                # and still so half a second later: a worker killed by the
                # chaos thread leaves a task with its command line for an
                # instant (a shell run's child between fork and exec, which
                # then exits; LeakSanitizer's tracer), not a live worker.
                if (proc_stat(pid) or "Z")[0] not in "ZX":
                    suspects.add(pid)
                    first = self.orphan_first_seen.setdefault(pid, now)
                    if now - first >= 0.5:
                        R.violation("orphans", f"worker {pid} for {key} has parent {ppid}, not {sup}")
                        self.orphan_first_seen[pid] = now + 3600  # once
        for pid in list(self.orphan_first_seen):
            if pid not in suspects and self.orphan_first_seen[pid] <= now:
                del self.orphan_first_seen[pid]  # gone (or its pid reused): a new one starts afresh
        total = 0
        for key, pids in per_dir.items():
            total += len(pids)
            # Each pid was live when read: if the earlier ones still are,
            # all were live together when the last was read.
            if len(pids) >= 2 and all((proc_stat(p) or "Z")[0] not in "ZX" for p in pids[:-1]):
                R.violation("one-worker", f"{len(pids)} live workers for {key}: {pids}")
            self.max_workers_per_dir = max(self.max_workers_per_dir, len(pids))
        self.max_workers = max(self.max_workers, total)
        for pid in zombies:
            first = self.zombie_first_seen.setdefault(pid, now)
            if first == now:
                self.zombie_sightings += 1
            elif now - first > 2.0:
                R.violation("zombies", f"child {pid} a zombie for {now - first:.1f}s")
                self.zombie_first_seen[pid] = now + 3600  # once
        for pid in list(self.zombie_first_seen):
            if pid not in zombies:
                del self.zombie_first_seen[pid]
        for pid in list(self.job_first_seen):
            if pid not in jobs:
                del self.job_first_seen[pid]
        self.samples += 1

    def watch_job(self, pid, ppid, now):
        """A shell run's background job: its run ends it within a moment,
        and so does the supervisor when the chaos thread kills the run's
        worker (the job comes to it). Alive 5 s, it is an orphan."""
        first = self.job_first_seen.setdefault(pid, now)
        if now - first > 5.0:
            R.violation("orphans", f"background job {pid} of a shell run alive {now - first:.1f}s (parent {ppid})")
            self.job_first_seen[pid] = now + 3600  # once
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    # -- chaos: SIGKILL random ready workers at a bounded rate

    def chaos(self, deadline):
        rnd = random.Random(self.rnd.random())
        while time.monotonic() < deadline:
            time.sleep(rnd.uniform(0.5, 1.5) * self.args.kill_every)
            items = self.listing() or []
            victims = [w for w in items if w["state"] == "ready" and w["resolved_path"] != self.keeper_dir
                       and w["pid"]]
            if not victims:
                R.fault("no victim")
                continue
            w = rnd.choice(victims)
            try:
                os.kill(w["pid"], signal.SIGKILL)
                R.fault("SIGKILL worker")
            except ProcessLookupError:
                R.fault("victim already gone")

    # -- fs activity, so that streams carry events

    def fs_activity(self, deadline):
        rnd = random.Random(self.rnd.random())
        n = 0
        while time.monotonic() < deadline:
            d = rnd.choice(self.dirs[:-1] + [self.keeper_dir])
            n += 1
            p = os.path.join(d, f"f{rnd.randrange(20)}.txt")
            try:
                if rnd.random() < 0.2 and os.path.exists(p):
                    os.unlink(p)
                else:
                    with open(p, "w") as f:
                        f.write(str(n))
            except OSError:
                pass
            time.sleep(0.01)

    # -- clients

    def client_loop(self, idx, deadline):
        rnd = random.Random(self.rnd.random())
        c = Client(self, rnd)
        try:
            while time.monotonic() < deadline:
                c.step()
                time.sleep(rnd.uniform(0, 0.03))
        except Exception:
            R.violation("api", f"client {idx} crashed: {traceback.format_exc()[-800:]}")
        finally:
            c.cleanup()

    def phase(self, seconds, name):
        deadline = time.monotonic() + seconds
        threads = [threading.Thread(target=self.client_loop, args=(i, deadline), name=f"client{i}")
                   for i in range(self.args.clients)]
        threads.append(threading.Thread(target=self.chaos, args=(deadline,), name="chaos"))
        threads.append(threading.Thread(target=self.fs_activity, args=(deadline,), name="fs"))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.log(f"{name} phase done ({seconds:.0f}s)")

    def quiet(self, keeper_ws):
        """Waits until only the keeper's workspace and worker remain; returns
        the supervisor's fd table."""
        deadline = time.monotonic() + 20
        while True:
            items = self.listing() or []
            workers = [p for p in all_pids() if (proc_stat(p) or ("Z", 0))[1] == self.proc.pid
                       and (proc_stat(p) or "Z")[0] not in "ZX"]
            only_keeper = [w["id"] for w in items] == [keeper_ws] and \
                items[0]["streams"] == 1 and items[0]["state"] == "ready"
            if only_keeper and len(workers) == 1:
                break
            if time.monotonic() > deadline:
                R.violation("fds", f"no quiet point within 20 s: {[(w['id'][:8], w['state'], w['clients'], w['streams']) for w in items]}, children {workers}")
                break
            time.sleep(0.1)
        # Closing client connections may take a moment: settle on a stable count.
        prev, stable_since = None, time.monotonic()
        settle_by = time.monotonic() + 10
        while True:
            fds = fd_table(self.proc.pid)
            if time.monotonic() > settle_by:
                return fds  # never settled: the comparison will say so
            if prev is not None and len(fds) == len(prev):
                if time.monotonic() - stable_since > 0.5:
                    return fds
            else:
                stable_since = time.monotonic()
            prev = fds
            time.sleep(0.05)

    def log(self, msg):
        print(f"soak: [{time.monotonic() - self.t0:6.1f}s] {msg}", flush=True)

    # -- the run

    def run(self):
        self.t0 = time.monotonic()
        total = self.args.seconds if self.args.seconds is not None else self.args.minutes * 60
        self.make_dirs()
        self.start_daemon()
        self.hub.start()
        self.log(f"daemon pid {self.proc.pid} ({self.supervisor}), {len(self.dirs)} dirs "
                 f"({len(self.paths)} paths), {self.args.clients} clients, seed {self.args.seed}, "
                 f"{total:.0f}s")
        self.sampler_thread = threading.Thread(target=self.sampler, daemon=True, name="sampler")
        self.sampler_thread.start()

        # The keeper: one stream held all along, so the daemon never idles
        # out mid-run (chaos spares it).
        keeper = Client(self, random.Random(0))
        r = self.api("create", "POST", "/v1/workspaces", {"path": self.keeper_dir, "client_id": keeper.cid})
        keeper_ws = r.json()["id"]
        status, kst = open_stream(self.endpoint, keeper_ws, keeper)
        assert status == 200, status
        self.hub.add(kst)
        rss = {"start": rss_kib(self.proc.pid)}
        try:
            with open(f"/proc/{self.proc.pid}/maps") as f:
                self.asan = "libasan" in f.read()
        except OSError:
            self.asan = False
        self.log(f"RSS at start: {rss['start']} KiB")

        end_reserve = 8.0
        warm = max(2.0, 0.15 * total)
        main = max(3.0, total - warm - end_reserve)
        self.phase(warm, "warm-up")
        base = self.quiet(keeper_ws)
        rss["quiet 1"] = rss_kib(self.proc.pid)
        self.log(f"quiet point 1: supervisor holds {len(base)} fds, RSS {rss['quiet 1']} KiB")
        self.phase(main, "main")
        end = self.quiet(keeper_ws)
        rss["quiet 2"] = rss_kib(self.proc.pid)
        self.log(f"quiet point 2: supervisor holds {len(end)} fds, RSS {rss['quiet 2']} KiB")
        R.figures["fds at quiet points"] = f"{len(base)} -> {len(end)}"
        if len(base) != len(end):
            b, e = collections.Counter(base.values()), collections.Counter(end.values())
            kinds = lambda c: collections.Counter(t.split(":")[0] if ":" in t else t for t in c.elements())  # noqa: E731
            R.violation("fds", f"{len(base)} fds after warm-up, {len(end)} at the end: "
                               f"{dict(kinds(b))} -> {dict(kinds(e))}")

        # The end: release the last claim; the daemon must reap everything,
        # exit 0 after its idle timeout and remove its socket.
        R.figures["workspaces seen"] = len(Client.all_workspaces)
        self.stopping = True
        self.hub.close(kst)
        rss["end"] = rss_kib(self.proc.pid)
        self.log(f"RSS at the end: {rss['end']} KiB")
        self.api("release", "DELETE", f"/v1/workspaces/{keeper_ws}?client_id={keeper.cid}")
        R.figures["supervisor RSS (KiB)"] = ", ".join(f"{k} {v}" for k, v in rss.items())
        if self.asan:
            # ASan keeps freed memory in its quarantine (up to 256 MiB) and
            # its own allocator: RSS there says little about the daemon's.
            R.figures["supervisor RSS (KiB)"] += " (ASan build: not judged; the plain-build soak is)"
        elif rss["quiet 1"] is not None and rss["quiet 2"] is not None \
                and rss["quiet 2"] - rss["quiet 1"] > RSS_SLACK_KIB:
            R.violation("rss", f"RSS {rss['quiet 1']} KiB at the first quiet point, {rss['quiet 2']} KiB at the "
                               f"last (+{rss['quiet 2'] - rss['quiet 1']} KiB > {RSS_SLACK_KIB} KiB)")
        t_release = time.monotonic()
        try:
            rc = self.proc.wait(self.args.idle + 15)
        except subprocess.TimeoutExpired:
            rc = None
            R.violation("exit", f"daemon still running {self.args.idle + 15:.0f}s after the last release")
        took = time.monotonic() - t_release
        R.figures["exit after last release"] = f"{took:.2f}s (idle timeout {self.args.idle}s), status {rc}"
        if rc is not None and rc != 0:
            R.violation("exit", f"daemon exit status {rc}")
        if rc is not None and took < self.args.idle * 0.8:
            R.violation("exit", f"exited {took:.2f}s after the last release; idle timeout is {self.args.idle}s")
        if os.path.exists(self.sock):
            R.violation("exit", "socket file left behind")
        self.stop_sampler.set()
        self.sampler_thread.join(10)
        def survivors():
            return [(p, proc_cmdline(p)[:3]) for p in all_pids() if is_worker(proc_cmdline(p))
                    and len(proc_cmdline(p)) > 2 and os.path.realpath(proc_cmdline(p)[2]) in self.soak_keys
                    and (proc_stat(p) or "Z")[0] not in "ZX"]
        # Parent-death SIGKILL is asynchronous: give it a bounded moment.
        deadline = time.monotonic() + 5
        left = survivors()
        while left and time.monotonic() < deadline:
            time.sleep(0.02)
            left = survivors()
        for p, args in left:
            R.violation("orphans", f"worker {p} {args} outlived the daemon")
            R.violation("exit", f"worker {p} not reaped before the daemon exited")
        jobs = [p for p in all_pids() if proc_cmdline(p) == ["sleep", self.job_mark]
                and (proc_stat(p) or "Z")[0] not in "ZX"]
        for p in jobs:
            R.violation("orphans", f"background job {p} of a shell run outlived the daemon")
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.hub.stop()

    def report(self):
        text = self.stderr()
        markers = SANITIZER_ERRORS + ("ERROR: LeakSanitizer",)
        for m in markers:
            if m in text:
                i = text.index(m)
                R.violation("sanitizers", text[max(0, i - 200):i + 1500])
        print()
        print("soak figures:")
        ops = collections.Counter()
        for k, v in R.ops.items():
            ops[k.split()[0]] += v
        print(f"  operations: {sum(ops.values())} — " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
        print("  by status:  " + ", ".join(f"{k} {v}" for k, v in sorted(R.ops.items())))
        print("  faults:     " + (", ".join(f"{k} {v}" for k, v in sorted(R.faults.items())) or "none"))
        print(f"  events:     {sum(v for k, v in R.events.items() if '/' not in k)} — "
              + ", ".join(f"{k} {v}" for k, v in sorted(R.events.items())))
        print(f"  streams:    {Client.streams_opened} opened, {Client.streams_ended_by_server} ended by the server")
        print(f"  /proc:      {self.samples} samples, max {self.max_workers} live workers, "
              f"max {self.max_workers_per_dir} per directory, {self.zombie_sightings} transient zombie sightings")
        restarts = text.count('msg="Worker restarted"')
        failed = text.count('msg="Workspace failed"')
        why = collections.Counter(line.split("reason=", 1)[1].strip().strip('"') for line in text.splitlines()
                                  if 'msg="Killing worker"' in line and "reason=" in line)
        print(f"  daemon log: {text.count(chr(10))} lines, {restarts} restarts, {failed} workspaces failed "
              f"(crash loop), {sum(why.values())} workers killed by the supervisor"
              + (" (" + ", ".join(f"{k}: {v}" for k, v in why.most_common()) + ")" if why else ""))
        for k, v in R.figures.items():
            print(f"  {k}: {v}")
        print()
        passed = failed_n = 0
        for name, desc in CHECKS:
            v = R.violations.get(name, [])
            if v:
                failed_n += 1
                print(f"FAIL {name}: {desc}")
                for d in v[:10]:
                    print(f"     - {d}")
            else:
                passed += 1
                print(f"ok   {name}: {desc}")
        if failed_n:
            print(f"soak: daemon stderr kept in {self.stderr_path}")
        return passed, failed_n

    def cleanup(self, keep):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for p in all_pids():
            args = proc_cmdline(p)
            if is_worker(args) and len(args) > 2 and args[2].startswith(self.tmp):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


class Client:
    """One client of the daemon: a client id, its claims and its streams.
    Each step is one random operation."""

    lock = threading.Lock()
    streams_opened = 0
    streams_ended_by_server = 0
    all_workspaces = set()

    def __init__(self, soak, rnd):
        self.soak = soak
        self.rnd = rnd
        self.cid = str(uuid.uuid4())
        self.claims = set()  # workspace ids it created/joined
        self.known = set()  # workspace ids it has heard of
        self.streams = []
        self.seen = {}  # ws id -> last event id seen
        self.retired = set()

    def step(self):
        self.streams = [s for s in self.streams if not s.ended]
        ops = [(self.create, 30), (self.attach, 25), (self.detach, 15), (self.release, 15),
               (self.retire, 2), (self.look, 8), (self.get, 5), (self.route, 15), (self.abandon, 5),
               (self.store, 8), (self.h2c, 4)]
        r = self.rnd.uniform(0, sum(w for _, w in ops))
        for fn, w in ops:
            r -= w
            if r <= 0:
                return fn()
        return ops[-1][0]()

    def create(self):
        path, key = self.rnd.choice(self.soak.paths)
        r = self.soak.api("create", "POST", "/v1/workspaces", {"path": path, "client_id": self.cid})
        if r is not None and r.status == 200:
            w = r.json()
            if w.get("resolved_path") != key:
                R.violation("api", f"create {path}: resolved_path {w.get('resolved_path')} != {key}")
            self.claims.add(w["id"])
            self.known.add(w["id"])
            with Client.lock:
                Client.all_workspaces.add(w["id"])

    def attach(self):
        if not self.known:
            return self.create()
        ws = self.rnd.choice(sorted(self.known))
        after = None
        if ws in self.seen and self.rnd.random() < 0.4:
            after = self.seen[ws]  # resume where this client left off
        try:
            status, st = open_stream(self.soak.endpoint, ws, self, after)
        except OSError as e:
            R.op("attach transport-error")
            R.violation("api", f"attach {ws[:8]}: {type(e).__name__}: {e}")
            return
        R.op(f"attach {status}" + (" (resume)" if after is not None else ""))
        if status == 200:
            with Client.lock:
                Client.streams_opened += 1
            self.streams.append(st)
            self.soak.hub.add(st)
            return
        allowed = (404,) if not self.retired else (404, 409)
        if status not in allowed and not (status == 503 and self.soak.stopping):
            R.violation("api", f"attach {ws[:8]}: HTTP {status} {st.body[:200]!r}")
        self.soak.check_error_body("attach", st)
        if status == 404:
            self.known.discard(ws)
            self.claims.discard(ws)

    def detach(self):
        if self.streams:
            st = self.streams.pop(self.rnd.randrange(len(self.streams)))
            R.op("detach")
            self.soak.hub.close(st)

    def release(self):
        if not self.claims:
            return self.detach()
        ws = self.rnd.choice(sorted(self.claims))
        self.soak.api("release", "DELETE", f"/v1/workspaces/{ws}?client_id={self.cid}")
        self.claims.discard(ws)

    def retire(self):
        self.soak.api("retire", "DELETE", f"/v1/clients/{self.cid}")
        # Retired: creates and attaches are refused from now on.
        path, _ = self.rnd.choice(self.soak.paths)
        self.soak.api("create-retired", "POST", "/v1/workspaces", {"path": path, "client_id": self.cid},
                      allowed=(409,))
        for st in self.streams:
            self.soak.hub.close(st)
        self.streams = []
        self.claims.clear()
        self.known.clear()
        self.seen.clear()
        self.cid = str(uuid.uuid4())  # a new client from now on

    def look(self):
        items = self.soak.listing()
        if items:
            w = self.rnd.choice(items)
            if w["state"] != "closing":
                self.known.add(w["id"])

    def get(self):
        if self.known:
            ws = self.rnd.choice(sorted(self.known))
            r = self.soak.api("get", "GET", f"/v1/workspaces/{ws}", allowed=(200, 404))
            if r is not None and r.status == 404:
                self.known.discard(ws)
                self.claims.discard(ws)

    # Routed requests: answered by the workspace's worker through the
    # supervisor, while the chaos thread kills workers under them.
    ROUTED_FAILURES = (404, 409, 502, 503)

    def route(self):
        if not self.known:
            return self.create()
        ws = self.rnd.choice(sorted(self.known))
        base = f"/v1/workspaces/{ws}"
        kind = self.rnd.choice(("config", "echo", "bytes", "burst"))
        if kind == "burst":
            return self.burst(ws)
        if kind == "config":
            method, path, body = "GET", base + "/config", None
        elif kind == "echo":
            body = self.rnd.randbytes(self.rnd.choice((0, 1, 4096, 1 << 20, 3 << 20)) + self.rnd.randrange(64))
            method, path = "POST", base + "/_test/echo"
        else:
            n = self.rnd.choice((1, 65536, 4 << 20)) + self.rnd.randrange(64)
            method, path, body = "GET", base + f"/_test/bytes?n={n}", None
        try:
            r = http_request(self.soak.endpoint, method, path, body, timeout=HTTP_TIMEOUT)
        except http.client.IncompleteRead:
            # Cut after its head: the documented end of an answer whose
            # worker died while it streamed (the chaos thread's kills).
            R.op(f"route-{kind} cut")
            return
        except OSError as e:
            R.op(f"route-{kind} transport-error")
            R.violation("routed", f"{kind} {ws[:8]}: {type(e).__name__}: {e}")
            return
        R.op(f"route-{kind} {r.status}")
        if r.status == 200:
            good = (kind == "config" and r.body.startswith(b"{") or
                    kind == "echo" and r.body == body or
                    kind == "bytes" and r.body == b"x" * n)
            if not good:
                R.violation("routed", f"{kind} {ws[:8]}: 200 with a wrong body ({len(r.body)} bytes)")
            return
        if r.status not in self.ROUTED_FAILURES and not (r.status == 503 and self.soak.stopping):
            R.violation("routed", f"{kind} {ws[:8]}: HTTP {r.status} {r.body[:200]!r}")
        self.soak.check_error_body(f"route-{kind}", r)
        if r.status == 404:
            self.known.discard(ws)
            self.claims.discard(ws)

    def store(self):
        """The session store and a shell run: a session made, read back,
        given a shell run, sometimes deleted."""
        if not self.known:
            return self.create()
        ws = self.rnd.choice(sorted(self.known))
        base = f"/v1/workspaces/{ws}"

        def req(op, method, path, body=None):
            try:
                r = http_request(self.soak.endpoint, method, base + path, body, timeout=HTTP_TIMEOUT)
            except OSError as e:
                R.op(f"{op} transport-error")
                R.violation("routed", f"{op} {ws[:8]}: {type(e).__name__}: {e}")
                return None
            R.op(f"{op} {r.status}")
            if r.status != 200:
                if r.status not in self.ROUTED_FAILURES:
                    R.violation("routed", f"{op} {ws[:8]}: HTTP {r.status} {r.body[:200]!r}")
                self.soak.check_error_body(op, r)
                return None
            if method == "DELETE":
                return r.body  # upstream's: 200, empty
            try:
                return r.json()
            except ValueError:
                R.violation("routed", f"{op} {ws[:8]}: 200 but not JSON: {r.content_type!r} {r.body[:200]!r}")
                return None
        made = req("session-create", "POST", "/sessions", {"title": f"soak {self.rnd.randrange(1000)}"})
        if made is None:
            return
        got = req("session-get", "GET", f"/sessions/{made['id']}")
        if got is not None and got.get("title") != made.get("title"):
            R.violation("routed", f"session {made['id'][:8]}: read back {got.get('title')!r}, "
                                  f"made {made.get('title')!r}")
        word = f"soak{self.rnd.randrange(1 << 20)}"
        command = f"echo {word}"
        if self.rnd.random() < 0.5:
            # A background job, and time for the chaos thread to kill the
            # worker while the run is on.
            command = f"sleep {self.soak.job_mark} </dev/null >/dev/null 2>&1 & sleep 0.2; {command}"
            R.op("shell-job")
        ran = req("shell", "POST", f"/agent/sessions/{made['id']}/shell?client_id={self.cid}",
                  {"command": command, "term_width": 80})
        if ran is not None and (ran.get("output") != word + "\n" or ran.get("exit_code") != 0):
            R.violation("routed", f"shell echo {word}: {ran!r}"[:300])
        if self.rnd.random() < 0.5:
            req("session-delete", "DELETE", f"/sessions/{made['id']}")

    def h2c(self):
        """Routed requests over h2c (curl, prior knowledge), four at once,
        each on its own connection (curl 7.88 fails a second request on a
        reused prior-knowledge connection: curl issue #10634, fixed in 8.0):
        1 MiB echoes and 2 MiB answers, and now and then a connection cut
        short (--max-time) while its answer streams."""
        if not self.known or shutil.which("curl") is None:
            return self.route()
        ws = self.rnd.choice(sorted(self.known))
        tmp = tempfile.mkdtemp(dir=self.soak.tmp)
        src = os.path.join(tmp, "src")
        body = self.rnd.randbytes((1 << 20) + self.rnd.randrange(4096))
        with open(src, "wb") as f:
            f.write(body)
        base = f"http://soak/v1/workspaces/{ws}"
        runs = []
        for i in range(4):
            cut = self.rnd.random() < 0.2
            out = os.path.join(tmp, f"out{i}")
            argv = ["curl", "-sS", "--http2-prior-knowledge", "--unix-socket", self.soak.sock, "-o", out,
                    "-w", "%{http_code} %{http_version}", "--max-time", "0.02" if cut else str(HTTP_TIMEOUT)]
            if i % 2 == 0:
                argv += ["--data-binary", f"@{src}", base + "/_test/echo"]
                want = body
            else:
                argv += [base + f"/_test/bytes?n={2 << 20}"]
                want = b"x" * (2 << 20)
            runs.append((subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
                         out, want, cut))
        for p, out, want, cut in runs:
            try:
                stdout, stderr = p.communicate(timeout=HTTP_TIMEOUT + 10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                R.violation("routed", f"h2c {ws[:8]}: curl hung")
                continue
            code = stdout.split()[0] if stdout.split() else ""
            if p.returncode != 0 and (cut or code == "200"):
                # Ours (--max-time), or the stream reset after its head
                # because the worker died while it streamed (documented).
                R.op("h2c cut")
                continue
            R.op(f"h2c {code}")
            if code == "200":
                with open(out, "rb") as f:
                    if f.read() != want:
                        R.violation("routed", f"h2c {ws[:8]}: 200 with a wrong body")
            elif not code.isdigit() or int(code) not in self.ROUTED_FAILURES:
                R.violation("routed", f"h2c {ws[:8]}: HTTP {code!r} (curl exit {p.returncode}: {stderr.strip()[:200]})")
        shutil.rmtree(tmp, ignore_errors=True)

    def burst(self, ws):
        """Four 2 MiB echoes at once on one workspace, read as they come:
        answers streaming to several clients, the worker often ahead of
        them (the supervisor's read budget then pauses it between passes)."""
        bodies = [self.rnd.randbytes((2 << 20) + i) for i in range(4)]
        out = [None] * 4

        def one(i):
            try:
                out[i] = http_request(self.soak.endpoint, "POST", f"/v1/workspaces/{ws}/_test/echo", bodies[i],
                                      timeout=HTTP_TIMEOUT)
            except (OSError, http.client.HTTPException) as e:
                out[i] = e
        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, r in enumerate(out):
            if isinstance(r, http.client.IncompleteRead):
                R.op("route-burst cut")
            elif isinstance(r, Exception):
                R.op("route-burst transport-error")
                R.violation("routed", f"burst {ws[:8]}: {type(r).__name__}: {r}")
            else:
                R.op(f"route-burst {r.status}")
                if r.status == 200 and r.body != bodies[i]:
                    R.violation("routed", f"burst {ws[:8]}: 200 with a wrong body ({len(r.body)} bytes)")
                elif r.status != 200 and r.status not in self.ROUTED_FAILURES:
                    R.violation("routed", f"burst {ws[:8]}: HTTP {r.status} {r.body[:200]!r}")

    def abandon(self):
        """A routed request whose client leaves early: before its answer,
        while its body is going, or half way through a long answer."""
        if not self.known:
            return self.create()
        ws = self.rnd.choice(sorted(self.known))
        kind = self.rnd.choice(("sleep", "body", "answer"))
        if kind == "sleep":
            head = f"GET /v1/workspaces/{ws}/_test/sleep?ms=2000 HTTP/1.1\r\nHost: soak\r\n\r\n".encode()
            body = b""
        elif kind == "body":
            body = b"b" * (8 << 20)
            head = (f"POST /v1/workspaces/{ws}/_test/echo HTTP/1.1\r\nHost: soak\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
        else:
            head = f"GET /v1/workspaces/{ws}/_test/bytes?n={16 << 20} HTTP/1.1\r\nHost: soak\r\n\r\n".encode()
            body = b""
        try:
            s = self.soak.endpoint.connect(timeout=HTTP_TIMEOUT)
        except OSError as e:
            R.violation("routed", f"abandon {ws[:8]}: connect: {e}")
            return
        try:
            s.sendall(head + body)
            if kind == "answer":
                got = 0
                while got < (1 << 20):  # take 1 MiB of the 16, then leave
                    d = s.recv(65536)
                    if not d:
                        break
                    got += len(d)
            else:
                time.sleep(self.rnd.uniform(0, 0.05))
            R.op(f"abandon-{kind}")
        except OSError:
            R.op(f"abandon-{kind} transport-error")  # the daemon may close first: fine
        finally:
            s.close()

    def cleanup(self):
        for st in self.streams:
            self.soak.hub.close(st)
        self.streams = []
        for ws in sorted(self.claims):
            self.soak.api("release", "DELETE", f"/v1/workspaces/{ws}?client_id={self.cid}")
        self.claims.clear()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="directory with crush-supervisor and crush-worker")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--minutes", type=float, default=5.0)
    g.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--dirs", type=int, default=5, help="workspace directories (plus one missing, one keeper)")
    ap.add_argument("--kill-every", type=float, default=1.0, help="mean seconds between worker kills")
    ap.add_argument("--idle", type=float, default=1.0, help="the daemon's idle timeout")
    ap.add_argument("--ping", type=float, default=2.0, help="CRUSH_SERVER_PING_INTERVAL for the daemon")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    soak = Soak(args)
    if not os.access(soak.supervisor, os.X_OK) or not os.access(soak.worker, os.X_OK):
        print(f"soak: {soak.supervisor} / {soak.worker} missing (run make)", file=sys.stderr)
        print("soak: 0 passed, 1 failed")
        return 2
    harness_error = None
    try:
        soak.run()
    except Exception:
        harness_error = traceback.format_exc()
    passed, failed = soak.report()
    if harness_error:
        print(f"soak: harness error:\n{harness_error}")
        print(f"soak: daemon stderr tail:\n{soak.stderr()[-3000:]}")
        failed += 1
    soak.cleanup(keep=args.keep or failed > 0)
    print(f"soak: seed {args.seed}; rerun with --seed {args.seed}")
    print(f"soak: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
