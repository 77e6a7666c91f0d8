"""The gcp provider end to end: the CLI in-process against the GKE fake (tests/gke) and a real
fake-gcs-server. A Cluster, a CPU and a GPU NodePool and a Bucket are planned and applied, changed
in place (while GKE is busy with another operation, or over its operation quota) and by
replacement, refused when someone else's cluster or bucket holds the name, and destroyed in
reverse. The tests run in order and share one workspace, as a user's runs would."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import container_v1, storage

from substratus_cli.action import Action
from substratus_cli.address import Address
from substratus_cli.provider import Batch, LiveObject, PlanItem, PlanRequest
from substratus_cli.resource import Resource
from substratus_providers.gcp import buckets
from tests.conftest import EXAMPLES, REPO
from tests.gke import FakeGKE, Settings
from tests.support.gcs import fake_gcs_server

pytestmark = pytest.mark.timeout(300)

PROJECT, LOCATION = "proj-1234", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
CLUSTER = f"{PARENT}/clusters/ml"
GKE_LOG = "substratus_providers.gcp.gke"

CLUSTER_YAML = f"""\
apiVersion: substratus.ai/v1
kind: Cluster
metadata:
  name: ml
spec:
  project: {PROJECT}
  location: {LOCATION}
  imageStreaming: true
"""
CPU_POOL = """\
apiVersion: substratus.ai/v1
kind: NodePool
metadata:
  name: cpu
spec:
  cluster: {name: ml}
  machineType: e2-standard-4
  autoscaling: {min: 1, max: 3}
"""
GPU_POOL = """\
apiVersion: substratus.ai/v1
kind: NodePool
metadata:
  name: gpu
spec:
  cluster: {name: ml}
  machineType: g2-standard-8
  accelerator: {type: nvidia-l4}
  spot: true
  autoscaling: {min: 0, max: 2}
  zones: [us-central1-a]
  taints:
  - {key: nvidia.com/gpu, value: present, effect: NoSchedule}
"""


@pytest.fixture(scope="module")
def gke() -> Iterator[FakeGKE]:
    """The GKE fake. Operations substratus starts are DONE after one poll (polled every 20 ms);
    one a test starts and nobody polls runs for two seconds."""
    with FakeGKE(Settings(operation_polls=1, operation_seconds=2.0)) as fake, \
            pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUBSTRATUS_GKE_ENDPOINT", fake.url)
        mp.setenv("SUBSTRATUS_GKE_POLL_SECONDS", "0.02")
        yield fake


@pytest.fixture(scope="module")
def gcs() -> Iterator[storage.Client]:
    with fake_gcs_server() as url, pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", url)
        yield storage.Client(project="test", credentials=AnonymousCredentials())


@pytest.fixture(scope="module")
def raw(gke: FakeGKE) -> container_v1.ClusterManagerClient:
    """The library's client, for operations a test starts behind substratus's back."""
    return container_v1.ClusterManagerClient(transport="rest", credentials=AnonymousCredentials(),
                                             client_options=gke.client_options)


@pytest.fixture(scope="module")
def bucket_name() -> str:
    return f"ml-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def workdir(gke: FakeGKE, gcs: storage.Client, bucket_name: str,
            tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gcp") / "infra"
    root.mkdir()
    (root / "cluster.yaml").write_text(CLUSTER_YAML)
    (root / "nodepools.yaml").write_text(CPU_POOL + "---\n" + GPU_POOL)
    (root / "bucket.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Bucket
metadata:
  name: {bucket_name}
spec:
  project: {PROJECT}
  location: {LOCATION}
""")
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new))


def writes(gke: FakeGKE) -> list[tuple[str, str]]:
    return [(m, p) for m, p in gke.requests if m != "GET"]


def wait_done(raw: container_v1.ClusterManagerClient, operation: container_v1.Operation) -> None:
    name = f"{PARENT}/operations/{operation.name}"
    while raw.get_operation(name=name).status != container_v1.Operation.Status.DONE:
        time.sleep(0.05)


