"""
The trust boundary (SPEC §2.7, §7; issue 8), seen from outside: unix
peers of another user, the tcp bearer token and where it comes from,
Origin and Host against browsers (CSRF, DNS rebinding), CORS for allowed
origins, and safe creation of the socket and token files. The decisions
themselves are table-tested in tests/unit/test_guard.c; here we prove the
running daemon applies them on every path, HTTP/1.1 and h2c alike.
"""

import json
import os
import shutil
import socket
import stat
import subprocess

import pytest

from crush import (CRUSH_PS, WAIT, Api, Endpoint, free_tcp_port, new_client_id, proc_environ,
                   raw_exchange, run_cli, short_tmpdir, wait_until)

PAGE = "http://127.0.0.1:8765"
OTHER_UID = 65534  # nobody


def tcp_sup(start_supervisor, extra=(), **kw):
    """A daemon on its private unix socket plus tcp on 127.0.0.1; its
    token is sup.token, its tcp Api is sup.tcp."""
    port = free_tcp_port()
    sup = start_supervisor(hosts=["unix://{sock}", f"tcp://127.0.0.1:{port}"], extra_args=list(extra), **kw)
    sup.port = port
    sup.tcp = Api(Endpoint("tcp", ("127.0.0.1", port), sup.token))
    return sup


def raw(endpoint, method, target, headers, body=b""):
    """One HTTP/1.1 request with exactly these headers (Host included)."""
    head = f"{method} {target} HTTP/1.1\r\n"
    for k, v in headers.items():
        head += f"{k}: {v}\r\n"
    if body or method in ("POST", "PUT"):
        head += f"Content-Length: {len(body)}\r\n"
    head += "Connection: close\r\n\r\n"
    return raw_exchange(endpoint, head.encode("latin-1") + body)


def assert_json_error(r, status, fragment=None):
    assert r.status == status, r.describe()
    assert r.content_type.startswith("application/json"), r.describe()
    msg = r.json().get("message")
    assert isinstance(msg, str) and msg, r.describe()
    if fragment is not None:
        assert fragment in msg, r.describe()


def create_body(path):
    return json.dumps({"path": path, "client_id": new_client_id()}).encode()


# --------------------------------------------------------------------------
# Browsers: Origin (CSRF) on both transports


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_cross_origin_text_plain_create_is_refused_and_creates_nothing(start_supervisor, wsdir, transport):
    sup = tcp_sup(start_supervisor)
    ep = sup.endpoint if transport == "unix" else sup.tcp.endpoint
    # A "simple" request: no preflight in a browser, so only the Origin
    # check stands between the page and the daemon. Even with the right
    # token (a page never has it, but a leaked one must not be enough).
    hdrs = {"Host": "localhost", "Origin": "http://evil.example", "Content-Type": "text/plain"}
    if transport == "tcp":
        hdrs["Authorization"] = f"Bearer {sup.token}"
    r = raw(ep, "POST", "/v1/workspaces", hdrs, create_body(wsdir))
    assert_json_error(r, 403, "Origin")
    assert "access-control-allow-origin" not in r.headers
    assert sup.api.list() == []
    assert sup.workers() == []


@pytest.mark.parametrize("method,path", [("GET", "/v1/workspaces"), ("GET", "/v1/health"),
                                         ("DELETE", "/v1/clients/" + "0" * 8 + "-0000-4000-8000-" + "0" * 12),
                                         ("POST", "/v1/control"), ("GET", "/no/such/path")])
def test_a_foreign_origin_is_refused_on_every_route(sup, method, path):
    r = raw(sup.endpoint, method, path, {"Host": "localhost", "Origin": "https://evil.example"},
            b'{"command":"shutdown_if_idle"}' if method == "POST" else b"")
    assert_json_error(r, 403)
    assert sup.running()


def test_origin_null_is_refused_even_when_other_origins_are_allowed(start_supervisor, wsdir):
    sup = start_supervisor(extra_args=["--allow-origin", PAGE])
    r = raw(sup.endpoint, "POST", "/v1/workspaces", {"Host": "localhost", "Origin": "null",
                                                     "Content-Type": "text/plain"}, create_body(wsdir))
    assert_json_error(r, 403)
    assert sup.api.list() == []


def test_two_origin_headers_are_refused(start_supervisor):
    sup = start_supervisor(extra_args=["--allow-origin", PAGE])
    head = (f"GET /v1/workspaces HTTP/1.1\r\nHost: localhost\r\nOrigin: {PAGE}\r\n"
            f"Origin: http://evil.example\r\nConnection: close\r\n\r\n").encode()
    assert_json_error(raw_exchange(sup.endpoint, head), 403)


