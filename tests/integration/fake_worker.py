#!/usr/bin/python3
"""
fake_worker: a crush-worker stand-in that breaks the worker protocol
(proto/PROTOCOL.md) on purpose, for the fault-injection tests. The
supervisor runs it via --worker with the real worker's command line:

    fake_worker.py <workspace-id> <path> --fd N [--data-dir D] [--log-level L]

What it does is chosen by the environment (the supervisor's, plus the
first creator's `env` field of the create request):

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

After misbehaving, the fake never exits by itself: it ignores SIGTERM, and
keeps draining its end of the socketpair (and stays alive at EOF), so the
only way it goes is the supervisor's SIGKILL. The exception is
`exit_before_ready`, which exits with status 3 after its hello.
"""

import json
import os
import select
import signal
import struct
import sys
import time

HELLO, READY, EVENT, REQUEST, RESPONSE = 1, 2, 3, 4, 5
VERSION = 1

# Faults the supervisor must see before the worker is ready (the create gets 500).
START_MODES = ("garbage", "oversize", "bad_header_version", "hello_version", "not_hello",
               "newline", "never_ready", "exit_before_ready")
# Faults after READY (handled as a crash: restart in place).
READY_MODES = ("bad_event", "ignore_pings", "stray_response", "request_to_supervisor")
MODES = START_MODES + READY_MODES


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


def serve_until_trigger(fd):
    """Behaves (answers every ping) until $FAKE_WORKER_TRIGGER exists;
    returns at once when it is unset."""
    path = os.environ.get("FAKE_WORKER_TRIGGER")
    buf = b""
    while path and not os.path.exists(path):
        r, _, _ = select.select([fd], [], [], 0.01)
        if not r:
            continue
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not data:
            return
        buf += data
        while len(buf) >= 12:
            n, _, ftype, _, fid = struct.unpack(">IBBHI", buf[:12])
            if len(buf) < 12 + n:
                break
            payload, buf = buf[12:12 + n], buf[12 + n:]
            if ftype == REQUEST:
                try:
                    method = json.loads(payload).get("method")
                except ValueError:
                    method = None
                answer = {"result": "pong"} if method == "ping" else {"error": "unknown method"}
                write_all(fd, frame(RESPONSE, answer, fid=fid))


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
    mode = os.environ.get("FAKE_WORKER_MODE", "")
    armed = os.environ.get("FAKE_WORKER_ARMED")
    if mode and armed and not os.path.exists(armed):
        mode = ""
    once = os.environ.get("FAKE_WORKER_ONCE")
    if mode and once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            mode = ""  # misbehaved once already
    log = os.environ.get("FAKE_WORKER_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {mode or 'real'}\n")
    if not mode:
        exec_real()
    if mode not in MODES:
        sys.exit(f"fake_worker: unknown FAKE_WORKER_MODE {mode!r}")

    ws_id = sys.argv[1]
    fd = parse_fd(sys.argv[2:])
    hello = {"version": VERSION, "pid": os.getpid(), "workspace_id": ws_id}

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
    else:
        write_all(fd, frame(HELLO, hello) + frame(READY, {"pid": os.getpid()}))
        serve_until_trigger(fd)
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
