#!/usr/bin/python3
"""crush-supervisor benchmarks: the running daemon beside this machine's
own ceilings, measured in the same run, printed as one table.

Run by bench/run.sh (make bench), which builds the C helpers first:
    /usr/bin/python3 bench/bench.py BUILD_DIR [--quick]

Phases (each starts its own daemon; nothing is shared between them):
  spawn    a first look at the spawn floor (bench/spawn_floor.c)
  http     GET /v1/health over HTTP/1.1 (wrk) and h2c (h2load), the join
           of an existing workspace (wrk + bench/join.lua) and a routed GET
           /v1/workspaces/{id}/config (wrk), each round back to back with
           Debian's h2o serving a tiny static file
  routed   16 MiB routed answers (/_test/bytes) read by curl: throughput
           and the supervisor's RSS growth while they stream
  latency  create -> ready over 200 fresh directories, each right after one
           spawn-floor round (the anchor, same load); release -> reaped;
           idle worker USS
  fanout   200 streams x N events from bench/bench_worker, read by
           bench/sse_fanout (and the same reader on raw sockets: anchor)
  memory   supervisor RSS per idle event stream, 10,000 streams over
           HTTP/1.1 and over h2c; h2o's RSS per idle keep-alive connection
           as the anchor
  scale    1,000 live workspaces and 10,000 streams at once

Stdlib only. Everything listens on 127.0.0.1 or unix sockets under a temp
dir; every wait is bounded; every process started is stopped by its pid.
"""
import json
import os
import re
import resource
import secrets
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "build")
QUICK = "--quick" in sys.argv  # shorter rounds, for trying the harness out
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BB = os.path.join(BUILD, "bench")
SUP = os.path.join(BUILD, "crush-supervisor")
WORKER = os.path.join(BUILD, "crush-worker")

ROUNDS = 3 if QUICK else 7  # HTTP rounds (each: ours and the anchor, back to back)
# The p50 rounds: one round's routed/health ratio ranges 1.2-2.7 here
# (/v1/health's p50 has two modes), and a median of 7 moved 1.65-2.36
# between runs. Resampling 43 measured rounds, a median of 7 came out
# above 2 in 20% of draws, of 15 in 11%: more rounds, a steadier median.
P50_ROUNDS = 3 if QUICK else 15
DUR = 2  # seconds per load-generator run
CONNS = 32
H2_STREAMS = 10  # h2load -m: concurrent streams per h2c connection
# The daemon's tcp listener needs a bearer token (SPEC §7); every tcp
# client here sends it (the h2o anchor gets the same header, unread).
TOKEN = secrets.token_hex(32)
AUTH = f"Authorization: Bearer {TOKEN}"
CREATES = 200  # fresh directories for create -> ready
FAN_STREAMS = 200
FAN_EVENTS = 20000  # ~1.16 MB per stream per burst
FAN_EVENTS_SMALL = 10000  # ~0.58 MB: under the daemon's 1 MiB per-stream cap
FAN_ROUNDS = 4 if QUICK else 6  # the first is a warm-up, not counted
MEM_STREAMS = 10000
MEM_WS = 10
SCALE_WS = 1000
SCALE_STREAMS_PER_WS = 10

T0 = time.monotonic()
TMP = tempfile.mkdtemp(prefix="cb.", dir="/tmp")  # short: unix socket paths
PROCS = []  # every Popen we started, stopped by pid at exit
DETAILS = {}
NOTES = []


def log(msg):
    print(f"[bench {time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# --- processes and /proc


def start(argv, name, env=None, cpus=None):
    if cpus is not None:
        argv = ["taskset", "-c", cpus] + argv
    out = open(os.path.join(TMP, name + ".log"), "wb")
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    p.name = name
    PROCS.append(p)
    return p


def stop(p, timeout=20.0):
    """SIGTERM, wait; SIGKILL after timeout. Returns seconds until exit."""
    if p.poll() is not None:
        return 0.0
    t = time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        log(f"{p.name} (pid {p.pid}) ignored SIGTERM for {timeout}s: SIGKILL")
        p.kill()
        p.wait(5)
    return time.monotonic() - t


def cpu_secs(pid):
    """utime + stime of a whole process (all threads), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def uss_kib(pid):
    """Private_Clean + Private_Dirty from smaps_rollup, KiB."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def private_dirty_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
    return 0


def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_connectable(path=None, port=None, timeout=10.0, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.returncode}: see {TMP}/{proc.name}.log")
        try:
            if path:
                s = socket.socket(socket.AF_UNIX)
                s.connect(path)
            else:
                s = socket.create_connection(("127.0.0.1", port), 1)
            s.close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {path or port} after {timeout}s")


# --- a minimal HTTP/1.1 client (keep-alive, unix socket or TCP)


class Http:
    """Reconnects once when the server closed an idle keep-alive
    connection (h2o closes them after 10 s)."""

    def __init__(self, path=None, port=None, timeout=30.0):
        self.path, self.port, self.timeout = path, port, timeout
        self._connect()

    def _connect(self):
        if self.path:
            self.s = socket.socket(socket.AF_UNIX)
            self.s.settimeout(self.timeout)
            self.s.connect(self.path)
        else:
            self.s = socket.create_connection(("127.0.0.1", self.port), self.timeout)
            self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.used = time.monotonic()

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise ConnectionError("server closed the connection")
        self.buf += d

    def request(self, method, target, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {target} HTTP/1.1\r\nHost: {'bench' if self.path else '127.0.0.1'}\r\n"
        head += f"Content-Length: {len(data)}\r\n" + ("" if self.path else AUTH + "\r\n")
        if body is not None:
            head += "Content-Type: application/json\r\n"
        if time.monotonic() - self.used > 5:  # may have been closed as idle
            self.s.close()
            self._connect()
        self.s.sendall(head.encode() + b"\r\n" + data)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        self.used = time.monotonic()
        h, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = h.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
        if "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while len(self.buf) < n:
                self._fill()
            out, self.buf = self.buf[:n], self.buf[n:]
        else:  # chunked
            out = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                n = int(size_line.split(b";")[0], 16)
                while len(self.buf) < n + 2:
                    self._fill()
                out += self.buf[:n]
                self.buf = self.buf[n + 2:]
                if n == 0:
                    break
        return status, out

    def json(self, method, target, body=None):
        st, out = self.request(method, target, body)
        return st, (json.loads(out) if out else None)

    def close(self):
        self.s.close()


# --- many SSE streams at once (raw HTTP/1.1 sockets, one per stream)


class Pump:
    """The read loop shared by the stream holders: each readable socket's
    bytes go to _on_data(owner, bytes), its EOF to _on_eof(owner)."""

    RECV = 262144

    def pump(self, done, timeout):
        """Reads until done() or timeout; True when done."""
        end = time.monotonic() + timeout
        while not done():
            left = end - time.monotonic()
            if left <= 0:
                return False
            for key, _ in self.sel.select(min(left, 0.5)):
                owner = key.data
                try:
                    d = owner["sock"].recv(self.RECV)
                except BlockingIOError:
                    continue
                except OSError:
                    d = b""
                if not d:
                    self.sel.unregister(owner["sock"])
                    self._on_eof(owner)
                    continue
                self._on_data(owner, d)
        return True


class Streams(Pump):
    """Holds event streams open and watches what arrives on them: the
    status line, the ": connected" comment, and whether a marker (bytes)
    has been seen since it was armed."""

    def __init__(self, path):
        self.path = path
        self.sel = selectors.DefaultSelector()
        self.all = []
        self.marker = None
        self.n = {"connected": 0, "seen": 0, "eof": 0}

    def open(self, ws_id, client_id):
        s = socket.socket(socket.AF_UNIX)
        s.setblocking(False)
        end = time.monotonic() + 30
        while True:
            try:
                s.connect(self.path)
                break
            except BlockingIOError:  # the listen backlog is full: the daemon is busy accepting
                if time.monotonic() > end:
                    raise
                time.sleep(0.001)
        s.settimeout(30)
        s.sendall(f"GET /v1/workspaces/{ws_id}/events?client_id={client_id} HTTP/1.1\r\n"
                  f"Host: bench\r\nAccept: text/event-stream\r\n\r\n".encode())
        s.setblocking(False)
        st = {"sock": s, "head": b"", "status": None, "connected": False, "seen": False, "tail": b"",
              "eof": False, "ws": ws_id}
        self.sel.register(s, selectors.EVENT_READ, st)
        self.all.append(st)

    def arm(self, marker):
        self.marker = marker
        for st in self.all:
            st["seen"] = False
        self.n["seen"] = 0

    def _on_data(self, st, d):
        if st["status"] is None:
            st["head"] += d
            if b"\r\n\r\n" not in st["head"]:
                return
            h, d = st["head"].split(b"\r\n\r\n", 1)
            st["status"] = int(h.split(b" ", 2)[1])
            st["head"] = b""
        text = st["tail"] + d
        if not st["connected"] and b": connected" in text:
            st["connected"] = True
            self.n["connected"] += 1
        if self.marker is not None and not st["seen"] and self.marker in text:
            st["seen"] = True
            self.n["seen"] += 1
        st["tail"] = text[-64:]

    def _on_eof(self, st):
        st["eof"] = True
        self.n["eof"] += 1

    def count(self, key):
        return self.n[key]

    def close(self):
        for st in self.all:
            try:
                if not st["eof"]:
                    self.sel.unregister(st["sock"])
            except (KeyError, ValueError):
                pass
            st["sock"].close()
        self.all = []


# --- many SSE streams multiplexed over h2c (HTTP/2 with prior knowledge)


def _h2_frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def _hpack_str(b):
    """An HPACK string literal, no Huffman: 7-bit prefix length."""
    n = len(b)
    if n < 127:
        return bytes([n]) + b
    out, n = bytearray([127]), n - 127
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out) + b


class H2Streams(Pump):
    """Just enough HTTP/2 to hold event streams open: the preface, our
    SETTINGS, HEADERS (END_STREAM) per stream, SETTINGS/PING acks; reads
    each stream's status (":status: 200" is the static entry 0x88) and
    waits for its ": connected" comment. Never sends WINDOW_UPDATE: idle
    streams stay far below the 64 KiB windows."""

    PER_CONN = 100  # h2o's default SETTINGS_MAX_CONCURRENT_STREAMS

    def __init__(self, path):
        self.path = path
        self.sel = selectors.DefaultSelector()
        self.conns = []
        self.n = {"connected": 0, "eof": 0, "refused": 0}
        self.total = 0

    def _conn(self):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.path)
        # SETTINGS: ENABLE_PUSH (2) = 0
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _h2_frame(4, 0, 0, b"\x00\x02\x00\x00\x00\x00"))
        c = {"sock": s, "buf": b"", "next": 1, "streams": {}, "dead": False}
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ, c)
        self.conns.append(c)
        return c

    def open(self, ws_id, client_id):
        c = self.conns[-1] if self.conns and len(self.conns[-1]["streams"]) < self.PER_CONN else self._conn()
        sid = c["next"]
        c["next"] += 2
        path = f"/v1/workspaces/{ws_id}/events?client_id={client_id}".encode()
        # :method GET (2), :scheme http (6), :path (name 4) literal, :authority (name 1) literal
        block = b"\x82\x86\x04" + _hpack_str(path) + b"\x01" + _hpack_str(b"bench")
        c["streams"][sid] = {"status": None, "connected": False, "eof": False}
        self.total += 1
        s = c["sock"]
        s.setblocking(True)
        s.sendall(_h2_frame(1, 0x5, sid, block))
        s.setblocking(False)

    def _on_frame(self, c, ftype, flags, sid, payload):
        st = c["streams"].get(sid)
        if ftype == 4 and not flags & 1:  # SETTINGS: ack
            c["sock"].setblocking(True)
            c["sock"].sendall(_h2_frame(4, 1, 0))
            c["sock"].setblocking(False)
        elif ftype == 6 and not flags & 1:  # PING: ack
            c["sock"].setblocking(True)
            c["sock"].sendall(_h2_frame(6, 1, 0, payload))
            c["sock"].setblocking(False)
        elif ftype == 1 and st is not None:  # HEADERS
            p = payload
            if flags & 0x8:  # PADDED
                p = p[1:len(p) - p[0]]
            if flags & 0x20:  # PRIORITY
                p = p[5:]
            st["status"] = 200 if p[:1] == b"\x88" else -1
            if st["status"] != 200:
                self.n["refused"] += 1
        elif ftype == 0 and st is not None:  # DATA
            if not st["connected"] and b": connected" in payload:
                st["connected"] = True
                self.n["connected"] += 1
        elif ftype == 3 and st is not None and not st["eof"]:  # RST_STREAM
            st["eof"] = True
            self.n["eof"] += 1
        if ftype in (0, 1) and st is not None and flags & 1 and not st["eof"]:  # END_STREAM
            st["eof"] = True
            self.n["eof"] += 1

    def _on_eof(self, c):
        for st in c["streams"].values():
            if not st["eof"]:
                st["eof"] = True
                self.n["eof"] += 1

    def _on_data(self, c, d):
        c["buf"] += d
        b = c["buf"]
        off = 0
        while len(b) - off >= 9:
            n = int.from_bytes(b[off:off + 3], "big")
            if len(b) - off < 9 + n:
                break
            self._on_frame(c, b[off + 3], b[off + 4], int.from_bytes(b[off + 5:off + 9], "big") & 0x7FFFFFFF,
                           b[off + 9:off + 9 + n])
            off += 9 + n
        c["buf"] = b[off:]

    def count(self, key):
        return self.n[key]

    def close(self):
        for c in self.conns:
            try:
                self.sel.unregister(c["sock"])
            except (KeyError, ValueError):
                pass
            c["sock"].close()
        self.conns = []