def test_requests_without_origin_need_no_json_content_type(start_supervisor, wsdir):
    """Upstream's client sends JSON bodies as text/plain: no Content-Type
    rule, on either transport."""
    sup = tcp_sup(start_supervisor)
    r = raw(sup.endpoint, "POST", "/v1/workspaces", {"Host": "localhost", "Content-Type": "text/plain"},
            create_body(wsdir))
    assert r.status == 200, r.describe()
    r = raw(sup.tcp.endpoint, "POST", "/v1/workspaces",
            {"Host": f"127.0.0.1:{sup.port}", "Authorization": f"Bearer {sup.token}",
             "Content-Type": "text/plain;charset=UTF-8"}, create_body(wsdir))
    assert r.status == 200, r.describe()


# --------------------------------------------------------------------------
# Allowed origins: CORS


def test_preflight_of_an_allowed_origin_is_204_without_the_token(start_supervisor):
    sup = tcp_sup(start_supervisor, ["--allow-origin", PAGE])
    r = raw(sup.tcp.endpoint, "OPTIONS", "/v1/workspaces",
            {"Host": f"127.0.0.1:{sup.port}", "Origin": PAGE, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type"})
    assert r.status == 204, r.describe()
    h = r.headers
    assert h.get("access-control-allow-origin") == PAGE
    assert "Origin" in h.get("vary", "")
    methods = {m.strip() for m in h.get("access-control-allow-methods", "").split(",")}
    assert {"GET", "POST", "PUT", "DELETE", "OPTIONS"} <= methods, h
    allowed = {x.strip().lower() for x in h.get("access-control-allow-headers", "").split(",")}
    assert {"authorization", "content-type", "last-event-id"} <= allowed, h
    assert int(h.get("access-control-max-age", "0")) > 0, h
    assert r.body == b""


def test_preflight_of_a_foreign_origin_is_403(start_supervisor):
    sup = tcp_sup(start_supervisor, ["--allow-origin", PAGE])
    r = raw(sup.tcp.endpoint, "OPTIONS", "/v1/workspaces",
            {"Host": f"127.0.0.1:{sup.port}", "Origin": "http://127.0.0.1:1",
             "Access-Control-Request-Method": "POST"})
    assert_json_error(r, 403)
    assert "access-control-allow-origin" not in r.headers


def test_allowed_origin_gets_acao_on_answers_and_errors(start_supervisor, wsdir):
    sup = tcp_sup(start_supervisor, ["--allow-origin", PAGE, "--allow-origin", "http://localhost:9"])
    auth = {"Host": f"127.0.0.1:{sup.port}", "Origin": PAGE, "Authorization": f"Bearer {sup.token}"}
    checks = [
        raw(sup.tcp.endpoint, "POST", "/v1/workspaces", dict(auth, **{"Content-Type": "text/plain"}),
            create_body(wsdir)),                                         # 200
        raw(sup.tcp.endpoint, "GET", "/v1/workspaces/nope", auth),       # 404 from the API
        raw(sup.tcp.endpoint, "PUT", "/v1/health", auth),                # 405
        raw(sup.tcp.endpoint, "POST", "/v1/workspaces", auth, b"{"),     # 400
        raw(sup.tcp.endpoint, "GET", "/v1/workspaces",                   # 401 from the gate
            {"Host": f"127.0.0.1:{sup.port}", "Origin": PAGE}),
    ]
    assert [r.status for r in checks] == [200, 404, 405, 400, 401], [r.describe() for r in checks]
    for r in checks:
        assert r.headers.get("access-control-allow-origin") == PAGE, r.headers
        assert "Origin" in r.headers.get("vary", ""), r.headers
    # Without an Origin header: no CORS headers at all.
    r = sup.tcp.request("GET", "/v1/workspaces")
    assert r.status == 200 and "access-control-allow-origin" not in r.headers, r.headers


def test_allowed_origin_gets_acao_on_the_event_stream_with_the_query_token(start_supervisor, wsdir):
    """EventSource sends no headers: a page authenticates its stream with
    ?token=, which counts only together with an allowed Origin."""
    sup = tcp_sup(start_supervisor, ["--allow-origin", PAGE])
    cid = new_client_id()
    ws = sup.tcp.create(wsdir, cid)
    target = f"/v1/workspaces/{ws['id']}/events?client_id={cid}&last_event_id=0&token={sup.token}"
    s = sup.tcp.endpoint.connect()
    try:
        s.sendall((f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{sup.port}\r\nOrigin: {PAGE}\r\n"
                   f"Accept: text/event-stream\r\n\r\n").encode())
        buf = b""
        while b"data:" not in buf:
            chunk = s.recv(65536)
            assert chunk, buf
            buf += chunk
    finally:
        s.close()
    head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    assert head.startswith("http/1.1 200"), head
    assert "content-type: text/event-stream" in head, head
    assert f"access-control-allow-origin: {PAGE}" in head, head
    assert b'"ready"' in buf, buf  # replayed from id 0

    # The same query token without an Origin, or with a foreign one, or on
    # another route, is no way in.
    for hdrs, path, status in [
            ({}, target, 401),
            ({"Origin": "http://evil.example"}, target, 403),
            ({"Origin": PAGE}, f"/v1/workspaces?token={sup.token}", 401)]:
        r = raw(sup.tcp.endpoint, "GET", path, dict(hdrs, Host=f"127.0.0.1:{sup.port}"))
        assert_json_error(r, status)


# --------------------------------------------------------------------------
# tcp: Host (DNS rebinding) and the token


@pytest.mark.parametrize("host", ["evil.example", f"evil.example:80", "192.168.0.1", "localhost.evil.example",
                                  "127.0.0.1.nip.io", "[::]"])
def test_tcp_host_must_be_loopback(start_supervisor, host):
    sup = tcp_sup(start_supervisor)
    r = raw(sup.tcp.endpoint, "GET", "/v1/workspaces", {"Host": host, "Authorization": f"Bearer {sup.token}"})
    assert_json_error(r, 403, "Host")


def test_tcp_without_host_is_refused(start_supervisor):
    sup = tcp_sup(start_supervisor)
    r = raw_exchange(sup.tcp.endpoint,
                     f"GET /v1/health HTTP/1.0\r\nAuthorization: Bearer {sup.token}\r\n\r\n".encode())
    assert_json_error(r, 403)


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:1", "127.0.0.1", "127.9.9.9:8080", "[::1]:5"])
def test_tcp_loopback_hosts_are_served(start_supervisor, host):
    sup = tcp_sup(start_supervisor)
    r = raw(sup.tcp.endpoint, "GET", "/v1/health", {"Host": host, "Authorization": f"Bearer {sup.token}"})
    assert r.status == 200, r.describe()


def test_unix_socket_has_no_host_rule(sup):
    r = raw(sup.endpoint, "GET", "/v1/health", {"Host": "anything.example"})
    assert r.status == 200, r.describe()


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token-000000000000", "Basic dXNlcjpwYXNz", "Bearer", "",
                                  "TOKEN"])
