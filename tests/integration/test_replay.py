"""
Resuming event streams and slow readers (README "Resuming: Last-Event-ID",
"Slow readers"): a stream opened with Last-Event-ID (header or
?last_event_id=) first gets every buffered event after that id — no gap,
no duplicate — then live ones; an id older than the replay buffer
(4096 events / 2 MiB) gets a `gap` event first; a reader that stops
reading is ended once 1 MiB is waiting for it, and gets what it missed
when it resumes. A reference stream that reads everything is the oracle.
"""

import os
import re
import time

import pytest

from crush import (WAIT, StreamDrainer, alive, is_fs, is_ws_event, new_client_id, open_events,
                   wait_until)


def write(path, text=""):
    with open(path, "w") as f:
        f.write(text)


def numbered(stream):
    """(id, data) of the stream's numbered events, in order."""
    return [(e.id, e.data) for e in stream.events if e.id is not None]


def contiguous(ids):
    return ids == list(range(ids[0], ids[0] + len(ids))) if ids else True


def after(ref, last_id, upto_pred=None):
    """ref's numbered events with id > last_id, up to and including the
    first that satisfies upto_pred."""
    out = []
    for e in ref.events:
        if e.id is None or e.id <= last_id:
            continue
        out.append((e.id, e.data))
        if upto_pred is not None and upto_pred(e):
            break
    return out


def upto(stream, pred):
    """stream's numbered events up to and including the first matching pred."""
    out = []
    for e in stream.events:
        if e.id is None:
            continue
        out.append((e.id, e.data))
        if pred(e):
            break
    return out


def created(name):
    return lambda e: is_fs(e, "created", name)


@pytest.mark.parametrize("via", ["header", "query"])
def test_resume_gets_exactly_the_missed_events_then_live_ones(sup, wsdir, via):
    a, b = new_client_id(), new_client_id()
    ws = sup.api.create(wsdir, a)
    ref = sup.api.events(ws["id"], a)  # holds the workspace while b is away
    with StreamDrainer(ref) as dref:
        sb = sup.api.events(ws["id"], b)
        for i in range(3):
            write(os.path.join(wsdir, f"seen{i}.txt"))
        sb.wait_for(created("seen2.txt"))
        dref.wait_for(created("seen2.txt"))
        sb.pump(0.1)  # and whatever else is already on its way
        last = numbered(sb)[-1][0]
        sb.close()
        wait_until(alive(sup, ws, streams=1), what="b detached")

        for i in range(5):
            write(os.path.join(wsdir, f"missed{i}.txt"))
        dref.wait_for(created("missed4.txt"))

        resumed = open_events(sup.api, ws["id"], b, last_event_id=last, via=via)
        write(os.path.join(wsdir, "live.txt"))
        resumed.wait_for(created("live.txt"), what="live event after the replay")
        dref.wait_for(created("live.txt"))
    got = upto(resumed, created("live.txt"))
    want = after(ref, last, created("live.txt"))
    assert not any(is_ws_event(e, "gap") for e in resumed.events), "gap reported while all was held"
    assert got[0][0] == last + 1, f"resumed at {got[0][0]}, want {last + 1}"
    assert contiguous([i for i, _ in got]), [i for i, _ in got]
    assert got == want, "resumed stream differs from the reference after the last seen id"
    names = [e.payload["path"] for e in resumed.events if is_fs(e, "created")]
    assert [n for n in names if n.startswith("missed")] == [f"missed{i}.txt" for i in range(5)]
    assert not any(n.startswith("seen") for n in names), f"duplicates of seen events: {names}"
    resumed.close()
    ref.close()


def test_resume_from_0_the_newest_and_a_future_id(sup, wsdir):
    a = new_client_id()
    ws = sup.api.create(wsdir, a)
    ref = sup.api.events(ws["id"], a)
    write(os.path.join(wsdir, "one.txt"))
    ref.wait_for(created("one.txt"))
    ref.pump(0.1)
    newest = numbered(ref)[-1][0]

    # From 0: everything the workspace published, starting with `ready` (id 1).
    s0 = open_events(sup.api, ws["id"], new_client_id(), last_event_id=0)
    s0.wait_for(created("one.txt"))
    first = next(e for e in s0.events if e.id is not None)
    assert first.id == 1 and is_ws_event(first, "ready"), first
    assert not any(is_ws_event(e, "gap") for e in s0.events)
    ids = [i for i, _ in numbered(s0)]
    assert contiguous(ids) and ids[-1] >= newest, ids

    # From the newest id, or one from the future: nothing replayed, live ones only.
    sn = open_events(sup.api, ws["id"], new_client_id(), last_event_id=newest)
    sf = open_events(sup.api, ws["id"], new_client_id(), last_event_id=newest + 1000, via="query")
    write(os.path.join(wsdir, "two.txt"))
    for s in (sn, sf):
        ev = s.wait_for(created("two.txt"))
        assert next(e for e in s.events if e.id is not None) is ev, \
            f"replayed something: {[e.data for e in s.events][:5]}"
        assert not any(is_ws_event(e, "gap") for e in s.events)
    for s in (s0, sn, sf, ref):
        s.close()


