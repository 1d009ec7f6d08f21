"""
Every client error is a 4xx with a JSON {"message": "..."} body and
Content-Type application/json (SPEC §2.5, §4), and never hurts the daemon.
"""

import json
import os

import pytest

from crush import new_client_id, raw_exchange, wait_gone

UNKNOWN_WS = "00000000-0000-4000-8000-000000000000"


def assert_error(r, status, contains=None):
    assert r.status == status, f"expected {status}, got {r.describe()}"
    assert r.content_type.split(";")[0].strip() == "application/json", r.describe()
    try:
        body = r.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {r.body[:300]!r}")
    assert isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"], body
    if contains is not None:
        assert contains in body["message"], f"{contains!r} not in {body['message']!r}"
    return body["message"]


def post(sup, body, content_type="application/json"):
    return sup.api.request("POST", "/v1/workspaces", body, {"Content-Type": content_type})


def test_create_with_non_json_body_is_400(sup):
    assert_error(post(sup, b"this is not json"), 400, "failed to decode request")


def test_create_with_json_array_body_is_400(sup, wsdir):
    assert_error(post(sup, json.dumps([{"path": wsdir}]).encode()), 400, "failed to decode request")


def test_create_with_json_string_body_is_400(sup):
    assert_error(post(sup, b'"just a string"'), 400, "failed to decode request")


def test_create_with_empty_body_is_400(sup):
    assert_error(post(sup, b""), 400)


def test_create_without_path_is_400(sup):
    assert_error(post(sup, {"client_id": new_client_id()}), 400, "path is required")


def test_create_with_empty_path_is_400(sup):
    assert_error(post(sup, {"path": "", "client_id": new_client_id()}), 400, "path is required")


def test_create_with_relative_path_is_400(sup):
    assert_error(post(sup, {"path": "relative/dir", "client_id": new_client_id()}), 400)


def test_create_with_path_that_is_a_file_is_400(sup, tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert_error(post(sup, {"path": str(f), "client_id": new_client_id()}), 400)


def test_create_with_path_under_a_file_is_400(sup, tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert_error(post(sup, {"path": str(f / "sub"), "client_id": new_client_id()}), 400)


def test_create_without_client_id_is_400_naming_client_id(sup, wsdir):
    assert_error(post(sup, {"path": wsdir}), 400, "client_id")


@pytest.mark.parametrize("cid", ["not-a-uuid", "", "{%s}" % "12345678-1234-4234-8234-123456789abc",
                                 "12345678-1234-4234-8234-123456789abcd"])
def test_create_with_malformed_client_id_is_400_naming_client_id(sup, wsdir, cid):
    assert_error(post(sup, {"path": wsdir, "client_id": cid}), 400, "client_id")


def test_failed_creates_leave_nothing_behind(sup, wsdir):
    post(sup, {"path": wsdir})
    post(sup, {"path": wsdir, "client_id": "nope"})
    assert sup.api.list() == []
    assert sup.workers() == []


def test_create_ignores_unknown_fields(sup, wsdir):
    r = post(sup, {"path": wsdir, "client_id": new_client_id(), "no_such_field": {"x": [1, 2]}})
    assert r.status == 200, r.describe()


def test_delete_workspace_without_client_id_is_400(sup):
    assert_error(sup.api.request("DELETE", f"/v1/workspaces/{UNKNOWN_WS}"), 400, "client_id")


def test_delete_workspace_with_malformed_client_id_is_400(sup):
    assert_error(sup.api.request("DELETE", f"/v1/workspaces/{UNKNOWN_WS}?client_id=nope"), 400,
                 "client_id")


def test_events_without_client_id_is_400_even_for_unknown_workspace(sup):
    assert_error(sup.api.request("GET", f"/v1/workspaces/{UNKNOWN_WS}/events"), 400, "client_id")


def test_events_with_malformed_client_id_is_400_even_for_unknown_workspace(sup):
    assert_error(sup.api.request("GET", f"/v1/workspaces/{UNKNOWN_WS}/events?client_id=nope"), 400,
                 "client_id")


def test_events_with_malformed_client_id_on_known_workspace_is_400(sup, wsdir):
    ws = sup.api.create(wsdir)
    assert_error(sup.api.request("GET", f"/v1/workspaces/{ws['id']}/events?client_id=nope"), 400,
                 "client_id")
    assert sup.api.workspace(ws["id"])["streams"] == 0


def test_get_unknown_workspace_is_404(sup):
    assert_error(sup.api.get(UNKNOWN_WS), 404)


def test_get_workspace_with_non_uuid_id_is_404(sup):
    assert_error(sup.api.get("not-a-workspace"), 404)


def test_events_on_unknown_workspace_with_valid_client_is_404(sup):
    cid = new_client_id()
    assert_error(sup.api.request("GET", f"/v1/workspaces/{UNKNOWN_WS}/events?client_id={cid}"), 404)


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/", "/v1/nope", "/v2/health", "/health",
                                  "/v1/workspaces/x/y/z"])
