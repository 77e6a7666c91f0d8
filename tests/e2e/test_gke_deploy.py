"""examples/gke end to end: one plan creates a GKE cluster and its node pools (the GKE fake), then
runs the quickstart's datasets, training and server on that cluster, reached with the endpoint and
CA the fake hands out (the test control plane's) and a bearer token google-auth fetches with
Application Default Credentials (a service account key whose token endpoint is the fake's).
Artifacts go to a real fake-gcs-server. A model that needs GPUs the cluster lacks gets a node
pool sized for it. Destroy takes it all down in reverse. The tests run in order and share one
workspace, as a user's runs would."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from tests.cluster.controlplane import ControlPlane
from tests.conftest import EXAMPLES
from tests.gke import FakeGKE, Settings
from tests.support.cluster import started_cluster
from tests.support.gcs import fake_gcs_server

pytestmark = pytest.mark.timeout(1800)  # the first test may build the control plane


def service_account_key(token_uri: str) -> dict[str, str]:
    """A service account key file whose token endpoint is the fake's: google-auth signs a JWT
    with the key and trades it there for an access token, as it does with Google's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": "my-project", "private_key_id": "test",
            "private_key": pem, "client_email": "substratus@my-project.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": token_uri}


def nodes_of(cluster: ControlPlane) -> Callable[[dict[str, Any]], None]:
    """GKE brings a node pool's VMs up; here kwok nodes with the pool's GKE labels, one per pool
    (a pool that scales from zero gets its node as if a pod had asked for it)."""
    def create(pool: dict[str, Any]) -> None:
        accelerators = pool["config"].get("accelerators") or [{}]
        cluster.add_node_pool(pool["name"], 1,
                              accelerator=accelerators[0].get("acceleratorType"),
                              gpus=int(accelerators[0].get("acceleratorCount") or 0),
                              cpu="16", memory="64Gi")
    return create


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[ControlPlane, FakeGKE, Path]]:
    """The control plane, the GKE fake whose clusters point at it, fake-gcs-server with the
    artifacts bucket, and a copy of examples/gke pointed at them."""
    for cluster in started_cluster(request):
        settings = Settings.pointing_at(cluster.server, cluster.ca_file, access_token=cluster.token,
                                        operation_polls=1, operation_seconds=None,
                                        on_node_pool_created=nodes_of(cluster))
        with FakeGKE(settings) as gke, fake_gcs_server() as gcs, \
                pytest.MonkeyPatch.context() as mp:
            adc = tmp_path_factory.mktemp("adc") / "credentials.json"
            adc.write_text(json.dumps(service_account_key(f"{gke.url}/token")))
            for name, value in (("SUBSTRATUS_GKE_ENDPOINT", gke.url),
                                ("SUBSTRATUS_GKE_POLL_SECONDS", "0.02"),
                                ("STORAGE_EMULATOR_HOST", gcs),
                                ("GOOGLE_APPLICATION_CREDENTIALS", str(adc)),
                                ("KUBECONFIG", str(tmp_path_factory.mktemp("none") / "absent"))):
                mp.setenv(name, value)
            bucket = storage.Client(project="test", credentials=AnonymousCredentials()) \
                .create_bucket(f"artifacts-{uuid.uuid4().hex[:8]}").name
            root = tmp_path_factory.mktemp("gke") / "gke"
            shutil.copytree(EXAMPLES / "gke", root)
            env = root / "environment.yaml"
            env.write_text(env.read_text().replace("gs://my-project-substratus-artifacts/ml",
                                                   f"gs://{bucket}/ml"))
            yield cluster, gke, root


def test_one_plan_creates_the_cluster_and_its_pools_then_deploys_onto_it(
        cli, world: tuple[ControlPlane, FakeGKE, Path]) -> None:
    cluster, gke, root = world
    plan = cli("plan", "--json", root)
    assert plan.code == 0, plan.output
    changes = {c["address"]: c for c in json.loads(plan.out)["resource_changes"]}
    assert {a for a, c in changes.items() if c["change"]["actions"] == ["create"]} == {
        "Cluster/ml/substratus", "NodePool/ml/cpu", "NodePool/ml/l4", "Dataset/ml/color-facts",
        "Dataset/ml/favorite-colors", "Model/ml/base", "Model/ml/colors", "ModelServer/ml/colors"}

    applied = cli("apply", "--auto-approve", root)
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 8 added, 0 changed, 0 destroyed." in applied.out
    order = [line.split(":")[0] for line in applied.out.splitlines()
             if line.endswith("Creating...")]
    assert order.index("Cluster/ml/substratus") < order.index("NodePool/ml/cpu")
    for workload in ("Dataset/ml/favorite-colors", "Model/ml/base", "ModelServer/ml/colors"):
        assert order.index("NodePool/ml/cpu") < order.index(workload)
        assert order.index("NodePool/ml/l4") < order.index(workload)

    # The workloads are on the API server the GKE cluster's endpoint names.
    jobs = cluster.request("GET", "/apis/batch/v1/namespaces/ml/jobs")["items"]
    assert sorted(j["metadata"]["name"] for j in jobs) == ["model-base", "model-colors"]
    deployment = cluster.request("GET", "/apis/apps/v1/namespaces/ml/deployments/server-colors")
    assert deployment["status"]["availableReplicas"] == 1

    again = cli("plan", "--detailed-exitcode", root)
    assert again.code == 0, again.output
    assert "No changes." in again.out


