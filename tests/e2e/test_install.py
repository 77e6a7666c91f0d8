"""install/gke/bootstrap.sh end to end, in a real bash, against the GKE fake and fake-gcs-server
(gcloud's steps, enabling APIs and making the Artifact Registry repository, need a real project
and are skipped with SUBSTRATUS_BOOTSTRAP_NO_GCLOUD=1; image builds with --no-images)."""

from __future__ import annotations

import os
import re
import subprocess
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
    env = {**os.environ, "SUBSTRATUS_GKE_ENDPOINT": gke.url, "SUBSTRATUS_GKE_POLL_SECONDS": "0.02",
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
    assert "artifacts: gs://acme-ml-substratus/artifacts" in first.stdout
    assert f"registry: {REGION}-docker.pkg.dev/acme-ml/substratus" in first.stdout

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
