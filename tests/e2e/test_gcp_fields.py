"""Bad input on the GCP kinds is refused at plan, never halfway through an apply: `validate` and
`plan` (in-process, the real entry point) against the GKE fake and fake-gcs-server, for fixed cases
(a location GKE does not know, a GPU type not offered in the cluster's region, a GPU count the
machine does not take) and for any empty or malformed value of any field of a Cluster, NodePool
or Bucket (hypothesis): exit 3 naming the file, line and field, never an internal error."""

from __future__ import annotations

import copy
import io
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from substratus_cli.cli import run
from tests.gke import FakeGKE, Settings
from tests.support.gcs import fake_gcs_server

pytestmark = pytest.mark.timeout(600)

CLUSTER: dict[str, Any] = {
    "apiVersion": "substratus.ai/v1", "kind": "Cluster", "metadata": {"name": "ml"},
    "spec": {"project": "my-project", "location": "us-central1", "releaseChannel": "REGULAR",
             "workloadIdentity": True, "imageStreaming": False, "gcsFuseCsiDriver": False}}
POOL: dict[str, Any] = {
    "apiVersion": "substratus.ai/v1", "kind": "NodePool", "metadata": {"name": "gpu"},
    "spec": {"cluster": {"name": "ml"}, "machineType": "g2-standard-8",
             "accelerator": {"type": "nvidia-l4", "count": 1, "gpuDriverVersion": "LATEST"},
             "spot": True, "autoscaling": {"min": 0, "max": 2}, "zones": ["us-central1-a"],
             "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]}}
BUCKET: dict[str, Any] = {
    "apiVersion": "substratus.ai/v1", "kind": "Bucket", "metadata": {"name": "ml-artifacts-x"},
    "spec": {"project": "my-project", "location": "US", "storageClass": "STANDARD"}}
FILES = {"cluster.yaml": CLUSTER, "pool.yaml": POOL, "bucket.yaml": BUCKET}
# Every field of the three kinds, as (file, path into the document).
FIELDS: list[tuple[str, tuple[Any, ...]]] = [
    *[("cluster.yaml", ("spec", k)) for k in CLUSTER["spec"]],
    ("cluster.yaml", ("metadata", "name")),
    ("pool.yaml", ("metadata", "name")), ("pool.yaml", ("spec", "cluster")),
    ("pool.yaml", ("spec", "cluster", "name")),
    *[("pool.yaml", ("spec", k)) for k in POOL["spec"]],
    *[("pool.yaml", ("spec", "accelerator", k)) for k in POOL["spec"]["accelerator"]],
    *[("pool.yaml", ("spec", "autoscaling", k)) for k in POOL["spec"]["autoscaling"]],
    ("pool.yaml", ("spec", "zones", 0)),
    *[("pool.yaml", ("spec", "taints", 0, k)) for k in POOL["spec"]["taints"][0]],
    ("bucket.yaml", ("metadata", "name")),
    *[("bucket.yaml", ("spec", k)) for k in BUCKET["spec"]],
]
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
BAD = st.one_of(
    st.sampled_from(["", " ", None, "Europe West 4", "us-central1-", "US CENTRAL", "-", "a" * 300,
                     "nvidia-l4 ", "0", "g2-standard-8\n", "LATEST ", "us-central9-z"]),
    text, st.integers(-3, 2**63), st.floats(allow_nan=True), st.booleans(),
    st.lists(text, max_size=2), st.dictionaries(text, text, max_size=2))


def invoke(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run(list(args))
    return code, out.getvalue() + err.getvalue()


@pytest.fixture(scope="module")
def fakes() -> Iterator[None]:
    """Plans read GKE (the fake: nothing exists yet) and Cloud Storage (fake-gcs-server)."""
    with FakeGKE(Settings()) as gke, fake_gcs_server() as gcs, \
            pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUBSTRATUS_GKE_ENDPOINT", gke.url)
        mp.setenv("STORAGE_EMULATOR_HOST", gcs)
        yield


def workspace(root: Path, docs: dict[str, Any] = FILES) -> Path:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for name, doc in docs.items():
        (root / name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return root


def with_value(file: str, path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    docs = copy.deepcopy(FILES)
    target = docs[file]
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return docs


def refused(root: Path, *expected: str) -> str:
    code, output = invoke("validate", str(root))
    assert code == 3, output
    for line in expected:
        assert line in output, output
    plan_code, plan_output = invoke("plan", str(root))
    assert plan_code == 3 and "Internal error" not in plan_output, plan_output
    return output


def test_the_valid_files_plan(fakes: None, tmp_path: Path) -> None:
    root = workspace(tmp_path / "ws")
    assert invoke("validate", str(root))[0] == 0
    code, output = invoke("plan", str(root))
    assert code == 0, output
    assert "Plan: 3 to add, 0 to change, 0 to destroy." in output


@pytest.mark.parametrize(("location", "message"), [
    ("Europe West 4", "cluster.yaml:7: spec.location: invalid location 'Europe West 4': expected "
                      "a GCP region or zone, like us-central1 or europe-west4-a"),
    ("", "cluster.yaml:7: spec.location: invalid location '': expected a GCP region or zone"),
    (None, "cluster.yaml:7: spec.location: Input should be a valid string"),
])
def test_a_location_gke_does_not_know_is_refused_with_its_line(
        fakes: None, tmp_path: Path, location: Any, message: str) -> None:
    refused(workspace(tmp_path / "ws", with_value("cluster.yaml", ("spec", "location"), location)),
            message)


def test_an_empty_or_malformed_project_is_refused(fakes: None, tmp_path: Path) -> None:
    for project in ("", "My Project", "ab"):
        refused(workspace(tmp_path / "ws", with_value("cluster.yaml", ("spec", "project"),
                                                      project)),
                "cluster.yaml:6: spec.project: invalid GCP project ID")


def test_a_gpu_not_offered_in_the_clusters_region_is_refused_at_plan(
        fakes: None, tmp_path: Path) -> None:
    docs = with_value("cluster.yaml", ("spec", "location"), "europe-west1")
    docs["pool.yaml"]["spec"].update(machineType="a2-highgpu-1g", zones=None,
                                     accelerator={"type": "nvidia-tesla-a100", "count": 1})
    refused(workspace(tmp_path / "ws", docs),
            "pool.yaml:10: spec.accelerator.type: NodePool 'gpu': GKE offers no nvidia-tesla-a100 "
            "in europe-west1 as of")
    # A zone of the region that lacks it: named at the zone.
    docs = with_value("pool.yaml", ("spec", "zones"), ["us-central1-a", "us-central1-f"])
    refused(workspace(tmp_path / "ws", docs),
            "pool.yaml:19: spec.zones.1: NodePool 'gpu': GKE offers no nvidia-l4 in zone "
            "us-central1-f as of")


def test_a_gpu_count_the_machine_does_not_take_is_refused_at_plan(
        fakes: None, tmp_path: Path) -> None:
    refused(workspace(tmp_path / "ws", with_value("pool.yaml", ("spec", "accelerator", "count"),
                                                  2)),
            "pool.yaml:11: spec.accelerator.count: NodePool 'gpu': g2-standard-8 comes with 1 x "
            "nvidia-l4; GKE does not allow 2")
    docs = copy.deepcopy(FILES)
    docs["pool.yaml"]["spec"].update(machineType="n1-standard-8",
                                     accelerator={"type": "nvidia-tesla-t4", "count": 3})
    refused(workspace(tmp_path / "ws", docs),
            "spec.accelerator.count: NodePool 'gpu': GKE attaches 1, 2, 4 x nvidia-tesla-t4 to an "
            "N1 machine, not 3")
    docs["pool.yaml"]["spec"].update(machineType="e2-standard-8",
                                     accelerator={"type": "nvidia-tesla-t4", "count": 1})
    refused(workspace(tmp_path / "ws", docs),
            "spec.accelerator: NodePool 'gpu': e2-standard-8 takes no GPU")


def no_internal_error(file: str, path: tuple[Any, ...], value: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = workspace(Path(tmp) / "ws", with_value(file, path, value))
        code, output = invoke("validate", str(root))
        assert code in (0, 3), output
        assert "Internal error" not in output and "Traceback" not in output, output
        if code == 3:
            assert f"{file}:" in output, output  # placed at the file (and line) it is about
            return
        code, output = invoke("plan", str(root))
        # A value the files allow: planned, or refused by a live lookup (exit 1), never a bug.
        assert code in (0, 1, 3), output
        assert "Internal error" not in output and "Traceback" not in output, output


@pytest.mark.parametrize("value", ["", None], ids=["empty", "null"])
@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f"{f[0]}:{'.'.join(map(str, f[1]))}")
def test_no_empty_field_is_an_internal_error(fakes: None, field: tuple[str, tuple[Any, ...]],
                                             value: Any) -> None:
    no_internal_error(*field, value)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=BAD)
def test_no_malformed_field_is_an_internal_error(
        fakes: None, field: tuple[str, tuple[Any, ...]], value: Any) -> None:
    no_internal_error(*field, value)
