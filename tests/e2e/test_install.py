"""install/gke/bootstrap.sh end to end, in a real bash, against the GKE fake and fake-gcs-server
(gcloud's steps, enabling APIs and making the Artifact Registry repository, need a real project
and are skipped with SUBSTRATUS_BOOTSTRAP_NO_GCLOUD=1; image builds with --no-images). The
script copies install/gke's workspace (the gke-platform stack, with the project, region and
registry as variables) as it is, and an install made before the stack existed carries over."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from substratus_cli import __version__
from tests.conftest import REPO
from tests.gke import FakeGKE, Settings
from tests.gke.resources import ApiError
from tests.registry import registry_server
from tests.support.gcs import fake_gcs_server

SCRIPT = REPO / "install" / "gke" / "bootstrap.sh"
# fake-gcs-server reports every bucket in US-CENTRAL1, whatever it was created with, so the region
# is that one: another would read as a bucket that moved and plan its replacement every time.
REGION = "us-central1"
CLUSTER = f"projects/acme-ml/locations/{REGION}/clusters/substratus"


@pytest.fixture
def fakes() -> Iterator[tuple[FakeGKE, str]]:
    with FakeGKE(Settings(operation_polls=1, operation_seconds=None)) as gke, \
            fake_gcs_server() as gcs:
        yield gke, gcs


def bootstrap(*args: str, gke: FakeGKE, gcs: str, workdir: Path,
              registry: str = "") -> subprocess.CompletedProcess[str]:
    # The substratus of the interpreter running the tests, whether or not its venv is activated.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path,
           "SUBSTRATUS_GKE_ENDPOINT": gke.url, "SUBSTRATUS_GKE_POLL_SECONDS": "0.02",
           "STORAGE_EMULATOR_HOST": gcs, "SUBSTRATUS_BOOTSTRAP_NO_GCLOUD": "1",
           "SUBSTRATUS_BOOTSTRAP_DIR": str(workdir)}
    if registry:
        env["SUBSTRATUS_BOOTSTRAP_REGISTRY"] = registry
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_bootstrap_makes_the_cluster_pools_and_bucket_and_a_second_run_changes_nothing(
        fakes: tuple[FakeGKE, str], tmp_path: Path) -> None:
    gke, gcs = fakes
    first = bootstrap("acme-ml", REGION, "--no-images", gke=gke, gcs=gcs,
                      workdir=tmp_path / "stack")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in first.stdout
    # The Environment it prints is the stack's outputs.
    assert f"context: gke_acme-ml_{REGION}_substratus" in first.stdout
    assert f"get-credentials substratus --location {REGION} --project acme-ml" in first.stdout
    assert "artifacts: gs://acme-ml-substratus/artifacts" in first.stdout
    assert "state: gs://acme-ml-substratus/state" in first.stdout
    assert f"registry: {REGION}-docker.pkg.dev/acme-ml/substratus" in first.stdout
    # The workspace is install/gke's files as they are: the values are variables, not edits.
    for name in ("environment.yaml", "platform.yaml", "variables.yaml"):
        assert (tmp_path / "stack" / name).read_text() == (SCRIPT.parent / name).read_text()

    cluster = gke.state.get_cluster(CLUSTER)
    assert cluster["status"] == "RUNNING"
    pools = {p["name"]: p for p in gke.state.list_node_pools(CLUSTER)["nodePools"]}
    assert sorted(pools) == ["cpu", "l4"]
    # Scales from zero: JSON leaves a zero minNodeCount out.
    assert pools["l4"]["autoscaling"].get("minNodeCount", 0) in (0, "0")
    assert int(pools["l4"]["autoscaling"]["maxNodeCount"]) == 3
    assert pools["l4"]["config"]["accelerators"][0]["acceleratorType"] == "nvidia-l4"
    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": gcs})
    assert client.lookup_bucket("acme-ml-substratus") is not None

    second = bootstrap("acme-ml", REGION, "--no-images", gke=gke, gcs=gcs,
                       workdir=tmp_path / "stack")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "No changes." in second.stdout


def test_bootstrap_refuses_a_bad_project_id_and_needs_one(
        fakes: tuple[FakeGKE, str], tmp_path: Path) -> None:
    gke, gcs = fakes
    bad = bootstrap("Acme_ML", gke=gke, gcs=gcs, workdir=tmp_path / "stack")
    assert bad.returncode == 3
    assert "error: project id 'Acme_ML': lowercase letters, digits and '-' only" in bad.stderr
    zone = bootstrap("acme-ml", f"{REGION}-a", gke=gke, gcs=gcs, workdir=tmp_path / "stack")
    assert zone.returncode == 3
    assert f"error: region '{REGION}-a': a Google Cloud region such as us-central1, not a zone" \
        in zone.stderr
    short = bootstrap("acme", REGION, gke=gke, gcs=gcs, workdir=tmp_path / "stack")
    assert short.returncode == 3
    assert "error: project id 'acme': 6 to 30 characters, starting with a letter and not " \
        "ending with '-'" in short.stderr
    assert not (tmp_path / "stack").exists() and gke.requests == []
    # The workspace's own variables refuse the same, for whoever runs substratus there by hand.
    by_hand = subprocess.run([sys.executable, "-m", "substratus_cli", "validate",
                              str(SCRIPT.parent), "--var", "project=acme", "--var",
                              "region=us-central1-a", "--var", "registry=r.example/substratus"],
                             capture_output=True, text=True, timeout=120)
    assert by_hand.returncode == 3, by_hand.stdout + by_hand.stderr
    assert 'variable "project": "acme" does not match the pattern' in by_hand.stderr
    assert 'variable "region": "us-central1-a" does not match the pattern' in by_hand.stderr
    missing = bootstrap(gke=gke, gcs=gcs, workdir=tmp_path / "stack")
    assert missing.returncode == 3 and "bootstrap.sh PROJECT [REGION]" in missing.stderr
    assert not (tmp_path / "stack").exists()


def test_bootstrap_plans_the_workload_images_it_builds_without_docker(
        fakes: tuple[FakeGKE, str], tmp_path: Path) -> None:
    # Building them for real needs their python base image from a registry this machine cannot
    # reach; the plan shows that substratus (not docker) builds them, from this checkout.
    gke, gcs = fakes
    with registry_server() as registry:
        planned = bootstrap("acme-ml", REGION, "--plan", gke=gke, gcs=gcs,
                            workdir=tmp_path / "stack", registry=f"{registry.host}/substratus")
        assert planned.returncode == 0, planned.stdout + planned.stderr
        assert "would enable the GKE, Cloud Storage and Artifact Registry APIs" in planned.stdout
        for program in ("scratch", "trainer", "server", "notebook", "loader"):
            assert f"+ Image/default/substratus-{program}" in planned.stdout
            assert re.search(rf'\+ status\.image +\= "{re.escape(registry.host)}/substratus/'
                             rf'substratus-{program}:[0-9a-f]{{20}}"', planned.stdout)
        assert len(re.findall(rf'\+ spec\.tags +\= \["{re.escape(__version__)}"\]',
                              planned.stdout)) == 5
        assert "Plan: 9 to add, 0 to change, 0 to destroy." in planned.stdout
        with pytest.raises(ApiError, match="Not found"):  # a plan makes nothing
            gke.state.get_cluster(CLUSTER)
    # No docker command anywhere in the script (only Artifact Registry's "docker" format name).
    assert not re.search(r"(^|[;&|(]|then|do)\s*docker\s", SCRIPT.read_text(), re.M)


# What bootstrap.sh wrote before the stack existed (its files, with the project and region
# substituted by sed): the cluster, its pools and the bucket, each in a file of its own.
BEFORE_STACKS = {
    "cluster.yaml": f"""\