def test_resume_from_an_id_older_than_the_buffer_starts_with_a_gap(sup, wsdir):
    a = new_client_id()
    ws = sup.api.create(wsdir, a)
    ref = sup.api.events(ws["id"], a)
    nfiles = 2200  # created + modified each: 4400 events > the 4096 held
    with StreamDrainer(ref) as dref:
        for i in range(nfiles):
            write(os.path.join(wsdir, f"f{i:05d}"))
        write(os.path.join(wsdir, "marker"))
        dref.wait_for(lambda e: is_fs(e, "modified", "marker"), timeout=WAIT * 3,
                      what="reference saw the marker")
        assert not any(is_fs(e, "overflow") for e in ref.events), "inotify overflowed; test void"
        ref_events = numbered(ref)
        last = ref_events[-1][0]
        assert last > 4096 + 1, last

        resumed = open_events(sup.api, ws["id"], new_client_id(), last_event_id=1)
        resumed.wait_for(lambda e: e.id == last, timeout=WAIT * 2, what=f"replay up to id {last}")
        assert numbered(ref)[-1][0] == last, "events arrived during the check; test void"

    gap = resumed.events[0]
    assert is_ws_event(gap, "gap"), f"first event is not a gap: {gap.data[:300]}"
    assert gap.id is None, "the gap event carries an id line"
    assert gap.payload["workspace_id"] == ws["id"]
    held = numbered(resumed)
    ids = [i for i, _ in held]
    assert ids == list(range(last - 4095, last + 1)), \
        f"held {len(ids)} events {ids[:3]}..{ids[-3:]}, want the newest 4096 ({last - 4095}..{last})"
    assert held == [x for x in ref_events if x[0] >= last - 4095], "replayed events differ"
    assert sum(1 for e in resumed.events if is_ws_event(e, "gap")) == 1
    resumed.close()
    ref.close()


BAD_IDS = ["abc", "-1", "1.5", "12abc", "0x10", "+3", "1 2", "99999999999999999999999"]


def test_non_numeric_last_event_id_is_400(sup, wsdir):
    a, b = new_client_id(), new_client_id()
    ws = sup.api.create(wsdir, a)
    for via in ("header", "query"):
        for value in BAD_IDS:
            path = f"/v1/workspaces/{ws['id']}/events?client_id={b}"
            headers = {}
            if via == "query":
                path += "&last_event_id=" + value.replace("+", "%2B").replace(" ", "%20")
            else:
                headers["Last-Event-ID"] = value
            r = sup.api.request("GET", path, headers=headers)
            what = f"Last-Event-ID {value!r} via {via}"
            assert r.status == 400, f"{what}: {r.describe()}"
            assert r.content_type.split(";")[0].strip() == "application/json", f"{what}: {r.describe()}"
            msg = r.json().get("message")
            assert isinstance(msg, str) and msg, f"{what}: {r.describe()}"
    w = sup.api.workspace(ws["id"])
    assert (w["clients"], w["streams"]) == (1, 0), f"a refused stream left a claim: {w}"


# -- slow readers ------------------------------------------------------------

SLOW_CAP = 1 << 20


def long_sub(d):
    """A directory two 255-byte names deep: fs events under it are ~850 bytes."""
    sub = os.path.join(d, "a" * 255, "b" * 255)
    os.makedirs(sub)
    return sub


def long_name(n):
    return f"{n:06d}" + "x" * 249


def long_rel(n):
    return "a" * 255 + "/" + "b" * 255 + "/" + long_name(n)


