"""
crush: helpers for the black-box integration tests of crush-supervisor.

Everything here talks to the real daemon from the outside only: HTTP/1.1
over a unix or tcp socket, a raw-socket Server-Sent Events reader, and
/proc scans for the worker processes. No test sleeps where a condition can
be polled: wait_until() and stays_true() are the only clocks.
"""

import http.client
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import openapi_check  # noqa: E402  (docs/openapi.yaml: every JSON answer checked)

REPO = Path(__file__).resolve().parents[2]
_build = Path(os.environ.get("CRUSH_BUILD", "build"))
BUILD = _build if _build.is_absolute() else REPO / _build
SUPERVISOR = BUILD / "crush-supervisor"
WORKER = BUILD / "crush-worker"
CRUSH_PS = REPO / "scripts" / "crush-ps"

# Upper bound for every wait: generous, since the sanitizer build is slow.
WAIT = float(os.environ.get("CRUSH_TEST_WAIT", "10"))

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# Memory errors fail the test whose daemon printed them; leaks are listed in
# the session summary and failed by one dedicated test, so that one leak
# does not turn every test red.
SANITIZER_ERRORS = (
    "ERROR: AddressSanitizer",
    "ERROR: UndefinedBehaviorSanitizer",
    ": runtime error: ",
)
LEAK_MARKER = "ERROR: LeakSanitizer: detected memory leaks"


def new_client_id():
    return str(uuid.uuid4())


# --------------------------------------------------------------------------
# Polling


