"""
Operators (SPEC §9, issue 14): GET /v1/metrics read by Prometheus' own
parser, crushctl, socket activation, make install, man pages, the API
documents.
"""

import os
import signal

import pytest

from crush import is_fs, new_client_id, wait_until

prometheus_parser = pytest.importorskip("prometheus_client.parser")


# --------------------------------------------------------------------------
# GET /v1/metrics


def scrape(api):
    """{(name, frozenset(labels)): value} of every sample, parsed strictly
    by prometheus_client (it raises on anything malformed), and the
    families' types by name."""
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
