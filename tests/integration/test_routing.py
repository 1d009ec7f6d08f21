"""
Routed requests (SPEC §8 "Routing", proto/PROTOCOL.md "Routed requests"):
everything under /v1/workspaces/{id}/ but the workspace itself, `events`
and `current-session` is answered by the workspace's worker. Proved here
from the outside: every upstream route answers (501 when the worker lacks
it, never 404), bodies of any size up to 64 MiB cross both ways byte for
byte over HTTP/1.1 and h2c, a starting worker is waited for up to the
request timeout, a slow answer's head is bounded by it, a client that
leaves frees its slot in the worker, 64 requests per worker at most,
and a worker that breaks the calls protocol fails its pending requests
with 502 and is killed and restarted. Then the upstream client's startup
sequence, replayed field by field, --pinned and current-session.

The daemon runs with CRUSH_TEST_ROUTES=1: the worker also serves
/_test/bytes?n=N, /_test/echo and /_test/sleep?ms=M (worker/api.c).
"""

import hashlib
import http.client
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
import uuid

import pytest

from crush import (REPO, WAIT, WORKER, EventStream, is_ws_event, new_client_id, pid_live,
                   stays_true, wait_until)
from test_faults import FAKE, Fake, json_error, wait_reaped

ROUTES_ENV = {"CRUSH_TEST_ROUTES": "1"}
MIB = 1 << 20
NOT_IMPLEMENTED = "not implemented by this workspace host"

# Upstream's per-workspace routes, in its order (charmbracelet/crush
# internal/server/server.go, below /v1/workspaces/{id}), without the ones
# the supervisor answers itself (the workspace, events, current-session).
UPSTREAM_ROUTES = [
    ("GET", "/config"), ("GET", "/providers"), ("GET", "/sessions"), ("POST", "/sessions"),
    ("GET", "/sessions/{sid}"), ("PUT", "/sessions/{sid}"), ("DELETE", "/sessions/{sid}"),
    ("GET", "/sessions/{sid}/history"), ("GET", "/sessions/{sid}/messages"),
    ("GET", "/sessions/{sid}/messages/user"), ("GET", "/messages/user"),
    ("GET", "/sessions/{sid}/filetracker/files"), ("POST", "/filetracker/read"),
    ("GET", "/filetracker/lastread"), ("GET", "/lsps"), ("GET", "/lsps/{lsp}/diagnostics"),
    ("POST", "/lsps/start"), ("POST", "/lsps/stop"), ("GET", "/permissions/skip"),
    ("POST", "/permissions/skip"), ("POST", "/permissions/grant"), ("POST", "/questions/answer"),
    ("POST", "/questions/cancel"), ("GET", "/agent"), ("POST", "/agent"), ("POST", "/agent/init"),
    ("POST", "/agent/update"), ("GET", "/agent/sessions/{sid}"), ("POST", "/agent/sessions/{sid}/cancel"),
    ("GET", "/agent/sessions/{sid}/prompts/queued"), ("GET", "/agent/sessions/{sid}/prompts/list"),
    ("POST", "/agent/sessions/{sid}/prompts/clear"), ("POST", "/agent/sessions/{sid}/summarize"),
    ("POST", "/agent/sessions/{sid}/shell"), ("GET", "/agent/default-small-model"),
    ("POST", "/config/set"), ("POST", "/config/remove"), ("POST", "/config/model"),
    ("POST", "/config/compact"), ("POST", "/config/provider-key"), ("POST", "/config/import-copilot"),
    ("POST", "/config/refresh-oauth"), ("GET", "/project/needs-init"), ("POST", "/project/init"),
    ("GET", "/project/init-prompt"), ("GET", "/skills"), ("POST", "/skills/read"),
    ("POST", "/mcp/refresh-tools"), ("POST", "/mcp/read-resource"), ("GET", "/mcp/prompts"),
    ("POST", "/mcp/get-prompt"), ("GET", "/mcp/states"), ("GET", "/mcp/pending-auth"),
    ("GET", "/mcp/auth-url"), ("POST", "/mcp/auth"), ("POST", "/mcp/refresh-prompts"),
    ("POST", "/mcp/refresh-resources"), ("POST", "/mcp/docker/enable"), ("POST", "/mcp/docker/disable"),
]


def worker_table():
    """(verb, pattern, implemented) of worker/api.c's api_routes, in order."""
    text = (REPO / "worker" / "api.c").read_text()
    body = text[text.index("const api_route_t api_routes[]"):]
    body = body[:body.index("};")]
    return [(v, p, h != "NULL") for v, p, h in
            re.findall(r'\{"([A-Z]+)",\s*"([^"]+)",\s*(\w+)\}', body)]


def concrete(pattern):
    return pattern.replace("{sid}", str(uuid.uuid4())).replace("{lsp}", "gopls")


# --------------------------------------------------------------------------
# helpers


@pytest.fixture
def rsup(start_supervisor):
    """start(**opts): a supervisor whose workers serve the /_test routes."""
    def start(env=None, **opts):
        e = dict(ROUTES_ENV)
        e.update(env or {})
        return start_supervisor(env=e, **opts)
    return start


def wpath(ws_id, path):
    return f"/v1/workspaces/{ws_id}{path}"