# --- the daemon and the h2o anchor


def start_supervisor(name, tcp_port=None, worker=None, cpus=None, create_grace=5, env=None):
    sock = os.path.join(TMP, name + ".sock")
    argv = [SUP, "-H", f"unix://{sock}"]
    if tcp_port:
        argv += ["-H", f"tcp://127.0.0.1:{tcp_port}"]
        env = dict(env or os.environ, CRUSH_SERVER_TOKEN=TOKEN)
    if worker:
        argv += ["--worker", worker]
    # The memory and scale phases hold 10,000 streams and 1,000 workspaces:
    # past the default limits (512 workspaces, 4,096 streams).
    argv += ["--create-grace", str(create_grace), "--detach-grace", "0", "--idle-timeout", "600",
             "--max-workspaces", str(SCALE_WS + 100), "--max-streams", str(MEM_STREAMS + 1000),
             "--log-level", "warn"]
    p = start(argv, name, env=env, cpus=cpus)
    wait_connectable(path=sock, proc=p)
    p.sock = sock
    return p


def start_h2o(cpus=None):
    d = os.path.join(TMP, "h2o")
    os.makedirs(os.path.join(d, "www"), exist_ok=True)
    with open(os.path.join(d, "www", "t"), "w") as f:
        f.write("ok")
    port = free_port()
    conf = os.path.join(d, "h2o.conf")
    with open(conf, "w") as f:
        f.write(f"""# written by bench/bench.py: the HTTP ceiling anchor
num-threads: 1
user: root
max-connections: 20000
http1-request-timeout: 600
http2-idle-timeout: 600
listen:
  host: 127.0.0.1
  port: {port}
hosts:
  default:
    paths:
      /:
        file.dir: {d}/www
""")
    h2o = shutil.which("h2o") or "/usr/sbin/h2o"
    p = start([h2o, "-c", conf], "h2o", cpus=cpus)
    wait_connectable(port=port, proc=p)
    p.port = port
    return p


def create(http, path, client_id=None):
    st, ws = http.json("POST", "/v1/workspaces", {"path": path, "client_id": client_id or str(uuid.uuid4())})
    if st != 200:
        raise RuntimeError(f"create {path}: {st} {ws}")
    return ws


# --- load generators


def run_wrk(url, server_pid, cpus, script=None, env=None):
    argv = ["wrk", "-t1", f"-c{CONNS}", f"-d{DUR}s", "--latency", "-H", AUTH]
    if script:
        argv += ["-s", script]
    argv.append(url)
    if cpus is not None:
        argv = ["taskset", "-c", cpus] + argv
    c0, t0 = cpu_secs(server_pid), time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=DUR + 60, env=env).stdout
    c1, t1 = cpu_secs(server_pid), time.monotonic()
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError("wrk printed no rate:\n" + out)
    n = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    err = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, err.groups())) if err else 0)
    lat = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p50 = float(lat.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[lat.group(2)] if lat else float("nan")
    return {"rps": float(m.group(1)), "errors": errors, "server_cpu": (c1 - c0) / (t1 - t0),
            "cpu_us_per_req": (c1 - c0) * 1e6 / int(n.group(1)) if n and int(n.group(1)) else float("nan"),
            "p50": p50}


def run_h2load(url, server_pid, cpus):
    argv = ["h2load", f"-c{CONNS}", f"-m{H2_STREAMS}", "-t1", "-D", str(DUR), "-H", AUTH, url]
    if cpus is not None:
        argv = ["taskset", "-c", cpus] + argv
    c0, t0 = cpu_secs(server_pid), time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=DUR + 60).stdout
    c1, t1 = cpu_secs(server_pid), time.monotonic()
    m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored", out)
    if not m or not r:
        raise RuntimeError("h2load printed no rate:\n" + out)
    errors = int(r.group(5)) + int(r.group(6))
    codes = re.search(r"status codes: (\d+) 2xx", out)
    if codes and int(codes.group(1)) != int(r.group(4)):
        errors += int(r.group(4)) - int(codes.group(1))
    done = int(r.group(3))
    return {"rps": float(m.group(1)), "errors": errors, "server_cpu": (c1 - c0) / (t1 - t0),
            "cpu_us_per_req": (c1 - c0) * 1e6 / done if done else float("nan")}


def paired(name, ours_fn, anchor_fn, metric="rps"):
    """ROUNDS rounds, ours and the anchor back to back (order alternating),
    so both see the same machine. Returns medians and the median of the
    per-round ratios of `metric` (robust to drifting background load)."""
    rows = []
    for i in range(ROUNDS):
        if i % 2 == 0:
            a = anchor_fn()
            o = ours_fn()
        else:
            o = ours_fn()
            a = anchor_fn()
        rows.append({"ours": o, "anchor": a, "ratio": o[metric] / a[metric]})
        p50s = f", p50 {o['p50'] * 1e3:.3f} ms" if metric == "p50" else ""
        p50a = f", p50 {a['p50'] * 1e3:.3f} ms" if metric == "p50" else ""
        log(f"  {name} round {i + 1}/{ROUNDS}: ours {o['rps']:,.0f} req/s (cpu {o['server_cpu']:.0%}, "
            f"{o['cpu_us_per_req']:.1f} us/req{p50s}), anchor {a['rps']:,.0f} req/s (cpu {a['server_cpu']:.0%}, "
            f"{a['cpu_us_per_req']:.1f} us/req{p50a}), {metric} ratio {rows[-1]['ratio']:.2f}")
    res = {
        "ours": statistics.median(r["ours"]["rps"] for r in rows),
        "anchor": statistics.median(r["anchor"]["rps"] for r in rows),
        "ratio": statistics.median(r["ratio"] for r in rows),
        "errors": sum(r["ours"]["errors"] for r in rows),
        "anchor_errors": sum(r["anchor"]["errors"] for r in rows),
        "ours_cpu": statistics.median(r["ours"]["server_cpu"] for r in rows),
        "anchor_cpu": statistics.median(r["anchor"]["server_cpu"] for r in rows),
        "ours_us_per_req": statistics.median(r["ours"]["cpu_us_per_req"] for r in rows),
        "anchor_us_per_req": statistics.median(r["anchor"]["cpu_us_per_req"] for r in rows),
        "ours_p50": statistics.median(r["ours"].get("p50", float("nan")) for r in rows),
        "anchor_p50": statistics.median(r["anchor"].get("p50", float("nan")) for r in rows),
        "rounds": rows,
    }
    DETAILS[name] = res
    return res


