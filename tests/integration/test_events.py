"""
Event streams (SPEC §4 "Event stream", §6 watching): SSE framing, headers
flushed at once, fs events from the worker's inotify watch reaching every
stream of a workspace in one order.
"""

import os
import signal
import socket
import threading
import time

from crush import is_fs, is_ws_event, new_client_id, ready_with, wait_until


def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)


def test_quiet_stream_gets_its_response_headers_at_once(sup, wsdir):
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    t0 = time.monotonic()
    stream = sup.api.events(ws["id"], cid, header_timeout=2.0)
    assert time.monotonic() - t0 < 2.0
    assert stream.status == 200
    assert stream.content_type.split(";")[0].strip() == "text/event-stream", stream.headers
    stream.close()


def test_listing_reflects_attached_clients_and_streams(sup, wsdir):
    a, b = new_client_id(), new_client_id()
    ws = sup.api.create(wsdir, a)
    s1 = sup.api.events(ws["id"], a)
    s2 = sup.api.events(ws["id"], a)
    s3 = sup.api.events(ws["id"], b)

    def counts():
        w = next((w for w in sup.api.list() if w["id"] == ws["id"]), None)
        return w and (w["clients"], w["streams"])

    wait_until(lambda: counts() == (2, 3), what="listing shows clients=2 streams=3")
    assert sup.api.workspace(ws["id"])["streams"] == 3
    s3.close()
    wait_until(lambda: counts() == (1, 2), what="listing shows clients=1 streams=2 after b left")
    s1.close()
    wait_until(lambda: counts() == (1, 1))
    s2.close()


def test_fs_events_reach_every_stream_in_the_same_order(sup, wsdir):
    cids = [new_client_id() for _ in range(3)]
    ws = sup.api.create(wsdir, cids[0])
    for c in cids[1:]:
        assert sup.api.create(wsdir, c)["id"] == ws["id"]
    streams = [sup.api.events(ws["id"], c) for c in cids]
    first = streams[0]

    def step(action, kind, path):
        mark = len(first.events)
        action()
        return first.wait_for(lambda e: is_fs(e, kind, path), after=mark,
                              what=f"fs {kind} {path}")

    a, b = os.path.join(wsdir, "a.txt"), os.path.join(wsdir, "b.txt")
    created = step(lambda: write(a, "hello"), "created", "a.txt")
    assert created.payload.get("is_dir") is False
    step(lambda: write(a, " world", "a"), "modified", "a.txt")
    renamed = step(lambda: os.rename(a, b), "renamed", "b.txt")
    assert renamed.payload.get("from") == "a.txt", renamed.payload
    sub = step(lambda: os.mkdir(os.path.join(wsdir, "sub")), "created", "sub")
    assert sub.payload.get("is_dir") is True, sub.payload
    step(lambda: write(os.path.join(wsdir, "sub", "c.txt"), "c"), "created", "sub/c.txt")
    step(lambda: os.unlink(b), "deleted", "b.txt")
    step(lambda: write(os.path.join(wsdir, "done.txt"), ""), "created", "done.txt")

    slices = []
    for i, s in enumerate(streams):
        s.wait_for(lambda e: is_fs(e, "created", "done.txt"), what=f"stream {i} saw done.txt")
        ids = [e.id for e in s.events]
        assert all(isinstance(x, int) for x in ids), f"stream {i}: non-integer ids {ids}"
        assert ids == sorted(set(ids)), f"stream {i}: ids not strictly increasing: {ids}"
        start = next(k for k, e in enumerate(s.events) if is_fs(e, "created", "a.txt"))
        end = next(k for k, e in enumerate(s.events) if is_fs(e, "created", "done.txt"))
        slices.append([(e.id, e.data) for e in s.events[start:end + 1]])
    assert slices[1] == slices[0], "stream 1 differs from stream 0"
    assert slices[2] == slices[0], "stream 2 differs from stream 0"

    expected = [("created", "a.txt"), ("modified", "a.txt"), ("renamed", "b.txt"), ("created", "sub"),
                ("created", "sub/c.txt"), ("deleted", "b.txt"), ("created", "done.txt")]
    seen = [(e.kind, e.payload["path"]) for e in first.events if is_fs(e)]
    it = iter(seen)
    assert all(x in it for x in expected), f"expected subsequence {expected} in {seen}"
    for s in streams:
        s.close()