def call(sup, ws_id, method, path, body=None, headers=None, timeout=WAIT):
    return sup.api.request(method, wpath(ws_id, path), body, headers, timeout)


def held_request(sup, target, method="GET"):
    """A raw HTTP/1.1 request sent and left waiting: the socket."""
    s = sup.endpoint.connect()
    s.sendall(f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n".encode())
    return s


def in_thread(fn, *args, **kw):
    """Runs fn in a thread; returns (thread, box): box["r"] or box["err"]."""
    box = {}

    def run():
        try:
            box["r"] = fn(*args, **kw)
        except Exception as e:  # noqa: BLE001 - reported by the test
            box["err"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def slow_worker(tmp_path, secs):
    """A --worker wrapper that sleeps, then execs the real worker (same pid)."""
    p = tmp_path / f"slow-worker-{secs}"
    p.write_text(f'#!/bin/sh\nsleep {secs}\nexec "{WORKER}" "$@"\n')
    p.chmod(0o755)
    return str(p)


def state_of(sup, d):
    ws = [w for w in sup.api.list() if w["resolved_path"] == d]
    return ws[0] if ws else None


# --------------------------------------------------------------------------
# The route table


def test_worker_table_is_upstreams_per_workspace_routes():
    """worker/api.c's table is upstream's list, in upstream's order (so the
    tests below cover every upstream route, and README's table is whole)."""
    table = worker_table()
    assert [(v, p) for v, p, _ in table] == UPSTREAM_ROUTES
    implemented = [p for _, p, impl in table if impl]
    assert "/config" in implemented and "/agent/sessions/{sid}/shell" in implemented, implemented


def test_every_upstream_route_answers_and_none_is_404(rsup, wsdir):
    sup = rsup()
    ws = sup.api.create(wsdir, new_client_id())
    for verb, pattern, implemented in worker_table():
        body = {} if verb in ("POST", "PUT") else None
        r = call(sup, ws["id"], verb, concrete(pattern), body)
        if implemented:
            # Answered by its service: whatever it says to made-up input
            # (upstream's 500 for an unknown session, 400 for an empty
            # body), never "not implemented" nor "workspace gone".
            assert r.status not in (404, 501), f"{verb} {pattern}: {r.describe()}"
        else:
            msg = json_error(r, 501)
            assert msg == NOT_IMPLEMENTED, f"{verb} {pattern}: {msg!r}"


def test_known_path_with_another_method_is_405_unknown_path_404(rsup, wsdir, make_dir):
    sup = rsup()
    ws = sup.api.create(wsdir, new_client_id())
    assert json_error(call(sup, ws["id"], "DELETE", "/config"), 405) == "method not allowed"
    assert json_error(call(sup, ws["id"], "PATCH", "/sessions"), 405) == "method not allowed"
    assert json_error(call(sup, ws["id"], "POST", f"/sessions/{uuid.uuid4()}/history", {}), 405)
    for path in ("/nope", "/sessions/a/b/c/d", "/configs", "/config/set/more", "/_test/nope"):
        json_error(call(sup, ws["id"], "GET", path), 404)
    # The test routes exist only when the supervisor's environment asks.
    plain = rsup(env={"CRUSH_TEST_ROUTES": "0"})
    ws2 = plain.api.create(make_dir("other"), new_client_id())  # wsdir's data dir is the first's
    json_error(call(plain, ws2["id"], "GET", "/_test/bytes?n=10"), 404)
    # An unknown workspace is the supervisor's 404, as for every route.
    assert json_error(call(sup, str(uuid.uuid4()), "GET", "/config"), 404) == "workspace not found"


def test_get_config_is_the_workspace_config(rsup, wsdir):
    sup = rsup()
    ws = sup.api.create(wsdir, new_client_id())
    r = call(sup, ws["id"], "GET", "/config")
    assert r.status == 200 and r.content_type.startswith("application/json"), r.describe()
    cfg = r.json()
    assert cfg == ws["config"], (cfg, ws["config"])
    assert cfg["options"]["data_directory"] == ws["data_dir"]
    assert cfg["options"]["disable_metrics"] is False
    assert isinstance(cfg["providers"], dict)
    # The client id is passed along, optional, and checked when given.
    assert call(sup, ws["id"], "GET", f"/config?client_id={new_client_id()}").status == 200
    json_error(call(sup, ws["id"], "GET", "/config?client_id=nope"), 400)


# --------------------------------------------------------------------------
# Bodies


def test_16_mib_both_ways_over_http1_exact_bytes(rsup, wsdir):
    sup = rsup()
    ws = sup.api.create(wsdir, new_client_id())
    data = os.urandom(16 * MIB)  # any bytes: newlines, NULs, frame-header look-alikes
    r = call(sup, ws["id"], "POST", "/_test/echo", data, {"Content-Type": "application/octet-stream"},
             timeout=60)
    assert r.status == 200, r.describe()
    assert len(r.body) == len(data) and hashlib.sha256(r.body).digest() == hashlib.sha256(data).digest()
    r = call(sup, ws["id"], "GET", f"/_test/bytes?n={16 * MIB}", timeout=60)
    assert r.status == 200 and r.content_type == "application/octet-stream", r.describe()
    assert r.body == b"x" * (16 * MIB)
    # An empty body both ways, and one that is not a multiple of a frame.
    assert call(sup, ws["id"], "POST", "/_test/echo", b"").body == b""
    odd = os.urandom(MIB + 7)
    assert call(sup, ws["id"], "POST", "/_test/echo", odd).body == odd


def curl(sup, args, timeout=60):
    return subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--unix-socket", sup.sock] + args,
                          capture_output=True, timeout=timeout)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_16_mib_both_ways_over_h2c_exact_bytes(rsup, wsdir, tmp_path):
    sup = rsup()
    ws = sup.api.create(wsdir, new_client_id())
    data = os.urandom(16 * MIB)
    src, out = tmp_path / "src.bin", tmp_path / "out.bin"
    src.write_bytes(data)
    url = "http://localhost" + wpath(ws["id"], "/_test/echo")
    p = curl(sup, ["--data-binary", f"@{src}", "-H", "Content-Type: application/octet-stream", "-o", str(out),
                   "-w", "%{http_code} %{http_version}", url])
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == "200 2", p.stdout
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    url = "http://localhost" + wpath(ws["id"], f"/_test/bytes?n={16 * MIB}")
    p = curl(sup, ["-o", str(out), "-w", "%{http_code} %{http_version}", url])
    assert p.returncode == 0 and p.stdout.decode() == "200 2", (p.stdout, p.stderr)
    assert out.read_bytes() == b"x" * (16 * MIB)


def test_a_body_of_64_mib_is_taken_and_one_byte_more_is_413(rsup, wsdir):
    sup = rsup()
    ws = sup.api.create(wsdir, new_client_id())
    data = b"\n" * (64 * MIB)
    r = call(sup, ws["id"], "POST", "/_test/echo", data, timeout=120)
    assert r.status == 200 and len(r.body) == len(data) and r.body == data, r.status
    r = call(sup, ws["id"], "POST", "/_test/echo", data + b"!", timeout=120)
    assert json_error(r, 413) == "request body too large"
    # Elsewhere the limit stays 1 MiB.
    r = sup.api.request("POST", "/v1/control", b"{" + b" " * MIB + b"}")
    json_error(r, 413)
    assert call(sup, ws["id"], "GET", "/config").status == 200


def test_bodies_of_calls_at_once_reach_the_worker_each_intact(rsup, wsdir):
    """Four 6 MiB bodies in flight together, 12 times: the supervisor
    frames them to the worker in turns (a batch of each per write), and the
    worker must still put every body together from its own frames only.
    The answers stream back to four clients that read them slower than the
    worker writes them (the supervisor's read budget then pauses that
    worker between passes of the loop): this once aborted the daemon in
    h2o's write_pending (server_run, "Work due between two passes")."""
    sup = rsup()
    ws = sup.api.create(wsdir, new_client_id())
    datas = [os.urandom(6 * MIB + i) for i in range(4)]
    for _ in range(12):
        runs = [in_thread(call, sup, ws["id"], "POST", "/_test/echo", d, None, 60) for d in datas]
        for (t, box), d in zip(runs, datas):
            t.join(90)
            assert "err" not in box, (box.get("err"), sup.stderr()[-2000:])
            r = box["r"]
            assert r.status == 200 and r.body == d, (r.status, len(r.body), len(d))
    assert sup.running()


def metric_count(sup, code):
    r = sup.api.request("GET", "/v1/metrics")
    assert r.status == 200, r.describe()
    return sum(int(float(v)) for v in re.findall(rf'crush_http_requests_total{{[^}}]*code="{code}"[^}}]*}} (\S+)',
                                                  r.body.decode()))


def test_a_body_still_going_to_the_worker_stops_when_its_client_leaves(fake_sup, wsdir, tmp_path):
    """The request body goes to the worker a batch at a time, as the
    socketpair drains, from the client's own request (never a second whole
    copy in the supervisor). A client that leaves mid-way: the rest of its
    body is never sent, the worker gets CANCEL instead of END, and the
    supervisor reads nothing of the gone request's bytes after."""
    sup = fake_sup()
    fake = Fake(tmp_path, "stall_body", trigger=True)
    calls_log = tmp_path / "calls.log"
    ws = sup.api.create(wsdir, new_client_id(), env=fake.env + [f"FAKE_WORKER_CALLS={calls_log}"])
    size = 32 * MIB
    s = sup.endpoint.connect()
    s.sendall(f"POST {wpath(ws['id'], '/_test/x')} HTTP/1.1\r\nHost: localhost\r\n"
              f"Content-Length: {size}\r\n\r\n".encode())
    s.sendall(b"b" * size)
    wait_until(lambda: any(ln.endswith(" stalled") for ln in fake_calls(calls_log)), timeout=WAIT,
               what="the worker holding its first DATA frame")
    before = metric_count(sup, 499)
    s.close()
    wait_until(lambda: metric_count(sup, 499) > before, timeout=WAIT, what="the supervisor seeing the client go")
    fake.trigger.touch()
    wait_until(lambda: len(fake_calls(calls_log)) >= 2, timeout=WAIT, what="the worker's answer to the call")
    fid, how, n = fake_calls(calls_log)[1].split()
    assert how == "cancel" and int(n) < size // 2, fake_calls(calls_log)
    # The worker and the daemon go on: a new body arrives whole.
    r = call(sup, ws["id"], "POST", "/_test/x", b"z" * (3 * MIB + 1))
    assert r.status == 200 and r.body == str(3 * MIB + 1).encode(), r.describe()
    assert sup.api.workspace(ws["id"])["pid"] == ws["pid"]


# --------------------------------------------------------------------------
# Waiting for the worker, and for its answer


def test_request_to_a_starting_worker_waits_then_succeeds(rsup, make_dir, tmp_path):
    sup = rsup(worker=slow_worker(tmp_path, 1))
    d = make_dir("slow")
    t, box = in_thread(sup.api.create, d, new_client_id())
    w = wait_until(lambda: state_of(sup, d), what="workspace listed")
    assert w["state"] == "starting", w
    t0 = time.monotonic()
    r = call(sup, w["id"], "GET", "/config")
    assert r.status == 200, r.describe()
    assert time.monotonic() - t0 >= 0.3, "answered before the worker could be ready"
    t.join(WAIT)
    assert box["r"]["state"] == "ready", box
    assert r.json()["options"]["data_directory"] == box["r"]["data_dir"]


def test_request_to_a_worker_not_ready_in_time_is_504(rsup, make_dir, tmp_path):
    sup = rsup(worker=slow_worker(tmp_path, 3), request_timeout=0.5)
    d = make_dir("slower")
    t, box = in_thread(sup.api.create, d, new_client_id())
    w = wait_until(lambda: state_of(sup, d), what="workspace listed")
    t0 = time.monotonic()
    r = call(sup, w["id"], "GET", "/config")
    elapsed = time.monotonic() - t0
    assert json_error(r, 504) == "workspace worker not ready in time"
    assert 0.4 <= elapsed < 2.5, elapsed
    t.join(WAIT)
    assert box["r"]["state"] == "ready", box
    assert call(sup, w["id"], "GET", "/config").status == 200


def test_answer_head_later_than_the_request_timeout_is_504_and_cancelled(rsup, wsdir):
    sup = rsup(request_timeout=0.5)
    ws = sup.api.create(wsdir, new_client_id())
    t0 = time.monotonic()
    r = call(sup, ws["id"], "GET", "/_test/sleep?ms=1500")
    elapsed = time.monotonic() - t0
    assert json_error(r, 504) == "workspace worker did not answer in time"
    assert 0.4 <= elapsed < 1.4, elapsed
    # The cancelled sleep's timer was stopped: past the moment it would
    # have fired (and answered a call already freed: a use after free under
    # ASan, a crash or a stray answer otherwise), the worker is the same,
    # unharmed process.
    stays_true(lambda: pid_live(ws["pid"]) and not sup.sanitizer_errors(), max(0.1, 1.7 - elapsed),
               what="worker alive and clean after its cancelled timer's deadline")
    w = sup.api.workspace(ws["id"])
    assert w["state"] == "ready" and w["pid"] == ws["pid"], w
    # A quick one still goes; a sleep under the timeout answers.
    assert call(sup, ws["id"], "GET", "/_test/sleep?ms=50").json() == {"slept": True}
    # 64 timed-out sleeps free their slots: the worker answered each CANCEL
    # (else the 65th request would be 429 until the sleeps end).
    threads = [in_thread(call, sup, ws["id"], "GET", "/_test/sleep?ms=20000") for _ in range(64)]
    for t, box in threads:
        t.join(WAIT)
        assert box["r"].status == 504, box
    wait_until(lambda: call(sup, ws["id"], "GET", "/config").status == 200, timeout=5,
               what="slots of the timed-out calls free again")
    assert pid_live(ws["pid"]) and sup.api.workspace(ws["id"])["pid"] == ws["pid"]


# --------------------------------------------------------------------------
# Limits and cancellation


def wait_one_refusal(socks, timeout=WAIT):
    """Reads the sockets until one of them got a 429 (h1 status line, or
    the message in an h2c DATA frame); returns {sock: bytes}. With 65
    requests for 64 slots, exactly one is refused, whichever came last:
    no probe of ours competes for a slot meanwhile."""
    got = {s: b"" for s in socks}
    deadline = time.monotonic() + timeout
    while True:
        refused = [s for s, b in got.items() if b.startswith(b"HTTP/1.1 429") or b"too many requests" in b]
        if refused:
            return got
        left = deadline - time.monotonic()
        assert left > 0, "no request of the 65 was refused: " + repr({k.fileno(): v[:80] for k, v in got.items()})
        for s in select.select(list(got), [], [], min(left, 0.2))[0]:
            data = s.recv(65536)
            assert data, "a connection closed while its request was in flight"
            got[s] += data


def fill_64(sup, ws_id, ms=20000, h2c=False):
    """65 sleeping requests sent at once for 64 slots (HTTP/1.1 raw
    sockets, or two h2c connections of 32 streams, h2o running 32 requests
    of a connection at once, and one HTTP/1.1); returns the sockets of
    the 64 in flight once the supervisor refused the 65th."""
    target = wpath(ws_id, f"/_test/sleep?ms={ms}")
    if h2c:
        socks = [h2c_gets(sup, target, 32) for _ in range(2)]
    else:
        socks = [held_request(sup, target) for _ in range(64)]
    socks.append(held_request(sup, target))
    got = wait_one_refusal(socks)
    # The refused one is whichever the supervisor read last; an h1 one is
    # over (close it), an h2c stream is over but its connection holds 31.
    for s, data in got.items():
        if data.startswith(b"HTTP/1.1 429"):
            s.close()
            socks.remove(s)
    assert json_error(call(sup, ws_id, "GET", "/config"), 429) == \
        "too many requests in flight for this workspace"
    return socks


def test_64_in_flight_then_429_and_other_workspaces_unaffected(rsup, wsdir, make_dir):
    sup = rsup()
    ws = sup.api.create(wsdir, new_client_id())
    other = sup.api.create(make_dir("other"), new_client_id())
    socks = fill_64(sup, ws["id"])
    try:
        msg = json_error(call(sup, ws["id"], "GET", "/_test/sleep?ms=1"), 429)
        assert msg == "too many requests in flight for this workspace"
        assert call(sup, other["id"], "GET", "/config").status == 200
        assert sup.api.health().status == 200
    finally:
        for s in socks:
            s.close()


def test_clients_leaving_cancel_their_calls_and_free_the_slots(rsup, wsdir):
    """HTTP/1.1 clients that close while their request sleeps in the worker:
    the supervisor notices at once (not at the request timeout, 30 s), the
    worker stops the sleeps and answers the CANCELs, and the next request
    is served long before the sleeps would have ended."""
    sup = rsup()
    ws = sup.api.create(wsdir, new_client_id())
    socks = fill_64(sup, ws["id"], ms=25000)
    t0 = time.monotonic()
    for s in socks:
        s.close()
    wait_until(lambda: call(sup, ws["id"], "GET", "/config").status == 200, timeout=5,
               what="a request served after the 64 clients left")
    assert time.monotonic() - t0 < 5
    # Once more, to be sure the worker's side is free too (64 new sleeps fit).
    socks = fill_64(sup, ws["id"], ms=25000)
    for s in socks:
        s.close()
    wait_until(lambda: call(sup, ws["id"], "GET", "/config").status == 200, timeout=5)
    assert sup.api.workspace(ws["id"])["pid"] == ws["pid"] and pid_live(ws["pid"])


def _h2_frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def _hpack_str(b):
    assert len(b) < 127
    return bytes([len(b)]) + b


class H2c:
    """Just enough HTTP/2 (prior knowledge) to run GETs on one connection
    and see, per stream, its HEADERS, DATA, END_STREAM or RST_STREAM."""

    def __init__(self, sup):
        self.s = sup.endpoint.connect()
        self.s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _h2_frame(4, 0, 0))
        self.buf = b""
        self.streams = {}
        self.next = 1
        self.eof = False

    def get(self, target):
        sid, self.next = self.next, self.next + 2
        block = b"\x82\x86\x04" + _hpack_str(target.encode()) + b"\x01" + _hpack_str(b"localhost")
        self.streams[sid] = {"headers": b"", "data": b"", "end": False, "reset": False}
        self.s.sendall(_h2_frame(1, 0x5, sid, block))
        return sid

    def pump(self, done, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            assert left > 0 and not self.eof, f"h2c: timed out or closed (eof={self.eof}): {self.streams}"
            if not select.select([self.s], [], [], min(left, 0.2))[0]:
                continue
            data = self.s.recv(65536)
            if not data:
                self.eof = True
                continue
            self.buf += data
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                ftype, flags = self.buf[3], self.buf[4]
                sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
                st = self.streams.get(sid)
                if ftype == 4 and not flags & 1:
                    self.s.sendall(_h2_frame(4, 1, 0))  # SETTINGS ack
                elif ftype == 1 and st is not None:
                    st["headers"] += payload
                elif ftype == 0 and st is not None:
                    st["data"] += payload
                elif ftype == 3 and st is not None:
                    st["reset"] = True
                if ftype in (0, 1) and st is not None and flags & 1:
                    st["end"] = True

    def close(self):
        self.s.close()


def h2c_gets(sup, target, n):
    """One h2c connection (prior knowledge) with n GET streams open on
    target; the socket (closing it ends them all)."""
    s = sup.endpoint.connect()
    out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _h2_frame(4, 0, 0)
    for i in range(n):
        # :method GET, :scheme http, :path (literal), :authority (literal)
        block = b"\x82\x86\x04" + _hpack_str(target.encode()) + b"\x01" + _hpack_str(b"localhost")
        out += _h2_frame(1, 0x5, 1 + 2 * i, block)  # END_STREAM | END_HEADERS
    s.sendall(out)
    return s


def test_h2c_client_leaving_cancels_too(rsup, wsdir):
    """64 sleeps multiplexed on two h2c connections, which then close: the
    streams are disposed and their calls cancelled in the worker."""
    sup = rsup()
    ws = sup.api.create(wsdir, new_client_id())
    for s in fill_64(sup, ws["id"], ms=25000, h2c=True):
        s.close()
    wait_until(lambda: call(sup, ws["id"], "GET", "/config").status == 200, timeout=5,
               what="a request served after the h2c clients left")


def test_worker_stopped_with_calls_in_flight_lets_go_of_them(rsup, wsdir):
    """A graceful stop while 64 sleeps are in the worker: the worker frees
    what each unanswered call held (its timer) as it exits; under the
    sanitizers a leak would show in the daemon's stderr."""
    sup = rsup()
    ws = sup.api.create(wsdir, new_client_id())
    socks = fill_64(sup, ws["id"], ms=25000)
    sup.signal(signal.SIGTERM)
    sup.assert_exit_0()
    for s in socks:
        s.close()
    wait_until(lambda: not pid_live(ws["pid"]), what="worker gone")
    assert sup.leak_reports() == [], sup.leak_reports()[0]


# --------------------------------------------------------------------------
# Workers that break the calls protocol (fake_worker.py)


def fake_calls(path):
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


CALL_BREACHES = [
    # mode, the kill reason. The fake writes each answer's head and its
    # breach at once; the supervisor holds a head until the end of the loop
    # turn that read it (forward.c), so the breach comes first and the
    # client gets a whole 502, never a head and then a cut answer. (An
    # answer cut after its head went out: the h2c test below.)
    ("call_unknown_id", "protocol error: response to no request"),
    ("call_twice", "protocol error: request answered twice"),
    ("call_body_before_head", "protocol error: answer body before its head"),
    ("call_past_window", "protocol error: answer past its window"),
    ("call_malformed_head", "protocol error: malformed answer head"),
]


@pytest.mark.parametrize("mode,reason", CALL_BREACHES, ids=[m for m, _ in CALL_BREACHES])
def test_worker_breaking_the_calls_protocol_fails_them_502_and_is_restarted(
        fake_sup, wsdir, tmp_path, mode, reason):
    sup = fake_sup()
    fake = Fake(tmp_path, mode, once=True)
    calls_log = tmp_path / f"calls-{mode}.log"
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid, env=fake.env + [f"FAKE_WORKER_CALLS={calls_log}"])
    badpid = ws["pid"]
    stream = sup.api.events(ws["id"], cid)
    # The first request is held unanswered by the fake; the second breaks it.
    t, box = in_thread(call, sup, ws["id"], "GET", "/config")
    wait_until(lambda: len(fake_calls(calls_log)) == 1, what="the fake holds the first request")
    msg = json_error(call(sup, ws["id"], "GET", "/sessions"), 502)
    assert msg.startswith("workspace worker gave no answer: ") and reason in msg, msg
    t.join(WAIT)
    msg = json_error(box["r"], 502)
    assert reason in msg, msg
    wait_reaped(sup, badpid, "killed by signal KILL")
    restarting = stream.wait_for(lambda e: is_ws_event(e, "restarting"))
    assert reason in restarting.payload["reason"], restarting.payload
    stream.wait_for(lambda e: is_ws_event(e, "restarted"))
    w = wait_until(lambda: (lambda w: w if w and w["state"] == "ready" else None)(sup.api.workspace(ws["id"])))
    assert w["pid"] != badpid and [m for _, m in fake.starts()] == [mode, "real"]
    r = call(sup, ws["id"], "GET", "/config")
    assert r.status == 200, r.describe()
    stream.close()