def test_tcp_without_the_right_token_is_401(start_supervisor, wsdir, auth):
    sup = tcp_sup(start_supervisor)
    hdrs = {"Host": f"127.0.0.1:{sup.port}", "Content-Type": "application/json"}
    if auth is not None:
        hdrs["Authorization"] = auth.replace("TOKEN", sup.token)  # bare token, no scheme
    r = raw(sup.tcp.endpoint, "POST", "/v1/workspaces", hdrs, create_body(wsdir))
    assert_json_error(r, 401)
    assert r.headers.get("www-authenticate", "").lower().startswith("bearer"), r.headers
    assert sup.token not in r.body.decode()
    assert sup.api.list() == []
    for path in ("/v1/health", "/v1/version", "/v1/nope"):
        assert_json_error(raw(sup.tcp.endpoint, "GET", path, {"Host": "localhost"}), 401)


def test_tcp_token_over_h2c(start_supervisor):
    sup = tcp_sup(start_supervisor)
    base = ["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
            f"http://127.0.0.1:{sup.port}/v1/health"]
    out = lambda args: subprocess.run(args, capture_output=True, text=True, timeout=WAIT).stdout.split()  # noqa: E731
    assert out(base) == ["401", "2"]
    assert out(base + ["-H", f"Authorization: Bearer {sup.token}"]) == ["200", "2"]
    assert out(base + ["-H", f"Authorization: Bearer {sup.token}", "-H", "Host: evil.example"]) == ["403", "2"]