def test_event_frames_are_id_then_one_line_json_data(sup, wsdir):
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    stream = sup.api.events(ws["id"], cid)
    write(os.path.join(wsdir, "x.txt"), "x")
    ev = stream.wait_for(lambda e: is_fs(e, "created", "x.txt"))
    assert isinstance(ev.id, int), ev
    assert "\n" not in ev.data
    # Upstream's nested envelope: {"type","payload":{"type","payload":{...}}}.
    assert set(ev.json) == {"type", "payload"}, ev.json
    assert set(ev.json["payload"]) == {"type", "payload"}, ev.json
    assert ev.json["payload"]["type"] == "created", ev.json
    assert ev.payload == {"path": "x.txt", "is_dir": False}, ev.json
    stream.close()


def test_streams_see_only_events_after_they_attached_but_then_all_of_them(sup, wsdir):
    a, b = new_client_id(), new_client_id()
    ws = sup.api.create(wsdir, a)
    sa = sup.api.events(ws["id"], a)
    write(os.path.join(wsdir, "early.txt"), "")
    # Both of early.txt's events (created, then modified at close) are
    # out before b attaches: on a loaded machine the second one lagged.
    sa.wait_for(lambda e: is_fs(e, "modified", "early.txt"))
    sb = sup.api.events(ws["id"], b)
    write(os.path.join(wsdir, "late.txt"), "")
    late_a = sa.wait_for(lambda e: is_fs(e, "created", "late.txt"))
    late_b = sb.wait_for(lambda e: is_fs(e, "created", "late.txt"))
    assert (late_a.id, late_a.data) == (late_b.id, late_b.data)
    assert not any(is_fs(e, path="early.txt") for e in sb.events), "b saw an event from before it attached"
    sa.close()
    sb.close()


def test_git_and_data_dir_changes_are_not_published(sup, wsdir):
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    stream = sup.api.events(ws["id"], cid)
    os.makedirs(os.path.join(wsdir, ".git", "objects"), exist_ok=True)
    write(os.path.join(wsdir, ".git", "objects", "x"), "x")
    os.makedirs(ws["data_dir"], exist_ok=True)
    write(os.path.join(ws["data_dir"], "db"), "x")
    # Give the worker a moment to (wrongly) publish, then a marker.
    write(os.path.join(wsdir, "marker.txt"), "")
    stream.wait_for(lambda e: is_fs(e, "created", "marker.txt"))
    write(os.path.join(wsdir, "marker2.txt"), "")
    stream.wait_for(lambda e: is_fs(e, "created", "marker2.txt"))
    leaked = [e.payload["path"] for e in stream.fs_events()
              if e.payload.get("path", "").split("/")[0] in (".git", ".crush")]
    assert leaked == [], f"events published for ignored paths: {leaked}"
    stream.close()


def test_files_in_a_new_subdirectory_are_watched(sup, wsdir):
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    stream = sup.api.events(ws["id"], cid)
    os.makedirs(os.path.join(wsdir, "p", "q"))
    stream.wait_for(lambda e: is_fs(e, "created", "p"))
    # Whether or not the worker saw p/q being created, files in it are watched.
    deadline = time.monotonic() + 5
    n = 0
    while True:
        n += 1
        write(os.path.join(wsdir, "p", "q", f"f{n}.txt"), "")
        try:
            stream.wait_for(lambda e: is_fs(e, "created") and e.payload["path"].startswith("p/q/f"),
                            timeout=0.5)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    stream.close()


def test_directory_created_after_the_workspace_is_watched_when_it_appears(sup, tmp_path):
    d = os.path.join(os.path.realpath(tmp_path), "later")
    cid = new_client_id()
    ws = sup.api.create(d, cid)
    assert ws["resolved_path"] == d
    stream = sup.api.events(ws["id"], cid)
    os.mkdir(d)
    # The worker may need a moment to notice the directory: keep touching.
    n = 0
    deadline = time.monotonic() + 8
    while True:
        n += 1
        write(os.path.join(d, f"f{n}.txt"), "")
        try:
            ev = stream.wait_for(lambda e: is_fs(e, "created") and e.payload["path"].startswith("f"),
                                 timeout=0.5)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    assert "/" not in ev.payload["path"], ev.payload
    stream.close()


def test_streams_end_when_the_workspace_is_retired(sup, wsdir):
    a = new_client_id()
    ws = sup.api.create(wsdir, a)
    stream = sup.api.events(ws["id"], a)
    assert sup.api.request("DELETE", f"/v1/clients/{a}").status == 200
    assert stream.wait_eof(), "stream not ended after its only client was retired"


