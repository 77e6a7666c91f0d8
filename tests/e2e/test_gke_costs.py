"""Cost and capacity before a GPU is paid for: a plan against the GKE fake and fake-gcs-server
(nothing created yet) prices every node pool it creates or resizes (declared or sized for a
workload) from providers/gcp/prices.yaml, sums the hourly change in its summary (human and JSON),
shows the GPUs a ModelServer's rollout needs at its peak, and refuses a rollout the pool's
autoscaling maximum cannot hold. Apply and destroy price what they change the same way."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from substratus_providers.gcp.prices import PRICES_FILE
from tests.gke import FakeGKE, Settings
from tests.support.gcs import fake_gcs_server

pytestmark = pytest.mark.timeout(300)

PRICES = yaml.safe_load(PRICES_FILE.read_text())
G2 = PRICES["machines"]["g2-standard-8"]
A2 = PRICES["machines"]["a2-highgpu-1g"]
E2 = PRICES["machines"]["e2-standard-4"]
CLUSTER = "projects/my-project/locations/us-central1/clusters/gke"


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeGKE, str]]:
    with FakeGKE(Settings(operation_polls=1, operation_seconds=None)) as gke, \
            fake_gcs_server() as gcs, pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUBSTRATUS_GKE_ENDPOINT", gke.url)
        mp.setenv("SUBSTRATUS_GKE_POLL_SECONDS", "0.02")
        mp.setenv("STORAGE_EMULATOR_HOST", gcs)
        bucket = storage.Client(project="test", credentials=AnonymousCredentials()) \
            .create_bucket(f"artifacts-{uuid.uuid4().hex[:8]}").name
        yield gke, bucket


def workspace(root: Path, bucket: str, *, l4_max: int, replicas: int = 1, surge: int = 1) -> Path:
    root.mkdir(exist_ok=True)
    (root / "weights").mkdir(exist_ok=True)
    (root / "weights" / "config.json").write_text("{}")
    (root / "environment.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Environment
metadata: {{name: gke}}
spec:
  runtime: kubernetes
  kubernetes: {{cluster: {{name: gke}}, namespace: ml}}
  artifacts: gs://{bucket}/ml
""")
    (root / "infra.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Cluster
metadata: {{name: gke, namespace: ml}}
spec: {{project: my-project, location: us-central1}}
---
apiVersion: substratus.ai/v1
kind: NodePool
metadata: {{name: cpu, namespace: ml}}
spec:
  cluster: {{name: gke}}
  machineType: e2-standard-4
  autoscaling: {{min: 1, max: 1}}
  zones: [us-central1-a]
---
apiVersion: substratus.ai/v1
kind: NodePool
metadata: {{name: l4, namespace: ml}}
spec:
  cluster: {{name: gke}}
  machineType: g2-standard-8
  accelerator: {{type: nvidia-l4}}
  spot: true
  autoscaling: {{min: 0, max: {l4_max}}}
  zones: [us-central1-a]
""")
    (root / "models.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Model
metadata: {{name: chat, namespace: ml}}
spec:
  source: {{path: weights}}
  size: {{parameterCount: 8000000000, parameterBits: 16}}
---
apiVersion: substratus.ai/v1
kind: ModelServer
metadata: {{name: chat, namespace: ml}}
spec:
  model: {{name: chat}}
  replicas: {replicas}
  rollout: {{maxSurge: {surge}}}
""")
    return root


def test_a_rollout_the_pools_maximum_cannot_hold_is_refused_at_plan(
        cli, fakes: tuple[FakeGKE, str], tmp_path: Path) -> None:
    gke, bucket = fakes
    root = workspace(tmp_path / "ws", bucket, l4_max=2, replicas=2, surge=1)
    plan = cli("plan", root)
    assert plan.code == 1, plan.output
    assert ("models.yaml:14: ModelServer 'chat': its rollout: 2 replica(s) + 1 surge = 3 pods x 1 x nvidia-l4 = "
            "3 GPUs, but NodePool l4: at most 2 node(s) x 1 pod(s): room for 2") in plan.err
    assert "raise the node pool's autoscaling.max, or lower replicas or rollout.maxSurge" \
        in plan.err
    assert "Traceback" not in plan.output and "Internal error" not in plan.output
    assert [m for m, _ in gke.requests if m != "GET"] == []  # refused before anything is paid


