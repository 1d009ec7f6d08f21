"""
Workspace lifetime (SPEC §4 client claims, §5 server lifetime): create
holds, stream attach/detach, release, detach grace, teardown, idle exit.
Timings are fractions of a second; every wait is a bounded poll, and
stays_true() is used only to prove that something does NOT happen. The
`claim` fixture is the usual start: a client creates a workspace, opens a
stream on it and, with release=True, releases its create claim.
"""

import os
import time

from crush import Race, alive, new_client_id, pid_live, run_apart, stays_true, wait_gone, wait_until


def test_unattached_workspace_is_torn_down_after_create_grace(start_supervisor, wsdir):
    sup = start_supervisor(create_grace=0.3)
    ws = sup.api.create(wsdir)
    wait_gone(sup, ws)
    assert sup.zombies() == []
    assert sup.running()
    assert sup.api.list() == []


def test_supervisor_exits_0_and_removes_socket_after_last_workspace(start_supervisor, wsdir):
    sup = start_supervisor(create_grace=0.3, idle_timeout=0)
    ws = sup.api.create(wsdir)
    sup.assert_exit_0()
    assert not os.path.exists(sup.sock), "socket file left behind"
    assert not pid_live(ws["pid"])


def test_supervisor_waits_for_its_first_workspace_even_with_zero_idle_timeout(start_supervisor):
    sup = start_supervisor(idle_timeout=0)
    stays_true(sup.running, 0.5, what="supervisor still running with no workspace yet")
    assert sup.api.health().status == 200


def test_supervisor_exit_waits_for_the_idle_timeout(start_supervisor, wsdir):
    sup = start_supervisor(create_grace=0.2, idle_timeout=1.5)
    sup.api.create(wsdir)
    wait_until(lambda: sup.api.list() == [], what="workspace expired")
    t0 = time.monotonic()  # at or after the teardown: elapsed is a lower bound
    sup.assert_exit_0()
    assert time.monotonic() - t0 >= 1.0, "exited before the 1.5s idle timeout"
    assert not os.path.exists(sup.sock)


def test_create_during_idle_window_cancels_the_exit(start_supervisor, make_dir, claim):
    sup = start_supervisor(create_grace=0.5, idle_timeout=1.0)
    sup.api.create(make_dir("a"))
    wait_until(lambda: sup.api.list() == [], what="first workspace expired")
    b = claim(sup, make_dir("b"))
    stays_true(sup.running, 1.5, what="supervisor alive past the idle timeout with a live workspace")
    assert alive(sup, b.ws)()
    b.close()
    sup.assert_exit_0()


def test_attached_stream_keeps_workspace_alive_past_create_grace(start_supervisor, wsdir, claim):
    sup = start_supervisor(create_grace=0.3, detach_grace=0)
    c = claim(sup, wsdir)
    stays_true(alive(sup, c.ws, streams=1, clients=1), 0.9)
    c.close()
    wait_gone(sup, c.ws)


def test_closing_the_last_stream_tears_down_with_zero_detach_grace(start_supervisor, wsdir, claim):
    sup = start_supervisor(create_grace=30, detach_grace=0)
    c = claim(sup, wsdir)
    wait_until(alive(sup, c.ws, streams=1))
    c.close()
    wait_gone(sup, c.ws)


def test_release_while_streaming_keeps_workspace_until_the_stream_closes(start_supervisor, wsdir, claim):
    sup = start_supervisor(create_grace=0.3, detach_grace=0)
    c = claim(sup, wsdir, release=True)
    stays_true(alive(sup, c.ws, streams=1, clients=1), 0.6)
    assert c.stream.pump(0.05), "the release ended the client's stream"
    c.close()
    wait_gone(sup, c.ws)


def test_release_without_streams_tears_down_at_once(sup, wsdir, claim):
    c = claim(sup, wsdir, attach=False, release=True)
    wait_gone(sup, c.ws)


def test_two_clients_one_leaves_the_other_keeps_the_workspace(start_supervisor, wsdir, claim):
    sup = start_supervisor(create_grace=0.3, detach_grace=0)
    a = claim(sup, wsdir)
    b = claim(sup, wsdir)
    ws = a.ws
    assert b.ws["id"] == ws["id"]
    wait_until(alive(sup, ws, streams=2, clients=2))
    a.close()
    a.release()
    wait_until(alive(sup, ws, streams=1, clients=1))
    stays_true(alive(sup, ws, streams=1, clients=1), 0.6)
    assert b.stream.pump(0.05), "the remaining client's stream was ended"
    b.close()
    wait_gone(sup, ws)


