"""
Operators (SPEC §9, issue 14): GET /v1/metrics read by Prometheus' own
parser, crushctl, socket activation, make install, man pages, the API
documents.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from crush import (REPO, SANITIZER_ERRORS, SUPERVISOR, WAIT, Api, Endpoint, free_tcp_port, is_fs, new_client_id, open_fds,
                   proc_environ, short_tmpdir, unix_socket_inodes, wait_until)

CRUSHCTL = REPO / "scripts" / "crushctl"

try:
    from prometheus_client import parser as prometheus_parser
except ImportError:  # scripts/deps.sh installs python3-prometheus-client
    prometheus_parser = None


# --------------------------------------------------------------------------
# GET /v1/metrics


def scrape(api):
    """{(name, frozenset(labels)): value} of every sample, parsed strictly
    by prometheus_client (it raises on anything malformed), and the
    families' types by name."""
    assert prometheus_parser is not None, "python3-prometheus-client is missing (scripts/deps.sh)"
    r = api.request("GET", "/v1/metrics")
    assert r.status == 200, r.describe()
    ct = r.headers.get("content-type", "")
    assert ct.startswith("text/plain") and "version=0.0.4" in ct, ct
    text = r.body.decode()
    assert text.endswith("\n")
    samples, types = {}, {}
    for fam in prometheus_parser.text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_parse_strictly_and_name_every_family(sup):
    samples, types = scrape(sup.api)
    assert types["crush_workspaces"] == "gauge"
    assert types["crush_streams_open"] == "gauge"
    # The parser strips _total from counter family names.
    for c in ("crush_workers_started", "crush_workers_restarted", "crush_workers_failed",
              "crush_events_published", "crush_stream_slow_reader_cuts", "crush_stream_gaps",
              "crush_limit_refusals", "crush_http_requests"):
        assert types[c] == "counter", (c, types.get(c))
    assert types["crush_http_request_duration_seconds"] == "histogram"
    for state in ("starting", "ready", "restarting", "closing"):
        assert ("crush_workspaces", frozenset({("state", state)})) in samples
    for limit in ("workspaces", "streams", "client_streams", "slow_readers"):
        assert ("crush_limit_refusals_total", frozenset({("limit", limit)})) in samples


def test_metrics_counters_move(start_supervisor, make_dir):
    sup = start_supervisor(extra_args=["--max-streams", "1"])
    before, _ = scrape(sup.api)
    assert val(before, "crush_workers_started_total") == 0
    cid = new_client_id()
    d = make_dir("m")
    ws = sup.api.create(d, cid)
    s = sup.api.events(ws["id"], cid)
    with open(os.path.join(d, "hello"), "w") as f:
        f.write("x")
    s.wait_for(lambda e: is_fs(e, path="hello"), what="fs event for hello")
    # A second stream is one past --max-streams 1.
    assert sup.api.request("GET", f"/v1/workspaces/{ws['id']}/events?client_id={cid}").status == 429
    sup.api.request("GET", "/v1/nope")

    m, _ = scrape(sup.api)
    assert val(m, "crush_workers_started_total") == 1
    assert val(m, "crush_workspaces", state="ready") == 1
    assert val(m, "crush_streams_open") == 1
    assert val(m, "crush_events_published_total") >= 2  # ready + the fs event
    assert val(m, "crush_limit_refusals_total", limit="streams") == 1
    assert val(m, "crush_http_requests_total", route="workspaces", code="200") == 1
    assert val(m, "crush_http_requests_total", route="events", code="429") == 1
    assert val(m, "crush_http_requests_total", route="none", code="404") == 1
    assert val(m, "crush_http_requests_total", route="metrics", code="200") == 1  # the first scrape
    n = val(m, "crush_http_request_duration_seconds_count", route="workspaces")
    assert n == 1 and val(m, "crush_http_request_duration_seconds_bucket", route="workspaces", le="+Inf") == 1
    assert val(m, "crush_http_request_duration_seconds_sum", route="workspaces") > 0

    # A crash is counted as failed and its respawn as restarted.
    os.kill(ws["pid"], signal.SIGKILL)
    wait_until(lambda: val(scrape(sup.api)[0], "crush_workers_restarted_total") == 1
               and (sup.api.workspace(ws["id"]) or {}).get("state") == "ready", what="worker restarted")
    m, _ = scrape(sup.api)
    assert val(m, "crush_workers_failed_total") == 1
    assert val(m, "crush_workers_started_total") == 2
    s.close()
    wait_until(lambda: val(scrape(sup.api)[0], "crush_streams_open") == 0, what="stream gone")
    m, _ = scrape(sup.api)
    assert val(m, "crush_http_requests_total", route="events", code="200") == 1