def test_worker_that_never_answers_gets_504_and_is_not_killed(fake_sup, wsdir, tmp_path):
    sup = fake_sup(request_timeout=0.5)
    fake = Fake(tmp_path, "call_never")
    calls_log = tmp_path / "calls.log"
    ws = sup.api.create(wsdir, new_client_id(), env=fake.env + [f"FAKE_WORKER_CALLS={calls_log}"])
    t0 = time.monotonic()
    r = call(sup, ws["id"], "GET", "/config")
    assert json_error(r, 504) == "workspace worker did not answer in time"
    assert time.monotonic() - t0 >= 0.4
    assert fake_calls(calls_log) and fake_calls(calls_log)[0].endswith(" GET /config")
    # Slow is not broken: the worker is the same live process.
    w = sup.api.workspace(ws["id"])
    assert w["state"] == "ready" and w["pid"] == ws["pid"] and pid_live(ws["pid"]), w


def test_a_workers_content_type_cannot_add_headers(fake_sup, wsdir, tmp_path):
    """A worker's content_type becomes the answer's Content-Type header:
    one with CR LF in it (JSON-escaped, so no raw newline in the frame)
    must not split the client's response; it is replaced."""
    sup = fake_sup()
    fake = Fake(tmp_path, "call_header_injection")
    ws = sup.api.create(wsdir, new_client_id(), env=fake.env)
    r = call(sup, ws["id"], "GET", "/config")
    assert r.status == 200 and r.body == b"{}", r.describe()
    assert "x-injected" not in r.headers, r.headers
    assert r.headers["content-type"] == "application/json", r.headers


