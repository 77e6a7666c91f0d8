"""The first Ctrl-C during an apply on the Kubernetes runtime: a step waiting for its Job to
finish stops waiting (the Job was applied; the next plan shows where it stands), the apply exits
130 and releases the state lock. The Job is held unscheduled (the nodes cordoned), so it never
finishes on its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus_cli.errors import ExitCode
from tests.cluster.controlplane import ControlPlane
from tests.support.cluster import set_schedulable, started_cluster
from tests.support.gcs import bucket_beside

pytestmark = pytest.mark.timeout(1800)  # the first test may build the control plane
NS = "interrupted"


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    yield from started_cluster(request)


@pytest.fixture(scope="module")
def bucket(cluster: ControlPlane) -> Iterator[str]:
    with bucket_beside(cluster.kubeconfig) as name:
        yield name


def workspace(root: Path, bucket: str) -> Path:
    root.mkdir(parents=True)
    (root / "environment.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Environment
metadata: {{name: cluster}}
spec:
  runtime: kubernetes
  kubernetes: {{context: substratus-test, namespace: {NS}}}
  artifacts: gs://{bucket}/artifacts
""")
    (root / "dataset.yaml").write_text("""\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {name: rows}
spec:
  source: {url: "http://127.0.0.1:9/rows.csv"}
""")
    return root


def test_the_first_ctrl_c_stops_waiting_for_a_job_and_releases_the_lock(
        cluster: ControlPlane, bucket: str, tmp_path: Path) -> None:
    root = workspace(tmp_path / "ws", bucket)
    env = {**os.environ, "NO_COLOR": "1", "KUBECONFIG": str(cluster.kubeconfig)}
    set_schedulable(cluster, False)
    try:
        apply = subprocess.Popen([sys.executable, "-m", "substratus_cli", "apply", str(root),
                                  "--auto-approve"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)
        jobs = f"/apis/batch/v1/namespaces/{NS}/jobs"
        for _ in range(600):  # the Job exists: the step now waits for it to finish
            if apply.poll() is not None:
                break
            try:
                if cluster.request("GET", jobs)["items"]:
                    break
            except Exception:  # noqa: BLE001 - the namespace may not exist yet
                pass
            time.sleep(0.1)
        time.sleep(1.0)
        assert apply.poll() is None, apply.communicate()
        apply.send_signal(signal.SIGINT)
        out, err = apply.communicate(timeout=60)  # not the 30 minutes of the readiness limit
    finally:
        set_schedulable(cluster, True)
    assert apply.returncode == ExitCode.INTERRUPTED, (out, err)
    assert "interrupted before it was ready" in out + err, (out, err)
    assert "Traceback" not in out + err
    # The lock was released: another command takes it at once.
    again = subprocess.run([sys.executable, "-m", "substratus_cli", "plan", str(root),
                            "--lock-timeout=0s"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert again.returncode == 0, again
    assert "Cannot acquire the state lock" not in again.stderr
