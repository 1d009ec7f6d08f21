#!/usr/bin/env python3
"""
make test-browser: SPEC §7 in a real browser. Starts crush-supervisor on
tcp://127.0.0.1 with a known token and --allow-origin for one page
origin, serves tests/browser/page.html from that origin and from a
second, foreign one (python http.server), and drives headless Chromium
(Debian's package) through each. The page reports what it could do to
/result on its own origin; the daemon's GET /v1/workspaces (over its unix
socket) says what really happened. Closes with "browser: N passed, N failed".
"""

import argparse
import http.client
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WAIT = 60.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class UnixConn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path_ = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(self.path_)


def unix_get(sock, path):
    c = UnixConn(sock)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class PageServer:
    """Serves page.html and takes the page's report at POST /result."""

    def __init__(self, port):
        self.results = []
        self.got = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path.split("?")[0] != "/page.html":
                    self.send_error(404)
                    return
                data = (HERE / "page.html").read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                if self.path == "/result":
                    outer.results.append(json.loads(body))
                    outer.got.set()
                self.send_response(204)
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def run_page(chromium, url, server, tmp):
    """Opens url in headless Chromium until the page reports (or WAIT)."""
    server.got.clear()
    profile = tempfile.mkdtemp(prefix="profile-", dir=tmp)
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--user-data-dir=" + profile, url]
    log = open(os.path.join(tmp, "chromium.log"), "ab")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    try:
        if not server.got.wait(WAIT):
            return None
        return server.results[-1]
    finally:
        # Chromium and its helpers share the session we started it in.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
        log.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    a = ap.parse_args()
    build = Path(a.build) if Path(a.build).is_absolute() else REPO / a.build
    chromium = find_chromium()
    passed, failed = 0, 0

    def check(name, ok, detail=""):
        nonlocal passed, failed
        if ok:
            passed += 1
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name}: {detail}")

    if chromium is None:
        print("browser: no chromium found; run `make test-browser` (it installs Debian's chromium)")
        print("browser: 0 passed, 1 failed")
        return 1

    tmp = tempfile.mkdtemp(prefix="crush-browser-")
    dport, good_port, bad_port = free_port(), free_port(), free_port()
    token = secrets.token_hex(32)
    good_origin = f"http://127.0.0.1:{good_port}"
    sock = os.path.join(tmp, "s.sock")
    good_dir, bad_dir = os.path.join(tmp, "good-ws"), os.path.join(tmp, "bad-ws")
    os.mkdir(good_dir)
    os.mkdir(bad_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRUSH_SERVER_")}
    env["CRUSH_SERVER_TOKEN"] = token
    errf = open(os.path.join(tmp, "supervisor.log"), "wb")
    sup = subprocess.Popen([str(build / "crush-supervisor"), "-H", "unix://" + sock,
                            "-H", f"tcp://127.0.0.1:{dport}", "--allow-origin", good_origin,
                            "--idle-timeout", "600", "--log-level", "debug"],
                           stdin=subprocess.DEVNULL, stdout=errf, stderr=errf, env=env, start_new_session=True)
    servers = []
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if unix_get(sock, "/v1/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or sup.poll() is not None:
                raise SystemExit("crush-supervisor did not start; see " + errf.name)
            time.sleep(0.05)
        good_srv, bad_srv = PageServer(good_port), PageServer(bad_port)
        servers = [good_srv, bad_srv]
        q = f"d={dport}&t={token}"

        def workspaces():
            st, body = unix_get(sock, "/v1/workspaces")
            return json.loads(body) if st == 200 else None

        # 1. A page of a foreign origin, even one holding the token.
        r = run_page(chromium, f"http://127.0.0.1:{bad_port}/page.html?{q}&role=bad&path={bad_dir}", bad_srv, tmp)
        check("foreign page ran and reported", r is not None, "no report within %ss" % WAIT)
        steps = (r or {}).get("steps", {})
        print("     foreign page saw:", json.dumps(steps))
        check("foreign page: fetch with the token is blocked (preflight refused)",
              "error" in steps.get("create_with_token", {}), steps.get("create_with_token"))
        check("foreign page: a simple no-cors POST is opaque",
              steps.get("create_simple_no_cors", {}).get("type") == "opaque", steps.get("create_simple_no_cors"))
        check("foreign page: cannot read the workspace list", "error" in steps.get("list", {}), steps.get("list"))
        check("foreign page: EventSource with the query token fails",
              "error" in steps.get("stream", {}), steps.get("stream"))
        ws = workspaces()
        check("foreign page created nothing (GET /v1/workspaces is empty)", ws == [], ws)
        log = Path(errf.name).read_text(errors="replace")
        # Preflights of the two header-carrying fetches, the no-cors POST,
        # the form POST and the EventSource: each met the Origin check.
        n403 = log.count('status=403 reason="forbidden: this Origin')
        check("the daemon refused every request of the foreign origin with 403", n403 >= 5,
              f"{n403} Origin refusals in the daemon's log")

        # 2. The allowed origin: create with fetch (text/plain, bearer), then
        # an EventSource with the query token sees an event.
        r = run_page(chromium, f"{good_origin}/page.html?{q}&role=good&path={good_dir}", good_srv, tmp)
        check("allowed page ran and reported", r is not None, "no report within %ss" % WAIT)
        steps = (r or {}).get("steps", {})
        print("     allowed page saw:", json.dumps(steps))
        check("allowed page: reads the 401 of a fetch without the token",
              steps.get("no_token", {}).get("status") == 401, steps.get("no_token"))
        create = steps.get("create", {})
        created = None
        if create.get("status") == 200:
            created = json.loads(create["body"])
        check("allowed page: fetch creates the workspace (text/plain body, bearer token)",
              created is not None and created.get("path") == good_dir, create)
        lst = steps.get("list", {})
        check("allowed page: reads the workspace list", lst.get("status") == 200 and created is not None
              and created["id"] in lst.get("body", ""), lst)
        ev = steps.get("stream", {}).get("event")
        check("allowed page: EventSource (token in the query) gets an event",
              isinstance(ev, dict) and ev.get("type") == "workspace"
              and ev.get("payload", {}).get("type") == "ready", steps.get("stream"))
        ws = workspaces() or []
        check("the daemon has the allowed page's workspace, and only it",
              [w["path"] for w in ws] == [good_dir], ws)
    finally:
        for s in servers:
            s.close()
        if sup.poll() is None:
            sup.send_signal(signal.SIGTERM)
            try:
                sup.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(sup.pid, signal.SIGKILL)
                sup.wait(5)
        errf.close()
        if failed == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("browser: logs kept in", tmp)
    print(f"browser: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