def test_two_streams_of_one_client_are_counted(start_supervisor, wsdir, claim):
    sup = start_supervisor(create_grace=0.3, detach_grace=0)
    c = claim(sup, wsdir)
    ws, s1, s2 = c.ws, c.stream, c.attach()
    wait_until(alive(sup, ws, streams=2, clients=1))
    s1.close()
    wait_until(alive(sup, ws, streams=1, clients=1))
    stays_true(alive(sup, ws, streams=1, clients=1), 0.5)
    s2.close()
    wait_gone(sup, ws)


def test_attach_without_create_registers_the_client(sup, wsdir, claim):
    ws = claim(sup, wsdir, attach=False).ws
    sb = sup.api.events(ws["id"], new_client_id())
    wait_until(alive(sup, ws, streams=1, clients=2))
    sb.close()
    wait_until(alive(sup, ws, streams=0, clients=1))


def test_detach_grace_keeps_workspace_for_the_reconnect_window(start_supervisor, wsdir, claim):
    sup = start_supervisor(create_grace=0.2, detach_grace=1.0)
    c = claim(sup, wsdir)
    ws = c.ws
    wait_until(alive(sup, ws, streams=1))
    t0 = time.monotonic()
    c.close()
    wait_until(alive(sup, ws, streams=0, clients=1), what="detached, held by the detach grace")
    wait_gone(sup, ws)
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.8, f"torn down {elapsed:.2f}s after the detach; the window is 1.0s"


def test_reattach_within_detach_grace_keeps_the_workspace(start_supervisor, wsdir, claim):
    sup = start_supervisor(create_grace=0.2, detach_grace=0.8)
    c = claim(sup, wsdir)
    ws = c.ws
    wait_until(alive(sup, ws, streams=1))
    c.close()
    wait_until(alive(sup, ws, streams=0, clients=1))
    again = c.attach()
    stays_true(alive(sup, ws, streams=1, clients=1), 1.2, what="reattached workspace outlives the window")
    again.close()
    wait_gone(sup, ws)


def test_release_skips_the_detach_grace(start_supervisor, wsdir, claim):
    sup = start_supervisor(create_grace=0.2, detach_grace=5)
    c = claim(sup, wsdir, release=True)
    ws = c.ws
    wait_until(alive(sup, ws, streams=1))
    c.close()
    wait_until(lambda: sup.api.workspace(ws["id"]) is None, 2.5,
               what="released client's last detach removes it at once, not after the 5s grace")


def test_create_again_rearms_the_create_grace(start_supervisor, wsdir):
    # First hold ends at >= t0+1.5; re-armed at >= t0+0.4 it ends at >= t0+1.9.
    # Alive throughout [t0+0.4, t0+1.65] proves the re-arm.
    sup = start_supervisor(create_grace=1.5)
    cid = new_client_id()
    t0 = time.monotonic()
    ws = sup.api.create(wsdir, cid)
    wait_until(lambda: time.monotonic() - t0 >= 0.4, interval=0.01)
    assert sup.api.create(wsdir, cid)["id"] == ws["id"]
    stays_true(alive(sup, ws, clients=1), max(0.0, 1.65 - (time.monotonic() - t0)),
               what="hold re-armed by the second create")
    wait_gone(sup, ws)


def test_recreate_after_teardown_gets_a_new_workspace_and_worker(sup, wsdir, claim):
    c = claim(sup, wsdir, attach=False, release=True)
    a = c.ws
    wait_gone(sup, a)
    b = sup.api.create(wsdir, c.cid)
    assert b["id"] != a["id"]
    assert b["pid"] != a["pid"]
    assert b["clients"] == 1
    assert pid_live(b["pid"])


def test_attach_after_teardown_is_404(sup, wsdir, claim):
    c = claim(sup, wsdir, attach=False, release=True)
    ws = c.ws
    wait_gone(sup, ws)
    r = sup.api.request("GET", f"/v1/workspaces/{ws['id']}/events?client_id={c.cid}")
    assert r.status == 404, r.describe()
    assert sup.api.list() == []