def wait_until(cond, timeout=WAIT, interval=0.02, what=None):
    """Polls cond() until it returns something truthy; returns that value.
    Fails the test (AssertionError) with `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = cond()
        if last:
            return last
        if time.monotonic() >= deadline:
            desc = what or getattr(cond, "__name__", "condition")
            raise AssertionError(f"timed out after {timeout}s waiting for: {desc} (last value: {last!r})")
        time.sleep(interval)


def stays_true(cond, duration, interval=0.02, what=None):
    """Asserts cond() holds on every poll for `duration` seconds: the one
    place a test waits on the clock, for behaviour that must NOT happen."""
    deadline = time.monotonic() + duration
    while True:
        value = cond()
        if not value:
            desc = what or getattr(cond, "__name__", "condition")
            raise AssertionError(f"stopped holding within {duration}s: {desc} (value: {value!r})")
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# --------------------------------------------------------------------------
# Races


class Race:
    """Steers and tallies a race test that accepts two outcomes, so that it
    can prove it raced: each outcome it covers must actually occur.

    Every iteration runs the race's two sides `delay` seconds apart (see
    run_apart()) and record()s the outcome. `early` is the outcome a smaller
    delay favours, `late` the one a larger delay favours. The delay is a
    staircase: after each outcome it steps toward the other one, the step
    doubling while the same outcome repeats and starting again from `step`
    when it flips, clamped to [lo, hi]; each iteration adds a jitter of up
    to half a step (seeded: the same outcomes give the same delays). So the
    iterations gather where either side can win, wherever the machine's
    load has moved that point, and an outcome that is rare at `start` is
    reached within a few iterations. Iterates `n` times, then on while an
    outcome is still missing, up to `max_n` iterations and `budget` seconds
    in all; assert_covered() then fails the test unless both occurred."""

    def __init__(self, early, late, n, start, step, lo, hi, max_n=None, budget=2 * WAIT):
        assert early != late and lo <= start <= hi and step > 0
        self.early, self.late = early, late
        self.n = n
        self.max_n = max_n if max_n is not None else 3 * n
        self.budget = budget
        self.step, self.lo, self.hi = step, lo, hi
        self.delay = start
        self._used = start
        self._rnd = random.Random(0)
        self._step = step
        self._last = None
        self.counts = {early: 0, late: 0}
        self.history = []  # (delay, outcome) per iteration

    def missing(self):
        return [o for o, c in self.counts.items() if c == 0]

    def __iter__(self):
        t0 = time.monotonic()
        i = 0
        while i < self.n or (self.missing() and i < self.max_n and time.monotonic() - t0 < self.budget):
            jitter = self._rnd.uniform(-self.step, self.step) / 2
            self._used = min(self.hi, max(self.lo, self.delay + jitter))
            yield self._used
            i += 1
            assert len(self.history) == i, "each iteration of a Race must record() its outcome"

    def record(self, outcome):
        assert outcome in self.counts, f"outcome {outcome!r} is not one of {list(self.counts)}"
        self.counts[outcome] += 1
        self.history.append((self._used, outcome))
        self._step = self._step * 2 if outcome == self._last else self.step
        self._last = outcome
        self.delay += self._step if outcome == self.early else -self._step
        self.delay = min(self.hi, max(self.lo, self.delay))

    def summary(self):
        counts = ", ".join(f"{o} {c}" for o, c in self.counts.items())
        steps = " ".join(f"{d * 1000:.1f}:{o}" for d, o in self.history)
        return f"{counts} in {len(self.history)} iterations (delay ms:outcome {steps})"

    def assert_covered(self):
        """Fails unless every outcome occurred; prints the tally (pytest -rP shows it)."""
        print(f"race: {self.summary()}")
        assert not self.missing(), f"the race never ended {' or '.join(self.missing())}: {self.summary()}"


def run_apart(in_thread, here, delay, timeout=WAIT):
    """The two sides of one race: in_thread() runs in a new thread and here()
    in this one, here() starting `delay` seconds after the thread started
    (delay < 0: the thread starts -delay seconds after here() returned).
    Returns in_thread()'s value once both are done, or raises what it
    raised; fails if it takes longer than timeout."""
    import threading
    result = {}

    def run():
        try:
            result["value"] = in_thread()
        except BaseException as e:  # handed to the caller
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    if delay >= 0:
        t.start()
        try:
            if delay > 0:
                time.sleep(delay)
            here()
        finally:
            t.join(timeout)
    else:
        here()
        time.sleep(-delay)
        t.start()
        t.join(timeout)
    if t.is_alive():
        raise AssertionError(f"the racing thread did not finish within {timeout}s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


# --------------------------------------------------------------------------
# Endpoints and HTTP/1.1


@dataclass(frozen=True)
class Endpoint:
    """Where the daemon listens: ("unix", path) or ("tcp", (host, port)).
    A tcp endpoint's token, when set, goes out as Authorization: Bearer on
    every request that does not carry its own Authorization header."""
    kind: str
    address: object
    token: str = None

    @classmethod
    def parse(cls, url, token=None):
        if url.startswith("unix://"):
            return cls("unix", url[len("unix://"):])
        if url.startswith("tcp://"):
            host, _, port = url[len("tcp://"):].rpartition(":")
            return cls("tcp", (host, int(port)), token)
        raise ValueError(url)

    def auth_headers(self, headers=None):
        """headers plus the bearer token (tcp with a token, and no
        Authorization given; a None value drops a header)."""
        out = dict(headers or {})
        if self.kind == "tcp" and self.token and not any(k.lower() == "authorization" for k in out):
            out["Authorization"] = "Bearer " + self.token
        return {k: v for k, v in out.items() if v is not None}

    @property
    def url(self):
        if self.kind == "unix":
            return "unix://" + self.address
        return "tcp://%s:%d" % self.address

    def connect(self, timeout=WAIT, rcvbuf=None):
        """A connected socket; rcvbuf sets SO_RCVBUF first (a reader with
        a small window becomes a slow reader sooner)."""
        s = socket.socket(socket.AF_UNIX if self.kind == "unix" else socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.settimeout(timeout)
            s.connect(self.address)
        except BaseException:
            s.close()
            raise
        return s


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix stream socket."""

    def __init__(self, path, timeout=WAIT):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


@dataclass
class Response:
    status: int
    headers: dict  # lower-cased names
    body: bytes

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def content_type(self):
        return self.headers.get("content-type", "")

    def describe(self):
        return f"HTTP {self.status} {self.content_type!r} {self.body[:500]!r}"