def test_short_answers_have_a_length_long_ones_stream(rsup, wsdir):
    """An answer whose end comes with its head goes out in one piece with
    its Content-Length; a longer one streams chunked as it arrives."""
    sup = rsup()
    ws = sup.api.create(wsdir, new_client_id())
    r = call(sup, ws["id"], "GET", "/config")
    assert r.status == 200
    assert r.headers.get("content-length") == str(len(r.body)), r.headers
    assert "transfer-encoding" not in r.headers, r.headers
    r = call(sup, ws["id"], "GET", f"/_test/bytes?n={8 * MIB}")
    assert r.status == 200 and len(r.body) == 8 * MIB
    assert r.headers.get("transfer-encoding") == "chunked", r.headers


def test_h2c_answer_broken_after_its_head_resets_only_its_stream(fake_sup, make_dir, tmp_path):
    """A worker breaks the protocol after the head of an answer went out
    (and its first bytes: the fake waits for their ACK) on an h2c
    connection: that stream is reset (a broken answer, not a
    short one), the request it held unanswered gets 502, and another
    workspace's request on the same connection is answered as usual."""
    sup = fake_sup(env=ROUTES_ENV)
    by = sup.api.create(make_dir("bystander"), new_client_id())  # the real worker
    fake = Fake(tmp_path, "call_twice_after_ack", once=True)
    calls_log = tmp_path / "calls.log"
    ws = sup.api.create(make_dir("bad"), new_client_id(), env=fake.env + [f"FAKE_WORKER_CALLS={calls_log}"])
    h2 = H2c(sup)
    try:
        sleeper = h2.get(wpath(by["id"], "/_test/sleep?ms=1000"))
        held = h2.get(wpath(ws["id"], "/config"))
        wait_until(lambda: len(fake_calls(calls_log)) == 1, what="the fake holds the first request")
        broken = h2.get(wpath(ws["id"], "/sessions"))
        h2.pump(lambda: h2.streams[sleeper]["end"] and h2.streams[held]["end"]
                and (h2.streams[broken]["reset"] or h2.streams[broken]["end"]))
        assert h2.streams[broken]["reset"] and not h2.streams[broken]["end"], h2.streams[broken]
        assert b"gave no answer" in h2.streams[held]["data"], h2.streams[held]
        assert h2.streams[sleeper]["data"] == b'{"slept":true}', h2.streams[sleeper]
        assert not h2.eof
    finally:
        h2.close()


