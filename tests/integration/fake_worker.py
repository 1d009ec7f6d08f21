#!/usr/bin/python3
"""
fake_worker: a crush-worker stand-in that breaks the worker protocol
(proto/PROTOCOL.md) on purpose, for the fault-injection tests. The
supervisor runs it via --worker with the real worker's command line:

    fake_worker.py <workspace-id> <path> --fd N [--data-dir D] [--log-level L]

What it does is chosen by the environment: the supervisor's, plus the
first creator's `env` field of the create request, which reaches a worker
only as data, in the `setup` request the supervisor sends first (the fake
peeks at it, leaving it for the real worker when it execs one):

  FAKE_WORKER_MODE     the misbehaviour (see MODES); unset or empty: exec the
                       real worker ($CRUSH_REAL_WORKER) with the same
                       arguments, so other workspaces of the daemon run
                       normally (same pid: `exec`, not a child)
  CRUSH_REAL_WORKER    the real crush-worker binary
  FAKE_WORKER_ONCE     a marker file: misbehave only if it does not exist yet
                       (and create it); later incarnations exec the real worker
  FAKE_WORKER_ARMED    a file: misbehave only once it exists; until then exec
                       the real worker (a workspace that starts fine and whose
                       restarts go bad)
  FAKE_WORKER_TRIGGER  a file: the after-ready modes behave (answer pings)
                       until it exists, then misbehave (so a test can attach
                       its stream first); unset: misbehave right after ready
  FAKE_WORKER_LOG      a file: one line "<pid> <mode>" appended per start
  FAKE_WORKER_CALLS    a file: the call modes append one line "<id> <verb> <path>"
                       per routed request they have whole (head, body, END)

The call modes (CALL_MODES) get ready, answer pings, and take routed
requests (PROTOCOL.md, "Routed requests") without answering the first one;
the second one gets the misbehaviour (`call_never` answers none, ever):

  call_unknown_id        a RESPONSE head for an id the supervisor never used
  call_twice             two RESPONSE heads for the request
  call_body_before_head  a DATA frame before the RESPONSE head
  call_past_window       the head, then PROTO_WINDOW + 1 DATA frames unacked
  call_malformed_head    a RESPONSE head whose status is not a number
  call_twice_after_ack   the head and one DATA frame; once that frame is
                         ACKed (so the head reached the client), the head again
  call_header_injection  answers both requests 200, with a content_type
                         that holds CR LF and a header of its own
  call_never             never answers a routed request (pings yes)
  call_head_then_die     the RESPONSE head, then (0.3 s later, well past the
                         supervisor's loop turn) exits with status 1: no body

One more mode takes routed requests and answers them, but reads slowly:

  stall_body             after the first DATA frame of a request body, stops
                         reading its socket until FAKE_WORKER_TRIGGER exists
                         (writes "<id> stalled" to FAKE_WORKER_CALLS first);
                         then drains: a request whole (END) is answered 200
                         with the body's length, one cancelled before its END
                         is answered 499; each is logged "<id> end|cancel
                         <body bytes received>"

After misbehaving, the fake never exits by itself: it ignores SIGTERM, and
keeps draining its end of the socketpair (and stays alive at EOF), so the
only way it goes is the supervisor's SIGKILL. The exceptions exit after
their hello: `exit_before_ready` with status 3, the FAIL modes with 1.
"""

import json
import os
import select
import signal
import struct
import sys
import time

HELLO, READY, EVENT, REQUEST, RESPONSE, FAIL = 1, 2, 3, 4, 5, 6
DATA, END, CANCEL, ACK = 7, 8, 9, 10
VERSION = 1
WINDOW = 4  # PROTO_WINDOW

# Faults the supervisor must see before the worker is ready (the create gets 500).
START_MODES = ("garbage", "oversize", "bad_header_version", "hello_version", "not_hello",
               "newline", "never_ready", "exit_before_ready",
               # the setup and FAIL frames (proto/PROTOCOL.md)
               "ready_before_setup", "refuse_setup", "fail_noisy", "fail_bad_code", "fail_then_ready")
