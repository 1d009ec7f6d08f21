"""
README's walkthrough runs as written: its first shell block, pasted into
one bash, from the top of the tree, with XDG_RUNTIME_DIR set and unset.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

import crush

ROOT = Path(__file__).resolve().parents[2]


def walkthrough(demo):
    """The README's script, run against crush.BUILD and with its /tmp/demo
    (and /tmp/demo.events beside it) moved to `demo`: a test must neither
    destroy what a user keeps there nor share it with a concurrent run."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Walkthrough with curl"):]
    script = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    assert "/tmp/demo" in script and re.search(r"(?m)^build/", script), script
    assert re.fullmatch(r"[\w./-]+", demo), demo  # pasted inside a JSON string
    script = script.replace("/tmp/demo", demo)
    return re.sub(r"(?m)^build/", lambda _: shlex.quote(str(crush.BUILD)) + "/", script)


@pytest.mark.parametrize("xdg", [True, False], ids=["XDG_RUNTIME_DIR set", "XDG_RUNTIME_DIR unset"])
def test_the_readme_walkthrough_runs_as_written(xdg, tmp_path):
    if not crush.SUPERVISOR.exists():
        pytest.skip(f"needs a build ({crush.SUPERVISOR})")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUSH_", "XDG_"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    if xdg:
        rt = crush.short_tmpdir()
        env["XDG_RUNTIME_DIR"] = rt
    sock = f"{env.get('XDG_RUNTIME_DIR', '/tmp')}/crush-{os.getuid()}.sock"
    if os.path.exists(sock):
        pytest.skip(f"a daemon already listens on {sock}")
    demo = str(tmp_path / "demo")
    # Its own process group: whatever the script leaves behind (its
    # daemon, a stream) is killed with it, by group, never by name.
    p = subprocess.Popen(["bash", "-e", "-c", walkthrough(demo)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{out}\nstderr:\n{err}"
        assert "hello.txt" in out and "daemon exited" in out, out
        assert not os.path.exists(sock), "socket left behind"
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
        if xdg:
            shutil.rmtree(rt, ignore_errors=True)
