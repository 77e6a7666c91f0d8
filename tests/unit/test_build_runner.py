"""The control plane's build runner: interrupting a build leaves no process of it running
(on a loaded machine a test timeout once left `go build` running as an orphan, and the next test
module started a second build beside it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cluster.binaries import run_build

# A "build" whose child outlives its shell unless the whole group is killed.
BUILD = """
sleep 300 &
echo $! > "$1"
wait
"""

RUNNER = """
import sys
from pathlib import Path
from tests.cluster.binaries import run_build
print("exit", run_build(["bash", sys.argv[1], sys.argv[2]], Path(sys.argv[3])), flush=True)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (its parent, the build shell, is gone too).
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" not in status.read_text()


def wait_for(path: Path) -> str:
    for _ in range(200):
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} was never written")


def test_an_interrupted_build_leaves_no_process_behind(tmp_path: Path) -> None:
    script, pidfile = tmp_path / "build.sh", tmp_path / "child.pid"
    script.write_text(BUILD)
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(script), str(pidfile),
                               str(tmp_path / "build.log")],
                              cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    child = int(wait_for(pidfile))
    assert alive(child)
    runner.send_signal(signal.SIGINT)  # what Ctrl-C or a signal-method test timeout does
    _, err = runner.communicate(timeout=30)
    assert "KeyboardInterrupt" in err  # the wait was interrupted, not finished
    for _ in range(100):
        if not alive(child):
            break
        time.sleep(0.05)
    assert not alive(child), "the build's child survived the interruption"


def test_a_finished_build_reports_its_exit_code_and_log(tmp_path: Path) -> None:
    script = tmp_path / "build.sh"
    script.write_text('echo building; sleep 30 & echo "$!" > "$1"; exit 3\n')
    log = tmp_path / "build.log"
    assert run_build(["bash", str(script), str(tmp_path / "bg.pid")], log) == 3
    assert log.read_text() == "building\n"
    # What it left running in the background is stopped with it.
    background = int(wait_for(tmp_path / "bg.pid"))
    for _ in range(100):
        if not alive(background):
            break
        time.sleep(0.05)
    assert not alive(background)