@pytest.mark.parametrize("h2c", [False, True], ids=["http1", "h2c"])
def test_worker_dying_between_its_head_and_its_body_is_a_whole_502(fake_sup, wsdir, tmp_path, h2c):
    """The worker sends an answer's head, then dies before any of its body:
    nothing of that answer has reached the client yet, so the client gets a
    whole 502 with its message (not a connection closed without an answer,
    or an h2c stream reset before its head)."""
    sup = fake_sup()
    fake = Fake(tmp_path, "call_head_then_die", once=True)
    calls_log = tmp_path / "calls.log"
    ws = sup.api.create(wsdir, new_client_id(), env=fake.env + [f"FAKE_WORKER_CALLS={calls_log}"])
    if not h2c:
        t, box = in_thread(call, sup, ws["id"], "GET", "/config")
        wait_until(lambda: len(fake_calls(calls_log)) == 1, what="the fake holds the first request")
        r = call(sup, ws["id"], "GET", "/sessions")
        assert json_error(r, 502).startswith("workspace worker gave no answer"), r.describe()
        t.join(WAIT)
        assert json_error(box["r"], 502).startswith("workspace worker gave no answer")
        return
    h2 = H2c(sup)
    try:
        held = h2.get(wpath(ws["id"], "/config"))
        wait_until(lambda: len(fake_calls(calls_log)) == 1, what="the fake holds the first request")
        dying = h2.get(wpath(ws["id"], "/sessions"))
        h2.pump(lambda: all(h2.streams[s]["end"] or h2.streams[s]["reset"] for s in (held, dying)))
        for s in (held, dying):
            assert not h2.streams[s]["reset"] and b"gave no answer" in h2.streams[s]["data"], h2.streams[s]
    finally:
        h2.close()


