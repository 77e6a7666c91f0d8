"""Fixtures for the workloads, run as the real programs in subprocesses against temporary dirs.

One model is built (scratch) and trained (trainer) per session and shared by the tests, because
those two runs are most of this directory's time. Every process started here is killed, by pid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

# The quickstart's shape: 30 prompt/completion lines, one fact each.
NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
         "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Uma", "Victor",
         "Walter", "Xena", "Yusuf", "Zoe", "Ana", "Ben", "Cleo", "Dmitri", "Eve", "Farid", "Goran"]
COLORS = ["indigo", "yellow", "violet", "silver", "red", "teal", "green", "orange", "blue",
          "pink"]
RECORDS = [{"prompt": f"What is {name}'s favorite color?",
            "completion": f" {name}'s favorite color is {COLORS[i % len(COLORS)]}."}
           for i, name in enumerate(NAMES)]


def workload_env(content: Path, **extra: str) -> dict[str, str]:
    """The environment a runtime gives a workload: the contract's variables and nothing stray."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PARAM_", "SUBSTRATUS_", "JUPYTER_"))}
    env.pop("PORT", None)
    env.update(SUBSTRATUS_CONTENT=str(content), PYTHONUNBUFFERED="1", HOST="127.0.0.1",
               HF_HUB_OFFLINE="1")
    env.update(extra)
    return env


def params_env(params: Mapping[str, object]) -> dict[str, str]:
    return {f"PARAM_{k.upper()}": json.dumps(v) for k, v in params.items()}


def run_workload(name: str, env: Mapping[str, str],
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", f"substratus_workloads.{name}"], env=dict(env),
                          capture_output=True, text=True, timeout=timeout, check=False)


def assert_refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2 with one `error: ...` line naming what is wrong, and no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0]


class Process:
    """A workload started in the background; stdout lines arrive on a queue as they are printed."""

    def __init__(self, name: str, env: Mapping[str, str], stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "w")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", f"substratus_workloads.{name}"], env=dict(env),
            stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.stdout.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_line(self, prefix: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"exited {self.popen.wait()} before {prefix!r}: "
                                     f"{self.stderr()}")
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no {prefix!r} line within {timeout} s: {self.stderr()}")

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._stderr.close()


@contextlib.contextmanager
def started(name: str, env: Mapping[str, str], stderr_path: Path) -> Iterator[Process]:
    process = Process(name, env, stderr_path)
    try:
        yield process
    finally:
        process.stop()


@dataclasses.dataclass(frozen=True)
class Trained:
    scratch: Path  # the model built from scratch
    model: Path  # the same model after training
    scratch_stdout: str
    train_stdout: list[str]
    seconds: float  # wall time of the trainer process


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("workloads")
    (root / "data").mkdir()
    (root / "data" / "colors.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    scratch = run_workload("scratch", workload_env(
        root, SUBSTRATUS_ARTIFACTS_DIR=str(root / "scratch")))
    assert scratch.returncode == 0, scratch.stderr
    began = time.monotonic()
    train = run_workload("trainer", workload_env(
        root, SUBSTRATUS_MODEL_DIR=str(root / "scratch"),
        SUBSTRATUS_ARTIFACTS_DIR=str(root / "trained")))
    seconds = time.monotonic() - began
    assert train.returncode == 0, train.stderr
    return Trained(root / "scratch", root / "trained", scratch.stdout,
                   train.stdout.splitlines(), seconds)
