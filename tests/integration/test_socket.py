"""
Listeners (SPEC §3 -H, §4 HTTP/1.1 + h2c): the unix socket's mode, stale
and live socket files, removal on exit, tcp, cleartext HTTP/2.
"""

import json
import os
import signal
import socket
import stat
import subprocess

from crush import WAIT, Api, Endpoint, free_tcp_port, new_client_id, short_tmpdir, wait_until


def test_unix_socket_is_mode_0600(sup):
    st = os.stat(sup.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(stat.S_IMODE(st.st_mode))


def test_socket_is_removed_on_exit(sup):
    assert os.path.exists(sup.sock)
    sup.signal(signal.SIGTERM)
    sup.assert_exit_0()
    assert not os.path.exists(sup.sock)


def test_stale_socket_file_is_replaced_with_a_warning(start_supervisor):
    d = short_tmpdir()
    path = os.path.join(d, "s.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # bound, never listened, closed: the file stays, nobody answers
    assert os.path.exists(path)
    sup = start_supervisor(sockdir=d)
    assert sup.sock == path
    assert sup.api.health().status == 200
    warn = [ln for ln in sup.stderr().splitlines() if "level=WARN" in ln]
    assert warn, f"no warning logged for the stale socket:\n{sup.stderr()}"


def test_live_socket_is_not_stolen(start_supervisor, wsdir):
    first = start_supervisor()
    ws = first.api.create(wsdir)
    second = start_supervisor(sockdir=first.sockdir, wait_ready=False)
    rc = second.wait_exit()
    assert rc == 1, f"second supervisor exit status {rc}"
    assert "address already in use" in second.stderr().lower(), second.stderr()
    assert os.path.exists(first.sock), "the live socket file was unlinked"
    assert first.running()
    assert first.api.health().status == 200
    assert first.api.workspace(ws["id"]) is not None


def test_tcp_listener_serves_the_api(start_supervisor, wsdir):
    port = free_tcp_port()
    sup = start_supervisor(hosts=["unix://{sock}", f"tcp://127.0.0.1:{port}"])
    tcp = Api(Endpoint("tcp", ("127.0.0.1", port), sup.token))
    assert tcp.health().status == 200
    ws = tcp.create(wsdir)
    assert sup.api.workspace(ws["id"]) is not None, "both listeners serve one daemon"
    r = tcp.request("GET", "/v1/nope")
    assert r.status == 404 and r.json().get("message"), r.describe()


def curl(args, timeout=WAIT):
    return subprocess.run(["curl", "-sS", "--max-time", str(int(timeout))] + args,
                          capture_output=True, text=True, timeout=timeout + 5)


def curl_h2c(sup, method, path, body=None):
    args = ["--http2-prior-knowledge", "--unix-socket", sup.sock, "-X", method,
            "-o", "-", "-w", "\n%{http_code} %{http_version}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    p = curl(args + ["http://localhost" + path])
    assert p.returncode == 0, f"curl failed ({p.returncode}): {p.stderr}"
    out, _, tail = p.stdout.rpartition("\n")
    code, version = tail.split()
    return int(code), version, out


def test_h2c_prior_knowledge_health(sup):
    code, version, _ = curl_h2c(sup, "GET", "/v1/health")
    assert (code, version) == (200, "2")


def test_h2c_create_workspace(sup, wsdir):
    code, version, out = curl_h2c(sup, "POST", "/v1/workspaces",
                                  {"path": wsdir, "client_id": new_client_id()})
    assert (code, version) == (200, "2"), out
    ws = json.loads(out)
    assert ws["path"] == wsdir and ws["state"] == "ready"
    assert sup.api.workspace(ws["id"]) is not None


def test_h2c_errors_are_json(sup):
    code, version, out = curl_h2c(sup, "GET", "/v1/nope")
    assert (code, version) == (404, "2")
    assert json.loads(out).get("message")


def test_h2c_event_stream_gets_headers_at_once(sup, wsdir):
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    # -D - prints the response head as soon as it arrives; --max-time ends
    # the (quiet, endless) stream.
    p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--unix-socket", sup.sock,
                        "--max-time", "2", "-D", "-", "-o", "/dev/null",
                        f"http://localhost/v1/workspaces/{ws['id']}/events?client_id={cid}"],
                       capture_output=True, text=True, timeout=WAIT)
    head = p.stdout.lower()
    assert head.startswith("http/2 200"), (p.returncode, p.stdout, p.stderr)
    assert "content-type: text/event-stream" in head, head
    # The stream was the client's only claim: its end (curl's --max-time)
    # detaches it and, with no detach grace, tears the workspace down.
    wait_until(lambda: sup.api.workspace(ws["id"]) is None, what="h2 stream detached")


def test_h2c_over_tcp(start_supervisor):
    port = free_tcp_port()
    sup = start_supervisor(hosts=["unix://{sock}", f"tcp://127.0.0.1:{port}"])
    p = curl(["--http2-prior-knowledge", "-H", f"Authorization: Bearer {sup.token}",
              "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
              f"http://127.0.0.1:{port}/v1/health"])
    assert p.stdout.split() == ["200", "2"], (p.stdout, p.stderr)