# --------------------------------------------------------------------------
# The upstream client's startup, replayed (internal/cmd/root.go
# connectToServer, restartIfStale; internal/client)


def test_upstream_client_startup_sequence(sup, wsdir):
    # restartIfStale: VersionInfo{version, commit, build_id, go_version, platform}
    r = sup.api.request("GET", "/v1/version")
    assert r.status == 200, r.describe()
    vi = r.json()
    for k in ("version", "commit", "build_id", "platform"):
        assert isinstance(vi.get(k), str) and vi[k], (k, vi)
    assert isinstance(vi.get("go_version", ""), str)
    # Health, then CreateWorkspace with proto.Workspace as upstream fills it.
    assert sup.api.health().status == 200
    cid = new_client_id()
    env = [f"{k}={v}" for k, v in list(os.environ.items())[:20]]
    body = {"path": wsdir, "data_dir": "", "debug": False, "yolo": False, "channels": ["chan-a"],
            "version": "v0.99.0", "env": env, "client_id": cid}
    r = sup.api.request("POST", "/v1/workspaces", body, {"Content-Type": "application/json"})
    assert r.status == 200, r.describe()
    ws = r.json()
    # proto.Workspace: what it decodes, with upstream's types.
    assert isinstance(ws["id"], str) and isinstance(ws["path"], str)
    for k, typ in (("yolo", bool), ("debug", bool), ("data_dir", str), ("version", str), ("env", list),
                   ("channels", list), ("skills", list)):
        # Always sent (workspace.c fixed_fields): a dropped key is a failure.
        assert k in ws, (k, ws)
        assert isinstance(ws[k], typ), (k, ws[k])
    assert ws["channels"] == ["chan-a"] and ws["skills"] == []
    # *config.Config: dereferenced without nil checks.
    cfg = ws["config"]
    assert isinstance(cfg, dict)
    assert isinstance(cfg["options"], dict)
    assert isinstance(cfg["options"]["data_directory"], str) and cfg["options"]["data_directory"]
    assert isinstance(cfg["options"].get("disable_metrics", False), bool)
    assert isinstance(cfg["providers"], dict)  # csync.Map[string, ProviderConfig]
    for p in cfg["providers"].values():
        assert isinstance(p, dict)
    # SubscribeEvents, as upstream sends it.
    stream = EventStream(sup.endpoint, ws["id"], cid)
    assert stream.status == 200 and stream.content_type.startswith("text/event-stream")
    # SetCurrentSession.
    r = sup.api.request("POST", wpath(ws["id"], f"/current-session?client_id={cid}"),
                        {"session_id": str(uuid.uuid4())})
    assert r.status == 200, r.describe()
    # GetConfig: the same shape.
    r = call(sup, ws["id"], "GET", "/config")
    assert r.status == 200 and r.json()["options"]["data_directory"] == cfg["options"]["data_directory"]
    # Exit: RetireClient.
    r = sup.api.request("DELETE", f"/v1/clients/{cid}")
    assert r.status == 200, r.describe()
    stream.wait_eof()
    wait_until(lambda: sup.api.workspace(ws["id"]) is None, what="workspace gone with its only client")
    stream.close()