def test_the_plan_prices_each_pool_and_sums_the_hourly_change(
        cli, fakes: tuple[FakeGKE, str], tmp_path: Path) -> None:
    _, bucket = fakes
    root = workspace(tmp_path / "ws", bucket, l4_max=2)
    plan = cli("plan", root)
    assert plan.code == 0, plan.output
    out = plan.out
    assert (f"# price: g2-standard-8 (with 1 x nvidia-l4): ${G2['on_demand']:.2f}/h on demand, "
            f"${G2['spot']:.2f}/h spot, a node") in out
    assert (f"# price: at most 2 nodes (autoscaling max 2 a zone x 1 zone) at spot: "
            f"${2 * G2['spot']:.2f}/h") in out
    assert (f"# price: at most 1 node (autoscaling max 1 a zone x 1 zone) at on demand: "
            f"${E2['on_demand']:.2f}/h") in out
    total = 2 * G2["spot"] + E2["on_demand"]
    assert (f"Cost: +${total:.2f} an hour at most (list prices of {PRICES['as_of']}, us-central1: "
            "providers/gcp/prices.yaml)") in out
    assert '# gpu driver: GKE installs the LATEST driver on every node' in out
    # The server's rollout: 1 replica and 1 of surge, each on one L4 (it fits one: 17.9 GiB).
    assert ("# rollout: 1 replica(s) + 1 surge = 2 pods x 1 x nvidia-l4 = 2 GPUs; NodePool l4: at "
            "most 2 node(s) x 1 pod(s): room for 2") in out
    assert "which fits 1 x L4 (22.5 GiB usable of 24 GB)" in out

    saved = cli("plan", "--out", tmp_path / "plan.json", root)  # a saved plan keeps the costs
    assert saved.code == 0, saved.output
    shown = cli("show", tmp_path / "plan.json")
    assert shown.code == 0 and f"Cost: +${total:.2f} an hour at most" in shown.out, shown.output

    as_json = json.loads(cli("plan", "--json", root).out)
    changes = {c["address"]: c for c in as_json["resource_changes"]}
    assert changes["NodePool/ml/l4"]["cost"]["after"] == pytest.approx(2 * G2["spot"])
    assert changes["NodePool/ml/l4"]["cost"]["before"] == 0
    assert "cost" not in changes["Cluster/ml/gke"]
    assert as_json["summary"]["cost"] == {
        "hourly_delta": pytest.approx(total), "currency": "USD",
        "bases": [f"list prices of {PRICES['as_of']}, us-central1: providers/gcp/prices.yaml"],
        "unpriced": 0}


def test_a_pool_sized_for_a_workload_is_priced(
        cli, fakes: tuple[FakeGKE, str], tmp_path: Path) -> None:
    gke, bucket = fakes
    root = workspace(tmp_path / "ws", bucket, l4_max=2)
    models = root / "models.yaml"  # 13B: more than an L4 holds, so a sized A100 pool is added
    models.write_text(models.read_text().replace("8000000000", "13000000000"))
    plan = cli("plan", root)
    assert plan.code == 0, plan.output
    assert "+ NodePool/ml/gpu-a100-x1" in plan.out
    # Four zones of us-central1 offer the A100 40GB; 2 pods need 1 node a zone at most.
    assert (f"# price: at most 4 nodes (autoscaling max 1 a zone x 4 zones) at on demand: "
            f"${4 * A2['on_demand']:.2f}/h") in plan.out


def test_apply_installs_the_driver_and_a_resize_or_a_destroy_shows_the_difference(
        cli, fakes: tuple[FakeGKE, str], tmp_path: Path) -> None:
    gke, bucket = fakes
    root = workspace(tmp_path / "ws", bucket, l4_max=2)
    for workload in ("environment.yaml", "models.yaml"):  # the pools alone, on the local runtime
        (root / workload).unlink()
    applied = cli("apply", "--auto-approve", root)
    assert applied.code == 0, applied.output
    pool = gke.state.get_node_pool(f"{CLUSTER}/nodePools/l4")
    assert pool["config"]["accelerators"][0]["gpuDriverInstallationConfig"] == {
        "gpuDriverVersion": "LATEST"}

    edited = (root / "infra.yaml").read_text().replace("max: 2}", "max: 3}")
    (root / "infra.yaml").write_text(edited)
    resize = cli("plan", root)
    assert resize.code == 0, resize.output
    assert "~ spec.autoscaling.max: 2 -> 3" in resize.out
    assert (f"# price: ${2 * G2['spot']:.2f}/h -> ${3 * G2['spot']:.2f}/h at most"
            in resize.out), resize.out
    assert re.search(rf"Cost: \+\${G2['spot']:.2f} an hour at most", resize.out), resize.out

    destroy = cli("plan", "-destroy", root)
    assert destroy.code == 0, destroy.output
    assert f"# price: ${2 * G2['spot']:.2f}/h at most saved" in destroy.out
    saved = 2 * G2["spot"] + E2["on_demand"]
    assert re.search(rf"Cost: -\${saved:.2f} an hour at most", destroy.out), destroy.out
    assert cli("destroy", "--auto-approve", root).code == 0
