"""SIGKILL of the CLI in the middle of a training or a server rollout on the local runtime: the
processes it started are in the books, the next plan says what it finds, apply converges, and
destroy leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from substratus_providers.local import processes
from tests.conftest import tear_down

pytestmark = pytest.mark.slow

FILES = """\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {name: lines}
spec: {source: {path: lines.txt}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: base}
spec:
  source: {scratch: {config: {n_layer: 1, n_embd: 32, n_positions: 64}}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: tuned}
spec:
  training:
    baseModel: {name: base}
    dataset: {name: lines}
    params: {epochs: EPOCHS}
---
apiVersion: substratus.ai/v1
kind: ModelServer
metadata: {name: server}
spec:
  model: {name: base}
  params: {max_tokens: MAX_TOKENS}
"""


def substratus(*args: str | Path, failpoints: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "SUBSTRATUS_FAILPOINTS": failpoints}
    return subprocess.run([sys.executable, "-m", "substratus_cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def workdir(tmp_path: Path):
    (tmp_path / "lines.txt").write_text("red\ngreen\nblue\n" * 10)
    write(tmp_path, epochs=2, max_tokens=8)
    yield tmp_path
    tear_down(tmp_path)


def write(workdir: Path, *, epochs: int, max_tokens: int) -> None:
    text = FILES.replace("EPOCHS", str(epochs)).replace("MAX_TOKENS", str(max_tokens))
    (workdir / "ml.yaml").write_text(text)


def book(workdir: Path) -> list[dict]:
    return [e for b in (workdir / ".substratus/runtime/processes").glob("*/*/*.json")
            for e in json.loads(b.read_text())]


def running(workdir: Path) -> list[dict]:
    return [e for e in book(workdir)
            if processes.alive(processes.ProcessRef.from_dict(e["process"]))]


def test_kill_during_a_rollout_then_apply_converges_and_destroy_stops_everything(workdir):
    assert substratus("apply", workdir, "--auto-approve").returncode == 0
    endpoint = json.loads((workdir / ".substratus/runtime/objects/ModelServer/default/server.json")
                          .read_text())["status"]["endpoint"]
    write(workdir, epochs=2, max_tokens=9)
    killed = substratus("apply", workdir, "--auto-approve",
                        failpoints="local.server.new-version-ready=kill")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    # Killed after the new version became ready, before the switch: both versions run, the old
    # one still answers at the stable endpoint.
    assert sorted(e["role"] for e in running(workdir)) == ["router", "server", "server"]
    with urllib.request.urlopen(f"{endpoint}/health", timeout=10) as r:
        assert r.status == 200

    plan = substratus("plan", "--detailed-exitcode", workdir)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert ("# ModelServer/default/server will be updated in-place (roll out: "
            "spec.params.max_tokens changed; restart: processes of an interrupted rollout are "
            "still running)") in plan.stdout

    applied = substratus("apply", workdir, "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert sorted(e["role"] for e in running(workdir)) == ["router", "server"]
    assert substratus("plan", "--detailed-exitcode", workdir).returncode == 0

    everything = book(workdir)
    assert substratus("destroy", workdir, "--auto-approve").returncode == 0
    assert not [e for e in everything
                if processes.alive(processes.ProcessRef.from_dict(e["process"]))]
    assert book(workdir) == []


def test_reverting_after_a_killed_rollout_stops_the_strays_and_keeps_serving(workdir):
    assert substratus("apply", workdir, "--auto-approve").returncode == 0
    serving = [e for e in running(workdir) if e["role"] == "server"]
    write(workdir, epochs=2, max_tokens=9)
    killed = substratus("apply", workdir, "--auto-approve",
                        failpoints="local.server.new-version-ready=kill")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    write(workdir, epochs=2, max_tokens=8)  # back to what is serving

    plan = substratus("plan", workdir)
    assert ("# ModelServer/default/server will be updated in-place (restart: processes of an "
            "interrupted rollout are still running)") in plan.stdout, plan.stdout + plan.stderr
    applied = substratus("apply", workdir, "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert [e for e in running(workdir) if e["role"] == "server"] == serving, \
        "the serving version is kept, not restarted"
    assert substratus("plan", "--detailed-exitcode", workdir).returncode == 0


def test_kill_during_training_leaves_a_model_the_next_plan_rebuilds(workdir):
    write(workdir, epochs=500, max_tokens=8)
    killed = substratus("apply", workdir, "--auto-approve", "--target", "Model/tuned",
                        failpoints="local.run.started=kill@2")  # the 1st run builds base
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    trainer = [e for e in running(workdir) if e["role"] == "run"]
    assert len(trainer) == 1, book(workdir)

    plan = substratus("plan", workdir, "--target", "Model/tuned")
    assert ("# Model/default/tuned must be replaced (its last build or training did not finish)"
            in plan.stdout), plan.stdout + plan.stderr

    destroyed = substratus("destroy", workdir, "--auto-approve")
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert not processes.alive(processes.ProcessRef.from_dict(trainer[0]["process"]))
    assert book(workdir) == []