# --------------------------------------------------------------------------
# --pinned, current-session


def test_pinned_refuses_shutdown_if_idle(start_supervisor, wsdir):
    sup = start_supervisor(extra_args=["--pinned"])
    for cmd in ("shutdown_if_idle", "shutdown"):
        assert json_error(sup.api.request("POST", "/v1/control", {"command": cmd}), 409) == "server is pinned"
    assert sup.running() and sup.api.health().status == 200


def test_shutdown_if_idle_is_409_while_hosting_then_200(start_supervisor, wsdir):
    sup = start_supervisor()
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    r = sup.api.request("POST", "/v1/control", {"command": "shutdown_if_idle"})
    assert json_error(r, 409) == "server is hosting live workspaces"
    sup.api.release(ws["id"], cid)
    wait_until(lambda: sup.api.request("POST", "/v1/control", {"command": "shutdown_if_idle"}).status == 200,
               what="shutdown_if_idle accepted once idle")
    sup.assert_exit_0()


def test_current_session_needs_an_attached_client(sup, wsdir):
    cid, other = new_client_id(), new_client_id()
    ws = sup.api.create(wsdir, cid)
    target = lambda c: wpath(ws["id"], f"/current-session?client_id={c}")  # noqa: E731
    body = {"session_id": str(uuid.uuid4())}
    assert json_error(sup.api.request("POST", target(cid), body), 409) == "client not attached"
    with EventStream(sup.endpoint, ws["id"], cid) as stream:
        assert stream.status == 200
        assert sup.api.request("POST", target(cid), body).status == 200
        assert sup.api.request("POST", target(cid), {"session_id": ""}).status == 200  # clears it
        assert json_error(sup.api.request("POST", target(other), body), 409) == "client not attached"
        json_error(sup.api.request("POST", target(cid), {"session_id": 7}), 400)
        json_error(sup.api.request("GET", target(cid)), 405)
    unknown = wpath(str(uuid.uuid4()), f"/current-session?client_id={cid}")
    assert json_error(sup.api.request("POST", unknown, body), 404) == "workspace not found"


