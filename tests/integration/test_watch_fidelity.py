"""
Watch fidelity (issue 9): a client is told whenever the worker's view of
the tree may be incomplete, and the view heals.

1. a directory moved out of the tree while the inotify queue overflowed
   keeps no watch after the rescan (writes there are not reported);
2. running out of inotify watches is said (a `watch` `incomplete` event,
   and the Workspace object's `watch` field for late joiners), the
   directories are retried as watches free up, and `complete` follows;
3. `restarted` tells clients to rescan;
4. the root going away and coming back is said (root_moved, root_gone,
   root_appeared) and the watch resumes;
5. READY does not wait for the walk of a big tree, which goes in steps:
   pings and GETs are answered meanwhile, and scan_complete says its end.

Limits are lowered only inside a private user namespace (`unshare -Ur`);
the queue is made to overflow by stopping the worker (SIGSTOP) while
events pile up, never by touching a machine-wide sysctl.
"""

import os
import shutil
import signal
import tempfile
import time

import pytest

from crush import StreamDrainer, is_event, is_fs, is_ws_event, new_client_id, stays_true, wait_until
from test_worker_trust import start_prefixed, userns_with  # noqa: F401 (fixture)


def write(path, text="x"):
    with open(path, "w") as f:
        f.write(text)


def is_watch(ev, kind=None):
    return is_event(ev, "watch", kind)


def watch_status(sup, ws_id):
    w = sup.api.workspace(ws_id)
    assert w is not None, "workspace gone"
    return w["watch"]


def walked(sup, ws_id):
    """Waits for the worker's walk to end; returns the watch status."""
    return wait_until(lambda: (lambda st: st if not st["scanning"] else None)(watch_status(sup, ws_id)),
                      what="the walk of the tree ended")


def max_queued_events():
    try:
        with open("/proc/sys/fs/inotify/max_queued_events") as f:
            n = int(f.read())
    except (OSError, ValueError):
        n = 0
    if n <= 0 or n > 100000:
        pytest.skip(f"max_queued_events {n}: too big to fill in a test")
    return n