def test_token_from_a_file(start_supervisor, tmp_path):
    tok = "file-token-" + "x" * 20
    path = tmp_path / "tok"
    path.write_text(tok + "\n")
    path.chmod(0o600)
    sup = tcp_sup(start_supervisor, token_file=str(path))
    assert sup.token is None
    ok = Api(Endpoint("tcp", ("127.0.0.1", sup.port), tok))
    assert ok.health().status == 200
    assert Api(Endpoint("tcp", ("127.0.0.1", sup.port), "y" * 31)).health().status == 401
    assert tok not in sup.stderr()


def test_a_token_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "tok"
    path.write_text("file-token-" + "x" * 20 + "\n")
    path.chmod(0o644)
    d = short_tmpdir()
    try:
        p = run_cli(["-H", f"unix://{d}/s.sock", "--token-file", str(path)], timeout=WAIT)
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert "chmod 600" in p.stderr, p.stderr
        assert "x" * 20 not in p.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_token_from_the_environment_is_not_inherited_by_workers(start_supervisor, wsdir):
    tok = "env-token-" + "z" * 22
    sup = tcp_sup(start_supervisor, env={"CRUSH_SERVER_TOKEN": tok})
    assert sup.token == tok
    ws = sup.tcp.create(wsdir)
    env = proc_environ(ws["pid"])
    assert env, "cannot read the worker's environment"
    assert not any(e.startswith("CRUSH_SERVER_TOKEN=") for e in env), env
    assert tok not in sup.stderr()


def test_generated_token_file_is_0600_logged_by_path_and_reused(start_supervisor, tmp_path):
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    path = xdg / f"crush-{os.getuid()}.token"
    env = {"XDG_RUNTIME_DIR": str(xdg), "CRUSH_SERVER_TOKEN": ""}
    first = tcp_sup(start_supervisor, env=env)
    assert first.token is None
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert st.st_uid == os.geteuid()
    tok = path.read_text().strip()
    assert len(tok) == 64 and all(c in "0123456789abcdef" for c in tok), tok
    log = first.stderr()
    assert str(path) in log and tok not in log, log
    assert Api(Endpoint("tcp", ("127.0.0.1", first.port), tok)).health().status == 200
    assert first.tcp.health().status == 401  # no token at all

    # A second daemon of the same user shares the file and the token.
    second = tcp_sup(start_supervisor, env=env)
    assert path.read_text().strip() == tok
    assert Api(Endpoint("tcp", ("127.0.0.1", second.port), tok)).health().status == 200
    assert "reused" in second.stderr()


def test_a_symlink_at_the_token_path_is_refused(tmp_path):
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    target = tmp_path / "planted"
    target.write_text("planted-token-" + "p" * 20 + "\n")
    target.chmod(0o600)
    os.symlink(target, xdg / f"crush-{os.getuid()}.token")
    p = run_cli(["-H", f"tcp://127.0.0.1:{free_tcp_port()}"], timeout=WAIT,
                env={"XDG_RUNTIME_DIR": str(xdg)})
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "symbolic link" in p.stderr, p.stderr
    assert os.path.islink(xdg / f"crush-{os.getuid()}.token")


def test_a_unix_only_daemon_writes_no_token_file(start_supervisor, tmp_path):
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    start_supervisor(env={"XDG_RUNTIME_DIR": str(xdg)})
    assert list(xdg.iterdir()) == []


# --------------------------------------------------------------------------
# Binding: loopback only unless the token was chosen


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]", "0"])
def test_non_loopback_bind_is_refused_without_an_explicit_token(tmp_path, host):
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    p = run_cli(["-H", f"tcp://{host}:{free_tcp_port()}"], timeout=WAIT, env={"XDG_RUNTIME_DIR": str(xdg)})
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "non-loopback" in p.stderr and "--token-file" in p.stderr, p.stderr