def http_request(endpoint, method, path, body=None, headers=None, timeout=WAIT):
    hdrs = endpoint.auth_headers(headers)
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    if endpoint.kind == "unix":
        conn = UnixHTTPConnection(endpoint.address, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(*endpoint.address, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        headers = {k.lower(): v for k, v in r.getheaders()}
        openapi_check.check(method, path, r.status, headers, data)
        return Response(r.status, headers, data)
    finally:
        conn.close()


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


def raw_exchange(endpoint, data, timeout=WAIT):
    """Sends raw bytes (ignoring a peer that stops reading early, as a server
    answering 413 may) and reads one HTTP/1.1 response."""
    s = endpoint.connect(timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before a response head: {buf!r}")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        status, headers = parse_head(head)
        n = int(headers.get("content-length", "-1"))
        while n < 0 or len(rest) < n:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            rest += chunk
        return Response(status, headers, rest[:n] if n >= 0 else rest)
    finally:
        s.close()


# --------------------------------------------------------------------------
# Server-Sent Events


@dataclass
class Event:
    """One SSE event. Its data is upstream Crush's nested envelope,
    {"type": <payload type>, "payload": {"type": <event type>, "payload":
    {fields}}}: `type` is the outer type ("fs", "workspace", "watch"),
    `kind` the event's own ("created", "ready", ...), and `payload` its
    fields."""
    id: object  # int, or the raw text when not an integer, or None
    data: str
    json: object = None

    @property
    def type(self):
        return self.json.get("type") if isinstance(self.json, dict) else None

    @property
    def event(self):
        """The inner event object {"type", "payload"}, or None."""
        p = self.json.get("payload") if isinstance(self.json, dict) else None
        return p if isinstance(p, dict) else None

    @property
    def kind(self):
        return self.event.get("type") if self.event is not None else None

    @property
    def payload(self):
        """The event's fields (upstream's Event[T].Payload), or None."""
        p = self.event.get("payload") if self.event is not None else None
        return p if isinstance(p, dict) else None


def is_event(ev, type_, kind=None):
    """True for an event of payload type type_ in the nested envelope,
    optionally of one event type."""
    if ev.type != type_ or not isinstance(ev.kind, str) or ev.payload is None:
        return False
    return kind is None or ev.kind == kind


def is_fs(ev, kind=None, path=None):
    """True for an fs event, optionally of an event type and path."""
    if not is_event(ev, "fs", kind):
        return False
    if path is not None and ev.payload.get("path") != path:
        return False
    return True


class EventStream:
    """GET /v1/workspaces/{id}/events over a raw socket. The response head
    is read in the constructor (within header_timeout); events are parsed
    incrementally as they arrive, de-chunking when the body is chunked.
    To resume, last_event_id is sent as the standard header (via="header")
    or as the last_event_id query parameter (via="query")."""

    def __init__(self, endpoint, ws_id, client_id, header_timeout=WAIT, last_event_id=None, via="header",
                 rcvbuf=None):
        self.endpoint = endpoint
        self.ws_id = ws_id
        self.client_id = client_id
        self.events = []
        self.comments = 0
        self.eof = False
        self._raw = b""
        self._text = ""
        self._chunked = False
        self.sock = endpoint.connect(header_timeout, rcvbuf)
        q = f"/v1/workspaces/{ws_id}/events"
        if client_id is not None:
            q += f"?client_id={client_id}"
        extra = ""
        if last_event_id is not None:
            if via == "query":
                q += f"{'&' if client_id is not None else '?'}last_event_id={last_event_id}"
            else:
                extra = f"Last-Event-ID: {last_event_id}\r\n"
        for k, v in endpoint.auth_headers().items():
            extra += f"{k}: {v}\r\n"
        req = (f"GET {q} HTTP/1.1\r\nHost: localhost\r\n"
               f"Accept: text/event-stream\r\nCache-Control: no-cache\r\n{extra}\r\n")
        self.sock.sendall(req.encode())
        deadline = time.monotonic() + header_timeout
        while b"\r\n\r\n" not in self._raw:
            if not self._recv(deadline):
                self.close()
                raise AssertionError(
                    f"no response head for the event stream within {header_timeout}s "
                    f"(eof={self.eof}, got {self._raw[:300]!r})")
        head, _, self._raw = self._raw.partition(b"\r\n\r\n")
        self.status, self.headers = parse_head(head)
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self._consume()

    # context manager: always close the socket
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def content_type(self):
        return self.headers.get("content-type", "")

    def _recv(self, deadline):
        """One recv bounded by deadline. False on timeout or EOF."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, OSError):
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self._raw += chunk
        return True

    def _consume(self):
        """Moves body bytes from _raw into SSE text, parsing whole events."""
        if self._chunked:
            while True:
                line, sep, rest = self._raw.partition(b"\r\n")
                if not sep:
                    break
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.eof = True
                    self._raw = b""
                    break
                if len(rest) < size + 2:
                    break
                self._text += rest[:size].decode("utf-8")
                self._raw = rest[size + 2:]
        else:
            # Decode only up to the last complete UTF-8 sequence.
            try:
                self._text += self._raw.decode("utf-8")
                self._raw = b""
            except UnicodeDecodeError as e:
                self._text += self._raw[:e.start].decode("utf-8")
                self._raw = self._raw[e.start:]
        self._text = self._text.replace("\r\n", "\n")
        while "\n\n" in self._text:
            block, _, self._text = self._text.partition("\n\n")
            self._parse_block(block)

    def _parse_block(self, block):
        ev_id, data, fields = None, [], 0
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "id":
                ev_id = int(value) if value.strip().lstrip("-").isdigit() else value
                fields += 1
            elif name == "data":
                data.append(value)
                fields += 1
        if not data:
            return
        text = "\n".join(data)
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        self.events.append(Event(ev_id, text, obj))

    def pump(self, timeout):
        """Reads whatever arrives within timeout. Returns False at EOF."""
        deadline = time.monotonic() + timeout
        while self._recv(deadline):
            self._consume()
        self._consume()
        return not self.eof

    def wait_for(self, pred, timeout=WAIT, after=0, what=None):
        """Returns the first event at index >= after satisfying pred,
        reading more as needed; fails the test on timeout or EOF."""
        deadline = time.monotonic() + timeout
        i = after
        while True:
            while i < len(self.events):
                if pred(self.events[i]):
                    return self.events[i]
                i += 1
            if self.eof or time.monotonic() >= deadline:
                raise AssertionError(
                    f"event stream {'ended' if self.eof else 'timed out'} before: "
                    f"{what or pred} (got: {[e.data for e in self.events][-20:]})")
            if self._recv(deadline):
                self._consume()

    def wait_eof(self, timeout=WAIT):
        """True once the server ends the stream within timeout."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            if self._recv(deadline):
                self._consume()
        return self.eof

    def fs_events(self):
        return [e for e in self.events if is_fs(e)]

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# --------------------------------------------------------------------------
# The API, as a client sees it


class Api:
    def __init__(self, endpoint):
        self.endpoint = endpoint

    def request(self, method, path, body=None, headers=None, timeout=WAIT):
        return http_request(self.endpoint, method, path, body, headers, timeout)

    def health(self):
        return self.request("GET", "/v1/health")

    def create_raw(self, path, client_id=None, **fields):
        body = {"path": path}
        if client_id is not None:
            body["client_id"] = client_id
        body.update(fields)
        return self.request("POST", "/v1/workspaces", body)

    def create(self, path, client_id=None, **fields):
        """POST /v1/workspaces expecting 200; returns the Workspace."""
        r = self.create_raw(path, client_id or new_client_id(), **fields)
        assert r.status == 200, f"create {path!r} failed: {r.describe()}"
        return r.json()

    def get(self, ws_id):
        return self.request("GET", f"/v1/workspaces/{ws_id}")

    def workspace(self, ws_id):
        """The Workspace, or None when 404."""
        r = self.get(ws_id)
        if r.status == 404:
            return None
        assert r.status == 200, r.describe()
        return r.json()

    def list(self):
        r = self.request("GET", "/v1/workspaces")
        assert r.status == 200, r.describe()
        data = r.json()
        assert isinstance(data, list), data
        return data

    def ids(self):
        return {w["id"] for w in self.list()}

    def release(self, ws_id, client_id):
        r = self.request("DELETE", f"/v1/workspaces/{ws_id}?client_id={client_id}")
        assert r.status == 200, f"release failed: {r.describe()}"
        return r

    def events(self, ws_id, client_id, header_timeout=WAIT):
        s = EventStream(self.endpoint, ws_id, client_id, header_timeout)
        assert s.status == 200, f"attach failed: HTTP {s.status} {s.headers} {s._raw[:300]!r}"
        return s


class Claim:
    """One client's hold on a workspace, the sequence most lifetime tests
    start with: a new client id creates the workspace for `path`, then
    (attach=True) opens an event stream on it, then (release=True) releases
    its create claim, so that the stream is its only hold (SPEC §4).
    Closes its streams on exit; releases nothing on its own."""

    def __init__(self, sup, path, attach=True, release=False):
        self.sup = sup
        self.cid = new_client_id()
        self.ws = sup.api.create(path, self.cid)
        self.streams = []
        if attach:
            self.attach()
        if release:
            self.release()

    @property
    def stream(self):
        """The first stream it opened."""
        return self.streams[0]

    def attach(self):
        """Opens one more event stream (expects 200) and returns it."""
        s = self.sup.api.events(self.ws["id"], self.cid)
        self.streams.append(s)
        return s

    def release(self):
        return self.sup.api.release(self.ws["id"], self.cid)

    def close(self):
        """Closes every stream it opened (closing one twice is harmless)."""
        for s in self.streams:
            s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------
# Predicates on a workspace, for wait_until() and stays_true(): each returns
# the Workspace while it holds (so a wait hands it back), else a falsy value.


def alive(sup, ws, streams=None, clients=None):
    """The workspace `ws` (as created) is listed, with the given stream and
    client counts when those are not None, and its worker (the pid the
    create answered) runs."""
    def check():
        w = sup.api.workspace(ws["id"])
        if w is None or not pid_live(ws["pid"]):
            return False
        if streams is not None and w["streams"] != streams:
            return False
        if clients is not None and w["clients"] != clients:
            return False
        return w
    check.__name__ = f"workspace {ws['id']} alive (streams={streams}, clients={clients})"
    return check


def ready_with(sup, ws_id, pid=None):
    """The workspace is listed `ready` (with that pid, when not None) and
    its listed worker runs; for a workspace whose worker may have been
    replaced since the create."""
    def check():
        w = sup.api.workspace(ws_id)
        if not w or w["state"] != "ready" or not pid_live(w["pid"]):
            return None
        if pid is not None and w["pid"] != pid:
            return None
        return w
    check.__name__ = f"workspace {ws_id} ready (pid {pid})"
    return check


def wait_gone(sup, ws, timeout=WAIT):
    """Waits until the workspace answers 404 and its worker is reaped."""
    wait_until(lambda: sup.api.workspace(ws["id"]) is None, timeout,
               what=f"workspace {ws['id']} torn down")
    wait_until(lambda: not pid_exists(ws["pid"]), timeout,
               what=f"worker {ws['pid']} reaped (gone from /proc, not a zombie)")


# --------------------------------------------------------------------------
# /proc


def _read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def proc_stat(pid):
    """(state, ppid, pgrp, session, comm) or None when the pid is gone."""
    s = _read(f"/proc/{pid}/stat")
    if not s:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    rest = s[s.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2]), int(rest[3]), comm


def proc_cmdline(pid):
    s = _read(f"/proc/{pid}/cmdline", "rb")
    if not s:
        return []
    return [a.decode(errors="replace") for a in s.rstrip(b"\0").split(b"\0")]


def proc_environ(pid):
    s = _read(f"/proc/{pid}/environ", "rb")
    if not s:
        return []
    return [a.decode(errors="replace") for a in s.rstrip(b"\0").split(b"\0")]


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def pid_exists(pid):
    return os.path.exists(f"/proc/{pid}")


def pid_live(pid):
    """Running (exists and neither zombie nor dead)."""
    st = proc_stat(pid)
    return st is not None and st[0] not in "ZX"


def is_zombie(pid):
    st = proc_stat(pid)
    return st is not None and st[0] == "Z"


def is_worker_cmdline(args):
    return bool(args) and (args[0] == str(WORKER) or os.path.basename(args[0]) == "crush-worker")


@dataclass
class Proc:
    pid: int
    ppid: int
    state: str
    args: list = field(default_factory=list)


def worker_procs(ppid=None, path=None):
    """Live crush-worker processes (by cmdline), optionally only the children
    of ppid and/or those whose cmdline names directory `path`."""
    out = []
    for pid in all_pids():
        args = proc_cmdline(pid)
        if not is_worker_cmdline(args):
            continue
        st = proc_stat(pid)
        if st is None or st[0] in "ZX":
            continue
        if ppid is not None and st[1] != ppid:
            continue
        if path is not None and path not in args[1:]:
            continue
        out.append(Proc(pid, st[1], st[0], args))
    return out


def zombie_children(ppid):
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[1] == ppid and st[0] == "Z":
            out.append(Proc(pid, st[1], st[0], [st[4]]))
    return out


def open_fds(pid):
    """{fd: readlink target} of a process."""
    out = {}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return out
    for name in names:
        try:
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            pass
    return out


def unix_socket_inodes(path):
    """Inodes of the unix sockets bound to path (from /proc/net/unix)."""
    inodes = set()
    for line in (_read("/proc/net/unix") or "").splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[7] == path:
            inodes.add(parts[6])
    return inodes


# --------------------------------------------------------------------------
# The daemon under test


def default_socket_path(env):
    """The daemon's (and crush-ps's) default: $XDG_RUNTIME_DIR/crush-$UID.sock,
    or /tmp/crush-$UID.sock when that is unset or longer than 104 bytes."""
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if xdg:
        p = os.path.join(xdg, f"crush-{os.getuid()}.sock")
        if len(p.encode()) <= 104:
            return p
    return f"/tmp/crush-{os.getuid()}.sock"


def short_tmpdir():
    """A short directory under /tmp: sun_path holds at most 108 bytes."""
    return tempfile.mkdtemp(prefix="cs-", dir="/tmp")


class Supervisor:
    """One crush-supervisor process on a private unix socket, stdout and
    stderr captured to files. Defaults are fast but never expire anything
    during a test unless the test asks for it."""

    DEFAULTS = {
        "create_grace": 30,
        "detach_grace": 0,
        "idle_timeout": 60,
        "kill_timeout": 3,
        "log_level": "debug",
    }

    def __init__(self, logdir, roots=(), hosts=None, extra_args=(), env=None,
                 sockdir=None, **opts):
        base = {k: v for k, v in os.environ.items() if not k.startswith("CRUSH_SERVER_")}
        base.update(env or {})
        self.env = base
        if hosts == []:
            # No -H: the daemon picks its default socket from its environment.
            self.sockdir = None
            self.sock = default_socket_path(self.env)
            self.hosts = []
        else:
            self.sockdir = sockdir or short_tmpdir()
            self.sock = os.path.join(self.sockdir, "s.sock")
            # "{sock}" in a host URL stands for this supervisor's private socket path.
            self.hosts = [h.format(sock=self.sock) for h in hosts] if hosts is not None \
                else ["unix://" + self.sock]
        # A tcp listener needs a bearer token (SPEC §7): each daemon gets
        # its own, so no test reads or writes the user's shared token file,
        # unless the test chose (env CRUSH_SERVER_TOKEN, even "", or
        # token_file).
        self.token = (env or {}).get("CRUSH_SERVER_TOKEN") or None
        if (any(h.startswith("tcp://") for h in self.hosts) and "CRUSH_SERVER_TOKEN" not in (env or {})
                and opts.get("token_file") is None):
            self.token = secrets.token_hex(16)
            self.env["CRUSH_SERVER_TOKEN"] = self.token
        self.endpoint = Endpoint.parse(self.hosts[0], self.token) if self.hosts else Endpoint("unix", self.sock)
        self.api = Api(self.endpoint)
        self.roots = [str(r) for r in roots]
        options = dict(self.DEFAULTS)
        options.update(opts)
        args = [str(SUPERVISOR)]
        for h in self.hosts:
            args += ["-H", h]
        for k, v in options.items():
            if v is not None:
                args += ["--" + k.replace("_", "-"), str(v)]
        args += list(extra_args)
        self.args = args
        n = len(list(Path(logdir).glob("supervisor-*.stderr")))
        self.stderr_path = Path(logdir) / f"supervisor-{n}.stderr"
        self.stdout_path = Path(logdir) / f"supervisor-{n}.stdout"
        self.proc = None
        self.seen_workers = set()

    def start(self, wait_ready=True):
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, env=self.env, start_new_session=True)
        if wait_ready:
            self.wait_ready()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def wait_ready(self, timeout=WAIT):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"crush-supervisor exited {self.proc.returncode} while starting "
                    f"({' '.join(self.args)}):\n{self.stderr()}")
            try:
                return self.api.health().status == 200
            except OSError:
                return False
        wait_until(ready, timeout, what="supervisor answers GET /v1/health")

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stdout(self):
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout=WAIT):
        """Exit status, or fails the test if still running after timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"crush-supervisor still running after {timeout}s")

    def assert_exit_0(self, timeout=WAIT):
        """Waits for the exit and asserts status 0, naming a sanitizer
        report as the likely cause (the ASan build exits 99 on a leak)."""
        rc = self.wait_exit(timeout)
        if rc != 0:
            text = self.stderr()
            why = ""
            if LEAK_MARKER in text:
                why = " (LeakSanitizer reported leaks at exit; see stderr)"
            elif any(m in text for m in SANITIZER_ERRORS):
                why = " (sanitizer error; see stderr)"
            raise AssertionError(f"crush-supervisor exit status {rc}, want 0{why}")
        return rc

    def signal(self, sig):
        self.proc.send_signal(sig)

    def workers(self, path=None):
        """Live workers that are children of this supervisor."""
        ws = worker_procs(ppid=self.pid, path=path)
        self.seen_workers.update(w.pid for w in ws)
        return ws

    def worker_pids(self, path=None):
        return {w.pid for w in self.workers(path)}

    def zombies(self):
        return zombie_children(self.pid)

    def sanitizer_errors(self):
        """stderr when it holds a sanitizer memory/UB error, else None."""
        text = self.stderr()
        return text if any(m in text for m in SANITIZER_ERRORS) else None

    def leak_reports(self):
        """The LeakSanitizer reports in stderr (one string each)."""
        text = self.stderr()
        out = []
        start = text.find(LEAK_MARKER)
        while start >= 0:
            summary = text.find("SUMMARY:", start)
            end = text.find("\n", summary) if summary >= 0 else -1
            out.append(text[start:end if end >= 0 else len(text)])
            start = text.find(LEAK_MARKER, start + 1)
        return out

    def cleanup(self):
        """TERM, wait, KILL; then any worker of ours still around, by its
        process group (workers are group leaders) or pid."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT)
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        leftovers = set()
        for pid in self.seen_workers:
            if pid_live(pid) and is_worker_cmdline(proc_cmdline(pid)):
                leftovers.add(pid)
        if self.roots:
            for w in worker_procs():
                if any(r in a for r in self.roots for a in w.args[1:]):
                    leftovers.add(w.pid)
        for pid in leftovers:
            st = proc_stat(pid)
            try:
                if st and st[2] == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.sockdir is not None:
            try:
                if os.path.exists(self.sock) and not self.running():
                    os.unlink(self.sock)
                os.rmdir(self.sockdir)
            except OSError:
                pass
        return leftovers