# Faults after READY (handled as a crash: restart in place).
READY_MODES = ("bad_event", "ignore_pings", "stray_response", "request_to_supervisor")
# Faults in routed requests, after READY.
CALL_MODES = ("call_unknown_id", "call_twice", "call_body_before_head", "call_past_window",
              "call_malformed_head", "call_header_injection", "call_twice_after_ack", "call_never",
              "call_head_then_die")
MODES = START_MODES + READY_MODES + CALL_MODES + ("stall_body",)


def frame(ftype, payload=b"", fid=0, version=VERSION, length=None):
    if isinstance(payload, (dict, list)):
        payload = json.dumps(payload, separators=(",", ":")).encode()
    n = len(payload) if length is None else length
    return struct.pack(">IBBHI", n, version, ftype, 0, fid) + payload


def write_all(fd, data):
    while data:
        try:
            n = os.write(fd, data)
        except InterruptedError:
            continue
        except OSError:
            return  # the supervisor closed its end: nothing more to say
        data = data[n:]


def linger(fd):
    """Stays alive until SIGKILL: drain whatever the supervisor sends,
    ignore SIGTERM and EOF."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    eof = False
    while True:
        if eof:
            time.sleep(3600)
            continue
        try:
            if not os.read(fd, 65536):
                eof = True
        except InterruptedError:
            pass
        except OSError:
            eof = True


class Frames:
    """The supervisor's frames as they arrive: read() takes what fd has and
    returns the whole frames in it as (type, id, payload), keeping a
    partial one for the next read; None at EOF."""

    def __init__(self):
        self.buf = b""

    def read(self, fd):
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            return []
        if not data:
            return None
        self.buf += data
        out = []
        while len(self.buf) >= 12:
            n, _, ftype, _, fid = struct.unpack(">IBBHI", self.buf[:12])
            if len(self.buf) < 12 + n:
                break
            out.append((ftype, fid, self.buf[12:12 + n]))
            self.buf = self.buf[12 + n:]
        return out


def serve_until_trigger(fd, path):
    """Behaves (answers every ping) until the file FAKE_WORKER_TRIGGER names
    exists; returns at once when it is unset."""
    frames = Frames()
    while path and not os.path.exists(path):
        r, _, _ = select.select([fd], [], [], 0.01)
        if not r:
            continue
        got = frames.read(fd)
        if got is None:
            return
        for ftype, fid, payload in got:
            if ftype == REQUEST:
                try:
                    method = json.loads(payload).get("method")
                except ValueError:
                    method = None
                answer = {"result": "pong"} if method == "ping" else {"error": "unknown method"}
                write_all(fd, frame(RESPONSE, answer, fid=fid))


def serve_calls(fd, mode, calls_log):
    """The call modes: answers pings; holds the first routed request
    unanswered and misbehaves on the second (call_never: answers none).
    Returns after misbehaving (or at EOF)."""
    frames = Frames()
    whole = []  # ids of routed requests received whole, in order
    heads = {}  # id -> (verb, path) until END
    acked_breach = None  # call_twice_after_ack: the id whose ACK triggers it
    while True:
        got = frames.read(fd)
        if got is None:
            return
        for ftype, fid, payload in got:
            if ftype == ACK and fid == acked_breach:
                head = {"status": 200, "content_type": "application/octet-stream"}
                write_all(fd, frame(RESPONSE, head, fid=fid))
                return
            if ftype == REQUEST:
                try:
                    req = json.loads(payload)
                except ValueError:
                    req = {}
                if req.get("method") == "ping":
                    write_all(fd, frame(RESPONSE, {"result": "pong"}, fid=fid))
                elif req.get("method") == "http":
                    heads[fid] = (req.get("verb", ""), req.get("path", ""))
            elif ftype == END and fid in heads:
                verb, path = heads.pop(fid)
                whole.append(fid)
                if calls_log:
                    with open(calls_log, "a") as f:
                        f.write(f"{fid} {verb} {path}\n")
                if mode == "call_header_injection":
                    evil = {"status": 200, "content_type": "text/plain\r\nX-Injected: 1"}
                    write_all(fd, frame(RESPONSE, evil, fid=fid) + frame(DATA, b"{}", fid=fid) + frame(END, fid=fid))
                    continue
                if mode == "call_never" or len(whole) < 2:
                    continue
                head = {"status": 200, "content_type": "application/octet-stream"}
                if mode == "call_unknown_id":
                    write_all(fd, frame(RESPONSE, head, fid=max(whole) + 1000))
                elif mode == "call_twice_after_ack":
                    write_all(fd, frame(RESPONSE, head, fid=fid) + frame(DATA, b"x", fid=fid))
                    acked_breach = fid
                    continue
                elif mode == "call_twice":
                    write_all(fd, frame(RESPONSE, head, fid=fid) + frame(RESPONSE, head, fid=fid))
                elif mode == "call_body_before_head":
                    write_all(fd, frame(DATA, b"early", fid=fid))
                elif mode == "call_past_window":
                    write_all(fd, frame(RESPONSE, head, fid=fid) +
                              b"".join(frame(DATA, b"x" * 1024, fid=fid) for _ in range(WINDOW + 1)))
                elif mode == "call_head_then_die":
                    write_all(fd, frame(RESPONSE, head, fid=fid))
                    time.sleep(0.3)
                    os._exit(1)
                elif mode == "call_malformed_head":
                    write_all(fd, frame(RESPONSE, {"status": "ok", "content_type": "text/plain"}, fid=fid))
                return


def stall_body(fd, trigger, calls_log):
    """The stall_body mode (see the docstring); never returns but at EOF."""
    def note(line):
        if calls_log:
            with open(calls_log, "a") as f:
                f.write(line + "\n")
    frames = Frames()
    got = {}  # id -> body bytes so far, until END or CANCEL
    stalled = False
    while True:
        batch = frames.read(fd)
        if batch is None:
            return
        for ftype, fid, payload in batch:
            if ftype == REQUEST:
                req = json.loads(payload)
                if req.get("method") == "ping":
                    write_all(fd, frame(RESPONSE, {"result": "pong"}, fid=fid))
                elif req.get("method") == "http":
                    got[fid] = 0
            elif ftype == DATA and fid in got:
                got[fid] += len(payload)
                if not stalled:
                    stalled = True
                    note(f"{fid} stalled")
                    while not os.path.exists(trigger):
                        time.sleep(0.01)
            elif ftype in (END, CANCEL) and fid in got:
                n = got.pop(fid)
                status = 200 if ftype == END else 499
                note(f"{fid} {'end' if ftype == END else 'cancel'} {n}")
                write_all(fd, frame(RESPONSE, {"status": status, "content_type": "text/plain"}, fid=fid) +
                          frame(DATA, str(n).encode(), fid=fid) + frame(END, fid=fid))


def peek_setup(fd, timeout=5.0):
    """(id, env dict, frame length) of the setup request waiting on fd, read
    with MSG_PEEK so that a real worker exec'd next still finds it;
    (0, {}, 0) if none comes in time."""
    import socket
    s = socket.socket(fileno=os.dup(fd))
    try:
        deadline = time.monotonic() + timeout
        data = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([s], [], [], 0.01)
            if not r:
                continue
            data = s.recv(1 << 21, socket.MSG_PEEK)
            if not data:
                break
            if len(data) >= 12:
                n, _, ftype, _, fid = struct.unpack(">IBBHI", data[:12])
                if len(data) >= 12 + n:
                    req = json.loads(data[12:12 + n]) if ftype == REQUEST else {}
                    if req.get("method") != "setup":
                        break
                    env = dict(e.split("=", 1) for e in req.get("env", []))
                    return fid, env, 12 + n
        return 0, {}, 0
    finally:
        s.close()


def consume(fd, n):
    """Reads exactly n bytes (the setup frame the fake answers itself)."""
    while n > 0:
        data = os.read(fd, n)
        if not data:
            return
        n -= len(data)


def parse_fd(argv):
    for i, a in enumerate(argv):
        if a == "--fd" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--fd="):
            return int(a[len("--fd="):])
    sys.exit("fake_worker: --fd is required")


def exec_real():
    real = os.environ.get("CRUSH_REAL_WORKER")
    if not real:
        sys.exit("fake_worker: CRUSH_REAL_WORKER is not set")
    os.execv(real, [real] + sys.argv[1:])


def main():
    fd = parse_fd(sys.argv[2:])
    setup_id, client_env, setup_len = peek_setup(fd)
    # Our knobs, from the supervisor's environment or the setup's env (not
    # put into our environment: a real worker exec'd next gets ours as is).
    knobs = dict(os.environ)
    knobs.update({k: v for k, v in client_env.items() if k.startswith("FAKE_WORKER_")})
    mode = knobs.get("FAKE_WORKER_MODE", "")
    armed = knobs.get("FAKE_WORKER_ARMED")
    if mode and armed and not os.path.exists(armed):
        mode = ""
    once = knobs.get("FAKE_WORKER_ONCE")
    if mode and once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            mode = ""  # misbehaved once already
    log = knobs.get("FAKE_WORKER_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {mode or 'real'}\n")
    if not mode:
        exec_real()
    if mode not in MODES:
        sys.exit(f"fake_worker: unknown FAKE_WORKER_MODE {mode!r}")

    ws_id = sys.argv[1]
    hello = {"version": VERSION, "pid": os.getpid(), "workspace_id": ws_id}
    # Not exec'ing the real worker: the setup is ours to read and answer.
    consume(fd, setup_len)
    setup_ok = frame(RESPONSE, {"result": {"env": len(client_env)}}, fid=setup_id) if setup_id else b""

    if mode == "garbage":
        write_all(fd, b"GARBAGE\x00\xff\xfe this is not a frame header\n" * 4)
    elif mode == "oversize":
        # A header announcing 2 MiB (the limit is 1 MiB - 12), then some of it.
        write_all(fd, frame(HELLO, b"x" * 4096, length=2 << 20))
    elif mode == "bad_header_version":
        write_all(fd, frame(HELLO, hello, version=VERSION + 1))
    elif mode == "hello_version":
        write_all(fd, frame(HELLO, dict(hello, version=VERSION + 41)))
    elif mode == "not_hello":
        write_all(fd, frame(READY, {"pid": os.getpid()}))
    elif mode == "newline":
        write_all(fd, frame(HELLO, json.dumps(hello, indent=1).encode()))
    elif mode == "never_ready":
        write_all(fd, frame(HELLO, hello))
    elif mode == "exit_before_ready":
        write_all(fd, frame(HELLO, hello))
        os._exit(3)
    elif mode == "ready_before_setup":
        write_all(fd, frame(HELLO, hello) + frame(READY, {"pid": os.getpid()}) + setup_ok)
    elif mode == "refuse_setup":
        write_all(fd, frame(HELLO, hello) + frame(RESPONSE, {"error": "bad request: env[0] is not KEY=VALUE"},
                                                  fid=setup_id))
    elif mode in ("fail_noisy", "fail_bad_code"):
        # A reason with control characters, multi-byte text and far too
        # long; or a code that is not one.
        reason = "line one\nline two\x1b[31m " + "\u00e9" * 4000
        code = "inotify_instances" if mode == "fail_noisy" else "Not A Code!"
        write_all(fd, frame(HELLO, hello) + frame(FAIL, {"error": reason, "code": code}))
        os._exit(1)
    elif mode == "fail_then_ready":
        write_all(fd, frame(HELLO, hello) + frame(FAIL, {"error": "giving up", "code": "error"}) + setup_ok
                  + frame(READY, {"pid": os.getpid()}))
    else:
        write_all(fd, frame(HELLO, hello) + setup_ok + frame(READY, {"pid": os.getpid()}))
        if mode in CALL_MODES:
            serve_calls(fd, mode, knobs.get("FAKE_WORKER_CALLS"))
            linger(fd)
        if mode == "stall_body":
            stall_body(fd, knobs.get("FAKE_WORKER_TRIGGER"), knobs.get("FAKE_WORKER_CALLS"))
            linger(fd)
        serve_until_trigger(fd, knobs.get("FAKE_WORKER_TRIGGER"))
        # ignore_pings: linger() below reads every further ping, answers none.
        if mode == "bad_event":
            write_all(fd, frame(EVENT, b'{"type":"fs","payload":{"type":"created","pa'))
        elif mode == "stray_response":
            write_all(fd, frame(RESPONSE, {"result": "pong"}, fid=4242))
        elif mode == "request_to_supervisor":
            write_all(fd, frame(REQUEST, {"method": "ping"}, fid=7))
    linger(fd)


if __name__ == "__main__":
    main()
