#!/usr/bin/python3
"""bench_walk: a worker on a big tree (issue 9, item 5). Not part of
`make test` or `make bench`:

    /usr/bin/python3 bench/bench_walk.py [BUILD_DIR] [--entries N] [--per-dir M] [--dir DIR] [--keep]

Builds a tree of N entries (default 1,000,000: directories of M entries
each, 1,000 by default, files empty) under DIR (default /dev/shm, tmpfs: file
creation on this machine's disk is 5x slower; the tree is built once and
kept with --keep), then measures, twice:

  worker   crush-worker alone, spoken to over a socketpair as the
           supervisor speaks to it (proto/PROTOCOL.md): time to READY,
           time to scan_complete, every ping's answer time while the walk
           runs (a ping every 10 ms, each sent when the one before was
           answered), and the worker's RSS (VmRSS, VmHWM) at scan_complete.
  daemon   crush-supervisor with CRUSH_SERVER_PING_INTERVAL=0.05 (a worker
           that leaves a ping unanswered for 50 ms is killed): the create's
           latency, GET /v1/workspaces/{id} latency every 20 ms during the
           walk (worst, p50), the walk's scan_complete, and that the
           worker was never replaced.

Prints one table (markdown) on stdout, progress on stderr. Stdlib only.
"""
import http.client
import json
import os
import selectors
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid

ARGS = [a for a in sys.argv[1:]]
BUILD = os.path.abspath(ARGS[0] if ARGS and not ARGS[0].startswith("-") else "build")


def opt(name, default):
    if name in ARGS:
        return ARGS[ARGS.index(name) + 1]
    return default


