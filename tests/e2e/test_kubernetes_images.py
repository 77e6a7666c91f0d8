"""A ModelServer whose image is built from a folder (spec.build), on the test control plane with a
real registry: the Image is built and pushed first, the Deployment runs it pinned by the digest
the registry serves, and a change in the folder rebuilds it and rolls the server out."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus_artifacts.registry import RegistryClient
from tests.cluster.controlplane import ControlPlane
from tests.registry import RegistryServer, registry_server
from tests.support.cluster import started_cluster
from tests.support.gcs import bucket_beside

pytestmark = pytest.mark.timeout(1800)  # the first test may build the control plane


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    yield from started_cluster(request)


@pytest.fixture(scope="module")
def bucket(cluster: ControlPlane) -> Iterator[str]:
    """A bucket in a fake-gcs-server, and the environment that points substratus at both."""
    with bucket_beside(cluster.kubeconfig) as name:
        yield name


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    with registry_server() as server:
        yield server


def workspace(root: Path, bucket: str, registry: str) -> Path:
    root.mkdir(parents=True)
    (root / "environment.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Environment
metadata: {{name: cluster}}
spec:
  runtime: kubernetes
  kubernetes: {{context: substratus-test, namespace: built}}
  artifacts: gs://{bucket}/artifacts
  registry: {registry}/ml
""")
    (root / "server.yaml").write_text("""\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {name: rows}
spec:
  source: {path: rows.jsonl}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: base}
spec:
  source: {path: weights}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: tiny}
spec:
  training: {baseModel: {name: base}, dataset: {name: rows}}
  build:
    context: trainer
---
apiVersion: substratus.ai/v1
kind: ModelServer
metadata: {name: tiny}
spec:
  model: {name: tiny}
  build:
    context: server
""")
    (root / "weights").mkdir()
    (root / "weights" / "config.json").write_text("{}")
    (root / "rows.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    (root / "trainer").mkdir()
    (root / "trainer" / "Dockerfile").write_text("FROM scratch\nCOPY train.py /train.py\n")
    (root / "trainer" / "train.py").write_text("print('training')\n")
    (root / "server").mkdir()
    (root / "server" / "Dockerfile").write_text("FROM scratch\nCOPY serve.py /serve.py\n")
    (root / "server" / "serve.py").write_text("print('serving')\n")
    time.sleep(0.2)  # files written within the last instant are never trusted to the stat cache
    return root


def deployed_image(cluster: ControlPlane) -> str:
    deployment = cluster.request("GET", "/apis/apps/v1/namespaces/built/deployments/server-tiny")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return str(container["image"])


def trained_image(cluster: ControlPlane) -> str:
    job = cluster.request("GET", "/apis/batch/v1/namespaces/built/jobs/model-tiny")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return str(container["image"])


def pushed(registry: RegistryServer, root: Path, name: str = "server-tiny") -> str:
    """The image the registry serves at the tag substratus recorded, pinned by its digest."""
    inventory = json.loads((root / ".substratus" / "state" / "inventory.json").read_text())
    status = next(e["status"] for e in inventory["resources"]
                  if e["address"] == f"Image/built/{name}")
    found = RegistryClient(registry.host).head_manifest(f"ml/built-{name}", status["tag"])
    assert found is not None
    return f"{registry.host}/ml/built-{name}@{found.digest}"


def test_a_built_image_is_pushed_first_and_run_by_its_digest(
        cli, cluster: ControlPlane, bucket: str, registry: RegistryServer,
        tmp_path: Path) -> None:
    root = workspace(tmp_path / "ws", bucket, registry.host)
    planned = cli("plan", root)
    assert planned.code == 0, planned.output
    assert "+ Image/built/server-tiny" in planned.out
    assert "+ Image/built/model-tiny" in planned.out
    assert planned.out.index("Image/built/server-tiny") < planned.out.index(
        "ModelServer/built/tiny")
    assert planned.out.index("Image/built/model-tiny") < planned.out.index("Model/built/tiny")

    applied = cli("apply", "--auto-approve", root)
    assert applied.code == 0, applied.output
    first = pushed(registry, root)
    assert deployed_image(cluster) == first
    assert trained_image(cluster) == pushed(registry, root, "model-tiny")
    assert cli("plan", "--detailed-exitcode", root).code == 0

    (root / "server" / "serve.py").write_text("print('serving, faster')\n")
    changed = cli("plan", "--detailed-exitcode", root)
    assert changed.code == 2, changed.output
    assert ("# Image/built/server-tiny will be updated in-place (1 file of the context changed "
            "(serve.py): rebuild)") in changed.out
    assert "# ModelServer/built/tiny will be updated in-place (image digest changed)" \
        in changed.out
    # Exactly that build and the server's rollout: the trainer's image and Job are untouched.
    assert "Plan: 0 to add, 2 to change, 0 to destroy." in changed.out
    assert cli("apply", "--auto-approve", root).code == 0
    second = pushed(registry, root)
    assert second != first and deployed_image(cluster) == second
    assert cli("plan", "--detailed-exitcode", root).code == 0
