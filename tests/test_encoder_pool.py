"""The encoder pool's worker processes, for real: they must not outlive their parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from daemon.config import Settings
from daemon.encoders.pool import EncoderPool
from tests.conftest import DEV_FACES, REPO

PARENT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import psutil
    from daemon.config import Settings
    from daemon.encoders.pool import EncoderPool

    if __name__ == "__main__":  # spawned workers import this file too
        pool = EncoderPool(Settings(workers=2))
        # Four jobs at once: the executor starts a worker per job while none is idle.
        results = list(pool.encode((str(i), Path(sys.argv[1])) for i in range(4)))
        children = [p.pid for p in psutil.Process().children(recursive=True)]
        print(json.dumps({"status": results[0][1].status, "workers": pool.pids(),
                          "children": children}), flush=True)
        time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_workers_and_resource_tracker_exit_when_the_parent_is_killed(tmp_path: Path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT, encoding="utf-8")
    face = DEV_FACES / "Amy" / "amy1.png"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(face)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    children: list[int] = []
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line, "the parent process printed nothing"
        info = json.loads(line)
        children = info["children"]
        assert info["status"] == "ok" and len(info["workers"]) == 2
        assert set(info["workers"]) <= set(info["children"])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and any(_alive(p) for p in children):
            time.sleep(0.2)
        left = [p for p in children if _alive(p)]
        assert left == [], f"still running after the parent's kill -9: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in children:  # only this test's own processes
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_pool_encodes_and_reports_its_model(tmp_path: Path):
    pool = EncoderPool(Settings(workers=1))
    try:
        assert pool.pids() == []
        out = dict(pool.encode([("a", DEV_FACES / "Amy" / "amy1.png")]))
        assert out["a"].status == "ok" and out["a"].model == pool.model_id
        assert len(pool.pids()) == 1
        # Ctrl-C reaches the workers too (the terminal's process group): the daemon
        # decides when the pool ends, not the signal.
        (worker,) = pool.pids()
        os.kill(worker, signal.SIGINT)
        time.sleep(0.3)
        again = dict(pool.encode([("b", DEV_FACES / "Amy" / "amy2.png")]))
        assert again["b"].status == "ok", again["b"].message
        assert pool.pids() == [worker]
    finally:
        pool.close()