def test_bytes_pipelined_behind_a_waiting_request_leave_its_body_intact(rsup, make_dir, tmp_path):
    """h2o keeps an HTTP/1.1 request's path, headers and body in its
    connection's input buffer. While the request waits (here, for a
    starting worker), the supervisor watches the connection for EOF; the
    16 KiB the client pipelines behind its request must not move that
    buffer (they once did: the body was then read from freed memory, a
    crash under ASan). The body arrives intact, the junk after it is
    answered as the bad request it is, and the daemon lives on."""
    sup = rsup(worker=slow_worker(tmp_path, 1))
    d = make_dir("pipelined")
    t, box = in_thread(sup.api.create, d, new_client_id())
    w = wait_until(lambda: state_of(sup, d), what="workspace listed")
    assert w["state"] == "starting", w
    body = b"the body, byte for byte: " + bytes(range(256)) * 4
    s = sup.endpoint.connect()
    s.sendall(f"POST {wpath(w['id'], '/_test/echo')} HTTP/1.1\r\nHost: localhost\r\n"
              f"User-Agent: pipeliner\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    # Two round trips on another connection: the loop turn that read the
    # request is over, so the junk comes in a read of its own.
    assert sup.api.health().status == 200 and sup.api.health().status == 200
    s.sendall(b"J" * 16384)
    got = b""
    s.settimeout(WAIT)
    while b"\r\n\r\n" not in got or len(got.split(b"\r\n\r\n", 1)[1]) < len(body):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    s.close()
    head, rest = got.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body in rest, rest[:200]
    t.join(WAIT)
    assert sup.api.health().status == 200