apiVersion: substratus.ai/v1
kind: Cluster
metadata:
  name: substratus
spec:
  project: acme-ml
  location: {REGION}
  releaseChannel: REGULAR
  workloadIdentity: true
  imageStreaming: true
  gcsFuseCsiDriver: true
---
apiVersion: substratus.ai/v1
kind: NodePool
metadata:
  name: cpu
spec:
  cluster:
    name: substratus
  machineType: e2-standard-8
  autoscaling: {{min: 1, max: 3}}
---
apiVersion: substratus.ai/v1
kind: NodePool
metadata:
  name: l4
spec:
  cluster:
    name: substratus
  machineType: g2-standard-8
  accelerator: {{type: nvidia-l4, count: 1}}
  spot: true
  autoscaling: {{min: 0, max: 3}}
""",
    "bucket.yaml": f"""\
apiVersion: substratus.ai/v1
kind: Bucket
metadata:
  name: acme-ml-substratus
spec:
  project: acme-ml
  location: {REGION}
""",
    "environment.yaml": f"""\
apiVersion: substratus.ai/v1
kind: Environment
metadata:
  name: bootstrap
spec:
  runtime: local
  state: file://.substratus/state
  registry: {REGION}-docker.pkg.dev/acme-ml/substratus
""",
}


def test_an_install_made_before_the_stack_converges_with_no_changes(
        fakes: tuple[FakeGKE, str], tmp_path: Path) -> None:
    gke, gcs = fakes
    workdir = tmp_path / "stack"
    workdir.mkdir()
    for name, text in BEFORE_STACKS.items():
        (workdir / name).write_text(text)
    env = {**os.environ, "SUBSTRATUS_GKE_ENDPOINT": gke.url, "SUBSTRATUS_GKE_POLL_SECONDS": "0.02",
           "STORAGE_EMULATOR_HOST": gcs}
    old = subprocess.run([sys.executable, "-m", "substratus_cli", "apply", "--auto-approve",
                          str(workdir)], env=env, capture_output=True, text=True, timeout=300)
    assert old.returncode == 0, old.stdout + old.stderr
    assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in old.stdout

    planned = bootstrap("acme-ml", REGION, "--no-images", "--plan", gke=gke, gcs=gcs,
                        workdir=workdir)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "No changes." in planned.stdout
    # The stack renders what the old files declared: they are gone, not declared twice.
    assert not (workdir / "cluster.yaml").exists() and not (workdir / "bucket.yaml").exists()
    again = bootstrap("acme-ml", REGION, "--no-images", gke=gke, gcs=gcs, workdir=workdir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout
    assert sorted(p["name"] for p in gke.state.list_node_pools(CLUSTER)["nodePools"]) == \
        ["cpu", "l4"]