def test_attach_racing_teardown_ends_whole(start_supervisor, make_dir, claim):
    """The seed's AttachClient-vs-teardown race, from outside: the attach
    either wins (live workspace with that client) or gets 404 (gone, with
    nothing of that client left). The attach starts `delay` seconds before
    a's last stream closes (after, when negative); the Race steers that
    delay around the point where either can win, and both must occur."""
    sup = start_supervisor(create_grace=30, detach_grace=0)
    race = Race(early="refused", late="attached", n=10, start=0.0, step=0.0005, lo=-0.1, hi=0.1)
    for i, delay in enumerate(race):
        a = claim(sup, make_dir(f"race{i}"), release=True)  # a's stream is now its only claim
        ws, b = a.ws, new_client_id()

        def attach():
            try:
                return sup.api.events(ws["id"], b)
            except AssertionError as e:
                return str(e)

        got = run_apart(attach, a.close, delay)
        if not isinstance(got, str):
            race.record("attached")
            w = wait_until(alive(sup, ws, streams=1, clients=1),
                           what="attach won: workspace alive with only b in it")
            assert w["pid"] == ws["pid"]
            assert got.pump(0.05), "attach won but its stream was ended"
            got.close()
            wait_gone(sup, ws)
        else:
            race.record("refused")
            assert "404" in got, got
            wait_gone(sup, ws)
    race.assert_covered()
    assert sup.api.list() == []
    assert sup.zombies() == []


def test_attach_racing_hold_expiry_ends_whole(start_supervisor, make_dir, claim):
    """The attach comes `delay` seconds after the create's answer, around
    the 0.2 s create grace: it either wins (the stream holds the workspace,
    same worker) or gets 404 (expired). The Race steers the delay around the
    expiry, and both must occur."""
    sup = start_supervisor(create_grace=0.2, detach_grace=0)
    race = Race(early="attached", late="refused", n=8, start=0.2, step=0.01, lo=0.0, hi=0.6)
    for i, delay in enumerate(race):
        c = claim(sup, make_dir(f"exp{i}"), attach=False)
        ws = c.ws
        time.sleep(delay)
        s = None
        try:
            s = c.attach()
        except AssertionError as e:
            assert "404" in str(e), e
        if s is not None:
            race.record("attached")
            w = wait_until(alive(sup, ws, streams=1, clients=1))
            stays_true(alive(sup, ws, streams=1, clients=1), 0.3)
            assert w["pid"] == ws["pid"]
            s.close()
        else:
            race.record("refused")
        wait_gone(sup, ws)
    race.assert_covered()
    assert sup.zombies() == []


# -- upstream-later: retire a client, shutdown_if_idle ----------------------


def test_retire_client_removes_its_claims_everywhere(sup, make_dir):
    a, b = new_client_id(), new_client_id()
    one = sup.api.create(make_dir("one"), a)
    two = sup.api.create(make_dir("two"), a)
    sup.api.create(make_dir("two"), b)
    r = sup.api.request("DELETE", f"/v1/clients/{a}")
    assert r.status == 200, r.describe()
    wait_gone(sup, one)
    assert alive(sup, two, clients=1)()


def test_retired_client_cannot_create_again(sup, wsdir):
    a = new_client_id()
    sup.api.create(wsdir, a)
    assert sup.api.request("DELETE", f"/v1/clients/{a}").status == 200
    r = sup.api.create_raw(wsdir, a)
    assert r.status == 409, r.describe()
    assert isinstance(r.json().get("message"), str)


def test_retire_client_with_malformed_id_is_400(sup):
    r = sup.api.request("DELETE", "/v1/clients/not-a-uuid")
    assert r.status == 400, r.describe()
    assert "message" in r.json()


def test_shutdown_if_idle_is_refused_while_a_workspace_lives(sup, wsdir):
    sup.api.create(wsdir)
    r = sup.api.request("POST", "/v1/control", {"command": "shutdown_if_idle"})
    assert r.status == 409, r.describe()
    assert "message" in r.json()
    assert sup.running() and sup.api.health().status == 200


def test_shutdown_if_idle_stops_an_idle_supervisor(sup):
    r = sup.api.request("POST", "/v1/control", {"command": "shutdown_if_idle"})
    assert r.status == 200, r.describe()
    sup.assert_exit_0()
    assert not os.path.exists(sup.sock)


def test_unknown_control_command_is_400(sup):
    r = sup.api.request("POST", "/v1/control", {"command": "make_coffee"})
    assert r.status == 400, r.describe()
    assert "message" in r.json()