def test_localhost_by_name_and_ipv6_loopback_are_fine(start_supervisor):
    port, port6 = free_tcp_port(), free_tcp_port()
    sup = start_supervisor(hosts=["unix://{sock}", f"tcp://localhost:{port}", f"tcp://[::1]:{port6}"])
    assert sup.token
    r = raw(Endpoint("tcp", ("127.0.0.1", port)), "GET", "/v1/health",
            {"Host": f"localhost:{port}", "Authorization": f"Bearer {sup.token}"})
    assert r.status == 200, r.describe()
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.settimeout(WAIT)
    try:
        s.connect(("::1", port6))
        s.sendall(f"GET /v1/health HTTP/1.1\r\nHost: [::1]:{port6}\r\nAuthorization: Bearer {sup.token}\r\n"
                  f"Connection: close\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        s.close()


# --------------------------------------------------------------------------
# Unix sockets: peers of another user, and safe creation


def as_other_user(args):
    """Runs args as uid/gid 65534 with no groups; stdout as bytes decoded
    without newline translation (HTTP heads end in CRLF)."""
    p = subprocess.run(["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups"] + args,
                       capture_output=True, timeout=WAIT)
    p.stdout, p.stderr = p.stdout.decode("latin-1"), p.stderr.decode("latin-1")
    return p


PEER_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
body = sys.argv[2].encode()
try:
    s.sendall(b"POST /v1/workspaces HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
except OSError:
    pass
out = b""
while True:
    try:
        chunk = s.recv(65536)
    except ConnectionResetError:
        break
    if not chunk:
        break
    out += chunk
sys.stdout.write(out.decode())
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_unix_peer_of_another_user_gets_403_and_nothing_happens(start_supervisor, wsdir):
    # Only for this test: a directory the other user can reach and a socket
    # they may connect to, so that the peer-uid check is all that stands.
    d = short_tmpdir()
    os.chmod(d, 0o755)
    sup = start_supervisor(sockdir=d)
    os.chmod(sup.sock, 0o666)
    p = as_other_user(["/usr/bin/python3", "-c", PEER_CLIENT, sup.sock,
                       json.dumps({"path": wsdir, "client_id": new_client_id()})])
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 403"), p.stdout
    assert "content-type: application/json" in head.lower() and "connection: close" in head.lower(), head
    assert json.loads(body) == {"message": f"forbidden: peer uid {OTHER_UID} is not the daemon's user"}
    assert sup.api.list() == [] and sup.workers() == []
    # (The answer is best effort: a client that checks the connection after
    # the daemon closed it, as curl does, may report a failed connect.)
    # Any request from that user fails; the daemon's own user is served.
    p = as_other_user(["curl", "-sS", "--unix-socket", sup.sock, "-X", "POST", "-d",
                       json.dumps({"path": wsdir, "client_id": new_client_id()}), "http://x/v1/workspaces"])
    assert '"id"' not in p.stdout, p.stdout
    assert sup.api.list() == [] and sup.api.health().status == 200
    wait_until(lambda: f"peer_uid={OTHER_UID}" in sup.stderr(), what="the refusal is logged")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_a_flood_of_refused_peers_is_logged_sparingly(start_supervisor):
    d = short_tmpdir()
    os.chmod(d, 0o755)
    sup = start_supervisor(sockdir=d)
    os.chmod(sup.sock, 0o666)
    loop = ("import socket,sys\nfor i in range(50):\n s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            " s.recv(1000); s.close()\n")
    p = as_other_user(["/usr/bin/python3", "-c", loop, sup.sock])
    assert p.returncode == 0, p.stderr
    assert sup.api.health().status == 200
    lines = [ln for ln in sup.stderr().splitlines() if "Refused a unix peer" in ln]
    assert 1 <= len(lines) < 10, lines


def test_a_symlink_at_the_socket_path_is_refused_and_kept(tmp_path):
    d = short_tmpdir()
    try:
        path = os.path.join(d, "s.sock")
        target = os.path.join(d, "victim")
        open(target, "w").close()
        os.symlink(target, path)
        p = run_cli(["-H", f"unix://{path}"], timeout=WAIT)
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert "symbolic link" in p.stderr, p.stderr
        assert os.path.islink(path) and os.path.exists(target)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make another user's socket")
def test_another_users_stale_socket_is_refused_and_kept():
    d = short_tmpdir()
    try:
        path = os.path.join(d, "s.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()  # stale
        os.chown(path, OTHER_UID, OTHER_UID)
        p = run_cli(["-H", f"unix://{path}"], timeout=WAIT)
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert f"uid {OTHER_UID}" in p.stderr, p.stderr
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_a_socket_directory_others_may_write_is_refused(start_supervisor):
    d = short_tmpdir()
    os.chmod(d, 0o777)  # not sticky: anyone could swap our socket
    p = run_cli(["-H", f"unix://{d}/s.sock"], timeout=WAIT)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "writable by other users" in p.stderr, p.stderr
    os.chmod(d, 0o1777)  # sticky, like /tmp: fine
    sup = start_supervisor(sockdir=d)
    assert sup.api.health().status == 200


# --------------------------------------------------------------------------
# Flags


@pytest.mark.parametrize("args", [
    ["--allow-origin", "null"], ["--allow-origin", "*"], ["--allow-origin", "http://a.example/"],
    ["--allow-origin", "a.example"], ["--max-workspaces", "0"], ["--max-workspaces", "x"],
    ["--max-streams", "-1"], ["--max-streams", "1e3"], ["--token-file", ""],
    sum((["--allow-origin", f"http://h{i}.example"] for i in range(17)), []),  # 16 at most
])
def test_bad_security_flags_exit_2(args):
    d = short_tmpdir()
    try:
        p = run_cli(["-H", f"unix://{d}/s.sock"] + args, timeout=WAIT)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 2 and lines[0].startswith("crush-supervisor: ") and "--help" in lines[1], p.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("name,value", [("CRUSH_SERVER_MAX_WORKSPACES", "many"),
                                        ("CRUSH_SERVER_MAX_STREAMS", "0"),
                                        ("CRUSH_SERVER_TOKEN", "short secret")])
def test_bad_security_env_exits_2_without_echoing_a_token(name, value):
    d = short_tmpdir()
    try:
        p = run_cli(["-H", f"unix://{d}/s.sock"], timeout=WAIT, env={name: value})
        assert p.returncode == 2, (p.returncode, p.stderr)
        if name == "CRUSH_SERVER_TOKEN":
            assert value not in p.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_limits_and_security_flags_are_accepted_and_documented(start_supervisor):
    start_supervisor(extra_args=["--max-workspaces", "3", "--max-streams", "10", "--allow-origin", PAGE])
    p = run_cli(["--help"], timeout=WAIT)
    for flag in ("--token-file", "--allow-origin", "--max-workspaces", "--max-streams",
                 "CRUSH_SERVER_TOKEN", "CRUSH_SERVER_MAX_WORKSPACES", "CRUSH_SERVER_MAX_STREAMS"):
        assert flag in p.stdout, flag


# --------------------------------------------------------------------------
# crush-ps


def crush_ps(*args, env=None):
    e = {k: v for k, v in os.environ.items() if k not in ("CRUSH_SERVER_TOKEN", "XDG_RUNTIME_DIR")}
    e.update(env or {})
    return subprocess.run([str(CRUSH_PS)] + list(args), capture_output=True, text=True, timeout=WAIT, env=e)


def test_crush_ps_reads_the_generated_token_file(start_supervisor, wsdir, tmp_path):
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": str(xdg), "CRUSH_SERVER_TOKEN": ""}
    sup = tcp_sup(start_supervisor, env=env)
    ws = sup.api.create(wsdir)
    p = crush_ps("--json", "-H", f"tcp://127.0.0.1:{sup.port}", env={"XDG_RUNTIME_DIR": str(xdg)})
    assert p.returncode == 0, p.stderr
    assert [w["id"] for w in json.loads(p.stdout)] == [ws["id"]]
    # The environment wins over the file.
    p = crush_ps("-H", f"tcp://127.0.0.1:{sup.port}",
                 env={"XDG_RUNTIME_DIR": str(xdg), "CRUSH_SERVER_TOKEN": "w" * 40})
    assert p.returncode == 1 and "HTTP 401" in p.stderr, p.stderr


def test_crush_ps_without_a_token_reports_401(start_supervisor, tmp_path):
    sup = tcp_sup(start_supervisor)
    xdg = tmp_path / "empty"
    xdg.mkdir(mode=0o700)
    p = crush_ps("-H", f"tcp://127.0.0.1:{sup.port}", env={"XDG_RUNTIME_DIR": str(xdg)})
    assert p.returncode == 1, p.stdout
    assert "HTTP 401" in p.stderr and "CRUSH_SERVER_TOKEN" in p.stderr, p.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make another user's socket")
def test_crush_ps_refuses_a_socket_of_another_user():
    d = short_tmpdir()
    s = socket.socket(socket.AF_UNIX)
    try:
        path = os.path.join(d, "s.sock")
        s.bind(path)
        s.listen(1)
        os.chown(path, OTHER_UID, OTHER_UID)
        p = crush_ps("-H", f"unix://{path}")
        assert p.returncode == 1, (p.stdout, p.stderr)
        assert f"belongs to uid {OTHER_UID}" in p.stderr, p.stderr
        s.settimeout(0.2)
        with pytest.raises(socket.timeout):
            s.accept()  # crush-ps never connected
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)


def test_crush_ps_refuses_a_symlinked_socket(sup):
    d = short_tmpdir()
    try:
        link = os.path.join(d, "link.sock")
        os.symlink(sup.sock, link)
        p = crush_ps("-H", f"unix://{link}")
        assert p.returncode == 1 and "symbolic link" in p.stderr, p.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)