def test_an_http1_stream_the_server_ends_sends_its_last_chunk_and_closes(sup, wsdir):
    """Over HTTP/1.1 the daemon serves a stream on the connection itself
    once the head is out (docs/events.md): a chunked 200, and a stream the
    server ends sends its last chunk and then closes the connection."""
    a = new_client_id()
    ws = sup.api.create(wsdir, a)
    stream = sup.api.events(ws["id"], a)
    assert stream.status == 200 and stream.headers.get("transfer-encoding") == "chunked", stream.headers
    assert sup.api.request("DELETE", f"/v1/clients/{a}").status == 200
    ended = stream.wait_for(lambda e: e.type == "stream", what="the stream's last event")
    assert ended.kind == "ended" and ended.payload["reason"] == "retired", ended.payload
    assert stream.wait_eof(), "no last chunk"
    stream.sock.settimeout(10)
    assert stream.sock.recv(65536) == b"", "the connection stays open after the last chunk"
    stream.close()


def test_what_a_client_sends_on_its_stream_is_dropped_and_64_kib_end_it(sup, wsdir):
    """A client has nothing to say on an event stream: bytes it sends are
    dropped and the stream goes on; 64 KiB of them end it (and its claim),
    so a client cannot make the daemon hold its input."""
    a, b = new_client_id(), new_client_id()
    ws = sup.api.create(wsdir, a)
    keep = sup.api.events(ws["id"], a)  # holds the workspace
    stream = sup.api.events(ws["id"], b)
    stream.sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 1024)
    write(os.path.join(wsdir, "after-junk.txt"), "x")
    stream.wait_for(lambda e: is_fs(e, path="after-junk.txt"), what="an event after the junk")
    assert b"HTTP/1.1" not in stream._raw, "the junk was answered as a request"
    stream.sock.sendall(b"x" * 65536)
    assert stream.wait_eof(), "64 KiB sent on a stream did not end it"
    wait_until(lambda: sup.api.workspace(ws["id"])["streams"] == 1, what="the stream's claim gone")
    keep.close()
    stream.close()


def test_a_stream_that_cannot_keep_up_is_ended_never_thinned(sup, wsdir):
    """A reader that stalls either gets every event or is cut off: what it
    did get is one gap-free run of what a keeping-up stream saw."""
    a, b = new_client_id(), new_client_id()
    ws = sup.api.create(wsdir, a)
    fast = sup.api.events(ws["id"], a)
    slow = sup.api.events(ws["id"], b)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stop = threading.Event()

    def drain():
        while not stop.is_set() and fast.pump(0.05):
            pass

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    names = [os.path.join(wsdir, f"f{i:05d}.txt") for i in range(6000)]
    for n in names:
        write(n, "")
    for n in names:
        os.unlink(n)
    write(os.path.join(wsdir, "marker.txt"), "")
    wait_until(lambda: any(is_fs(e, "created", "marker.txt") for e in fast.events), timeout=30,
               what="keeping-up stream saw the marker")
    stop.set()
    t.join()
    # Now let the slow reader catch up (or find it was ended).
    deadline = time.monotonic() + 30
    while not slow.eof and time.monotonic() < deadline:
        if any(is_fs(e, "created", "marker.txt") for e in slow.events):
            break
        slow.pump(0.2)
    got = [(e.id, e.data) for e in slow.events]
    ref = [(e.id, e.data) for e in fast.events]
    assert got, "the slow stream received nothing at all"
    start = ref.index(got[0]) if got[0] in ref else -1
    assert start >= 0, f"slow stream's first event {got[0]} never reached the fast stream"
    assert got == ref[start:start + len(got)], "the slow stream was thinned (events missing in the middle)"
    # Either it was ended, or it caught up: what it got runs to the marker.
    marker_seen = any(is_fs(e, "created", "marker.txt") for e in slow.events)
    assert slow.eof or marker_seen, \
        f"the slow stream was neither ended nor caught up to the marker in 30 s (last {got[-1]})"
    fast.close()
    slow.close()
    assert sup.api.health().status == 200


def test_crashed_worker_is_restarted_and_streams_are_told(sup, wsdir):
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    stream = sup.api.events(ws["id"], cid)
    os.kill(ws["pid"], signal.SIGKILL)

    def ws_event(kind):
        return lambda e: is_ws_event(e, kind)

    restarting = stream.wait_for(ws_event("restarting"))
    restarted = stream.wait_for(ws_event("restarted"))
    assert restarting.payload.get("workspace_id") == ws["id"]
    assert restarted.payload.get("workspace_id") == ws["id"]
    assert restarted.id > restarting.id
    newpid = restarted.payload.get("pid")
    assert newpid and newpid != ws["pid"]

    assert wait_until(ready_with(sup, ws["id"]), what="workspace ready after the restart")["pid"] == newpid
    # And it still publishes fs events on the same stream.
    write(os.path.join(wsdir, "after.txt"), "")
    stream.wait_for(lambda e: is_fs(e, "created", "after.txt"))
    stream.close()