ENTRIES = int(opt("--entries", "1000000"))
BASE = opt("--dir", "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir())
KEEP = "--keep" in ARGS
PER_DIR = int(opt("--per-dir", "1000"))
WORKER = os.path.join(BUILD, "crush-worker")
SUP = os.path.join(BUILD, "crush-supervisor")

HELLO, READY, EVENT, REQUEST, RESPONSE, FAIL = 1, 2, 3, 4, 5, 6


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_tree(root, entries):
    """entries in all: directories of PER_DIR entries (the directory
    itself counts), files empty."""
    stamp = os.path.join(root, ".bench-entries")
    if os.path.exists(stamp) and open(stamp).read() == f"{entries} {PER_DIR}":
        log(f"tree: reusing {root}")
        return
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    t = time.monotonic()
    made, d = 0, 0
    while made < entries:
        dp = os.path.join(root, f"d{d:05d}")
        os.mkdir(dp)
        made += 1
        for j in range(min(PER_DIR - 1, entries - made)):
            os.close(os.open(os.path.join(dp, f"f{j:04d}"), os.O_CREAT | os.O_WRONLY, 0o644))
            made += 1
        d += 1
        if d % max(1, 100000 // PER_DIR) == 0:
            log(f"tree: {made:,} entries, {time.monotonic() - t:.0f} s")
    with open(stamp, "w") as f:
        f.write(f"{entries} {PER_DIR}")
    log(f"tree: {made:,} entries in {d:,} directories, {time.monotonic() - t:.1f} s")


def frame(ftype, payload, fid=0):
    data = json.dumps(payload, separators=(",", ":")).encode()
    return struct.pack(">IBBHI", len(data), 1, ftype, 0, fid) + data


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else float("nan")


def bench_worker(root):
    """crush-worker alone on a socketpair: READY, pings, scan_complete."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    t0 = time.monotonic()
    errpath = os.path.join(tempfile.gettempdir(), f"bench-walk-worker-{os.getpid()}.log")
    errf = open(errpath, "wb")
    proc = subprocess.Popen([WORKER, str(uuid.uuid4()), root, "--fd", str(theirs.fileno()), "--log-level",
                             "debug"], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stderr=errf)
    theirs.close()
    ours.setblocking(False)
    ours.sendall(frame(REQUEST, {"method": "setup", "env": []}, 1))
    buf = b""
    r = {"ready_s": None, "scan_s": None, "pings": [], "events": 0, "dirs": None, "walk_ms": None}
    next_id, pending, sent_at, next_ping = 2, None, 0.0, 0.0
    sel = selectors.DefaultSelector()
    sel.register(ours, selectors.EVENT_READ)
    deadline = t0 + 600
    try:
        while r["scan_s"] is None and time.monotonic() < deadline:
            now = time.monotonic()
            if r["ready_s"] is not None and pending is None and now >= next_ping:
                pending, sent_at = next_id, now
                next_id += 1
                ours.sendall(frame(REQUEST, {"method": "ping"}, pending))
            sel.select(0.002)
            try:
                chunk = ours.recv(1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                raise RuntimeError(f"worker closed the pair (exit {proc.poll()})")
            buf += chunk
            while len(buf) >= 12:
                n, _, ftype, _, fid = struct.unpack(">IBBHI", buf[:12])
                if len(buf) < 12 + n:
                    break
                payload, buf = buf[12:12 + n], buf[12 + n:]
                now = time.monotonic()
                if ftype == READY:
                    r["ready_s"] = now - t0
                    log(f"worker: ready after {r['ready_s'] * 1e3:.1f} ms")
                elif ftype == RESPONSE and fid == pending:
                    r["pings"].append(now - sent_at)
                    r.setdefault("ping_at", []).append(sent_at - t0)
                    pending, next_ping = None, now + 0.010
                elif ftype == EVENT:
                    r["events"] += 1
                    ev = json.loads(payload)
                    if ev.get("type") == "watch" and ev["payload"]["type"] == "scan_complete":
                        r["scan_s"] = now - t0
                        r["dirs"] = ev["payload"]["payload"]["dirs"]
                        r["walk_ms"] = ev["payload"]["payload"]["ms"]
                        r["rss_kib"] = status_kib(proc.pid, "VmRSS")
                        r["hwm_kib"] = status_kib(proc.pid, "VmHWM")
                elif ftype == FAIL:
                    raise RuntimeError(f"worker failed: {payload!r}")
    finally:
        ours.close()
        proc.terminate()
        proc.wait(10)
        errf.close()
        # The worker's own account of its longest step (its debug log).
        for line in open(errpath, errors="replace"):
            if 'msg="Walked the workspace tree"' in line and "longest_step_ms=" in line:
                r["longest_step_ms"] = float(line.split("longest_step_ms=")[1].split()[0])
        os.unlink(errpath)
    log(f"worker: scan_complete after {r['scan_s']:.2f} s, {len(r['pings'])} pings, "
        f"worst {max(r['pings']) * 1e3:.1f} ms")
    worst = sorted(zip(r["pings"], r.get("ping_at", [])), reverse=True)[:5]
    log("worker: slowest pings (ms, sent at s): " + ", ".join(f"{a * 1e3:.1f}@{b:.3f}" for a, b in worst))
    return r


class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.path_ = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.path_)


def req(sock, method, path, body=None):
    c = Unix(sock)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"} if body is not None else {})
        resp = c.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        c.close()


def bench_daemon(root):
    """The whole daemon, pinging every 50 ms: create, GETs during the walk."""
    tmp = tempfile.mkdtemp(prefix="cs-bw-", dir="/tmp")
    sock = os.path.join(tmp, "s.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRUSH_")}
    env["CRUSH_SERVER_PING_INTERVAL"] = "0.05"
    errf = open(os.path.join(tmp, "stderr"), "wb")
    sup = subprocess.Popen([SUP, "-H", "unix://" + sock, "--idle-timeout", "60"], env=env,
                           stdin=subprocess.DEVNULL, stdout=errf, stderr=errf, start_new_session=True)
    r = {}
    try:
        for _ in range(500):
            if os.path.exists(sock):
                break
            time.sleep(0.01)
        cid = str(uuid.uuid4())
        t = time.monotonic()
        st, ws = req(sock, "POST", "/v1/workspaces", {"path": root, "client_id": cid})
        r["create_ms"] = (time.monotonic() - t) * 1e3
        assert st == 200, ws
        log(f"daemon: create answered in {r['create_ms']:.1f} ms, watch {ws['watch']}")
        gets, t0 = [], time.monotonic()
        while True:
            t = time.monotonic()
            st, w = req(sock, "GET", f"/v1/workspaces/{ws['id']}")
            gets.append(time.monotonic() - t)
            if st != 200 or w["pid"] != ws["pid"]:
                r["replaced"] = True
                break
            if not w["watch"]["scanning"]:
                break
            if time.monotonic() - t0 > 600:
                break
            time.sleep(0.02)
        r["walk_s"] = time.monotonic() - t0
        r["get_worst_ms"] = max(gets) * 1e3
        r["get_p50_ms"] = statistics.median(gets) * 1e3
        r["gets"] = len(gets)
        r["replaced"] = r.get("replaced", False)
        text = open(os.path.join(tmp, "stderr"), errors="replace").read()
        r["restarts"] = text.count("Worker crashed")
        log(f"daemon: walk over after {r['walk_s']:.2f} s; {len(gets)} GETs, worst {r['get_worst_ms']:.1f} ms; "
            f"worker replaced: {r['replaced']}, restarts logged: {r['restarts']}")
        req(sock, "DELETE", f"/v1/workspaces/{ws['id']}?client_id={cid}")
    finally:
        sup.terminate()
        try:
            sup.wait(15)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.wait()
        errf.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return r


def main():
    root = os.path.join(BASE, f"crush-bench-walk-{ENTRIES}-{PER_DIR}")
    make_tree(root, ENTRIES)
    root = os.path.realpath(root)
    try:
        w = bench_worker(root)
        d = bench_daemon(root)
    finally:
        if not KEEP:
            shutil.rmtree(root, ignore_errors=True)
    p = [x * 1e3 for x in w["pings"]]
    print(f"Worker walk of {ENTRIES:,} entries ({w['dirs']:,} directories watched), "
          f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M:%S')}, tree on {BASE}\n")
    print("| metric | value |")
    print("|---|---|")
    print(f"| worker: spawn -> READY | {w['ready_s'] * 1e3:.1f} ms |")
    print(f"| worker: spawn -> scan_complete | {w['scan_s']:.2f} s (walk {w['walk_ms']:,} ms) |")
    print(f"| worker: ping answers during the walk (one every 10 ms) | {len(p)}: p50 {pct(p, 50):.2f} ms, "
          f"p99 {pct(p, 99):.2f} ms, worst {max(p):.2f} ms |")
    print(f"| worker: its longest step (time in one watch_work call) | {w.get('longest_step_ms', float('nan')):.1f} ms |")
    print(f"| worker: RSS at scan_complete (VmRSS / VmHWM) | {w['rss_kib'] / 1024:.1f} MiB / "
          f"{w['hwm_kib'] / 1024:.1f} MiB |")
    print(f"| daemon: POST /v1/workspaces -> 200 (ready) | {d['create_ms']:.1f} ms |")
    print(f"| daemon: GET /v1/workspaces/{{id}} during the walk (every 20 ms) | {d['gets']}: p50 "
          f"{d['get_p50_ms']:.2f} ms, worst {d['get_worst_ms']:.2f} ms |")
    print(f"| daemon: walk over (GET says not scanning) | {d['walk_s']:.2f} s |")
    print(f"| daemon: worker replaced during the walk (50 ms pings) | "
          f"{'yes' if d['replaced'] or d['restarts'] else 'no'} |")


if __name__ == "__main__":
    main()