# --------------------------------------------------------------------------
# crushctl


@pytest.fixture
def ctl(tmp_path):
    """ctl(*args, host=URL, env={...}) -> CompletedProcess of crushctl, with
    a private cache dir (its kept client id) and no ambient CRUSH_*."""
    cache = tmp_path / "cache"

    def run(*args, host=None, env=None, timeout=WAIT * 2):
        e = {k: v for k, v in os.environ.items() if not k.startswith("CRUSH_")}
        e["XDG_CACHE_HOME"] = str(cache)
        if host:
            e["CRUSH_HOST"] = host
        e.update(env or {})
        return subprocess.run([str(CRUSHCTL)] + list(args), capture_output=True, text=True,
                              timeout=timeout, env=e)
    run.cache = cache
    return run


def spawn_ctl(ctl, *args, host, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CRUSH_")}
    e["XDG_CACHE_HOME"] = str(ctl.cache)
    e["CRUSH_HOST"] = host
    e.update(env or {})
    return subprocess.Popen([str(CRUSHCTL)] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=e, start_new_session=True)


class Lines:
    """Lines a child prints, gathered by a thread so waits can time out."""

    def __init__(self, proc):
        self.proc, self.lines = proc, []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for ln in self.proc.stdout:
            self.lines.append(ln.rstrip("\n"))

    def wait_for(self, pred, timeout=WAIT, what="line"):
        wait_until(lambda: any(pred(ln) for ln in list(self.lines)), timeout=timeout, what=what)
        return [ln for ln in list(self.lines) if pred(ln)]


@pytest.mark.no_daemon
def test_crushctl_help_lists_every_command(ctl):
    p = ctl("--help")
    assert p.returncode == 0, p.stderr
    for cmd in ("ls", "ps", "create", "tail", "release", "retire", "shutdown", "metrics"):
        assert cmd in p.stdout, cmd
    assert "exit status" in p.stdout


@pytest.mark.no_daemon
def test_crushctl_exit_codes_without_a_daemon(ctl):
    d = short_tmpdir()
    try:
        url = "unix://" + os.path.join(d, "none.sock")
        p = ctl("ls", host=url)
        assert p.returncode == 1 and p.stderr.startswith(f"crushctl: no supervisor at {url}: "), p.stderr
        assert ctl("ls", host="http://x").returncode == 2
        assert ctl("bogus", host=url).returncode == 2
    finally:
        os.rmdir(d)


def test_crushctl_ls_ps_create_release_with_crush_host(sup, make_dir, ctl):
    host = "unix://" + sup.sock
    d = make_dir("w")
    p = ctl("create", d, host=host)
    assert p.returncode == 0, p.stderr
    wid = p.stdout.strip()
    w = sup.api.workspace(wid)
    assert w["path"] == d and w["clients"] == 1
    # The same client, kept in the cache dir: a second create joins.
    assert ctl("create", d, host=host).stdout.strip() == wid
    assert sup.api.workspace(wid)["clients"] == 1
    p = ctl("ls", host=host)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATE", "PATH"] and lines[1].split() == [wid, "ready", d], lines
    p = ctl("ps", "--json", host=host)
    assert [x["id"] for x in json.loads(p.stdout)] == [wid]
    p = ctl("-H", host, "--json", "ps", host="unix:///nonexistent.sock")  # -H wins over CRUSH_HOST
    assert p.returncode == 0 and json.loads(p.stdout)[0]["id"] == wid, p.stderr
    assert ctl("ps", host=host).stdout.splitlines()[0].split() == \
        ["ID", "PID", "STATE", "CLIENTS", "STREAMS", "PATH"]
    p = ctl("release", wid, host=host)
    assert p.returncode == 0, p.stderr
    wait_until(lambda: sup.api.workspace(wid) is None, what="released workspace gone")
    assert ctl("release", wid, host=host).returncode == 0  # idempotent, as the API


def test_crushctl_exit_codes_against_a_daemon(sup, make_dir, ctl):
    host = "unix://" + sup.sock
    assert ctl("tail", "no-such-id", host=host).returncode == 3
    cid = new_client_id()
    sup.api.create(make_dir("busy"), cid)
    p = ctl("shutdown", "--if-idle", host=host)
    assert p.returncode == 4 and "live workspaces" in p.stderr, p.stderr
    assert sup.running
    # Retired: a create from that client is a conflict.
    assert ctl("retire", cid, host=host).returncode == 0
    p = ctl("create", make_dir("other"), "--client-id", cid, host=host)
    assert p.returncode == 4 and "retired" in p.stderr, p.stderr
    p = ctl("metrics", host=host)
    assert p.returncode == 0 and "crush_workers_started_total 1" in p.stdout, p.stdout


def test_crushctl_shutdown_stops_a_busy_daemon_gracefully(sup, make_dir, ctl):
    ws = sup.api.create(make_dir("b"))
    p = ctl("shutdown", host="unix://" + sup.sock)
    assert p.returncode == 0, p.stderr
    sup.assert_exit_0()
    wait_until(lambda: not os.path.exists(f"/proc/{ws['pid']}"), what="worker reaped")


def test_crushctl_reads_the_token_for_tcp(start_supervisor, ctl, tmp_path):
    port = free_tcp_port()
    sup = start_supervisor(hosts=["unix://{sock}", f"tcp://127.0.0.1:{port}"])
    p = ctl("ls", host=f"tcp://127.0.0.1:{port}", env={"CRUSH_SERVER_TOKEN": sup.token})
    assert p.returncode == 0, p.stderr
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    p = ctl("ls", host=f"tcp://127.0.0.1:{port}", env={"XDG_RUNTIME_DIR": str(xdg)})
    assert p.returncode == 1 and "HTTP 401" in p.stderr, p.stderr


def test_crushctl_tail_prints_events_and_follows_a_path_across_daemon_restarts(start_supervisor, make_dir,
                                                                               ctl):
    sockdir = short_tmpdir()
    d = make_dir("t")
    sup = start_supervisor(sockdir=sockdir)
    host = "unix://" + sup.sock
    tail = spawn_ctl(ctl, "tail", "--json", d, host=host)
    try:
        out = Lines(tail)
        wait_until(lambda: len(sup.api.list()) == 1 and sup.api.list()[0]["streams"] == 1,
                   what="tail attached")
        with open(os.path.join(d, "one"), "w"):
            pass
        out.wait_for(lambda ln: '"one"' in ln, what="event for one")
        ev = json.loads(out.wait_for(lambda ln: '"one"' in ln)[0])
        assert isinstance(ev["id"], int) and ev["data"]["type"] == "fs"
        first_ws = sup.api.list()[0]["id"]

        sup.signal(signal.SIGTERM)
        sup.assert_exit_0()
        sup2 = start_supervisor(sockdir=sockdir)
        wait_until(lambda: len(sup2.api.list()) == 1 and sup2.api.list()[0]["streams"] == 1,
                   what="tail re-attached to the new daemon")
        assert sup2.api.list()[0]["id"] != first_ws
        with open(os.path.join(d, "two"), "w"):
            pass
        out.wait_for(lambda ln: '"two"' in ln, what="event for two after the restart")
    finally:
        tail.terminate()
        tail.wait(WAIT)
    assert "afresh" in tail.stderr.read()


def test_crushctl_tail_since_resumes_after_an_event_id(sup, make_dir, ctl):
    d = make_dir("s")
    cid = new_client_id()
    ws = sup.api.create(d, cid)
    s = sup.api.events(ws["id"], cid)
    for name in ("a", "b", "c"):
        with open(os.path.join(d, name), "w"):
            pass
    s.wait_for(lambda e: is_fs(e, path="c"), what="c")
    ids = {e.payload.get("path"): e.id for e in s.events if e.type == "fs"}
    tail = spawn_ctl(ctl, "tail", "--since", str(ids["a"]), ws["id"], host="unix://" + sup.sock)
    try:
        out = Lines(tail)
        out.wait_for(lambda ln: "path=c" in ln, what="replayed c")
        assert not any("path=a " in ln or ln.endswith("path=a") for ln in out.lines), out.lines
        assert any("path=b" in ln for ln in out.lines), out.lines
    finally:
        tail.terminate()
        tail.wait(WAIT)
    s.close()


def test_crushctl_autostart_starts_one_daemon_for_concurrent_creates(make_dir, ctl):
    d = short_tmpdir()
    host = "unix://" + os.path.join(d, "auto.sock")
    env = {"CRUSH_AUTOSTART": "1", "CRUSH_SUPERVISOR": str(SUPERVISOR),
           "CRUSH_SERVER_IDLE_TIMEOUT": "30"}
    try:
        procs = [spawn_ctl(ctl, "create", make_dir(f"a{i}"), host=host, env=env) for i in range(3)]
        outs = [p.communicate(timeout=WAIT * 3) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], outs
        p = ctl("ps", "--json", host=host)
        assert len(json.loads(p.stdout)) == 3, p.stdout
        log = ctl.cache / "crush" / "crush-supervisor.log"
        assert log.read_text().count("msg=Listening") == 1, log.read_text()
        assert ctl("shutdown", host=host).returncode == 0
        assert ctl("ls", host=host).returncode == 1
    finally:
        ctl("shutdown", host=host)
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


# --------------------------------------------------------------------------
# Socket activation (SPEC §5) with Debian's systemd-socket-activate

SOCKET_ACTIVATE = next((p for p in ("/usr/bin/systemd-socket-activate", "/lib/systemd/systemd-socket-activate")
                        if os.access(p, os.X_OK)), None)


class SocketUnit:
    """What systemd's .socket unit does: holds the listening socket for the
    daemon's whole life and, whenever no service runs, arms
    systemd-socket-activate on it (passed as LISTEN_FDS, which it passes
    through), which execs the daemon at the first connection."""

    def __init__(self, path, args, logdir):
        self.path, self.args, self.logdir = path, args, logdir
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(path)
        finally:
            os.umask(old)
        self.sock.listen(64)
        self.runs = []  # one Popen per activation: its pid is the daemon's, after the execs
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        fd = self.sock.fileno()
        script = 'LISTEN_FDS=1 LISTEN_PID=$$ exec "$0" "$@"'
        while not self.stopping:
            n = len(self.runs)
            with open(os.path.join(self.logdir, f"activated-{n}.log"), "wb") as log:
                p = subprocess.Popen(["sh", "-c", script, SOCKET_ACTIVATE, str(SUPERVISOR)] + self.args,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=False,
                                     preexec_fn=lambda: os.dup2(fd, 3), start_new_session=True)
            self.runs.append(p)
            p.wait()

    def log(self, n):
        with open(os.path.join(self.logdir, f"activated-{n}.log")) as f:
            return f.read()

    def close(self):
        self.stopping = True
        for p in self.runs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(WAIT)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.thread.join(WAIT)
        self.sock.close()


@pytest.mark.skipif(SOCKET_ACTIVATE is None, reason="systemd-socket-activate missing (scripts/deps.sh)")
def test_socket_activation_starts_serves_idles_out_and_starts_again(make_dir, tmp_path):
    d = short_tmpdir()
    path = os.path.join(d, "act.sock")
    unit = SocketUnit(path, ["--idle-timeout", "0.3", "--log-level", "debug"], str(tmp_path))
    try:
        api = Api(Endpoint("unix", path))
        wait_until(lambda: len(unit.runs) == 1, what="activation armed")
        # Nothing runs before the first connection.
        assert "Execing" not in unit.log(0)
        cid = new_client_id()
        ws = api.create(make_dir("act"), cid)  # the first connection starts the daemon
        daemon = unit.runs[0]
        assert daemon.poll() is None
        log = unit.log(0)
        assert f"msg=Listening address=unix://{path}" in log, log
        # The worker inherits neither the listener nor LISTEN_*.
        inodes = unix_socket_inodes(path)
        fds = open_fds(ws["pid"])
        assert not any(t == f"socket:[{i}]" for t in fds.values() for i in inodes), fds
        assert not any(k.startswith("LISTEN_") for k in proc_environ(ws["pid"])), "LISTEN_* leaked"
        assert api.list()[0]["id"] == ws["id"]

        # Last claim gone: it idles out, exits 0, and leaves the socket file.
        api.release(ws["id"], cid)
        assert daemon.wait(WAIT) == 0, unit.log(0)
        assert not any(m in unit.log(0) for m in SANITIZER_ERRORS), unit.log(0)
        assert os.path.exists(path), "a passed socket must not be unlinked"

        # The next connection starts it again.
        wait_until(lambda: len(unit.runs) == 2, what="activation re-armed")
        assert api.health().status == 200
        assert unit.runs[1].poll() is None and unit.runs[1].pid != daemon.pid
    finally:
        unit.close()
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


# --------------------------------------------------------------------------
# make install / uninstall, man pages


def test_make_install_into_destdir_runs_from_there_and_uninstalls(tmp_path, make_dir, ctl):
    dest = tmp_path / "dest"
    build = os.path.relpath(SUPERVISOR.parent, REPO)
    mk = ["make", "--no-print-directory", "-C", str(REPO), f"BUILD={build}", f"DESTDIR={dest}", "PREFIX=/opt/crush"]
    p = subprocess.run(mk + ["install"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    root = dest / "opt" / "crush"
    files = sorted(str(f.relative_to(root)) for f in root.rglob("*") if f.is_file())
    assert files == ["bin/crush-ps", "bin/crush-supervisor", "bin/crush-worker", "bin/crushctl",
                     "lib/systemd/user/crush-supervisor.service", "lib/systemd/user/crush-supervisor.socket",
                     "share/man/man1/crushctl.1", "share/man/man8/crush-supervisor.8",
                     "share/man/man8/crush-worker.8"], files
    for b in ("crush-supervisor", "crush-worker", "crushctl", "crush-ps"):
        assert os.stat(root / "bin" / b).st_mode & 0o777 == 0o755, b
    unit = (root / "lib/systemd/user/crush-supervisor.service").read_text()
    assert "ExecStart=/opt/crush/bin/crush-supervisor " in unit and "@BINDIR@" not in unit

    # The installed daemon finds the installed worker; the installed
    # crushctl drives it.
    d = short_tmpdir()
    host = "unix://" + os.path.join(d, "i.sock")
    log = open(tmp_path / "installed.log", "wb")
    daemon = subprocess.Popen([str(root / "bin/crush-supervisor"), "-H", host], stdin=subprocess.DEVNULL,
                              stdout=log, stderr=log, start_new_session=True)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRUSH_")}
        env.update(CRUSH_HOST=host, XDG_CACHE_HOME=str(ctl.cache))
        run = lambda *a: subprocess.run([str(root / "bin/crushctl")] + list(a), capture_output=True,  # noqa
                                        text=True, env=env, timeout=WAIT * 2)
        wait_until(lambda: run("health").returncode == 0, what="installed daemon up")
        p = run("create", make_dir("inst"))
        assert p.returncode == 0, p.stderr
        w = json.loads(run("ps", "--json").stdout)[0]
        assert os.readlink(f"/proc/{w['pid']}/exe") == str(root / "bin/crush-worker")
        p = subprocess.run([str(root / "bin/crush-ps")], capture_output=True, text=True, env=env, timeout=WAIT)
        assert p.returncode == 0 and w["id"] in p.stdout, p.stderr
        assert run("shutdown").returncode == 0
        assert daemon.wait(WAIT) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)

    p = subprocess.run(mk + ["uninstall"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert [f for f in root.rglob("*") if f.is_file()] == []


@pytest.mark.no_daemon
def test_man_pages_pass_mandoc_lint():
    pages = sorted((REPO / "man").glob("*.[18]"))
    assert [p.name for p in pages] == ["crush-supervisor.8", "crush-worker.8", "crushctl.1"]
    if shutil.which("mandoc") is None:
        pytest.fail("mandoc is missing (scripts/deps.sh installs it)")
    p = subprocess.run(["mandoc", "-T", "lint", "-W", "warning"] + [str(x) for x in pages],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", p.stdout + p.stderr


# --------------------------------------------------------------------------
# docs/openapi.yaml and docs/events.md

REDOCLY_VERSION = "2.77.0"  # as pinned in scripts/deps.sh


def redocly_bin():
    base = os.environ.get("REDOCLY_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "crush-supervisor",
        f"redocly-{REDOCLY_VERSION}")
    return os.path.join(base, "node_modules", ".bin", "redocly")


@pytest.mark.no_daemon
def test_openapi_document_passes_redocly_lint_and_names_every_route():
    doc = (REPO / "docs" / "openapi.yaml").read_text()
    assert doc.startswith("openapi: 3.1.")
    for route in ("/v1/health", "/v1/version", "/v1/metrics", "/v1/control", "/v1/workspaces",
                  "/v1/workspaces/{id}", "/v1/workspaces/{id}/events", "/v1/workspaces/{id}/current-session",
                  "/v1/clients/{client_id}", "/v1/workspaces/{id}/{path}"):
        assert f"\n  {route}:\n" in doc, route
    exe = redocly_bin()
    assert os.access(exe, os.X_OK), f"{exe} missing: scripts/deps.sh installs @redocly/cli with npm"
    p = subprocess.run([exe, "lint", "--format", "stylish", str(REPO / "docs" / "openapi.yaml")],
                       capture_output=True, text=True, timeout=120, cwd=str(REPO),
                       env=dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true"))
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "Your API description is valid" in out, out
    assert "You have" not in out, out  # "You have N warnings"


@pytest.mark.no_daemon
def test_event_schema_names_every_event_and_the_nested_envelope():
    doc = (REPO / "docs" / "events.md").read_text()
    assert '{"type":"fs","payload":{"type":"created","payload":{' in doc
    for kind in ("ready", "restarting", "restarted", "closing", "failed", "gap", "created", "modified",
                 "deleted", "renamed", "overflow", "root_gone", "config_changed", "session", "message"):
        assert f"`{kind}`" in doc, kind
    for duty in ("`restarted`: a new worker", "`gap`", "`overflow`", "`root_gone`", "End of stream", "slow reader"):
        assert duty in doc.replace("**", ""), duty


# --------------------------------------------------------------------------
# HTTP niceties


def test_head_answers_wherever_get_does_without_a_body_or_an_attach(sup, make_dir):
    cid = new_client_id()
    ws = sup.api.create(make_dir("h"), cid)
    for path in ("/v1/health", "/v1/version", "/v1/metrics", "/v1/workspaces", f"/v1/workspaces/{ws['id']}",
                 f"/v1/workspaces/{ws['id']}/events?client_id={cid}"):
        get = sup.api.request("GET", path) if "events" not in path else None
        r = sup.api.request("HEAD", path)
        assert r.status == 200 and r.body == b"", (path, r.describe())
        if get is not None:
            assert r.content_type == get.content_type, path
    assert sup.api.request("HEAD", "/v1/workspaces/" + new_client_id()).status == 404
    assert sup.api.request("HEAD", "/v1/control").status == 405
    assert sup.api.workspace(ws["id"])["streams"] == 0


def test_json_bodies_end_with_a_newline(sup):
    for method, path in (("GET", "/v1/version"), ("GET", "/v1/workspaces"), ("GET", "/v1/nope"),
                         ("POST", "/v1/control")):
        r = sup.api.request(method, path, body="" if method == "POST" else None)
        assert r.body.endswith(b"\n") and r.body.count(b"\n") == 1, (path, r.body)
        json.loads(r.body)


def test_streams_say_retry_and_take_an_empty_last_event_id_as_absent(sup, make_dir):
    cid = new_client_id()
    ws = sup.api.create(make_dir("r"), cid)
    sock = sup.endpoint.connect()
    try:
        sock.sendall((f"GET /v1/workspaces/{ws['id']}/events?client_id={cid} HTTP/1.1\r\nHost: x\r\n"
                      "Last-Event-ID: \r\n\r\n").encode())
        got = b""
        deadline = time.monotonic() + WAIT
        while b": connected" not in got and time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
        assert got.startswith(b"HTTP/1.1 200 "), got
        assert b"retry: 1000\n: connected\n\n" in got, got
    finally:
        sock.close()


def test_log_timestamps_are_utc_with_z(start_supervisor):
    sup = start_supervisor(env={"TZ": "UTC"})
    line = sup.stderr().splitlines()[0]
    assert line.startswith("time=") and line.split()[0].endswith("Z"), line


@pytest.mark.parametrize("field,value,what", [
    ("path", 1, "path must be a string"), ("client_id", 7, "client_id must be a string"),
    ("yolo", "yes", "yolo must be a boolean"), ("debug", 1, "debug must be a boolean"),
    ("data_dir", [], "data_dir must be a string"), ("env", ["A=1", 2], "env must be an array of strings"),
    ("channels", "x", "channels must be an array of strings"),
])
def test_decode_errors_name_the_field(sup, make_dir, field, value, what):
    body = {"path": make_dir("f"), "client_id": new_client_id()}
    body[field] = value
    r = sup.api.request("POST", "/v1/workspaces", body)
    assert r.status == 400 and r.json()["message"] == "failed to decode request: " + what, r.describe()


def test_control_decode_error_names_the_field(sup):
    r = sup.api.request("POST", "/v1/control", {"command": 3})
    assert r.status == 400 and r.json()["message"] == "failed to decode request: command must be a string"
