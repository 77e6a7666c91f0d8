"""Two applies at once: one takes the state lock, the other exits 4 naming the holder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from substratus_cli.errors import ExitCode
from tests.support.http_server import Route, serve


def substratus(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "substratus_cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1"})


def slow_dataset(workdir: Path, url: str) -> None:
    workdir.mkdir()
    (workdir / "slow.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {{name: slow}}
spec:
  source: {{url: "{url}/slow.csv"}}
""")


def test_concurrent_applies_one_wins_the_other_exits_4(tmp_path):
    workdir = tmp_path / "ws"
    with serve({"/slow.csv": Route(b"a,b\n" * 1000, seconds=4.0)}) as server:
        slow_dataset(workdir, server.url)
        first = substratus("apply", workdir, "--auto-approve")
        second = substratus("apply", workdir, "--auto-approve")
        results = [p.communicate(timeout=60) + (p.returncode,) for p in (first, second)]

    codes = sorted(code for _, _, code in results)
    assert codes == [ExitCode.OK, ExitCode.LOCKED], results
    out, err, _ = next(r for r in results if r[2] == ExitCode.LOCKED)
    assert "Error: Cannot acquire the state lock for file://" in err
    assert "operation apply, held by" in err and "(pid " in err
    assert "Traceback" not in out + err
    winner_out = next(r for r in results if r[2] == ExitCode.OK)[0]
    assert "Apply complete! Resources: 1 added" in winner_out


def wait_until_locked(workdir: Path) -> None:
    lock = workdir / ".substratus" / "state" / "lock.json"
    for _ in range(200):
        if lock.exists() and lock.read_text().strip():
            return
        time.sleep(0.05)
    raise AssertionError("the first apply never took the lock")


def test_lock_timeout_waits_for_the_holder(tmp_path):
    workdir = tmp_path / "ws"
    with serve({"/slow.csv": Route(b"a,b\n" * 1000, seconds=2.0)}) as server:
        slow_dataset(workdir, server.url)
        first = substratus("apply", workdir, "--auto-approve")
        wait_until_locked(workdir)
        second = substratus("apply", workdir, "--auto-approve", "--lock-timeout", "60s")
        results = [p.communicate(timeout=90) + (p.returncode,) for p in (first, second)]
    assert [code for _, _, code in results] == [0, 0], results
    # The second waited for the first, then found the dataset already there.
    assert "Apply complete! Resources: 1 added" in results[0][0]
    assert "No changes." in results[1][0], results