def test_unknown_path_is_404(sup, path):
    assert_error(sup.api.request("GET", path), 404)


@pytest.mark.parametrize("method,path", [
    ("PUT", "/v1/workspaces"),
    ("PATCH", "/v1/workspaces"),
    ("DELETE", "/v1/workspaces"),
    ("POST", "/v1/health"),
    ("DELETE", "/v1/version"),
    ("POST", f"/v1/workspaces/{UNKNOWN_WS}"),
    ("POST", f"/v1/workspaces/{UNKNOWN_WS}/events"),
    ("GET", "/v1/control"),
])
def test_wrong_method_on_known_path_is_405(sup, method, path):
    assert_error(sup.api.request(method, path, b"{}" if method in ("PUT", "PATCH", "POST") else None),
                 405)


def test_body_over_1_mib_is_413(sup, wsdir):
    body = b'{"path": "' + wsdir.encode() + b'", "pad": "' + b"x" * (1 << 20) + b'"}'
    head = (b"POST /v1/workspaces HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    assert_error(raw_exchange(sup.endpoint, head + body), 413)
    assert sup.api.health().status == 200


def test_body_of_exactly_1_mib_is_accepted(sup, wsdir):
    prefix = b'{"path": "' + wsdir.encode() + b'", "client_id": "' + new_client_id().encode() + b'", "pad": "'
    body = prefix + b"x" * ((1 << 20) - len(prefix) - 2) + b'"}'
    assert len(body) == 1 << 20
    r = post(sup, body)
    assert r.status == 200, r.describe()


def test_chunked_body_over_1_mib_is_413(sup, wsdir):
    body = b'{"path": "' + wsdir.encode() + b'", "pad": "' + b"x" * (1 << 20) + b'"}'
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536])
                      for i in range(0, len(body), 65536)) + b"0\r\n\r\n"
    head = (b"POST /v1/workspaces HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert_error(raw_exchange(sup.endpoint, head + chunks), 413)
    assert sup.api.health().status == 200


def test_delete_of_unknown_workspace_is_200(sup):
    r = sup.api.request("DELETE", f"/v1/workspaces/{UNKNOWN_WS}?client_id={new_client_id()}")
    assert r.status == 200, r.describe()


def test_delete_of_unknown_client_is_200_and_changes_nothing(sup, wsdir):
    ws = sup.api.create(wsdir)
    r = sup.api.request("DELETE", f"/v1/workspaces/{ws['id']}?client_id={new_client_id()}")
    assert r.status == 200, r.describe()
    got = sup.api.workspace(ws["id"])
    assert got is not None and got["clients"] == 1
    assert got["pid"] == ws["pid"]


def test_repeated_delete_is_200(sup, wsdir):
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    for _ in range(3):
        sup.api.release(ws["id"], cid)
    # The releases did release: GET /v1/workspaces/{id} answers 404 (the
    # teardown may finish after the answer; wait_gone polls, bounded).
    wait_gone(sup, ws)


def test_garbage_request_does_not_wedge_the_daemon(sup):
    # An answer is optional for bytes that are not HTTP; if one comes, it is a 4xx.
    try:
        r = raw_exchange(sup.endpoint, b"\x00\x01GARBAGE / HTTP/9.9\r\n\r\n")
    except (AssertionError, OSError):
        r = None
    assert r is None or 400 <= r.status < 500, r.describe()
    assert sup.api.health().status == 200


def test_worker_that_fails_to_start_gives_500_and_leaves_nothing(start_supervisor, wsdir):
    sup = start_supervisor(worker="/bin/false")
    r = sup.api.create_raw(wsdir, new_client_id())
    msg = assert_error(r, 500)
    assert msg.startswith("worker failed to start"), msg
    assert sup.api.list() == []
    assert sup.zombies() == []
    assert os.path.exists(sup.sock)