def latency_rounds(name, fns, ratios):
    """P50_ROUNDS rounds of wrk p50s: every fn in each round, back to back,
    the order turned by one each round. ratios names {key: (numerator,
    denominator)} of fns; each is the median of its per-round ratios."""
    keys = list(fns)
    rows = []
    for i in range(P50_ROUNDS):
        k = i % len(keys)
        row = {key: fns[key]() for key in keys[k:] + keys[:k]}
        rows.append(row)
        log(f"  {name} round {i + 1}/{P50_ROUNDS}: " + ", ".join(
            f"{key} {row[key]['rps']:,.0f} req/s p50 {row[key]['p50'] * 1e3:.3f} ms" for key in keys) + "; " +
            ", ".join(f"{r} {row[a]['p50'] / row[b]['p50']:.2f}" for r, (a, b) in ratios.items()))
    res = {"rounds": rows, "errors": sum(r[k]["errors"] for r in rows for k in keys)}
    for key in keys:
        res[key + "_p50"] = statistics.median(r[key]["p50"] for r in rows)
    for r, (a, b) in ratios.items():
        res[r] = statistics.median(row[a]["p50"] / row[b]["p50"] for row in rows)
        res[r + "_rounds"] = [row[a]["p50"] / row[b]["p50"] for row in rows]
    DETAILS[name] = res
    return res


# --- phases