def test_plan_creates_the_cluster_before_its_node_pools(cli, workdir: Path, gke: FakeGKE) -> None:
    plan = cli("plan", workdir)
    assert plan.code == 0, plan.output
    out = plan.out
    assert "Plan: 4 to add, 0 to change, 0 to destroy." in out
    assert out.index("+ Cluster/default/ml") < out.index("+ NodePool/default/cpu")
    assert out.index("+ Cluster/default/ml") < out.index("+ NodePool/default/gpu")
    assert re.search(r"\+ status\.endpoint +=  ?\(known after apply\)", out)
    assert re.search(rf'\+ status\.cluster += "{CLUSTER}"', out)
    as_json = json.loads(cli("plan", "--json", workdir).out)
    depends = {c["address"]: c["depends_on"] for c in as_json["resource_changes"]}
    assert depends["NodePool/default/gpu"] == ["Cluster/default/ml"]
    assert writes(gke) == []  # a plan only reads


def test_apply_converges_and_an_immediate_plan_is_empty(
        cli, workdir: Path, gke: FakeGKE, gcs: storage.Client, bucket_name: str) -> None:
    applied = cli("apply", "--auto-approve", workdir)
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in applied.out
    assert "Cluster/default/ml: Creation complete after" in applied.out
    assert "[endpoint=https://127.0.0.1]" in applied.out

    posts = [p for m, p in writes(gke) if m == "POST"]
    assert posts[0] == f"/v1/{PARENT}/clusters"
    assert sorted(posts[1:]) == [f"/v1/{CLUSTER}/nodePools"] * 2
    # GKE's default pool went with the cluster's creation: pools are NodePool resources.
    assert ("DELETE", f"/v1/{CLUSTER}/nodePools/default-pool") in writes(gke)
    cluster = gke.state.clusters[CLUSTER]
    lineage = json.loads((workdir / ".substratus/state/inventory.json").read_text())["lineage"]
    ours = {"managed-by": "substratus", "substratus-part-of": lineage,
            "substratus-namespace": "default"}
    assert cluster.json["resourceLabels"] == ours
    assert sorted(cluster.pools) == ["cpu", "gpu"]
    gpu = cluster.pools["gpu"]
    assert gpu["config"]["labels"] == ours
    assert gpu["config"]["accelerators"] == [{
        "acceleratorType": "nvidia-l4", "acceleratorCount": "1",
        "gpuDriverInstallationConfig": {"gpuDriverVersion": "LATEST"}}]
    assert gpu["config"]["spot"] is True and gpu["locations"] == ["us-central1-a"]
    assert gpu["autoscaling"] == {"enabled": True, "maxNodeCount": 2}  # min 0 is proto3's default
    assert gcs.lookup_bucket(bucket_name) is not None

    before = len(gke.requests)
    again = cli("plan", "--detailed-exitcode", workdir)
    assert again.code == 0, again.output
    assert "No changes. Live state matches the resource files." in again.out
    assert [m for m, _ in gke.requests[before:]] == ["GET", "GET"]  # clusters, then node pools
    listed = cli("state", "list", workdir)
    assert "Cluster/default/ml" in listed.out and "endpoint=https://127.0.0.1" in listed.out


def test_cluster_fields_change_in_place_one_update_each(cli, workdir: Path, gke: FakeGKE) -> None:
    edit(workdir / "cluster.yaml", "imageStreaming: true", "imageStreaming: false\n"
                                                          "  releaseChannel: STABLE")
    plan = cli("plan", workdir)
    assert plan.code == 0, plan.output
    assert "~ Cluster/default/ml" in plan.out
    assert '~ spec.releaseChannel: "REGULAR" -> "STABLE"' in plan.out
    assert "~ spec.imageStreaming: true -> false" in plan.out
    assert "forces replacement" not in plan.out
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.out

    before = len(gke.requests)
    applied = cli("apply", "--auto-approve", workdir)
    assert applied.code == 0, applied.output
    assert [r for r in gke.requests[before:] if r[0] == "PUT"] == [("PUT", f"/v1/{CLUSTER}")] * 2
    assert cli("plan", "--detailed-exitcode", workdir).code == 0


