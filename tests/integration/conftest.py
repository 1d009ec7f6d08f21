"""
Fixtures for the black-box suite: a crush-supervisor per test on a private
unix socket, always stopped (TERM, then KILL) with its workers; its stderr
is attached to the report of a failing test. A sanitizer memory error in
it fails the test that produced it; leak reports are listed at the end of
the run (and failed once, by a dedicated test).
"""

import contextlib
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import crush  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "no_daemon: runs even when the daemon is not built")


def pytest_collection_modifyitems(config, items):
    if not crush.SUPERVISOR.exists() or not crush.WORKER.exists():
        skip = pytest.mark.skip(
            reason=f"daemon not built: {crush.SUPERVISOR} / {crush.WORKER} missing (run make)")
        for item in items:
            if "no_daemon" not in item.keywords:
                item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for i, sup in enumerate(getattr(item, "_crush_supervisors", [])):
            lines = sup.stderr().splitlines()
            tail = "\n".join(lines[-150:])
            rep.sections.append(
                (f"crush-supervisor #{i} stderr (pid {sup.proc.pid if sup.proc else '-'}, "
                 f"{len(lines)} lines, last 150)", tail))


@pytest.fixture
def start_supervisor(request, tmp_path):
    """Factory: start_supervisor(create_grace=0.3, ...) -> running Supervisor.
    Keyword options map to flags (None leaves a flag out); hosts=[...]
    overrides -H; env={...} adds environment; wait_ready=False skips the
    health poll; wrapper=[...] goes before the daemon's argv."""
    started = []
    request.node._crush_supervisors = started
    logdir = tmp_path / "logs"
    logdir.mkdir(exist_ok=True)

    def start(wait_ready=True, wrapper=(), **opts):
        sup = crush.Supervisor(logdir, roots=[os.path.realpath(tmp_path)], **opts)
        sup.args = list(wrapper) + sup.args  # e.g. a shell that execs the daemon
        started.append(sup)
        return sup.start(wait_ready=wait_ready)

    yield start

    errors = []
    for sup in started:
        sup.cleanup()
        report = sup.sanitizer_errors()
        if report:
            errors.append(report)
        for leak in sup.leak_reports():
            _LEAKS.append((request.node.nodeid, leak))
    if errors:
        pytest.fail("sanitizer error in crush-supervisor/worker stderr:\n" + errors[0][-6000:],
                    pytrace=False)


# (test id, LeakSanitizer report) for every daemon that leaked at exit.
_LEAKS = []


def pytest_terminal_summary(terminalreporter):
    if not _LEAKS:
        return
    tr = terminalreporter
    tr.section("LeakSanitizer reports from crush-supervisor/crush-worker")
    tr.write_line(f"{len(_LEAKS)} leak report(s) in {len({t for t, _ in _LEAKS})} test(s); "
                  "test_process.py::test_daemon_exits_cleanly_under_the_sanitizers fails for them.")
    # Group by stack, ignoring the (ASLR-dependent) absolute addresses.
    groups = {}
    for test, leak in _LEAKS:
        key = "\n".join(re.sub(r"^\s*#\d+ 0x[0-9a-f]+ ", "", ln) for ln in leak.splitlines()
                        if ln.strip().startswith("#"))
        groups.setdefault(key, []).append((test, leak))
    for entries in groups.values():
        test, leak = entries[0]
        tr.write_line(f"--- in {len(entries)} test(s), first {test}:")
        tr.write_line(leak.strip())


@pytest.fixture
def sup(start_supervisor):
    """A running supervisor with the default (non-expiring) timings."""
    return start_supervisor()


@pytest.fixture
def fake_sup(start_supervisor):
    """start(**opts): a supervisor whose --worker is fake_worker.py; the
    real worker is $CRUSH_REAL_WORKER for the fake's normal mode."""
    fake = crush.REPO / "tests" / "integration" / "fake_worker.py"
    if not os.access(fake, os.X_OK):
        os.chmod(fake, 0o755)

    def start(env=None, **opts):
        e = {"CRUSH_REAL_WORKER": str(crush.WORKER)}
        e.update(env or {})
        return start_supervisor(worker=str(fake), env=e, **opts)
    return start


@pytest.fixture
def make_dir(tmp_path):
    """make_dir("name") -> resolved absolute path of a fresh directory."""
    def make(name):
        p = tmp_path / name
        p.mkdir(parents=True, exist_ok=True)
        return os.path.realpath(p)
    return make


@pytest.fixture
def wsdir(make_dir):
    return make_dir("ws")


@pytest.fixture
def claim():
    """claim(sup, path, attach=True, release=False) -> crush.Claim: a new
    client creates the workspace, opens a stream, optionally releases its
    create claim. Its streams are closed when the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda sup, path, **kw: stack.enter_context(crush.Claim(sup, path, **kw))