def phase_spawn():
    log("spawn floor: fork+exec of a trivial program + one socketpair round trip, 300 rounds")
    out = subprocess.run([os.path.join(BB, "spawn_floor"), os.path.join(BB, "spawn_child"), "300"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    r = json.loads(out)
    DETAILS["spawn_floor"] = r
    log(f"  spawn p50 {r['spawn_p50_us'] / 1000:.2f} ms, p99 {r['spawn_p99_us'] / 1000:.2f} ms; "
        f"kill->reap p50 {r['reap_p50_us'] / 1000:.2f} ms")
    return r


def phase_http(server_cpus, client_cpus):
    log(f"http: h2o and the daemon pinned to cpu {server_cpus}, load generators to cpu {client_cpus}")
    h2o = start_h2o(cpus=server_cpus)
    port = free_port()
    sup = start_supervisor("sup-http", tcp_port=port, cpus=server_cpus, create_grace=2,
                           env=dict(os.environ, CRUSH_TEST_ROUTES="1"))
    base = f"http://127.0.0.1:{port}"
    anchor_url = f"http://127.0.0.1:{h2o.port}/t"

    # Sanity: both answer 200.
    for p, path in ((h2o.port, "/t"), (port, "/v1/health")):
        c = Http(port=p)
        st, _ = c.request("GET", path)
        c.close()
        if st != 200:
            raise RuntimeError(f"GET {path} on port {p}: {st}")

    h1 = paired("http1_health", lambda: run_wrk(base + "/v1/health", sup.pid, client_cpus),
                lambda: run_wrk(anchor_url, h2o.pid, client_cpus))
    h2 = paired("h2c_health", lambda: run_h2load(base + "/v1/health", sup.pid, client_cpus),
                lambda: run_h2load(anchor_url, h2o.pid, client_cpus))

    # Join: one live workspace, held by an attached stream; every request
    # joins it as a brand-new client.
    jdir = os.path.join(TMP, "join")
    os.makedirs(jdir)
    api = Http(path=sup.sock)
    holder = str(uuid.uuid4())
    ws = create(api, jdir, holder)
    hold = Streams(sup.sock)
    hold.open(ws["id"], holder)
    hold.pump(lambda: hold.count("connected") == 1, 10)
    env = dict(os.environ, BENCH_JOIN_PATH=jdir, BENCH_TOKEN=TOKEN)
    join = paired("join", lambda: run_wrk(base + "/", sup.pid, client_cpus, os.path.join(ROOT, "bench/join.lua"),
                                          env),
                  lambda: run_wrk(anchor_url, h2o.pid, client_cpus))
    # Routed: the worker of that workspace answers GET /config at once.
    # Its worker inherited the supervisor's CPU; it does half the work of
    # each request, so it gets the other CPU, with the load generator (as
    # in the fan-out phase).
    if client_cpus is not None:
        subprocess.run(["taskset", "-p", "-c", client_cpus, str(ws["pid"])], capture_output=True, check=True)
    routed_url = f"{base}/v1/workspaces/{ws['id']}/config"
    st, routed_body = api.request("GET", f"/v1/workspaces/{ws['id']}/config")
    if st != 200:
        raise RuntimeError(f"GET {routed_url}: {st}")
    routed = paired("routed_config", lambda: run_wrk(routed_url, sup.pid, client_cpus),
                    lambda: run_wrk(anchor_url, h2o.pid, client_cpus))
    # Its latency beside /v1/health's, round by round: the p50 of a
    # 2 s wrk run moves with the machine's other load (0.12-0.33 ms for
    # /v1/health between runs), so the two are compared within a round.
    # The same rounds measure the floor of that ratio: bench/relay_floor,
    # a bare h2o answering /health at once and relaying everything else
    # to a trivial child process over a socketpair (placed as the worker
    # is), so what any second process costs on this machine is visible.
    fport = free_port()
    fl = start([os.path.join(BB, "relay_floor"), str(fport), str(len(routed_body))] +
               ([client_cpus] if client_cpus is not None else []), "relay_floor", cpus=server_cpus)
    wait_connectable(port=fport, proc=fl)
    fbase = f"http://127.0.0.1:{fport}"
    routed["latency"] = latency_rounds(
        "routed_p50",
        {"routed": lambda: run_wrk(routed_url, sup.pid, client_cpus),
         "health": lambda: run_wrk(base + "/v1/health", sup.pid, client_cpus),
         "floor_relay": lambda: run_wrk(fbase + "/relay", fl.pid, client_cpus),
         "floor_health": lambda: run_wrk(fbase + "/health", fl.pid, client_cpus)},
        {"ratio": ("routed", "health"), "floor_ratio": ("floor_relay", "floor_health")})
    routed["latency"]["body_bytes"] = len(routed_body)
    stop(fl)
    st, after = api.json("GET", f"/v1/workspaces/{ws['id']}")
    DETAILS["join"]["workspace_after"] = {"status": st, "state": after and after.get("state"),
                                          "clients": after and after.get("clients"),
                                          "same_pid": bool(after) and after.get("pid") == ws["pid"]}
    hold.close()
    api.close()
    DETAILS["h2o_rss_kib"] = status_kib(h2o.pid, "VmRSS")
    stop(sup)
    return h2o, h1, h2, join, routed


def reset_hwm(pid):
    """Resets VmHWM to the current RSS (clear_refs 5, Linux >= 4.0)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def curl_rates(argv, rounds, n_bytes, url):
    """(MiB/s of each transfer, errors): one curl, `rounds` sequential
    transfers of url on one keep-alive connection, each timed by curl from
    its request to its last byte."""
    for _ in range(rounds):
        argv = argv + ["-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}\\n", url]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    rates, errors = [], []
    if p.returncode != 0:
        errors.append(f"curl rc {p.returncode}: {p.stderr.strip()[:200]}")
    for i, line in enumerate(p.stdout.splitlines()):
        code, size, secs = line.split()
        if code != "200" or int(size) != n_bytes:
            errors.append(f"round {i}: {line}")
        else:
            rates.append(n_bytes / float(secs) / (1 << 20))
    if len(rates) + len(errors) != rounds:
        errors.append(f"{len(rates)} of {rounds} transfers reported")
    return rates, errors


def phase_routed_stream(h2o):
    """16 MiB routed responses (/_test/bytes) read by curl on the unix
    socket as fast as it can: throughput, and how much the supervisor's RSS
    grows while it streams (the window holds PROTO_WINDOW frames)."""
    log("routed stream: 16 MiB answers from the worker through the supervisor, read by curl")
    n_bytes = 16 << 20
    rounds = 5 if QUICK else 15
    sup = start_supervisor("sup-routed", env=dict(os.environ, CRUSH_TEST_ROUTES="1"))
    api = Http(path=sup.sock)
    d = os.path.join(TMP, "routed")
    os.makedirs(d)
    ws = create(api, d)
    url = f"http://bench/v1/workspaces/{ws['id']}/_test/bytes?n={n_bytes}"
    api.request("GET", f"/v1/workspaces/{ws['id']}/config")
    rss0 = status_kib(sup.pid, "VmRSS")
    hwm_ok = reset_hwm(sup.pid)
    peak = [rss0]
    stop_poll = threading.Event()

    def poll():  # a backup for kernels without clear_refs 5
        while not stop_poll.is_set():
            peak[0] = max(peak[0], status_kib(sup.pid, "VmRSS"))
            time.sleep(0.002)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    rates, errors = curl_rates(["curl", "-sS", "--unix-socket", sup.sock], rounds, n_bytes, url)
    stop_poll.set()
    poller.join()
    hwm = status_kib(sup.pid, "VmHWM")
    growth = (hwm if hwm_ok else peak[0]) - rss0
    api.close()
    stop(sup)
    # The anchor: h2o serving a 16 MiB static file to the same curl (tcp).
    with open(os.path.join(TMP, "h2o", "www", "big"), "wb") as f:
        f.write(b"x" * n_bytes)
    arates, aerrors = curl_rates(["curl", "-sS"], rounds, n_bytes, f"http://127.0.0.1:{h2o.port}/big")
    r = {"rounds": rounds, "mib_s": statistics.median(rates) if rates else 0.0, "rates": rates,
         "anchor_mib_s": statistics.median(arates) if arates else 0.0, "anchor_errors": aerrors,
         "rss0_kib": rss0, "hwm_kib": hwm, "hwm_reset": hwm_ok, "polled_peak_kib": peak[0],
         "growth_kib": growth, "errors": errors}
    DETAILS["routed_stream"] = r
    log(f"  16 MiB routed: median {r['mib_s']:.0f} MiB/s (h2o static file: {r['anchor_mib_s']:.0f}) over {len(rates)} rounds (curl's time per transfer); supervisor "
        f"RSS {rss0} KiB before, peak {growth} KiB above it; errors {len(errors)}")
    return r


def phase_latency(floor_child):
    log(f"latency: create -> ready over {CREATES} fresh directories; release -> reaped; idle worker USS")
    sup = start_supervisor("sup-latency")
    api = Http(path=sup.sock)
    base = os.path.join(TMP, "fresh")
    os.makedirs(base)
    rtt = []
    for _ in range(200):
        t = time.perf_counter()
        api.request("GET", "/v1/health")
        rtt.append(time.perf_counter() - t)
    created, reaped, uss, dirty, errors = [], [], [], [], []
    fspawn, freap, wspawn = [], [], []
    # A neighbour workspace, held by its stream all through the phase: a
    # daemon hosts many, and each worker's library pages are then shared
    # with the others (USS counts a page only its own process maps). Its
    # USS right after ready, alone, is the lone-worker figure.
    ndir = os.path.join(TMP, "neighbour")
    os.makedirs(ndir)
    nid = str(uuid.uuid4())
    neighbour = create(api, ndir, nid)
    hold = Streams(sup.sock)
    hold.open(neighbour["id"], nid)
    hold.pump(lambda: hold.count("connected") == 1, 10)
    uss_alone = uss_kib(neighbour["pid"])
    wdir = os.path.join(TMP, "worker-alone")
    os.makedirs(wdir)
    floor = subprocess.Popen([os.path.join(BB, "spawn_floor"), floor_child, "--serve"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    PROCS.append(floor)
    floor.name = "spawn_floor"
    warm = 10
    for i in range(warm + CREATES):
        # One floor round right before each create: both see the same load.
        floor.stdin.write("\n")
        floor.stdin.flush()
        fs, fr = map(float, floor.stdout.readline().split())
        # And the real worker started by that same minimal parent: its own
        # start-up cost, without the supervisor.
        floor.stdin.write(f"w {WORKER} {wdir}\n")
        floor.stdin.flush()
        ws_, _ = map(float, floor.stdout.readline().split())
        if i >= warm:
            fspawn.append(fs / 1e6)
            freap.append(fr / 1e6)
            wspawn.append(ws_ / 1e6)
        d = os.path.join(base, f"d{i}")
        os.mkdir(d)
        cid = str(uuid.uuid4())
        body = {"path": d, "client_id": cid}
        t0 = time.perf_counter()
        st, ws = api.json("POST", "/v1/workspaces", body)
        t1 = time.perf_counter()
        if st != 200 or ws.get("state") != "ready":
            errors.append(f"create {d}: {st} {ws}")
            continue
        pid = ws["pid"]
        if i >= warm:
            created.append(t1 - t0)
            if i % 4 == 0:
                uss.append(uss_kib(pid))
                dirty.append(private_dirty_kib(pid))
        t2 = time.perf_counter()
        st, _ = api.request("DELETE", f"/v1/workspaces/{ws['id']}?client_id={cid}")
        if st != 200:
            errors.append(f"delete: {st}")
        # Tight poll, but yielding: a pure spin takes a whole core from the
        # worker and the supervisor being timed (2 cores, shared) and
        # measured ~4x longer than the same release polled this way.
        end = t2 + 10
        while os.path.exists(f"/proc/{pid}") and time.perf_counter() < end:
            os.sched_yield()
        t3 = time.perf_counter()
        if os.path.exists(f"/proc/{pid}"):
            errors.append(f"worker {pid} not reaped 10 s after release")
        elif i >= warm:
            reaped.append(t3 - t2)
    hold.close()
    api.close()
    floor.stdin.close()
    floor.wait(10)

    # The anchor of USS: the trivial program of the spawn floor, alive.
    a, b = socket.socketpair()
    child = subprocess.Popen([floor_child, str(b.fileno())], pass_fds=(b.fileno(),))
    b.close()
    a.recv(1)
    a.send(b"r")
    time.sleep(0.05)
    trivial_uss = uss_kib(child.pid)
    a.close()
    child.wait(5)

    stop(sup)
    r = {
        "create_p50": statistics.median(created), "create_p99": pct(created, 99),
        "create_min": min(created), "create_max": max(created), "n": len(created),
        "reap_p50": statistics.median(reaped), "reap_p99": pct(reaped, 99), "reap_n": len(reaped),
        "http_rtt_p50": statistics.median(rtt),
        "uss_p50": statistics.median(uss), "uss_max": max(uss), "uss_n": len(uss), "uss_alone": uss_alone,
        "private_dirty_p50": statistics.median(dirty),
        "trivial_uss": trivial_uss, "errors": errors,
        "floor_spawn_p50": statistics.median(fspawn), "floor_spawn_p99": pct(fspawn, 99),
        "floor_reap_p50": statistics.median(freap), "floor_n": len(fspawn),
        "worker_alone_p50": statistics.median(wspawn), "worker_alone_p99": pct(wspawn, 99),
    }
    DETAILS["latency"] = r
    log(f"  spawn floor (interleaved) p50 {r['floor_spawn_p50'] * 1e3:.2f} ms p99 {r['floor_spawn_p99'] * 1e3:.2f} "
        f"ms, kill->reap p50 {r['floor_reap_p50'] * 1e3:.2f} ms; crush-worker from the same parent "
        f"p50 {r['worker_alone_p50'] * 1e3:.2f} ms")
    log(f"  create->ready p50 {r['create_p50'] * 1e3:.2f} ms p99 {r['create_p99'] * 1e3:.2f} ms; "
        f"release->reaped p50 {r['reap_p50'] * 1e3:.2f} ms; HTTP round trip p50 {r['http_rtt_p50'] * 1e6:.0f} us; "
        f"worker USS p50 {r['uss_p50']} KiB; errors {len(errors)}")
    return r


def run_fanout(argv, while_held=None):
    """Runs sse_fanout; with while_held, passes --hold and calls it while
    the streams are still open (after the rounds), then lets them go."""
    if while_held is None:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        out = p.stdout
    else:
        p = subprocess.Popen(argv + ["--hold"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        t = threading.Timer(600, p.kill)
        t.start()
        out = p.stdout.readline()
        while_held()
        p.stdin.close()
        p.wait(70)
        t.cancel()
    try:
        r = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"sse_fanout: {out}")
    # Drop the warm-up round (first bursts grow every buffer).
    rates = r["rate"][1:] if len(r["rate"]) > 1 else r["rate"]
    r["median_counted"] = statistics.median(rates) if rates else 0.0
    return r


def burst_bytes(events):
    """The formatted size of one burst, as the daemon holds it once: every
    event's "id: N\ndata: JSON\n\n" (ids of the order of the run's)."""
    return sum(len(f"id: {events + i}\ndata: ") + len(f'{{"type":"bench","payload":{{"seq":{i}}}}}') + 2
               for i in range(events))


def fanout_once(events, server_cpus, client_cpus):
    """One daemon with the bench worker, FAN_STREAMS streams, FAN_ROUNDS
    bursts of `events` events; then the raw-socket anchor, same sizes."""
    name = f"sup-fanout-{events}"
    env = dict(os.environ, BENCH_EMIT=str(events))
    sup = start_supervisor(name, worker=os.path.join(BB, "bench_worker"), env=env, cpus=server_cpus)
    api = Http(path=sup.sock)
    d = os.path.join(TMP, f"fanout-{events}")
    os.makedirs(d)
    ws = create(api, d)
    pin = []
    if client_cpus is not None:
        # The worker (it inherited the supervisor's CPU) and the reader share
        # the other CPU: the supervisor has one to itself, as in the HTTP phase.
        subprocess.run(["taskset", "-p", "-c", client_cpus, str(ws["pid"])], capture_output=True, check=True)
        pin = ["taskset", "-c", client_cpus]
    rss0 = status_kib(sup.pid, "VmRSS")
    held = {}

    def sample():
        time.sleep(0.5)  # every stream idle again
        held["rss"] = status_kib(sup.pid, "VmRSS")

    ours = run_fanout(pin + [os.path.join(BB, "sse_fanout"), "--unix", sup.sock, "--ws", ws["id"], "--pid",
                             str(ws["pid"]), "--sup-pid", str(sup.pid), "--streams", str(FAN_STREAMS), "--events",
                             str(events), "--rounds", str(FAN_ROUNDS)], sample)
    ours["rss_before_kib"] = rss0
    ours["rss_hwm_kib"] = status_kib(sup.pid, "VmHWM")
    ours["rss_idle_after_kib"] = held.get("rss")
    time.sleep(1.0)  # the streams' connections closed and freed; a quiet point
    ours["rss_after_close_kib"] = status_kib(sup.pid, "VmRSS")
    ours["burst_bytes"] = burst_bytes(events)
    api.close()
    stop(sup)
    with open(os.path.join(TMP, name + ".log"), errors="replace") as f:
        ours["ended_as_slow"] = f.read().count("Ending event stream of a slow reader")
    anchor = run_fanout(pin + [os.path.join(BB, "sse_fanout"), "--self", "--streams", str(FAN_STREAMS), "--events",
                               str(events), "--rounds", str(FAN_ROUNDS)] +
                        (["--writer-cpu", server_cpus] if server_cpus is not None else []))
    log(f"  {events} events: ours {ours['median_counted']:,.0f} deliveries/s ok={ours['ok']} lost={ours['lost']} "
        f"streams ended as slow readers: {ours['ended_as_slow']} {ours['error']}")
    log(f"    reader cpu {ours['reader_cpu']}, supervisor cpu {ours['server_cpu']}; raw-socket anchor "
        f"{anchor['median_counted']:,.0f}/s (reader cpu {anchor['reader_cpu']})")
    log(f"    supervisor RSS {rss0} KiB before, peak {ours['rss_hwm_kib']} KiB, {ours['rss_idle_after_kib']} KiB "
        f"with the streams idle again, {ours['rss_after_close_kib']} KiB after they closed; burst "
        f"{ours['burst_bytes'] / 1048576:.2f} MiB formatted")
    return {"ours": ours, "anchor": anchor}


def phase_fanout(server_cpus, client_cpus):
    log(f"fan-out: {FAN_STREAMS} streams, bursts of {FAN_EVENTS} and {FAN_EVENTS_SMALL} events, {FAN_ROUNDS} "
        f"rounds each (first = warm-up); supervisor on cpu {server_cpus}, worker and reader on cpu {client_cpus}")
    r = {FAN_EVENTS: fanout_once(FAN_EVENTS, server_cpus, client_cpus),
         FAN_EVENTS_SMALL: fanout_once(FAN_EVENTS_SMALL, server_cpus, client_cpus)}
    DETAILS["fanout"] = r
    return r


def open_streams(sup, pairs, timeout=120):
    """pairs: [(ws_id, client_id)]. Returns (Streams, connected count, statuses)."""
    ss = Streams(sup.sock)
    for ws_id, cid in pairs:
        ss.open(ws_id, cid)
    ss.pump(lambda: ss.count("connected") + ss.count("eof") >= len(pairs), timeout)
    bad = {}
    for st in ss.all:
        if not st["connected"]:
            bad[str(st["status"])] = bad.get(str(st["status"]), 0) + 1
    return ss, ss.count("connected"), bad


def streams_rss(name, proto):
    """A fresh daemon, MEM_WS workspaces, MEM_STREAMS idle streams (one
    client id each): (VmRSS after - before) / MEM_STREAMS."""
    sup = start_supervisor(name, create_grace=600)
    api = Http(path=sup.sock)
    wss = []
    for i in range(MEM_WS):
        d = os.path.join(TMP, f"{name}-{i}")
        os.makedirs(d)
        wss.append(create(api, d))
    time.sleep(0.3)
    rss0 = status_kib(sup.pid, "VmRSS")
    ss = Streams(sup.sock) if proto == "http1" else H2Streams(sup.sock)
    t = time.monotonic()
    for i in range(MEM_STREAMS):
        ss.open(wss[i % MEM_WS]["id"], str(uuid.uuid4()))
    ss.pump(lambda: ss.count("connected") + ss.count("eof") >= MEM_STREAMS, 120)
    opened = time.monotonic() - t
    time.sleep(0.5)
    rss1 = status_kib(sup.pid, "VmRSS")
    st, lst = api.json("GET", "/v1/workspaces")
    listed = sum(w["streams"] for w in lst) if st == 200 else -1
    r = {"rss_before_kib": rss0, "rss_after_kib": rss1, "connected": ss.count("connected"),
         "ended": ss.count("eof"), "listed_streams": listed, "open_secs": opened,
         "per_stream_kib": (rss1 - rss0) / MEM_STREAMS}
    if proto == "h2c":
        r["connections"] = len(ss.conns)
    ss.close()
    time.sleep(1.0)  # h2o frees closed connections; the daemon trims at a quiet point
    r["rss_closed_kib"] = status_kib(sup.pid, "VmRSS")
    api.close()
    stop(sup)
    log(f"  {proto}: {r['connected']}/{MEM_STREAMS} streams in {opened:.1f}s; supervisor RSS {rss0} -> {rss1} KiB "
        f"= {r['per_stream_kib']:.2f} KiB/stream ({r['rss_closed_kib']} KiB after closing them)")
    return r


def h2_floor_rss():
    """The h2c row's anchor: bench/h2_floor, h2o's library and nothing
    else, holding MEM_STREAMS idle h2c streams the same client opens:
    (VmRSS after - before) / MEM_STREAMS."""
    sock = os.path.join(TMP, "h2floor.sock")
    p = start([os.path.join(BB, "h2_floor"), sock], "h2_floor")
    wait_connectable(path=sock, proc=p)
    time.sleep(0.3)
    rss0 = status_kib(p.pid, "VmRSS")
    ss = H2Streams(sock)
    for _ in range(MEM_STREAMS):
        ss.open(str(uuid.uuid4()), str(uuid.uuid4()))  # the daemon's paths, byte for byte in length
    ss.pump(lambda: ss.count("connected") + ss.count("eof") >= MEM_STREAMS, 120)
    time.sleep(0.5)
    rss1 = status_kib(p.pid, "VmRSS")
    r = {"rss_before_kib": rss0, "rss_after_kib": rss1, "connected": ss.count("connected"),
         "per_stream_kib": (rss1 - rss0) / MEM_STREAMS}
    ss.close()
    stop(p)
    log(f"  h2c floor (bench/h2_floor, h2o alone): {r['connected']}/{MEM_STREAMS} streams; RSS {rss0} -> {rss1} KiB "
        f"= {r['per_stream_kib']:.2f} KiB/stream")
    return r


def phase_memory(h2o):
    log(f"memory: supervisor RSS per idle event stream, {MEM_STREAMS} streams on {MEM_WS} workspaces")
    h1 = streams_rss("sup-mem-h1", "http1")
    h2 = streams_rss("sup-mem-h2", "h2c")
    h2["floor"] = h2_floor_rss()

    # Anchor: h2o's RSS per idle keep-alive HTTP/1.1 connection (one
    # request answered on each, then held open).
    a0 = status_kib(h2o.pid, "VmRSS")
    conns, aok = [], 0
    req = b"GET /t HTTP/1.1\r\nHost: bench\r\n\r\n"
    for _ in range(MEM_STREAMS):
        s = socket.create_connection(("127.0.0.1", h2o.port), 10)
        s.sendall(req)
        conns.append(s)
    for s in conns:
        got = b""
        while b"\r\n\r\nok" not in got:
            d = s.recv(4096)
            if not d:
                break
            got += d
        aok += got.startswith(b"HTTP/1.1 200")
    time.sleep(0.5)
    a1 = status_kib(h2o.pid, "VmRSS")
    for s in conns:
        s.close()
    r = {"http1": h1, "h2c": h2, "h2o_rss_before_kib": a0, "h2o_rss_after_kib": a1, "h2o_ok": aok,
         "h2o_per_conn_kib": (a1 - a0) / MEM_STREAMS}
    DETAILS["memory"] = r
    log(f"  anchor: h2o {a0} -> {a1} KiB = {r['h2o_per_conn_kib']:.2f} KiB per idle keep-alive connection "
        f"({aok} answered)")
    return r


class Sysctl:
    """Raises a /proc/sys value for the run and puts it back."""

    def __init__(self, name, want):
        self.path = "/proc/sys/" + name.replace(".", "/")
        self.name, self.want, self.old, self.error = name, want, None, None

    def __enter__(self):
        try:
            with open(self.path) as f:
                self.old = int(f.read())
            if self.old < self.want:
                with open(self.path, "w") as f:
                    f.write(str(self.want))
        except OSError as e:
            self.error = f"cannot raise {self.name} to {self.want}: {e}"
            NOTES.append(self.error)
        return self

    def __exit__(self, *exc):
        if self.old is not None and self.old < self.want:
            try:
                with open(self.path, "w") as f:
                    f.write(str(self.old))
            except OSError as e:
                NOTES.append(f"could not restore {self.name} to {self.old}: {e}")


def phase_scale():
    nstreams = SCALE_WS * SCALE_STREAMS_PER_WS
    log(f"scale: {SCALE_WS} live workspaces and {nstreams} streams at once")
    r = {"errors": []}
    limits = {"pid_max": int(open("/proc/sys/kernel/pid_max").read()),
              "nofile_soft_hard": resource.getrlimit(resource.RLIMIT_NOFILE),
              "inotify_max_user_instances": int(open("/proc/sys/fs/inotify/max_user_instances").read()),
              "inotify_max_user_watches": int(open("/proc/sys/fs/inotify/max_user_watches").read())}
    r["limits"] = limits
    # Every worker holds one inotify instance; other users of this machine
    # hold some too: leave room.
    with Sysctl("fs.inotify.max_user_instances", SCALE_WS + 512) as sc:
        r["inotify_raised"] = sc.error is None
        # A long create grace: creating 1,000 takes a while, and the first
        # ones must still be held when their streams attach.
        sup = start_supervisor("sup-scale", create_grace=600)
        rss0 = status_kib(sup.pid, "VmRSS")
        base = os.path.join(TMP, "scale")
        os.makedirs(base)
        wss = [None] * SCALE_WS
        errs = []

        def creator(k, n):
            c = Http(path=sup.sock, timeout=60)
            for i in range(k, SCALE_WS, n):
                d = os.path.join(base, f"w{i}")
                os.mkdir(d)
                try:
                    wss[i] = create(c, d)
                except Exception as e:  # noqa: BLE001 - collected, reported
                    errs.append(str(e))
            c.close()

        # Meanwhile a probe times /v1/health: how long the loop stalls
        # while workers are being spawned.
        probe, stop_probe = [], threading.Event()

        def prober():
            c = Http(path=sup.sock, timeout=60)
            while not stop_probe.is_set():
                t = time.perf_counter()
                c.request("GET", "/v1/health")
                probe.append(time.perf_counter() - t)
                time.sleep(0.002)
            c.close()

        t = time.monotonic()
        threads = [threading.Thread(target=creator, args=(k, 8)) for k in range(8)]
        pth = threading.Thread(target=prober)
        pth.start()
        for th in threads:
            th.start()
        for th in threads:
            th.join(300)
        stop_probe.set()
        pth.join(60)
        r["create_secs"] = time.monotonic() - t
        r["health_during_creates_ms"] = {"p50": statistics.median(probe) * 1e3, "p99": pct(probe, 99) * 1e3,
                                         "max": max(probe) * 1e3, "n": len(probe)} if probe else None
        r["errors"] += errs[:5]
        live = [w for w in wss if w]
        r["workspaces_created"] = len(live)
        time.sleep(0.5)
        r["rss_workspaces_kib"] = status_kib(sup.pid, "VmRSS")
        uss = [uss_kib(w["pid"]) for w in live[:: max(1, len(live) // 50)] if os.path.exists(f"/proc/{w['pid']}")]
        r["worker_uss_p50_kib"] = statistics.median(uss) if uss else None

        pairs = [(w["id"], str(uuid.uuid4())) for w in live for _ in range(SCALE_STREAMS_PER_WS)]
        t = time.monotonic()
        ss, ok, bad = open_streams(sup, pairs)
        r["streams_secs"] = time.monotonic() - t
        r["streams_connected"] = ok
        r["streams_refused"] = bad
        time.sleep(0.5)
        r["rss_all_kib"] = status_kib(sup.pid, "VmRSS")

        # Served: one file event in every workspace must reach all its streams.
        ss.arm(b'"type":"fs"')
        t = time.monotonic()
        for i, w in enumerate(wss):
            if w:
                with open(os.path.join(base, f"w{i}", "touched"), "w") as f:
                    f.write("x")
        ss.pump(lambda: ss.count("seen") + ss.count("eof") >= len(pairs), 60)
        r["event_secs"] = time.monotonic() - t
        r["streams_got_event"] = ss.count("seen")
        r["streams_ended"] = ss.count("eof")

        api = Http(path=sup.sock, timeout=60)
        t = time.perf_counter()
        st, lst = api.json("GET", "/v1/workspaces")
        r["list_secs"] = time.perf_counter() - t
        r["listed"] = len(lst) if st == 200 else -1
        r["listed_ready"] = sum(1 for w in lst if w["state"] == "ready") if st == 200 else -1
        r["listed_streams"] = sum(w["streams"] for w in lst) if st == 200 else -1
        hl = []
        for _ in range(50):
            t = time.perf_counter()
            api.request("GET", "/v1/health")
            hl.append(time.perf_counter() - t)
        r["health_p50_ms"] = statistics.median(hl) * 1e3
        # Spawning from a big supervisor: fork copies its page tables.
        big, late_pids = [], []
        for i in range(20):
            d = os.path.join(base, f"late{i}")
            os.mkdir(d)
            t = time.perf_counter()
            st, ws = api.json("POST", "/v1/workspaces", {"path": d, "client_id": str(uuid.uuid4())})
            if st == 200:
                big.append(time.perf_counter() - t)
                late_pids.append(ws["pid"])
            else:
                r["errors"].append(f"late create: {st} {ws}")
        r["create_p50_big_ms"] = statistics.median(big) * 1e3 if big else None
        api.close()
        r["supervisor_fds"] = len(os.listdir(f"/proc/{sup.pid}/fd"))
        pids = [w["pid"] for w in live] + late_pids
        ss.close()
        r["stop_secs"] = stop(sup, timeout=60)
        r["workers_left"] = sum(1 for p in pids if os.path.exists(f"/proc/{p}"))
    r["served"] = (r["workspaces_created"] == SCALE_WS and r["streams_connected"] == nstreams
                   and r["streams_got_event"] == nstreams and r["listed"] == SCALE_WS
                   and r["listed_ready"] == SCALE_WS and r["listed_streams"] == nstreams and not r["errors"]
                   and r["workers_left"] == 0)
    r["rss0_kib"] = rss0
    DETAILS["scale"] = r
    log(f"  {r['workspaces_created']} workspaces in {r['create_secs']:.1f}s, {ok}/{nstreams} streams in "
        f"{r['streams_secs']:.1f}s, event on {r['streams_got_event']} streams in {r['event_secs']:.2f}s; "
        f"supervisor RSS {rss0} -> {r['rss_workspaces_kib']} -> {r['rss_all_kib']} KiB; "
        f"stop {r['stop_secs']:.1f}s, workers left {r['workers_left']}; errors {r['errors']}")
    return r


# --- the table


# --- sessions and shell (issue 12)

STORE_SESSIONS = 10000
STORE_ROUNDS = 15 if QUICK else 40


def _sse_until(sock, needle, buf, timeout=10.0):
    """Reads the raw SSE socket until needle appears after buf's start."""
    end = time.monotonic() + timeout
    while needle not in buf:
        sock.settimeout(max(0.01, end - time.monotonic()))
        d = sock.recv(65536)
        if not d:
            raise ConnectionError("event stream ended")
        buf += d
    return buf[buf.index(needle) + len(needle):]


def _read_response(sock, buf):
    """Reads one response off sock (Content-Length or chunked); returns
    what follows it."""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, buf = buf.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    if m:
        n = int(m.group(1))
        while len(buf) < n:
            buf += sock.recv(65536)
        return buf[n:]
    while True:  # chunked
        while b"\r\n" not in buf:
            buf += sock.recv(65536)
        size, rest = buf.split(b"\r\n", 1)
        n = int(size.split(b";")[0], 16)
        while len(rest) < n + 2:
            rest += sock.recv(65536)
        buf = rest[n + 2:]
        if n == 0:
            return buf


def phase_store():
    import sqlite3
    log(f"store: GET /sessions of {STORE_SESSIONS:,} sessions, session create -> event, shell `true`")
    sup = start_supervisor("store")
    d = os.path.join(TMP, "storews")
    os.makedirs(d, exist_ok=True)
    http = Http(path=sup.sock)
    ws = create(http, d)
    base = f"/v1/workspaces/{ws['id']}"
    # A second client's stream, open from the start: it holds the
    # workspace past the creator's grace, and times the session events.
    ev = socket.socket(socket.AF_UNIX)
    ev.connect(sup.sock)
    ev.sendall(f"GET {base}/events?client_id={uuid.uuid4()} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    buf = _sse_until(ev, b"\r\n\r\n", b"")
    st, _ = http.json("POST", base + "/sessions", {"title": "seed"})
    assert st == 200, st
    created = b'"type":"session","payload":{"type":"created"'
    buf = _sse_until(ev, created, buf)  # the seed's own event
    db = sqlite3.connect(os.path.join(d, ".crush", "crush.db"), timeout=10)
    db.executemany("INSERT INTO sessions (id, title, updated_at, created_at) VALUES (?, ?, ?, ?)",
                   [(f"bench-{i}", f"bench session {i}", 1000 + i, 1000 + i) for i in range(STORE_SESSIONS)])
    db.commit()
    db.close()
    lst = []
    for _ in range(STORE_ROUNDS):
        t = time.perf_counter()
        st, out = http.request("GET", base + "/sessions")
        lst.append(time.perf_counter() - t)
        assert st == 200 and out.count(b'"id"') == STORE_SESSIONS + 1, (st, len(out))
    # Anchor: the same rows through Python's sqlite3 + json, in-process.
    anchor = []
    db = sqlite3.connect(os.path.join(d, ".crush", "crush.db"))
    for _ in range(STORE_ROUNDS):
        t = time.perf_counter()
        rows = db.execute("SELECT * FROM sessions WHERE parent_session_id IS NULL ORDER BY updated_at DESC").fetchall()
        json.dumps([list(r) for r in rows])
        anchor.append(time.perf_counter() - t)
    db.close()

    # create -> the session event at a second client's stream
    poster = socket.socket(socket.AF_UNIX)
    poster.connect(sup.sock)
    body = b'{"title":"bench"}'
    req = (f"POST {base}/sessions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    evlat, pbuf = [], b""
    for _ in range(STORE_ROUNDS):
        t = time.perf_counter()
        poster.sendall(req)
        buf = _sse_until(ev, created, buf)
        evlat.append(time.perf_counter() - t)
        pbuf = _read_response(poster, pbuf)
    poster.close()
    ev.close()

    # `true` through the shell route, against posix_spawn of /bin/sh -c true
    sh, sp = [], []
    for i in range(STORE_ROUNDS):
        t = time.perf_counter()
        st, out = http.json("POST", base + "/agent/sessions/bench-0/shell", {"command": "true"})
        sh.append(time.perf_counter() - t)
        assert st == 200 and out["exit_code"] == 0, (st, out)
        t = time.perf_counter()
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", "true"], os.environ)
        os.waitpid(pid, 0)
        sp.append(time.perf_counter() - t)
    http.close()
    stop(sup)
    res = {"list_p50": pct(lst, 50), "list_anchor_p50": pct(anchor, 50), "event_p50": pct(evlat, 50),
           "shell_p50": pct(sh, 50), "spawn_p50": pct(sp, 50), "rounds": STORE_ROUNDS}
    DETAILS["store"] = res
    log(f"  list p50 {res['list_p50'] * 1e3:.2f} ms (python sqlite3+json {res['list_anchor_p50'] * 1e3:.2f} ms), "
        f"create->event p50 {res['event_p50'] * 1e3:.2f} ms, shell true p50 {res['shell_p50'] * 1e3:.2f} ms "
        f"(posix_spawn {res['spawn_p50'] * 1e3:.2f} ms)")
    return res


def fmt_rate(v):
    return f"{v:,.0f}/s"


def fmt_ms(v):
    return f"{v * 1e3:.2f} ms"


def table(rows):
    head = ["metric", "ours", "anchor", "ratio", "target", "met"]
    cells = [head] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(head))]
    text = []
    for k, r in enumerate(cells):
        text.append("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
        if k == 0:
            text.append("  ".join("-" * w[i] for i in range(len(head))))
    md = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    md += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(text), "\n".join(md)


def yes(b):
    return "yes" if b else "NO"


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def rss_rows(label, before, rows):
    """Memory rows of one phase: (what, KiB, limit KiB, target text)."""
    out = []
    for what, kib, limit, target in rows:
        ok = kib is not None and kib <= limit
        out.append([f"{label}: {what}", mib(kib) if kib is not None else "-", mib(before) + " before", "-",
                    target, yes(ok)])
    return out


def fan_cell(o):
    if o["ok"]:
        return fmt_rate(o["median_counted"]) + ", lost 0, order same"
    if o["ended_as_slow"]:
        return f"FAILED: {o['ended_as_slow']} streams cut as slow readers, {o['lost']:,} lost"
    return f"FAILED: {o['lost']:,} lost ({o['error'][:60]})"


def main():
    for tool in ("wrk", "h2load", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found (make bench installs it via scripts/deps.sh)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = client_cpus = None
    if len(cpus) >= 2:
        server_cpus, client_cpus = str(cpus[0]), str(cpus[1])
    else:
        NOTES.append("fewer than 2 CPUs: servers and load generators not pinned")

    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    floor = phase_spawn()
    h2o, h1, h2, join, routed = phase_http(server_cpus, client_cpus)
    rstream = phase_routed_stream(h2o)
    lat = phase_latency(os.path.join(BB, "spawn_child"))
    fans = phase_fanout(server_cpus, client_cpus)
    mem = phase_memory(h2o)
    stop(h2o)
    scale = phase_scale()
    store = phase_store()

    f50, f99 = lat["floor_spawn_p50"], lat["floor_spawn_p99"]
    reap_floor = lat["floor_reap_p50"]
    rows = [
        ["GET /v1/health, HTTP/1.1 keep-alive, 32 conns (wrk)", fmt_rate(h1["ours"]),
         fmt_rate(h1["anchor"]) + " h2o", f"{h1['ratio']:.2f}", ">= 0.90 x h2o",
         yes(h1["ratio"] >= 0.9 and h1["errors"] == 0)],
        [f"GET /v1/health, h2c, 32 conns x {H2_STREAMS} streams (h2load)", fmt_rate(h2["ours"]),
         fmt_rate(h2["anchor"]) + " h2o h2c", f"{h2['ratio']:.2f}", ">= 0.90 x h2o h2c",
         yes(h2["ratio"] >= 0.9 and h2["errors"] == 0)],
        ["join existing workspace, new client id each (wrk)", fmt_rate(join["ours"]),
         fmt_rate(join["anchor"]) + " h2o", f"{join['ratio']:.2f}", ">= 0.50 x h2o",
         yes(join["ratio"] >= 0.5 and join["errors"] == 0)],
        ["routed GET /v1/workspaces/{id}/config, HTTP/1.1 keep-alive, 32 conns (wrk)", fmt_rate(routed["ours"]),
         fmt_rate(routed["anchor"]) + " h2o", f"{routed['ratio']:.2f}", ">= 0.50 x h2o",
         yes(routed["ratio"] >= 0.5 and routed["errors"] == 0)],
        ["routed GET .../config p50 latency, 32 conns (wrk)", fmt_ms(routed["latency"]["routed_p50"]),
         fmt_ms(routed["latency"]["health_p50"]) + " /v1/health p50", f"{routed['latency']['ratio']:.2f}",
         "<= 2 x /v1/health p50", yes(routed["latency"]["ratio"] <= 2 and routed["latency"]["errors"] == 0)],
        ["  floor: bare h2o relaying to a trivial child (bench/relay_floor), p50",
         fmt_ms(routed["latency"]["floor_relay_p50"]),
         fmt_ms(routed["latency"]["floor_health_p50"]) + " its /health p50",
         f"{routed['latency']['floor_ratio']:.2f}", "- (anchor of the row above)", "-"],
        ["routed 16 MiB answer (/_test/bytes), throughput (curl, unix socket)",
         f"{rstream['mib_s']:,.0f} MiB/s", f"{rstream['anchor_mib_s']:,.0f} MiB/s h2o static file (tcp)",
         f"{rstream['mib_s'] / rstream['anchor_mib_s']:.2f}" if rstream["anchor_mib_s"] else "-", ">= 500 MiB/s",
         yes(rstream["mib_s"] >= 500 and not rstream["errors"])],
        ["supervisor RSS growth while 16 MiB answers stream", f"{rstream['growth_kib'] / 1024:.2f} MiB",
         "-", "-", "<= 4 MiB", yes(rstream["growth_kib"] <= 4096 and not rstream["errors"])],
        [f"create -> ready p50 ({lat['n']} fresh dirs)", fmt_ms(lat["create_p50"]), fmt_ms(f50) + " spawn floor",
         f"{lat['create_p50'] / f50:.2f}", "<= 2 x floor p50", yes(lat["create_p50"] <= 2 * f50)],
        [f"create -> ready p99 ({lat['n']} fresh dirs)", fmt_ms(lat["create_p99"]), fmt_ms(f99) + " spawn floor",
         f"{lat['create_p99'] / f99:.2f}", "<= 5 x floor p99", yes(lat["create_p99"] <= 5 * f99)],
        [f"release last claim -> worker reaped, p50 ({lat['reap_n']})", fmt_ms(lat["reap_p50"]),
         fmt_ms(reap_floor) + " kill->reap", f"{lat['reap_p50'] / reap_floor:.2f}", "<= 5 ms",
         yes(lat["reap_p50"] <= 0.005 and not lat["errors"])],
    ] + [
        [f"fan-out, {FAN_STREAMS} streams x {n:,} events", fan_cell(fans[n]["ours"]),
         fmt_rate(fans[n]["anchor"]["median_counted"]) + " raw sockets",
         f"{fans[n]['ours']['median_counted'] / fans[n]['anchor']['median_counted']:.2f}"
         if fans[n]["anchor"]["median_counted"] and fans[n]["ours"]["ok"] else "-",
         ">= 1,000,000/s, 0 lost, same order",
         yes(fans[n]["ours"]["ok"] and fans[n]["ours"]["median_counted"] >= 1e6 and fans[n]["ours"]["lost"] == 0)]
        for n in (FAN_EVENTS, FAN_EVENTS_SMALL)
    ] + rss_rows(
        f"fan-out {FAN_STREAMS} x {FAN_EVENTS:,}", fans[FAN_EVENTS]["ours"]["rss_before_kib"],
        [("peak RSS during burst", fans[FAN_EVENTS]["ours"]["rss_hwm_kib"],
          fans[FAN_EVENTS]["ours"]["rss_before_kib"] + 2 * fans[FAN_EVENTS]["ours"]["burst_bytes"] / 1024 + 16384,
          f"<= before + 2 x burst ({fans[FAN_EVENTS]['ours']['burst_bytes'] / 1048576:.2f} MiB) + 16 MiB"),
         ("RSS after burst, streams idle", fans[FAN_EVENTS]["ours"]["rss_idle_after_kib"],
          fans[FAN_EVENTS]["ours"]["rss_before_kib"] + 8192, "<= before + 8 MiB"),
         ("RSS after streams closed", fans[FAN_EVENTS]["ours"]["rss_after_close_kib"],
          fans[FAN_EVENTS]["ours"]["rss_before_kib"] + 8192, "<= before + 8 MiB")]) + [
        [f"idle worker USS, p50 of {lat['uss_n']}", f"{lat['uss_p50']} KiB (max {lat['uss_max']})",
         f"{lat['trivial_uss']} KiB trivial C", f"{lat['uss_p50'] / max(1, lat['trivial_uss']):.2f}", "<= 512 KiB",
         yes(lat["uss_p50"] <= 512)],
        [f"supervisor RSS per idle stream, {MEM_STREAMS} HTTP/1.1", f"{mem['http1']['per_stream_kib']:.2f} KiB",
         f"{mem['h2o_per_conn_kib']:.2f} KiB h2o idle conn",
         f"{mem['http1']['per_stream_kib'] / mem['h2o_per_conn_kib']:.2f}" if mem["h2o_per_conn_kib"] > 0 else "-",
         "<= 8 KiB", yes(mem["http1"]["per_stream_kib"] <= 8 and mem["http1"]["connected"] == MEM_STREAMS)],
        [f"supervisor RSS per idle stream, {MEM_STREAMS} h2c ({H2Streams.PER_CONN}/conn)",
         f"{mem['h2c']['per_stream_kib']:.2f} KiB", f"{mem['h2c']['floor']['per_stream_kib']:.2f} KiB h2o alone",
         f"{mem['h2c']['per_stream_kib'] / max(0.01, mem['h2c']['floor']['per_stream_kib']):.2f}",
         "<= 4 KiB", yes(mem["h2c"]["per_stream_kib"] <= 4 and mem["h2c"]["connected"] == MEM_STREAMS)],
    ] + [
        row for proto in ("http1", "h2c") for row in rss_rows(
            f"{MEM_STREAMS} idle {'HTTP/1.1' if proto == 'http1' else 'h2c'} streams",
            mem[proto]["rss_before_kib"],
            [("RSS after streams closed", mem[proto]["rss_closed_kib"], mem[proto]["rss_before_kib"] + 8192,
              "<= before + 8 MiB")])
    ] + [
        [f"scale: {SCALE_WS} workspaces + {SCALE_WS * SCALE_STREAMS_PER_WS} streams",
         ("all served" if scale["served"] else "FAILED") + f", RSS {scale['rss_all_kib'] / 1024:.1f} MiB",
         "-", "-", "all served, no error", yes(scale["served"])],
        [f"GET /sessions, {STORE_SESSIONS:,} sessions, p50 ({store['rounds']})", fmt_ms(store["list_p50"]),
         fmt_ms(store["list_anchor_p50"]) + " py sqlite3+json", f"{store['list_p50'] / store['list_anchor_p50']:.2f}",
         "-", "-"],
        [f"session create -> event at a 2nd client, p50 ({store['rounds']})", fmt_ms(store["event_p50"]), "-", "-",
         "-", "-"],
        [f"shell `true` via the route, p50 ({store['rounds']})", fmt_ms(store["shell_p50"]),
         fmt_ms(store["spawn_p50"]) + " posix_spawn sh -c true", f"{store['shell_p50'] / store['spawn_p50']:.2f}",
         "-", "-"],
    ]
    text, md = table(rows)
    elapsed = time.monotonic() - T0
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[:3]
    conds = (f"{len(os.sched_getaffinity(0))} CPUs ({os.uname().release}), commit {commit}, "
             f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {elapsed:.0f} s; load avg before {' '.join(load_before)}, "
             f"after {' '.join(load_after)}")
    lat_rounds = ", ".join(f"{r:.2f}" for r in routed["latency"]["ratio_rounds"])
    floor_rounds = ", ".join(f"{r:.2f}" for r in routed["latency"]["floor_ratio_rounds"])
    notes = [
        f"HTTP rows: h2o 2.2.5 (Debian, num-threads: 1, a 2-byte static file) and the daemon each pinned to "
        f"cpu {server_cpus}, wrk/h2load (1 thread) to cpu {client_cpus}; {ROUNDS} rounds of {DUR} s, ours and h2o "
        f"back to back in each; values are medians, ratio is the median of the per-round ratios. "
        f"Server CPU busy (median) and CPU time per request: health {h1['ours_cpu']:.0%}, "
        f"{h1['ours_us_per_req']:.1f} us (h2o {h1['anchor_cpu']:.0%}, {h1['anchor_us_per_req']:.1f} us); "
        f"h2c {h2['ours_cpu']:.0%}, {h2['ours_us_per_req']:.1f} us (h2o {h2['anchor_cpu']:.0%}, "
        f"{h2['anchor_us_per_req']:.1f} us); join {join['ours_cpu']:.0%}, {join['ours_us_per_req']:.1f} us; "
        f"routed GET /config {routed['ours_cpu']:.0%}, {routed['ours_us_per_req']:.1f} us (supervisor only; "
        f"its worker runs on cpu {client_cpus} with the load generator). "
        f"A server below ~90% busy was not the bottleneck of its round (the load generator or other "
        f"tenants of the machine were).",
        f"Routed: the p50s are wrk's (--latency) at 32 connections, routed and /v1/health back to back in "
        f"each of {P50_ROUNDS} more rounds of their own, with bench/relay_floor's /relay and /health in the "
        f"same rounds (order turned each round); medians, and the median of the per-round ratios "
        f"(per round: ours {lat_rounds}; floor {floor_rounds}). The floor is h2o 2.2.5 alone on cpu "
        f"{server_cpus}, relaying each request to a child on cpu {client_cpus} (where the worker runs): an "
        f"8-byte id out, id + the same {routed['latency']['body_bytes']} bytes back, no token, parsing or framing. "
        f"16 MiB answers: {rstream['rounds']} downloads one after another by curl "
        f"(-o /dev/null, one keep-alive connection) on the unix socket, unpinned, each timed by curl from its "
        f"request to its last byte; the median is given; RSS growth is the supervisor's VmHWM after the downloads (reset with "
        f"clear_refs 5 {'ok' if rstream['hwm_reset'] else 'REFUSED: polled peak instead'}) minus its VmRSS "
        f"before ({rstream['rss0_kib']} KiB).",
        f"Spawn floor: fork + exec of bench/spawn_child + one socketpair round trip (kill->reap: SIGTERM "
        f"to waitpid), one round right before each measured create ({lat['floor_n']} rounds), so both see the "
        f"same load; a separate 300-round run at the start gave p50 {floor['spawn_p50_us'] / 1e3:.2f} ms, p99 "
        f"{floor['spawn_p99_us'] / 1e3:.2f} ms. The real crush-worker started by that same minimal parent, "
        f"interleaved too, until READY: p50 {lat['worker_alone_p50'] * 1e3:.2f} ms, p99 "
        f"{lat['worker_alone_p99'] * 1e3:.2f} ms. Create latency includes one HTTP round trip from Python "
        f"(p50 {lat['http_rtt_p50'] * 1e6:.0f} us on /v1/health). p99s are compared with the floor's p99. "
        f"Release -> reaped: DELETE sent until /proc/PID is gone, polled in a loop that yields the CPU.",
        f"Worker USS (Private_Clean + Private_Dirty of smaps_rollup): sampled right after ready, with one "
        f"other workspace's worker alive (held by a stream all through the phase), so library pages count "
        f"once between them, as in a daemon hosting several; a lone worker, with no other process mapping "
        f"its libraries, measured {lat['uss_alone']} KiB (with {SCALE_WS} workers alive the p50 is "
        f"{scale['worker_uss_p50_kib']} KiB); Private_Dirty alone: {lat['private_dirty_p50']} KiB.",
        f"Fan-out: bench/bench_worker bursts, one HTTP/1.1 connection per stream on the unix socket, read by "
        f"one epoll thread (bench/sse_fanout.c); supervisor pinned to cpu {server_cpus}, worker and reader to "
        f"cpu {client_cpus}; median of {FAN_ROUNDS - 1} rounds after a warm-up. "
        + " ".join(f"{n:,} events: reader CPU per round {fans[n]['ours']['reader_cpu']}, supervisor CPU "
                   f"{fans[n]['ours']['server_cpu']}; supervisor RSS {fans[n]['ours']['rss_before_kib']} KiB before, "
                   f"peak {fans[n]['ours']['rss_hwm_kib']} KiB, {fans[n]['ours']['rss_idle_after_kib']} KiB with "
                   f"the streams idle again, {fans[n]['ours']['rss_after_close_kib']} KiB after they closed (burst: "
                   f"{fans[n]['ours']['burst_bytes'] / 1048576:.2f} MiB formatted, held once); "
                   f"{fans[n]['ours']['ended_as_slow']} streams ended by the server as slow "
                   f"readers." for n in (FAN_EVENTS, FAN_EVENTS_SMALL)),
        f"Memory: {MEM_STREAMS} idle streams on {MEM_WS} workspaces, one client id each, on the unix socket; a "
        f"fresh daemon per protocol; (VmRSS after - before) / {MEM_STREAMS}. HTTP/1.1: one connection per "
        f"stream. h2c: prior knowledge, {H2Streams.PER_CONN} streams per connection (h2o's default limit). "
        f"Anchor: h2o's VmRSS per idle keep-alive HTTP/1.1 connection after one request. h2c anchor: "
        f"bench/h2_floor, a minimal server on the same libh2o-evloop holding the same streams open (a 200 "
        f"head and one comment each), {mem['h2c']['floor']['connected']} of them connected: what h2o itself "
        f"keeps per HTTP/2 stream (its request's first 4 KiB pool block, which the HPACK decoder fills "
        f"before any handler runs, and the stream), before any byte of the daemon's.",
        f"Scale: {scale['workspaces_created']} workspaces created in {scale['create_secs']:.1f} s (8 clients), "
        f"{scale['streams_connected']} streams in {scale['streams_secs']:.1f} s, one fs event reached "
        f"{scale['streams_got_event']} streams in {scale['event_secs']:.2f} s; supervisor RSS "
        f"{scale['rss0_kib']} KiB idle, {scale['rss_workspaces_kib']} KiB with the workspaces, "
        f"{scale['rss_all_kib']} KiB with the streams; {scale['supervisor_fds']} fds; GET /v1/workspaces "
        f"{scale['list_secs'] * 1e3:.0f} ms, /v1/health p50 {scale['health_p50_ms']:.2f} ms (while the "
        f"workspaces were being created: p50 {scale['health_during_creates_ms']['p50']:.1f} ms, max "
        f"{scale['health_during_creates_ms']['max']:.1f} ms); create -> ready p50 with all of that live: "
        f"{scale['create_p50_big_ms']:.2f} ms; SIGTERM to exit "
        f"{scale['stop_secs']:.1f} s. fs.inotify.max_user_instances raised to {SCALE_WS + 512} for the phase "
        f"and restored ({'ok' if scale['inotify_raised'] else 'REFUSED'}).",
    ] + NOTES
    print()
    print("crush-supervisor benchmarks — " + conds)
    print()
    print(text)
    print()
    for n in notes:
        print("- " + n)
    os.makedirs(BB, exist_ok=True)
    with open(os.path.join(BB, "results.md"), "w") as f:
        f.write(f"Measured by `make bench` ({conds}).\n\n{md}\n\n")
        f.write("".join(f"- {n}\n" for n in notes))
    with open(os.path.join(BB, "details.json"), "w") as f:
        json.dump(DETAILS, f, indent=1, default=str)
    print(f"\n(table: {os.path.join(BB, 'results.md')}; every round: {os.path.join(BB, 'details.json')})")


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
            except OSError:
                pass
    shutil.rmtree(TMP, ignore_errors=True)


def on_signal(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        main()
    finally:
        cleanup()