def test_a_node_pool_update_waits_out_another_operation_on_the_cluster(
        cli, workdir: Path, gke: FakeGKE, raw: container_v1.ClusterManagerClient,
        caplog: pytest.LogCaptureFixture) -> None:
    edit(workdir / "nodepools.yaml", "autoscaling: {min: 0, max: 2}", "autoscaling: {min: 0, max: 4}")
    plan = cli("plan", workdir)
    assert plan.code == 0, plan.output
    assert "~ NodePool/default/gpu" in plan.out
    assert "~ spec.autoscaling.max: 2 -> 4" in plan.out
    assert "forces replacement" not in plan.out
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.out

    # An upgrade of the control plane runs on the cluster for two seconds.
    busy = raw.update_cluster(name=CLUSTER, update=container_v1.ClusterUpdate(
        desired_master_version="-"))
    before = len(gke.requests)
    with caplog.at_level(logging.WARNING, logger=GKE_LOG):
        applied = cli("apply", "--auto-approve", workdir)
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 0 added, 1 changed, 0 destroyed." in applied.out
    assert raw.get_operation(name=f"{PARENT}/operations/{busy.name}").status == \
        container_v1.Operation.Status.DONE
    sent = [r for r in gke.requests[before:] if r[1].endswith("/nodePools/gpu:setAutoscaling")]
    assert len(sent) >= 2  # refused while the upgrade ran, then sent again
    assert any("Cluster is running incompatible operation" in m and "retrying in 2 s" in m
               for m in caplog.messages), caplog.messages
    assert gke.state.clusters[CLUSTER].pools["gpu"]["autoscaling"]["maxNodeCount"] == 4
    assert cli("plan", "--detailed-exitcode", workdir).code == 0


def test_a_full_operation_quota_backs_off(
        cli, workdir: Path, gke: FakeGKE, raw: container_v1.ClusterManagerClient,
        caplog: pytest.LogCaptureFixture) -> None:
    edit(workdir / "nodepools.yaml", "autoscaling: {min: 0, max: 4}", "autoscaling: {min: 1, max: 4}")
    gke.settings.concurrent_operations = 1
    try:
        # Another pool's resize takes the cluster's one concurrent operation for two seconds.
        raw.set_node_pool_size(request={"name": f"{CLUSTER}/nodePools/cpu", "node_count": 2})
        with caplog.at_level(logging.WARNING, logger=GKE_LOG):
            applied = cli("apply", "--auto-approve", workdir)
    finally:
        gke.settings.concurrent_operations = 5
    assert applied.code == 0, applied.output
    assert any('hits the concurrent operations quota 1' in m and "retrying in 2 s (retry 1)" in m
               for m in caplog.messages), caplog.messages
    assert gke.state.clusters[CLUSTER].pools["gpu"]["autoscaling"]["minNodeCount"] == 1
    assert cli("plan", "--detailed-exitcode", workdir).code == 0


