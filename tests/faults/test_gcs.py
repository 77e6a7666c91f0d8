"""Faults between substratus and Cloud Storage: the fault proxy in front of a real
fake-gcs-server while the local runtime keeps its state and its artifacts on gs://. Two applies
race through the proxy: the lock is never held by both, nothing is lost, a re-apply converges."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from substratus_cli.errors import ExitCode
from tests.faults.workspace import (
    EXPECTED_APPLY_CODES,
    Run,
    apply_until_converged,
    datasets,
    finish,
    start,
    substratus,
)
from tests.support.faultproxy import Faults, fault_proxy
from tests.support.gcs import fake_gcs_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

COUNT = 20
# Plain HTTP: every chunk the client sends is (part of) a request, so a reset after one can
# lose the answer to a write that landed.
FAULTS = Faults(reset=0.2, reset_per_chunk=0.05, delay=0.2, delay_seconds=0.05, seed=29)


@pytest.fixture
def gcs() -> Iterator[tuple[str, str]]:
    """fake-gcs-server's URL and a new bucket in it."""
    with fake_gcs_server() as url, pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", url)
        client = storage.Client(project="test", credentials=AnonymousCredentials())
        yield url, client.create_bucket("faults").name


def environment(bucket: str) -> str:
    return f"""\
apiVersion: substratus.ai/v1
kind: Environment
metadata: {{name: local}}
spec:
  runtime: local
  state: gs://{bucket}/state
  artifacts: gs://{bucket}/artifacts
"""


def added(run: Run) -> int:
    """How many resources the run says it added (none when it found no changes)."""
    done = re.search(r"Resources: (\d+) added", run.out)
    return int(done[1]) if done else 0


def race(env: dict[str, str], workdir: Path) -> list[Run]:
    """Two applies started together, each waiting up to 2 minutes for the lock."""
    procs = [start(env, "apply", "--auto-approve", "--lock-timeout", "120s", workdir)
             for _ in range(2)]
    runs = [finish(p) for p in procs]
    for run in runs:
        assert run.code in EXPECTED_APPLY_CODES, run
        assert "Traceback" not in run.out + run.err, run
    return runs


def test_two_racing_applies_through_faults_hold_the_lock_in_turn_and_lose_nothing(
        gcs: tuple[str, str], tmp_path: Path) -> None:
    url, bucket = gcs
    workdir = datasets(tmp_path / "ws", COUNT, environment(bucket))
    direct = {"STORAGE_EMULATOR_HOST": url}
    with fault_proxy(url, FAULTS) as proxy:
        env = {"STORAGE_EMULATOR_HOST": f"http://{proxy.address}"}
        runs = race(env, workdir)
        runs += apply_until_converged(env, workdir, 4)
        # The second round changes a quarter of the datasets: refs replaced, a backup kept.
        for n in range(0, COUNT, 4):
            (workdir / "data" / f"d{n:03}" / "rows.csv").write_text(f"id,value\n{n},changed\n")
        second = race(env, workdir)
        second += apply_until_converged(env, workdir, 4)
        plan = substratus(env, "plan", "--detailed-exitcode", workdir)
        counts = proxy.snapshot()
    print(f"applies exited {[r.code for r in runs + second]}; proxy: {counts}")
    assert counts.resets > 0

    # Had both applies held the lock at once, both would have planned from the same state and
    # added (or replaced: a changed snapshot is a replace) the same resources.
    assert sum(added(r) for r in runs) == COUNT, [r.out for r in runs]
    assert sum(added(r) for r in second) == COUNT // 4, [r.out for r in second]
    assert plan.code == ExitCode.OK, plan
    assert "No changes." in plan.out

    # Nothing lost: every snapshot the state names reads back whole, and no lock is left.
    listed = substratus(direct, "state", "list", workdir)
    assert [line.split("\t")[0] for line in listed.out.splitlines()] == \
        [f"Dataset/default/d{n:03}" for n in range(COUNT)]
    verified = substratus(direct, "verify", workdir)
    assert verified.code == ExitCode.OK, verified
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    names = {b.name for b in client.list_blobs(bucket, prefix="state/")}
    assert names == {"state/inventory.json", "state/inventory.json.backup"}
