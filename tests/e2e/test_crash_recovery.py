"""SIGKILL at every step boundary of a multi-step apply: the next apply converges, nothing leaks.

The kill is injected with failpoints (SUBSTRATUS_FAILPOINTS), so it lands exactly on a boundary:
before the write-ahead mark, after it, after the provider call, after the inventory write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

BOUNDARIES = ["apply.before-journal", "apply.after-journal", "apply.after-provider",
              "apply.after-state"]
DATASETS = ["alpha", "beta", "gamma"]


def substratus(*args: str | Path, failpoints: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "SUBSTRATUS_FAILPOINTS": failpoints}
    return subprocess.run([sys.executable, "-m", "substratus_cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for name in DATASETS:
        data = tmp_path / "data" / name
        data.mkdir(parents=True)
        (data / "part-0.txt").write_text(f"{name} " * 1000)
    docs = [f"apiVersion: substratus.ai/v1\nkind: Dataset\nmetadata: {{name: {n}}}\n"
            f"spec: {{source: {{path: data/{n}}}}}\n" for n in DATASETS]
    (tmp_path / "datasets.yaml").write_text("---\n".join(docs))
    return tmp_path


def live_addresses(workdir: Path) -> set[str]:
    root = workdir / ".substratus" / "runtime" / "objects"
    return {f"Dataset/default/{p.stem}" for p in root.glob("Dataset/default/*.json")}


def inventory(workdir: Path) -> dict[str, dict]:
    path = workdir / ".substratus" / "state" / "inventory.json"
    return {r["address"]: r for r in json.loads(path.read_text())["resources"]}


@pytest.mark.slow
@pytest.mark.parametrize("step", [1, 2, 3])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_kill_at_step_boundary_then_apply_converges(workdir, boundary, step):
    killed = substratus("apply", workdir, "--auto-approve", "--parallelism", "1",
                        failpoints=f"{boundary}=kill@{step}")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr

    if boundary == "apply.after-provider":
        # The object exists but the inventory has only the write-ahead mark: it is not lost.
        pending = {a for a, r in inventory(workdir).items() if "pending" in r}
        assert len(pending) == 1 and pending <= live_addresses(workdir)

    again = substratus("apply", workdir, "--auto-approve")
    assert again.returncode == 0, again.stdout + again.stderr

    entries = inventory(workdir)
    assert set(entries) == live_addresses(workdir) == {f"Dataset/default/{n}" for n in DATASETS}
    assert not [a for a, r in entries.items() if "pending" in r], "no pending mark is left"
    listed = substratus("state", "list", workdir).stdout.splitlines()
    assert sorted(line.split("\t")[0] for line in listed) == sorted(entries)
    plan = substratus("plan", "--detailed-exitcode", workdir)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "No changes." in plan.stdout


def test_kill_during_destroy_then_destroy_converges(workdir):
    assert substratus("apply", workdir, "--auto-approve").returncode == 0
    killed = substratus("destroy", workdir, "--auto-approve", "--parallelism", "1",
                        failpoints="apply.after-provider=kill@2")
    assert killed.returncode == -signal.SIGKILL
    again = substratus("destroy", workdir, "--auto-approve")
    assert again.returncode == 0, again.stdout + again.stderr
    assert live_addresses(workdir) == set()
    assert inventory(workdir) == {}