def test_an_accelerator_change_replaces_the_node_pool(
        cli, workdir: Path, gke: FakeGKE, tmp_path: Path) -> None:
    edit(workdir / "nodepools.yaml", "machineType: g2-standard-8\n  accelerator: {type: nvidia-l4}",
         "machineType: a2-highgpu-1g\n  accelerator: {type: nvidia-tesla-a100}")
    plan = cli("plan", "--out", tmp_path / "plan.json", workdir)
    assert plan.code == 0, plan.output
    assert "-/+ NodePool/default/gpu" in plan.out
    assert "must be replaced (GKE cannot change a node pool's accelerator, spot or cluster)" \
        in plan.out
    assert '~ spec.accelerator.type: "nvidia-l4" -> "nvidia-tesla-a100" # forces replacement' \
        in plan.out
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in plan.out

    applied = cli("apply", tmp_path / "plan.json")  # exactly the saved plan
    assert applied.code == 0, applied.output
    assert "Resources: 1 added, 0 changed, 1 destroyed." in applied.out
    assert writes(gke)[-2:] == [("DELETE", f"/v1/{CLUSTER}/nodePools/gpu"),
                                ("POST", f"/v1/{CLUSTER}/nodePools")]
    gpu = gke.state.clusters[CLUSTER].pools["gpu"]
    assert gpu["config"]["accelerators"][0]["acceleratorType"] == "nvidia-tesla-a100"
    assert cli("plan", "--detailed-exitcode", workdir).code == 0


def test_a_failed_node_pool_names_its_file_and_is_replaced_by_the_next_apply(
        cli, workdir: Path, gke: FakeGKE) -> None:
    (workdir / "nodepools.yaml").write_text(
        (workdir / "nodepools.yaml").read_text() + "---\n" + CPU_POOL.replace("name: cpu",
                                                                              "name: spare"))
    gke.fail_next_operation(match="CREATE_NODE_POOL")  # a stockout, as GKE words it
    failed = cli("apply", "--auto-approve", workdir)
    assert failed.code == 6, failed.output
    assert re.search(r"NodePool/default/spare: nodepools\.yaml:\d+: creating GKE node pool spare "
                     r"of cluster ml \(proj-1234/us-central1\) failed: The zone does not have enough "
                     r"resources available", failed.output), failed.output
    assert "Traceback" not in failed.output

    plan = cli("plan", workdir)
    assert "-/+ NodePool/default/spare" in plan.out
    assert "must be replaced (GKE reports it failed: The zone does not have enough" in plan.out
    applied = cli("apply", "--auto-approve", workdir)
    assert applied.code == 0, applied.output
    assert gke.state.clusters[CLUSTER].pools["spare"]["config"]["machineType"] == "e2-standard-4"
    assert cli("plan", "--detailed-exitcode", workdir).code == 0


def test_a_change_made_outside_substratus_is_drift_and_the_next_apply_restores_it(
        cli, workdir: Path, raw: container_v1.ClusterManagerClient) -> None:
    wait_done(raw, raw.set_node_pool_autoscaling(request={
        "name": f"{CLUSTER}/nodePools/cpu",
        "autoscaling": {"enabled": True, "min_node_count": 1, "max_node_count": 7}}))
    plan = cli("plan", "--detailed-exitcode", workdir)
    assert plan.code == 2, plan.output
    drift, _, actions = plan.out.partition("Substratus will perform the following actions:")
    assert "NodePool/default/cpu changed outside substratus since the last apply" in drift
    assert "~ spec.autoscaling.max: 3 -> 7" in drift
    assert "~ spec.autoscaling.max: 7 -> 3" in actions
    applied = cli("apply", "--auto-approve", workdir)
    assert applied.code == 0, applied.output
    assert cli("plan", "--detailed-exitcode", workdir).code == 0


def test_node_pools_removed_from_the_files_are_destroyed(cli, workdir: Path, gke: FakeGKE) -> None:
    # Their resource files are gone: the state says which cluster they are in.
    (workdir / "nodepools.yaml").write_text(CPU_POOL)
    plan = cli("plan", workdir)
    assert plan.code == 0, plan.output
    assert "# NodePool/default/gpu will be destroyed (not in the resource files)" in plan.out
    assert "# NodePool/default/spare will be destroyed (not in the resource files)" in plan.out
    assert "Plan: 0 to add, 0 to change, 2 to destroy." in plan.out
    applied = cli("apply", "--auto-approve", workdir)
    assert applied.code == 0, applied.output
    assert sorted(gke.state.clusters[CLUSTER].pools) == ["cpu"]
    assert cli("plan", "--detailed-exitcode", workdir).code == 0


