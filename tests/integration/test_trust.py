"""
Issue 8 ("trust boundary"): what a client or the filesystem sends can
neither crash the daemon nor keep it from serving others. Each test names
the finding it proves fixed.
"""

import os
import time

import crush

# ---- finding 3: filesystem bytes are made valid UTF-8 before JSON


def test_a_directory_whose_real_name_is_not_utf8_is_served_not_fatal(sup, tmp_path):
    """mkdir $'bad\\xff'; ln -s $'bad\\xff' ln; create on .../ln: the
    resolved path is not UTF-8. The daemon used to abort() in json_dumps,
    taking every workspace and leaving its socket file behind."""
    base = os.path.realpath(tmp_path)
    bad = os.path.join(os.fsencode(base), b"bad\xff")
    os.mkdir(bad)
    os.symlink(b"bad\xff", os.path.join(os.fsencode(base), b"ln"))
    other = sup.api.create(os.path.join(base, "ln") + "/..")  # a healthy neighbour first
    cid = crush.new_client_id()
    ws = sup.api.create(os.path.join(base, "ln"), cid)
    assert ws["resolved_path"] == base + "/bad\ufffd"
    assert ws["data_dir"] == base + "/bad\ufffd/.crush"
    assert ws["path"] == os.path.join(base, "ln")
    listed = {w["id"]: w for w in sup.api.list()}
    assert listed[ws["id"]]["resolved_path"] == base + "/bad\ufffd"
    assert other["id"] in listed
    assert sup.api.health().status == 200
    sup.api.release(ws["id"], cid)  # "Workspace closing" logs the resolved path
    crush.wait_until(lambda: "Workspace closing" in sup.stderr(), what="the closing line")
    # Logs escape the byte as slog does (strconv.Quote): \xff, never raw.
    log = sup.stderr_path.read_bytes()
    assert b"bad\\xff" in log
    assert b"bad\xff" not in log


# ---- finding 7: the create grace counts from the answer


def test_a_start_slower_than_the_create_grace_answers_a_held_workspace(start_supervisor, wsdir, tmp_path):
    """A worker that takes longer to start than the create grace: the
    create used to answer 200 with "clients":0 and tear the workspace down
    right after. The creator's grace starts at its answer."""
    slow = tmp_path / "slow-worker"
    slow.write_text(f"#!/bin/sh\nsleep 1.5\nexec {crush.WORKER} \"$@\"\n")
    slow.chmod(0o755)
    sup = start_supervisor(worker=str(slow), create_grace=0.5)
    cid = crush.new_client_id()
    ws = sup.api.create(wsdir, cid)
    assert ws["state"] == "ready"
    assert ws["clients"] == 1
    # Still there a little later (within its grace after the answer)...
    time.sleep(0.2)
    assert sup.api.workspace(ws["id"]) is not None
    # ...and a stream can attach and holds it past the grace.
    with sup.api.events(ws["id"], cid):
        crush.stays_true(lambda: sup.api.workspace(ws["id"]) is not None, 0.8,
                         what="the attached workspace stays")


# ---- finding 7: a huge field is not logged whole


def test_a_huge_version_field_is_not_logged_whole(sup, wsdir):
    big = "v" * 900_000
    sup.api.create(wsdir, version=big)
    log = sup.stderr()
    assert "Client and server versions differ" in log
    assert big[:1000] not in log
    assert "\u2026" in log  # the cut marker


# ---- finding 5: path resolution never blocks the loop


def test_a_create_resolving_a_slow_path_does_not_stall_other_clients(start_supervisor, wsdir, make_dir):
    """realpath/stat of a client-chosen path ran inside the request
    handler, so a path on a hung mount froze every client, stream, ping and
    reap. CRUSH_TEST_RESOLVE_DELAY_MS (test-only) makes every resolution
    take 3 s, as a slow mount would."""
    import threading
    sup = start_supervisor(env={"CRUSH_TEST_RESOLVE_DELAY_MS": "3000"})
    ready = sup.api.create(make_dir("first"))  # pays the delay once
    cid = crush.new_client_id()
    done = {}

    def slow_create():
        done["r"] = sup.api.create_raw(wsdir, cid)
    t = threading.Thread(target=slow_create)
    t.start()
    try:
        # While that create resolves, the loop answers everyone else.
        with sup.api.events(ready["id"], crush.new_client_id()) as ev:
            for _ in range(5):
                assert sup.api.health().status == 200
                assert sup.api.workspace(ready["id"])["state"] == "ready"
            assert ev.status == 200
        assert "r" not in done, "the slow create was answered before the others"
    finally:
        t.join(10)
    assert done["r"].status == 200, done["r"].describe()


# ---- finding 6: limits


def test_a_client_gets_429_past_64_streams_and_others_are_still_served(sup, wsdir):
    ws = sup.api.create(wsdir)
    greedy = crush.new_client_id()
    streams = []
    try:
        for _ in range(64):
            streams.append(sup.api.events(ws["id"], greedy))
        r = crush.EventStream(sup.endpoint, ws["id"], greedy)
        try:
            assert r.status == 429
        finally:
            r.close()
        with sup.api.events(ws["id"], crush.new_client_id()) as other:
            assert other.status == 200
        assert "limit=client_streams" in sup.stderr()
    finally:
        for s in streams:
            s.close()


def test_a_slow_readers_connection_is_closed_not_just_its_response(sup, tmp_path):
    """A stream ended as a slow reader kept its last in-flight batch
    (about 1.25 MiB per HTTP/1.1 stream) for as long as the client kept
    the connection open. Now the connection itself is closed."""
    import socket
    from test_replay import long_name, long_rel, long_sub, slow_reader_warning
    d = os.path.realpath(tmp_path / "ws")
    sub = long_sub(d)
    fast_id, slow_id = crush.new_client_id(), crush.new_client_id()
    ws = sup.api.create(d, fast_id)
    fast = sup.api.events(ws["id"], fast_id)
    slow = crush.open_events(sup.api, ws["id"], slow_id, rcvbuf=4096)
    try:
        with crush.StreamDrainer(fast) as dfast:
            n = 0
            while slow_reader_warning(sup, ws["id"], slow_id) is None:
                for _ in range(40):
                    n += 1
                    with open(os.path.join(sub, long_name(n)), "w") as f:
                        f.write("x")
                name = long_rel(n)
                dfast.wait_for(lambda e: crush.is_fs(e, "modified", name))
                assert n < 20000, "the stalled stream was never ended"
        # Read the raw socket: it must reach EOF (closed), not stay open
        # until h2o's 10 s keep-alive timeout would close an idle one.
        slow.sock.settimeout(5)
        got = 0
        while True:
            try:
                chunk = slow.sock.recv(1 << 16)
            except socket.timeout:
                raise AssertionError(f"the slow reader's connection stayed open ({got} bytes read)")
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += len(chunk)
    finally:
        slow.close()
        fast.close()
    assert sup.api.health().status == 200