def run_cli(args, timeout=WAIT, env=None, **kw):
    """Runs crush-supervisor with args to completion (killed on timeout)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("CRUSH_SERVER_")}
    e.update(env or {})
    return subprocess.run([str(SUPERVISOR)] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, env=e, **kw)


def free_tcp_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------
# Appended for the fault, replay and slow-reader tests (test_faults.py,
# test_replay.py): nothing above changes behaviour.


def open_events(api, ws_id, client_id, last_event_id=None, via="header", rcvbuf=None,
                header_timeout=WAIT):
    """Api.events() with Last-Event-ID and SO_RCVBUF; expects 200."""
    s = EventStream(api.endpoint, ws_id, client_id, header_timeout, last_event_id, via, rcvbuf)
    assert s.status == 200, f"attach failed: HTTP {s.status} {s.headers} {s._raw[:300]!r}"
    return s


def is_ws_event(ev, kind=None):
    """True for a `workspace` event, optionally of one event type."""
    return is_event(ev, "workspace", kind)


class StreamDrainer:
    """Reads an EventStream in a background thread (so it never becomes a
    slow reader while the test does something else). Use as a context
    manager; events accumulate in stream.events (appends are atomic)."""

    def __init__(self, stream):
        self.stream = stream
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set() and self.stream.pump(0.05):
            pass

    def wait_for(self, pred, timeout=WAIT, what=None):
        deadline = time.monotonic() + timeout
        i = 0
        while True:
            evs = self.stream.events
            while i < len(evs):
                if pred(evs[i]):
                    return evs[i]
                i += 1
            if self.stream.eof or time.monotonic() >= deadline:
                raise AssertionError(
                    f"drained stream {'ended' if self.stream.eof else 'timed out'} before: "
                    f"{what or pred} (last: {[e.data for e in evs][-5:]})")
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(WAIT)

    def __exit__(self, *exc):
        self.stop()