def test_someone_elses_cluster_and_bucket_of_the_same_name_are_refused(
        cli, gke: FakeGKE, gcs: storage.Client, raw: container_v1.ClusterManagerClient,
        tmp_path: Path) -> None:
    wait_done(raw, raw.create_cluster(parent=PARENT, cluster=container_v1.Cluster(
        name="taken", initial_node_count=1)))
    foreign = gcs.create_bucket(f"theirs-{uuid.uuid4().hex[:8]}").name
    (tmp_path / "cluster.yaml").write_text(CLUSTER_YAML.replace("name: ml", "name: taken"))
    (tmp_path / "bucket.yaml").write_text(
        f"apiVersion: substratus.ai/v1\nkind: Bucket\nmetadata: {{name: {foreign}}}\n"
        f"spec: {{location: {LOCATION}}}\n")
    before = len(writes(gke))
    for command in (("plan",), ("apply", "--auto-approve")):
        refused = cli(*command, tmp_path)
        assert refused.code == 1, refused.output
        assert "refusing to change objects substratus does not own:" in refused.output
        assert "Cluster/default/taken (cluster.yaml:1): exists and is not managed by " \
               "substratus" in refused.output
        assert f"Bucket/default/{foreign} (bucket.yaml:1): exists and is not managed by " \
               "substratus" in refused.output
    assert len(writes(gke)) == before
    assert gcs.lookup_bucket(foreign) is not None


def test_a_failed_read_fails_the_plan(cli, workdir: Path, gke: FakeGKE) -> None:
    gke.fail_requests(403, "PERMISSION_DENIED", "Required 'container.clusters.list' permission "
                      f"for '{PARENT}'.", match=f"GET /v1/{PARENT}/clusters")
    plan = cli("plan", workdir)
    assert plan.code == 1, plan.output
    assert f"listing GKE clusters in {PROJECT}/{LOCATION}: access denied: Required " \
           "'container.clusters.list' permission" in plan.output
    assert "to add" not in plan.output


def test_destroy_removes_the_pools_before_the_cluster_and_keeps_data(
        cli, workdir: Path, gke: FakeGKE, gcs: storage.Client, bucket_name: str) -> None:
    gcs.bucket(bucket_name).blob("data.txt").upload_from_string("precious")
    before = len(gke.requests)
    partial = cli("destroy", "--auto-approve", workdir)
    assert partial.code == 6, partial.output
    assert f"bucket {bucket_name} is not empty (it holds data.txt); substratus does not delete " \
           "data" in partial.output
    deletes = [p for m, p in gke.requests[before:] if m == "DELETE"]
    assert deletes == [f"/v1/{CLUSTER}/nodePools/cpu", f"/v1/{CLUSTER}"]
    assert CLUSTER not in gke.state.clusters

    gcs.bucket(bucket_name).blob("data.txt").delete()
    done = cli("destroy", "--auto-approve", workdir)
    assert done.code == 0, done.output
    assert "Destroy complete! Resources: 1 destroyed." in done.out
    assert gcs.lookup_bucket(bucket_name) is None
    assert json.loads((workdir / ".substratus/state/inventory.json").read_text())[
        "resources"] == []

    before = len(gke.requests)
    again = cli("destroy", "--auto-approve", workdir)
    assert again.code == 0, again.output
    assert "No changes." in again.out
    assert {m for m, _ in gke.requests[before:]} == {"GET"}  # it looked, and found nothing


# fake-gcs-server keeps no bucket labels, storage class or location (it answers STANDARD in
# US-CENTRAL1), so those changes are planned here against a bucket as Cloud Storage reports it.