def test_resume_after_more_than_1_mib_missed_gets_all_of_it(sup, tmp_path):
    """What a slow reader that was ended needs: the replay buffer holds
    2 MiB, so a client that missed 1.2 MiB (1400 events) gets all of it
    back, in order, then live events."""
    d = os.path.realpath(tmp_path / "ws")
    sub = long_sub(d)
    a, b = new_client_id(), new_client_id()
    ws = sup.api.create(d, a)
    ref = sup.api.events(ws["id"], a)
    with StreamDrainer(ref) as dref:
        sb = sup.api.events(ws["id"], b)
        write(os.path.join(d, "seen.txt"))
        sb.wait_for(lambda e: is_fs(e, "modified", "seen.txt"))
        dref.wait_for(lambda e: is_fs(e, "modified", "seen.txt"))
        last = numbered(sb)[-1][0]
        sb.close()
        n = 0
        while sum(len(x) for i, x in numbered(ref) if i > last) < 1.2 * SLOW_CAP:
            for _ in range(50):
                n += 1
                write(os.path.join(sub, long_name(n)))
            dref.wait_for(lambda e: is_fs(e, "modified", long_rel(n)))
        missed = after(ref, last)
        missed_bytes = sum(len(x) for _, x in missed)
        assert len(missed) < 4096 and missed_bytes < 2 * SLOW_CAP - 64 * 1024, \
            "more than the replay buffer holds; test void"

        resumed = open_events(sup.api, ws["id"], b, last_event_id=last)
        write(os.path.join(d, "live.txt"))
        dref.wait_for(created("live.txt"))
        deadline = time.monotonic() + WAIT
        while not any(is_fs(e, "created", "live.txt") for e in resumed.events):
            alive = resumed.pump(0.2)
            done = any(is_fs(e, "created", "live.txt") for e in resumed.events)
            assert alive or done, (
                f"the resumed stream was ended after {len(resumed.events)} of {len(missed)} missed "
                f"events ({missed_bytes} bytes); slow-reader log lines: "
                + " | ".join(ln for ln in sup.stderr().splitlines() if "slow reader" in ln))
            assert time.monotonic() < deadline, "the resumed stream did not catch up"
    assert not any(is_ws_event(e, "gap") for e in resumed.events)
    assert upto(resumed, created("live.txt")) == after(ref, last, created("live.txt"))
    resumed.close()
    ref.close()


def slow_reader_warning(sup, ws_id, client_id):
    for line in sup.stderr().splitlines():
        if "level=WARN" in line and "slow reader" in line and f"client_id={client_id}" in line:
            assert f"workspace_id={ws_id}" in line, line
            return line
    return None


def test_slow_reader_is_ended_others_get_everything_and_it_resumes_without_loss(sup, tmp_path):
    d = os.path.realpath(tmp_path / "ws")
    sub = long_sub(d)  # big events: ~850 bytes each, 2 per file
    fast_id, slow_id = new_client_id(), new_client_id()
    ws = sup.api.create(d, fast_id)
    fast = sup.api.events(ws["id"], fast_id)
    slow = open_events(sup.api, ws["id"], slow_id, rcvbuf=4096)  # and never read until told
    with StreamDrainer(fast) as dfast:
        n, batch, generated = 0, 40, 0
        cut = None
        while cut is None:
            for _ in range(batch):
                n += 1
                write(os.path.join(sub, long_name(n)))
            name = long_rel(n)
            dfast.wait_for(lambda e: is_fs(e, "modified", name), what=f"fast stream saw file {n}")
            generated = sum(len(e.data) for e in fast.events)
            cut = slow_reader_warning(sup, ws["id"], slow_id)
            assert generated < 6 * SLOW_CAP, \
                f"{generated} bytes published and the stalled stream was never ended"
        # Missed while away (the slow stream is already off the workspace).
        for i in range(20):
            write(os.path.join(d, f"away{i}.txt"))
        dfast.wait_for(lambda e: is_fs(e, "modified", "away19.txt"))

        # The stalled client now reads what was already sent: the server ended it.
        deadline = time.monotonic() + WAIT
        while slow.pump(0.2) and time.monotonic() < deadline:
            pass
        assert slow.eof, "the slow stream was not ended by the server"
        got = numbered(slow)
        ref = numbered(fast)
        assert got, "the slow reader received nothing"
        start = ref.index(got[0])
        assert got == ref[start:start + len(got)], "the slow stream was thinned before it was ended"
        last = got[-1][0]
        assert last < ref[-1][0]
        missed_bytes = sum(len(x) for i, x in ref if i > last)
        assert missed_bytes > SLOW_CAP * 0.9, f"only {missed_bytes} bytes missed; cap not reached?"

        # Resume with the last id it got: every missed event, in order, then live ones.
        resumed = open_events(sup.api, ws["id"], slow_id, last_event_id=last)
        write(os.path.join(d, "live.txt"))
        dfast.wait_for(created("live.txt"))
        deadline = time.monotonic() + WAIT
        while not any(is_fs(e, "created", "live.txt") for e in resumed.events):
            assert resumed.pump(0.2) or any(is_fs(e, "created", "live.txt") for e in resumed.events), (
                f"resumed stream ended after {len(resumed.events)} events "
                f"(ids {[e.id for e in resumed.events][:2]}..{[e.id for e in resumed.events][-2:]}); "
                f"{missed_bytes} bytes were missed. Log: "
                + " | ".join(ln for ln in sup.stderr().splitlines() if "slow reader" in ln))
            assert time.monotonic() < deadline, "resumed stream did not catch up"
        assert not any(is_ws_event(e, "gap") for e in resumed.events), "gap: missed events were dropped"
        assert upto(resumed, created("live.txt")) == after(fast, last, created("live.txt"))
        assert not fast.eof, "the keeping-up stream was ended"
    ids = [i for i, _ in numbered(fast)]
    assert contiguous(ids), "the keeping-up stream missed events"
    assert re.search(r"level=WARN", cut), cut
    resumed.close()
    fast.close()
    slow.close()
    assert sup.api.health().status == 200