def flood_ignored(ws_dir, n):
    """Queues n inotify events for the root's watch that the worker never
    publishes (.git is ignored): create, close-write, delete."""
    git = os.path.join(ws_dir, ".git")
    for _ in range(n // 3 + 100):
        os.close(os.open(git, os.O_CREAT | os.O_WRONLY, 0o644))
        os.unlink(git)


# --------------------------------------------------------------------------
# 1. Overflow: the rescan sweeps what it did not meet


def test_a_directory_moved_out_while_the_queue_overflowed_is_no_longer_watched(sup, make_dir):
    ws_dir, outside = make_dir("ws"), make_dir("outside")
    os.makedirs(os.path.join(ws_dir, "sub", "deeper"))
    limit = max_queued_events()
    cid = new_client_id()
    ws = sup.api.create(ws_dir, cid)
    walked(sup, ws["id"])
    stream = sup.api.events(ws["id"], cid)
    # The worker reads nothing while stopped: the queue fills, overflows,
    # and the move out is lost with the rest.
    os.kill(ws["pid"], signal.SIGSTOP)
    try:
        flood_ignored(ws_dir, limit)
        os.rename(os.path.join(ws_dir, "sub"), os.path.join(outside, "sub"))
    finally:
        os.kill(ws["pid"], signal.SIGCONT)
    ov = stream.wait_for(lambda e: is_fs(e, "overflow"), what="overflow")
    assert ov.payload.get("rescan") is True, ov.payload
    done = stream.wait_for(lambda e: is_watch(e, "scan_complete") and e.payload.get("cause") == "overflow",
                           what="the rescan ended")
    assert done.payload["watch"]["complete"] is True, done.payload
    write(os.path.join(outside, "sub", "x"))
    write(os.path.join(outside, "sub", "deeper", "y"))
    write(os.path.join(ws_dir, "marker"))
    stream.wait_for(lambda e: is_fs(e, "created", "marker"), what="marker")
    stray = [e.data for e in stream.events if is_fs(e) and e.payload["path"].startswith("sub")]
    assert stray == [], f"writes outside the tree reported inside it: {stray}"
    assert sup.api.workspace(ws["id"])["pid"] == ws["pid"]
    stream.close()


# --------------------------------------------------------------------------
# 2. Out of inotify watches: said, kept for late joiners, retried


def test_running_out_of_inotify_watches_is_said_kept_and_healed(start_prefixed, make_dir):  # noqa: F811
    # Root, its parent's guard, and 10 directories.
    sup = start_prefixed(userns_with("max_inotify_watches", 12))
    ws_dir = make_dir("ws")
    cid = new_client_id()
    ws = sup.api.create(ws_dir, cid)
    walked(sup, ws["id"])
    with StreamDrainer(sup.api.events(ws["id"], cid)) as drained:
        stream = drained.stream
        names = [f"d{i:02d}" for i in range(30)]
        for n in names:
            os.mkdir(os.path.join(ws_dir, n))
        inc = drained.wait_for(lambda e: is_watch(e, "incomplete"), what="incomplete")
        assert inc.payload["path"] in names, inc.payload
        assert "fs.inotify.max_user_watches" in inc.payload["reason"], inc.payload
        assert inc.payload["watch"]["complete"] is False, inc.payload
        assert inc.payload["watch"]["unwatched"][0] == inc.payload["path"], inc.payload

        # A late joiner reads it in the Workspace object (bounded list).
        st = wait_until(lambda: (lambda s: s if s["unwatched_count"] == 20 else None)(
            watch_status(sup, ws["id"])), what="20 directories unwatched")
        assert st["complete"] is False and st["scanning"] is False, st
        assert "fs.inotify.max_user_watches" in st["reason"], st
        assert len(st["unwatched"]) == 8 and set(st["unwatched"]) <= set(names), st
        keep = list(st["unwatched"])
        assert any("max_user_watches" in ln and "not watched" in ln for ln in sup.stderr().splitlines())

        # Every other directory goes: their watches are freed, the ones
        # left are retried and watched, and complete is said.
        for n in names:
            if n not in keep:
                os.rmdir(os.path.join(ws_dir, n))
        done = drained.wait_for(lambda e: is_watch(e, "complete"), what="complete")
        assert done.payload.get("rescan") is True, done.payload
        assert done.payload["watch"] == {"complete": True, "scanning": False, "unwatched": [],
                                         "unwatched_count": 0, "reason": ""}, done.payload
        assert watch_status(sup, ws["id"])["complete"] is True
        for n in keep:
            write(os.path.join(ws_dir, n, "f"))
        for n in keep:
            drained.wait_for(lambda e, n=n: is_fs(e, "created", f"{n}/f"), what=f"{n}/f is watched now")
    stream.close()


# --------------------------------------------------------------------------
# 3. A restart: clients are told to rescan


def test_restarted_tells_clients_to_rescan(sup, wsdir):
    cid = new_client_id()
    ws = sup.api.create(wsdir, cid)
    stream = sup.api.events(ws["id"], cid)
    os.kill(ws["pid"], signal.SIGKILL)
    write(os.path.join(wsdir, "while-down.txt"))  # no worker watches this
    restarted = stream.wait_for(lambda e: is_ws_event(e, "restarted"), what="restarted")
    assert restarted.payload.get("rescan") is True, restarted.payload
    restarting = next(e for e in stream.events if is_ws_event(e, "restarting"))
    assert "rescan" not in restarting.payload, restarting.payload
    write(os.path.join(wsdir, "after.txt"))
    stream.wait_for(lambda e: is_fs(e, "created", "after.txt"))
    stream.close()


# --------------------------------------------------------------------------
# 4. The root itself


def test_the_root_moved_away_removed_and_back_is_said(sup, tmp_path):
    ws_dir = os.path.join(os.path.realpath(tmp_path), "ws")
    os.mkdir(ws_dir)
    cid = new_client_id()
    ws = sup.api.create(ws_dir, cid)
    stream = sup.api.events(ws["id"], cid)

    os.rename(ws_dir, ws_dir + ".moved")
    moved = stream.wait_for(lambda e: is_watch(e, "root_moved"), what="root_moved")
    assert moved.payload["path"] == "" and moved.payload.get("rescan") is True, moved.payload
    write(os.path.join(ws_dir + ".moved", "elsewhere.txt"))  # not the workspace any more

    os.mkdir(ws_dir)
    stream.wait_for(lambda e: is_watch(e, "root_appeared"), what="root_appeared")
    write(os.path.join(ws_dir, "back.txt"))
    stream.wait_for(lambda e: is_fs(e, "created", "back.txt"), what="watched again")
    assert not any(is_fs(e, path="elsewhere.txt") for e in stream.events)

    shutil.rmtree(ws_dir)
    gone = stream.wait_for(lambda e: is_watch(e, "root_gone"), what="root_gone")
    assert gone.payload.get("rescan") is True, gone.payload
    os.mkdir(ws_dir)
    mark = len(stream.events)
    stream.wait_for(lambda e: is_watch(e, "root_appeared"), after=mark, what="root_appeared again")
    write(os.path.join(ws_dir, "again.txt"))
    stream.wait_for(lambda e: is_fs(e, "created", "again.txt"))
    assert [e.kind for e in stream.events if is_ws_event(e)] == [], "the worker never restarted"
    stream.close()


# --------------------------------------------------------------------------
# 5. A big tree: READY first, the walk in steps, nothing lost


BIG_DIRS, BIG_FILES = 400, 500  # 200,400 entries


@pytest.fixture
def big_tree():
    """BIG_DIRS directories of BIG_FILES empty files, on tmpfs when there
    is one (file creation on a disk is 5x slower)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    top = tempfile.mkdtemp(prefix="crush-big-", dir=base)
    root = os.path.join(os.path.realpath(top), "ws")
    os.mkdir(root)
    for i in range(BIG_DIRS):
        d = os.path.join(root, f"d{i:03d}")
        os.mkdir(d)
        for j in range(BIG_FILES):
            os.close(os.open(os.path.join(d, f"f{j:03d}"), os.O_CREAT | os.O_WRONLY, 0o644))
    yield root
    shutil.rmtree(top, ignore_errors=True)


def test_a_big_tree_is_ready_before_its_walk_which_answers_pings_meanwhile(start_supervisor, big_tree):
    # A ping every 0.1 s, each to be answered before the next; each
    # directory opened by the walk takes 10 ms more (a slow disk): the
    # walk lasts about 4 s, forty pings.
    sup = start_supervisor(env={"CRUSH_SERVER_PING_INTERVAL": "0.1", "CRUSH_TEST_WALK_DELAY_US": "10000"})
    cid = new_client_id()
    t0 = time.monotonic()
    ws = sup.api.create(big_tree, cid)
    ready_s = time.monotonic() - t0
    assert ws["state"] == "ready"
    assert ws["watch"]["scanning"] is True and ws["watch"]["complete"] is False, ws["watch"]
    assert ready_s < 2.0, f"create took {ready_s:.2f}s: READY waited for the walk?"

    with StreamDrainer(sup.api.events(ws["id"], cid)) as drained:
        stream = drained.stream
        # Changes while the walk runs: in a directory it has not reached
        # yet (reported when it gets there) and in the root (watched).
        last = os.path.join(big_tree, f"d{BIG_DIRS - 1:03d}")
        new_dir = os.path.join(big_tree, "during")
        write(os.path.join(last, "new-in-last"))
        os.mkdir(new_dir)
        write(os.path.join(new_dir, "inside"))
        write(os.path.join(big_tree, "top"))

        # GETs stay fast and the worker stays the same while it walks.
        worst, gets, scanning_seen = 0.0, 0, 0
        while True:
            t = time.monotonic()
            w = sup.api.workspace(ws["id"])
            worst = max(worst, time.monotonic() - t)
            gets += 1
            assert w["pid"] == ws["pid"], "the worker was replaced during its walk (missed a ping?)"
            if not w["watch"]["scanning"]:
                break
            scanning_seen += 1
            assert time.monotonic() - t0 < 60, "the walk did not end within 60 s"
            time.sleep(0.05)
        assert scanning_seen >= 5, f"the walk was over too soon to prove anything ({scanning_seen} GETs)"
        assert worst < 1.0, f"a GET took {worst:.2f}s during the walk"

        done = drained.wait_for(lambda e: is_watch(e, "scan_complete"), what="scan_complete")
        assert done.payload["cause"] == "start", done.payload
        assert done.payload["dirs"] >= BIG_DIRS + 1, done.payload
        assert done.payload["ms"] > 0, done.payload
        assert done.payload["watch"]["complete"] is True, done.payload
        ready_ev = [e for e in stream.events if is_ws_event(e)]
        assert ready_ev == [], f"workspace events during the walk: {[e.data for e in ready_ev]}"

        write(os.path.join(big_tree, "marker"))
        drained.wait_for(lambda e: is_fs(e, "created", "marker"), what="marker")

        def count(path):
            return sum(1 for e in stream.events if is_fs(e, "created", path))

        for p in ("d399/new-in-last", "during", "top"):
            assert count(p) == 1, f"created {p} reported {count(p)} times"
        # Made just after its directory: by the listing that announces the
        # directory's contents, by its own event, or (a race as old as the
        # watch) by both.
        assert count("during/inside") >= 1
        # Nothing that was there before READY is reported.
        old = [e.payload["path"] for e in stream.events
               if is_fs(e) and os.path.basename(e.payload["path"]).startswith("f")]
        assert old == [], f"pre-existing entries reported: {old[:5]}"
    assert not sup.zombies()
    stays_true(lambda: sup.api.workspace(ws["id"])["pid"] == ws["pid"], 0.3)