def gcs_bucket() -> LiveObject:
    a = Address("Bucket", "default", "ml-data")
    return LiveObject(a, {"location": "US-CENTRAL1", "storageClass": "STANDARD"},
                      {"url": "gs://ml-data"},
                      {"team": "ml", "app.kubernetes.io/managed-by": "substratus",
                       "substratus.ai/part-of": "lineage"}, "gcs:2024-05-01T10:00:00/3/17")


def bucket_plan(spec: dict[str, str], labels: dict[str, str]):
    r = Resource(Address("Bucket", "default", "ml-data"), spec, labels, "bucket.yaml", 1)
    item = PlanItem(r.address, r, gcs_bucket())
    # A plan compares what was read with the files: it sends no request (the client is not made).
    return buckets.Buckets(storage.Client, "lineage").plan(item, Batch(PlanRequest((item,))))


def test_bucket_storage_class_and_labels_change_in_place_and_location_replaces_it() -> None:
    same = bucket_plan({"location": "us-central1"}, {"team": "ml"})
    assert same.action is Action.NOOP  # locations compare without case; STANDARD is the default
    changed = bucket_plan({"location": "us-central1", "storageClass": "nearline"},
                          {"team": "research", "tier": "gold"})
    assert changed.action is Action.UPDATE
    assert [(c.path, c.before, c.after, c.forces_replacement) for c in changed.field_changes] == [
        ("spec.storageClass", "STANDARD", "NEARLINE", False),
        ("metadata.labels.team", "ml", "research", False),
        ("metadata.labels.tier", None, "gold", False)]
    moved = bucket_plan({}, {"team": "ml"})  # the default location is the US multi-region
    assert moved.action is Action.REPLACE
    assert [(c.path, c.forces_replacement) for c in moved.field_changes] == [
        ("spec.location", True)]


def test_a_workspace_without_gcp_kinds_never_loads_the_google_libraries(tmp_path: Path) -> None:
    (tmp_path / "datasets.yaml").write_text((EXAMPLES / "quickstart" / "datasets.yaml").read_text())
    shutil.copytree(EXAMPLES / "quickstart" / "data", tmp_path / "data")  # a link out is refused
    script = ("import contextlib, io, sys\n"
              "from substratus_cli.cli import run\n"
              "with contextlib.redirect_stdout(io.StringIO()):\n"
              f"    assert run(['plan', {str(tmp_path)!r}]) == 0\n"
              "print(sorted(m for m in sys.modules if m.startswith('google')))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_what_google_cloud_would_refuse_is_an_error_in_the_files(cli, tmp_path: Path) -> None:
    (tmp_path / "infra.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Cluster
metadata:
  name: a-cluster-name-much-longer-than-gke-allows
  labels: {{team: ml}}
spec: {{project: {PROJECT}, location: {LOCATION}}}
---
apiVersion: substratus.ai/v1
kind: Bucket
metadata:
  name: goog-data
  labels: {{Team: ml}}
spec: {{}}
""")
    plan = cli("plan", tmp_path)
    assert plan.code == 3, plan.output
    assert plan.err.splitlines() == [
        "Error: infra.yaml:4: metadata.name: Cluster 'a-cluster-name-much-longer-than-gke-allows': "
        "GKE names are at most 40 lowercase letters, digits and '-', starting with a letter",
        "Error: infra.yaml:5: metadata.labels: Cluster 'a-cluster-name-much-longer-than-gke-allows':"
        " labels on GKE clusters and node pools are not built yet",
        "  remove metadata.labels (GKE resources carry only substratus's ownership labels for now)",
        "Error: infra.yaml:11: metadata.name: Bucket 'goog-data': not a Cloud Storage bucket name",
        '  bucket names have 3 to 63 characters and neither start with "goog" nor contain "google"',
        "Error: infra.yaml:12: metadata.labels: Bucket 'goog-data': label key 'Team' is not a Google "
        "Cloud label key: use at most 63 lowercase letters, digits, '_' and '-', starting with a "
        "letter",
        "4 errors in the resource files."]
