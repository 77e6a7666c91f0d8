"""Detached workload processes (providers/local/processes.py) with real subprocesses: liveness
through zombies and pid reuse, stopping a whole process group, waiting for health."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from substratus_providers.local import processes
from substratus_providers.local.processes import ProcessRef
from tests.support.backends import Processes

# Starts a child (which stays in the sleeper's process group), writes its pid, then sleeps.
SLEEPER_WITH_CHILD = r"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open(sys.argv[1], "w").write(str(child.pid))
print("sleeping", flush=True)
time.sleep(60)
"""
IGNORES_SIGTERM = r"""
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


# These read /proc themselves to check processes.py from the outside.
linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def runs(pid: int) -> bool:
    """Whether pid exists and is not a zombie (any parent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_for(predicate, timeout: float = 10.0) -> None:  # noqa: ANN001 - any callable
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@linux_only
def test_spawned_process_is_alive_and_stop_ends_its_whole_group(
        procs: Processes, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    ref, log = procs.spawn([sys.executable, "-c", SLEEPER_WITH_CHILD, str(pid_file)], "sleeper")
    wait_for(lambda: "sleeping" in log.read_text())
    child = int(pid_file.read_text())
    assert processes.alive(ref)
    assert os.getpgid(ref.pid) == ref.pid != os.getpgid(0)  # its own group, not the CLI's

    processes.stop(ref, grace=5.0)

    assert not processes.alive(ref)
    assert not runs(ref.pid) and not runs(child)
    assert processes.exit_code(ref) == -15


def test_stop_kills_a_process_that_ignores_sigterm_after_the_grace(procs: Processes) -> None:
    ref, log = procs.spawn([sys.executable, "-c", IGNORES_SIGTERM], "stubborn")
    wait_for(lambda: "ready" in log.read_text())
    began = time.monotonic()
    processes.stop(ref, grace=0.5)
    assert 0.5 <= time.monotonic() - began < 5
    assert not processes.alive(ref)
    assert processes.exit_code(ref) == -9


def test_stop_of_a_process_already_gone_is_quiet(procs: Processes) -> None:
    ref, _ = procs.spawn([sys.executable, "-c", "pass"], "quick")
    wait_for(lambda: not processes.alive(ref))
    processes.stop(ref, grace=0.1)
    processes.stop(ProcessRef(ref.pid, "not this one"), grace=0.1)


def test_ref_with_another_start_token_is_not_alive(procs: Processes) -> None:
    ref, _ = procs.spawn([sys.executable, "-c", "import time; time.sleep(60)"], "sleeper")
    assert processes.alive(ref)
    reused = ProcessRef(ref.pid, ref.started + "0")
    assert not processes.alive(reused)
    processes.stop(reused, grace=0.1)  # the pid now belongs to another: left alone
    assert processes.alive(ref)


@linux_only
def test_exited_child_that_is_a_zombie_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        ref = processes.lookup(child.pid)
        assert ref is not None
        wait_for(lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1]
                 .split()[0] == "Z")
        assert not processes.alive(ref)
        assert not Path(f"/proc/{child.pid}").exists()  # alive() reaped it
    finally:
        child.kill()
        child.wait()


def test_ref_survives_a_json_record() -> None:
    ref = processes.lookup(os.getpid())
    assert ref is not None
    assert ProcessRef.from_dict(ref.to_dict()) == ref
    assert processes.alive(ProcessRef.from_dict(ref.to_dict()))


def test_wait_healthy_reports_the_error_line_when_the_process_exits(procs: Processes) -> None:
    script = ("import sys; print('loading weights'); "
              "print('error: params.maxTokens must be positive', file=sys.stderr); sys.exit(3)")
    ref, log = procs.spawn([sys.executable, "-c", script], "bad-params")
    port = processes.free_port()
    problem = processes.wait_healthy(f"http://127.0.0.1:{port}/health", ref, log, timeout=20)
    assert problem == "exited with code 3: error: params.maxTokens must be positive"


def test_wait_healthy_gives_up_after_the_timeout_with_the_log_tail(procs: Processes) -> None:
    script = "import time; print('still loading', flush=True); time.sleep(60)"
    ref, log = procs.spawn([sys.executable, "-c", script], "slow-start")
    url = f"http://127.0.0.1:{processes.free_port()}/health"
    wait_for(lambda: "still loading" in log.read_text())
    began = time.monotonic()
    problem = processes.wait_healthy(url, ref, log, timeout=0.5)
    assert time.monotonic() - began < 3
    assert problem == f"no answer from {url} after 0.5s: still loading"


def test_wait_healthy_returns_none_once_a_real_server_answers(procs: Processes) -> None:
    backend = procs.backend("v1")  # itself waits for /health through wait_healthy
    assert processes.alive(backend.ref)
    assert processes.wait_healthy(f"http://127.0.0.1:{backend.port}/health", backend.ref,
                                  backend.log, timeout=5) is None


def test_log_tail_prefers_the_last_error_line(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_text("a\n\nb\nc\nd\ne\nf\n\n")
    assert processes.log_tail(log) == "b\nc\nd\ne\nf"
    assert processes.log_tail(log, lines=2) == "e\nf"
    log.write_text("error: first\nTraceback\nerror: second\n  at line 3\n")
    assert processes.log_tail(log) == "error: second"
    assert processes.log_tail(tmp_path / "missing.log") == ""


def test_free_port_can_be_bound() -> None:
    port = processes.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_wait_returns_our_childs_exit_code_as_soon_as_it_ends(procs: Processes) -> None:
    ref, _ = procs.spawn([sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(3)"],
                         "exits-3")
    assert processes.wait(ref) == 3
    assert not processes.alive(ref)