LLM = """\
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: llm}
spec:
  source: {path: weights}
  size: {parameterCount: 13000000000, parameterBits: 16}
---
apiVersion: substratus.ai/v1
kind: ModelServer
metadata: {name: llm}
spec:
  model: {name: llm}
"""


def test_a_model_needing_gpus_the_cluster_lacks_gets_a_node_pool_created_before_it(
        cli, world: tuple[ControlPlane, FakeGKE, Path]) -> None:
    cluster, gke, root = world
    (root / "llm.yaml").write_text(LLM)
    (root / "weights").mkdir()
    (root / "weights" / "config.json").write_text("{}")

    plan = cli("plan", root)
    assert plan.code == 0, plan.output
    # 29.1 GiB: one A100 40GB (the server loads the model onto one GPU), the cheapest one-GPU
    # machine that holds it, in the zones of us-central1 that offer it.
    assert "+ NodePool/ml/gpu-a100-x1" in plan.out, plan.out
    assert re.search(r'\+ spec\.machineType +  = "a2-highgpu-1g"', plan.out), plan.out
    assert re.search(r'\+ spec\.accelerator\.gpuDriverVersion = "LATEST"', plan.out), plan.out
    assert "Plan: 3 to add, 0 to change, 0 to destroy." in plan.out
    assert ("# sizing: serving needs 13.0B parameters x 16 bits / 8 = 24.2 GiB of weights, x 1.2 "
            "for the KV cache and activations = 29.1 GiB, which fits 1 x A100 40GB (39.6 GiB "
            "usable of 40 GB) (substratus's trainer and server load a model onto one GPU, so one "
            "GPU must hold it)") in plan.out
    assert ("# rollout: 1 replica(s) + 1 surge = 2 pods x 1 x nvidia-tesla-a100 "
            "= 2 GPUs; NodePool gpu-a100-x1: at most 4 node(s) x 1 pod(s): room for 4") in plan.out
    assert "# price: a2-highgpu-1g (with 1 x nvidia-tesla-a100): $3.67/h on demand" in plan.out
    assert "Cost: +$" in plan.out

    applied = cli("apply", "--auto-approve", root)
    assert applied.code == 0, applied.output
    order = [line.split(":")[0] for line in applied.out.splitlines()
             if line.endswith("Creating...")]
    assert order.index("NodePool/ml/gpu-a100-x1") < order.index("ModelServer/ml/llm")
    pool = gke.state.get_node_pool("projects/my-project/locations/us-central1/clusters/"
                                   "substratus/nodePools/gpu-a100-x1")
    assert pool["config"]["accelerators"] == [{
        "acceleratorType": "nvidia-tesla-a100", "acceleratorCount": "1",
        "gpuDriverInstallationConfig": {"gpuDriverVersion": "LATEST"}}]
    pods = cluster.request("GET", "/api/v1/namespaces/ml/pods", query={
        "labelSelector": "substratus.ai/kind=ModelServer,substratus.ai/name=llm"})["items"]
    assert [p["spec"]["nodeName"] for p in pods] == ["gpu-a100-x1-0"]
    assert pods[0]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert cli("plan", "--detailed-exitcode", root).code == 0


def test_destroy_takes_the_workloads_down_before_the_pools_and_the_cluster(
        cli, world: tuple[ControlPlane, FakeGKE, Path]) -> None:
    cluster, _, root = world
    destroyed = cli("destroy", "--auto-approve", root)
    assert destroyed.code == 0, destroyed.output
    assert "Destroy complete! Resources: 11 destroyed." in destroyed.out
    order = [line.split(":")[0] for line in destroyed.out.splitlines()
             if line.endswith("Destroying...")]
    for workload in ("Dataset/ml/favorite-colors", "Model/ml/base", "ModelServer/ml/colors"):
        assert order.index(workload) < order.index("NodePool/ml/cpu")
    assert order.index("NodePool/ml/cpu") < order.index("Cluster/ml/substratus")
    assert order.index("NodePool/ml/l4") < order.index("Cluster/ml/substratus")
    assert order.index("ModelServer/ml/llm") < order.index("NodePool/ml/gpu-a100-x1")
    assert cluster.request("GET", "/apis/batch/v1/namespaces/ml/jobs")["items"] == []
    again = cli("destroy", "--auto-approve", root)
    assert again.code == 0 and "No changes." in again.out
