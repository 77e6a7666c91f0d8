"""The stacks shipped in stacks/ other than finetune-and-serve, used from a workspace the way their
READMEs show, through the CLI in-process: gke-platform validated, planned and applied against the
GKE fake and fake-gcs-server (one instance; two side by side, removing one destroys only its
resources; an Environment that runs on the platform its outputs name), its GPU machines checked
against the gcp provider's table; notebook validated and planned on the local runtime over a
Dataset and a Model of the workspace; bad values refused where they are written; `init` of
each."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from substratus_cli.errors import ExitCode
from substratus_providers.gcp.gpu_pools import MACHINES
from tests.conftest import REPO
from tests.gke import FakeGKE, Settings
from tests.support.gcs import fake_gcs_server

# fake-gcs-server reports every bucket in US-CENTRAL1: another region would plan the bucket's
# replacement after every apply.
PROJECT, REGION = "acme-ml", "us-central1"


@pytest.fixture
def gcp(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeGKE, storage.Client]]:
    """The GKE fake (operations DONE after one poll) and fake-gcs-server, substratus pointed at
    both."""
    with FakeGKE(Settings(operation_polls=1, operation_seconds=None)) as gke, \
            fake_gcs_server() as gcs:
        monkeypatch.setenv("SUBSTRATUS_GKE_ENDPOINT", gke.url)
        monkeypatch.setenv("SUBSTRATUS_GKE_POLL_SECONDS", "0.02")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs)
        yield gke, storage.Client(project="test", credentials=AnonymousCredentials())


def stack(name: str, source: str, values: dict[str, Any]) -> str:
    return (f"apiVersion: substratus.ai/v1\nkind: Stack\nmetadata:\n  name: {name}\nspec:\n"
            f"  source: {source}\n  values: {json.dumps(values)}\n")


def planned(cli, workdir: Path, *args: str) -> dict[str, dict[str, Any]]:
    """The plan's changes by address."""
    plan = cli("plan", "--json", workdir, *args)
    assert plan.code == 0, plan.output
    return {c["address"]: c for c in json.loads(plan.out)["resource_changes"]}


def spec(change: dict[str, Any]) -> dict[str, Any]:
    after: dict[str, Any] = change["change"]["after"]["spec"]
    return after


def writes(gke: FakeGKE) -> list[tuple[str, str]]:
    return [(m, p) for m, p in gke.requests if m != "GET"]


# gke-platform


def test_gke_platform_plans_a_cluster_a_cpu_pool_a_gpu_pool_from_zero_and_the_bucket(
        cli, gcp: tuple[FakeGKE, storage.Client], tmp_path: Path) -> None:
    gke, _ = gcp
    (tmp_path / "platform.yaml").write_text(stack("ml", "gke-platform", {"project": PROJECT}))
    valid = cli("validate", tmp_path)
    assert valid.code == 0, valid.output
    assert "Success! The resource files are valid (4 resources)." in valid.out

    changes = planned(cli, tmp_path)
    assert {a: c["change"]["actions"] for a, c in changes.items()} == {
        "Cluster/default/ml": ["create"], "NodePool/default/ml-cpu": ["create"],
        "NodePool/default/ml-gpu": ["create"], "Bucket/default/acme-ml-ml": ["create"]}
    # The plan leaves the schema's defaults out (releaseChannel REGULAR, workloadIdentity).
    assert spec(changes["Cluster/default/ml"]) == {
        "project": PROJECT, "location": REGION, "imageStreaming": True, "gcsFuseCsiDriver": True}
    assert spec(changes["NodePool/default/ml-cpu"]) == {
        "cluster": {"name": "ml"}, "machineType": "e2-standard-8",
        "autoscaling": {"min": 1, "max": 3}}
    assert spec(changes["NodePool/default/ml-gpu"]) == {
        "cluster": {"name": "ml"}, "machineType": "g2-standard-8",
        "accelerator": {"type": "nvidia-l4"}, "spot": True,  # count 1, the default
        "autoscaling": {"min": 0, "max": 3}}
    assert spec(changes["Bucket/default/acme-ml-ml"]) == {"project": PROJECT, "location": REGION}
    for pool in ("NodePool/default/ml-cpu", "NodePool/default/ml-gpu"):
        assert changes[pool]["depends_on"] == ["Cluster/default/ml"]
    assert writes(gke) == []  # a plan only reads

    text = cli("plan", tmp_path)
    assert 'in stack "ml", from stacks/gke-platform/cluster.yaml.j2:' in text.out
    assert "Plan: 4 to add, 0 to change, 0 to destroy." in text.out

    outputs = {k: v["value"] for k, v in json.loads(cli("output", "--json", tmp_path).out).items()}
    assert outputs == {"ml.cluster": "ml", "ml.cpu_pool": "ml-cpu", "ml.gpu_pool": "ml-gpu",
                       "ml.bucket": "acme-ml-ml",
                       "ml.artifacts": "gs://acme-ml-ml/artifacts",
                       "ml.state": "gs://acme-ml-ml/state",
                       "ml.kube_context": f"gke_{PROJECT}_{REGION}_ml",
                       "ml.endpoint": None}


TWO = stack("ml", "gke-platform", {"project": PROJECT}) + "---\n" + stack(
    "research", "gke-platform",
    {"project": PROJECT, "release_channel": "RAPID", "cpu_machine_type": "e2-standard-4",
     "cpu_min_nodes": 0, "gpu_accelerator": "nvidia-h100-80gb", "gpu_count": 8,
     "gpu_max_nodes": 1, "gpu_spot": False, "gpu_zones": [f"{REGION}-a"]})


def test_two_gke_platform_instances_coexist_and_removing_one_destroys_only_its_resources(
        cli, gcp: tuple[FakeGKE, storage.Client], tmp_path: Path) -> None:
    gke, gcs = gcp
    (tmp_path / "platforms.yaml").write_text(TWO)
    changes = planned(cli, tmp_path)
    research = {"Cluster/default/research", "NodePool/default/research-cpu",
                "NodePool/default/research-gpu", "Bucket/default/acme-ml-research"}
    assert set(changes) == {"Cluster/default/ml", "NodePool/default/ml-cpu",
                            "NodePool/default/ml-gpu", "Bucket/default/acme-ml-ml"} | research
    assert spec(changes["Cluster/default/research"])["releaseChannel"] == "RAPID"
    assert spec(changes["NodePool/default/research-gpu"]) == {
        "cluster": {"name": "research"}, "machineType": "a3-highgpu-8g",
        "accelerator": {"type": "nvidia-h100-80gb", "count": 8},
        "autoscaling": {"min": 0, "max": 1}, "zones": [f"{REGION}-a"]}
    assert changes["NodePool/default/research-gpu"]["depends_on"] == ["Cluster/default/research"]

    applied = cli("apply", "--auto-approve", tmp_path)
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 8 added, 0 changed, 0 destroyed." in applied.out
    parent = f"projects/{PROJECT}/locations/{REGION}/clusters"
    assert sorted(gke.state.clusters) == [f"{parent}/ml", f"{parent}/research"]
    assert sorted(gke.state.clusters[f"{parent}/research"].pools) == ["research-cpu",
                                                                       "research-gpu"]
    gpu = gke.state.clusters[f"{parent}/research"].pools["research-gpu"]
    assert gpu["config"]["machineType"] == "a3-highgpu-8g"
    assert gpu["config"]["accelerators"] == [{
        "acceleratorType": "nvidia-h100-80gb", "acceleratorCount": "8",
        "gpuDriverInstallationConfig": {"gpuDriverVersion": "LATEST"}}]
    assert gcs.lookup_bucket("acme-ml-ml") is not None
    assert gcs.lookup_bucket("acme-ml-research") is not None
    again = cli("plan", "--detailed-exitcode", tmp_path)
    assert again.code == ExitCode.OK, again.output

    (tmp_path / "platforms.yaml").write_text(stack("ml", "gke-platform", {"project": PROJECT}))
    after = planned(cli, tmp_path)
    assert {a for a, c in after.items() if c["change"]["actions"] == ["delete"]} == research
    assert {a for a, c in after.items() if c["change"]["actions"] == ["no-op"]} == {
        "Cluster/default/ml", "NodePool/default/ml-cpu", "NodePool/default/ml-gpu",
        "Bucket/default/acme-ml-ml"}
    destroyed = cli("apply", "--auto-approve", tmp_path)
    assert destroyed.code == 0, destroyed.output
    assert "Apply complete! Resources: 0 added, 0 changed, 4 destroyed." in destroyed.out
    assert sorted(gke.state.clusters) == [f"{parent}/ml"]
    assert gcs.lookup_bucket("acme-ml-research") is None


def test_an_environment_runs_on_the_platform_its_stack_outputs_name(
        cli, gcp: tuple[FakeGKE, storage.Client], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The platform and what runs on it in one workspace (as examples/gke does by hand): one
    # plan makes the cluster, its pools and the bucket before the dataset it uploads there.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    workdir = tmp_path / "ws"
    workdir.mkdir()
    (workdir / "platform.yaml").write_text(stack("ml", "gke-platform", {"project": PROJECT}))
    (workdir / "environment.yaml").write_text("""\
apiVersion: substratus.ai/v1
kind: Environment
metadata: {name: gke}
spec:
  runtime: kubernetes
  kubernetes:
    cluster: {name: "${{ stack.ml.cluster }}"}
    namespace: ml
  artifacts: ${{ stack.ml.artifacts }}
  registry: us-central1-docker.pkg.dev/acme-ml/substratus
""")
    (workdir / "datasets.yaml").write_text("""\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {name: colors}
spec: {source: {path: colors.jsonl}}
""")
    (workdir / "colors.jsonl").write_text('{"text": "Alice likes blue."}\n')
    changes = planned(cli, workdir)
    assert {a: c["change"]["actions"] for a, c in changes.items()} == {
        "Cluster/ml/ml": ["create"], "NodePool/ml/ml-cpu": ["create"],
        "NodePool/ml/ml-gpu": ["create"], "Bucket/ml/acme-ml-ml": ["create"],
        "Dataset/ml/colors": ["create"]}
    dataset = changes["Dataset/ml/colors"]
    assert set(dataset["depends_on"]) == {"Cluster/ml/ml", "NodePool/ml/ml-cpu",
                                          "NodePool/ml/ml-gpu", "Bucket/ml/acme-ml-ml"}
    assert dataset["change"]["after"]["status"]["artifact"].startswith(
        "gs://acme-ml-ml/artifacts/refs/ml/dataset/colors/")


def test_gke_platform_refuses_bad_values_where_they_are_written(
        cli, gcp: tuple[FakeGKE, storage.Client], tmp_path: Path) -> None:
    (tmp_path / "platform.yaml").write_text(stack("ml", "gke-platform", {
        "project": "Acme", "region": f"{REGION}-a", "gpu_accelerator": "nvidia-l40"}))
    bad = cli("validate", tmp_path)
    assert bad.code == ExitCode.INVALID_INPUT, bad.output
    assert "platform.yaml:7: spec.values.project: \"Acme\" does not match the pattern" in bad.err
    assert f'platform.yaml:7: spec.values.region: "{REGION}-a" does not match the pattern' \
        in bad.err
    assert 'platform.yaml:7: spec.values.gpu_accelerator: expected one of "nvidia-tesla-t4", ' \
        in bad.err
    assert "3 errors in the resource files." in bad.err

    # No GKE machine has 8 T4s: the template says so at its line, naming what to change.
    (tmp_path / "platform.yaml").write_text(stack("ml", "gke-platform", {
        "project": PROJECT, "gpu_accelerator": "nvidia-tesla-t4", "gpu_count": 8}))
    t4 = cli("validate", tmp_path)
    assert t4.code == ExitCode.INVALID_INPUT, t4.output
    first = t4.err.splitlines()[:2]
    assert first[0].startswith("Error: stacks/gke-platform/cluster.yaml.j2:")
    assert "no GKE machine has 8 nvidia-tesla-t4 GPUs: give gpu_machine_type" in first[0]
    assert first[1] == '  in stack "ml" (platform.yaml:1)'
    # ... unless the machine is given.
    (tmp_path / "platform.yaml").write_text(stack("ml", "gke-platform", {
        "project": PROJECT, "gpu_accelerator": "nvidia-tesla-t4", "gpu_count": 4,
        "gpu_machine_type": "n1-highmem-32"}))
    assert spec(planned(cli, tmp_path)["NodePool/default/ml-gpu"])["machineType"] == \
        "n1-highmem-32"

    # What GKE would refuse, at the template line that writes it: names of more than 40
    # characters, and autoscaling upside down.
    long = "a-platform-instance-named-at-greater-length"
    assert len(long) > 40
    (tmp_path / "platform.yaml").write_text(stack(long, "gke-platform", {"project": PROJECT}))
    names = cli("validate", tmp_path)
    assert names.code == ExitCode.INVALID_INPUT, names.output
    assert [line.split(": ")[1] for line in names.err.splitlines() if "GKE names" in line] == [
        "stacks/gke-platform/cluster.yaml.j2:8", "stacks/gke-platform/cluster.yaml.j2:24",
        "stacks/gke-platform/cluster.yaml.j2:39"]
    assert f"NodePool '{long}-gpu': GKE names are at most 40" in names.err
    (tmp_path / "platform.yaml").write_text(stack("ml", "gke-platform", {
        "project": PROJECT, "cpu_min_nodes": 5}))
    scaling = cli("validate", tmp_path)
    assert scaling.code == ExitCode.INVALID_INPUT, scaling.output
    assert "stacks/gke-platform/cluster.yaml.j2:" in scaling.err
    assert "spec.autoscaling: min (5) must not be greater than max (3)" in scaling.err


def test_the_gpu_pools_machine_is_the_one_substratus_sizes_gpu_pools_with(
        cli, tmp_path: Path) -> None:
    # stacks/gke-platform/_names.j2 keeps a copy of the gcp provider's machine table.
    definition = yaml.safe_load((REPO / "stacks/gke-platform/stack.yaml").read_text())
    assert definition["parameters"]["gpu_accelerator"]["enum"] == list(MACHINES)
    assert sorted(definition["parameters"]["gpu_count"]["enum"]) == sorted(
        {count for counts in MACHINES.values() for count in counts})
    shapes = [(accelerator, count) for accelerator, counts in MACHINES.items()
              for count in counts]
    (tmp_path / "platforms.yaml").write_text("---\n".join(
        stack(f"p{i}", "gke-platform", {"project": PROJECT, "gpu_accelerator": accelerator,
                                         "gpu_count": count})
        for i, (accelerator, count) in enumerate(shapes)))
    rendered = cli("render", tmp_path)
    assert rendered.code == 0, rendered.output
    pools = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all(rendered.out)
             if d and d["kind"] == "NodePool" and d["metadata"]["name"].endswith("-gpu")}
    assert {name: (pool["accelerator"]["type"], pool["accelerator"]["count"],
                   pool["machineType"]) for name, pool in pools.items()} == {
        f"p{i}-gpu": (accelerator, count, MACHINES[accelerator][count])
        for i, (accelerator, count) in enumerate(shapes)}


# notebook

WORKSPACE = """\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {name: colors}
spec: {source: {path: data/colors.jsonl}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: tiny}
spec: {source: {path: model}}
"""


@pytest.fixture
def local_workspace(tmp_path: Path) -> Path:
    """A Dataset and a Model of the workspace, both from files in it (the local runtime)."""
    workdir = tmp_path / "ws"
    (workdir / "data").mkdir(parents=True)
    (workdir / "data" / "colors.jsonl").write_text('{"text": "Alice likes blue."}\n')
    (workdir / "model").mkdir()
    (workdir / "model" / "config.json").write_text('{"model_type": "gpt2"}\n')
    (workdir / "resources.yaml").write_text(WORKSPACE)
    return workdir


def test_notebook_plans_jupyterlab_over_a_model_and_a_dataset_of_the_workspace(
        cli, local_workspace: Path) -> None:
    (local_workspace / "notebooks.yaml").write_text(
        stack("explore", "notebook", {"model": "tiny", "dataset": "colors"}) + "---\n" +
        stack("gpu", "notebook", {"model": "tiny", "cpu": "4", "memory": "16Gi",
                                  "disk": "100Gi", "gpu_type": "nvidia-l4", "gpu_count": 2,
                                  "suspend": True}))
    valid = cli("validate", local_workspace)
    assert valid.code == 0, valid.output
    assert "Success! The resource files are valid (4 resources)." in valid.out

    changes = planned(cli, local_workspace)
    assert {a: c["change"]["actions"] for a, c in changes.items()} == {
        "Dataset/default/colors": ["create"], "Model/default/tiny": ["create"],
        "Notebook/default/explore": ["create"], "Notebook/default/gpu": ["create"]}
    explore = changes["Notebook/default/explore"]
    assert spec(explore) == {"model": {"name": "tiny"}, "dataset": {"name": "colors"}}
    assert explore["change"]["after"]["metadata"]["labels"] == {
        "substratus.ai/stack": "notebook", "substratus.ai/instance": "explore"}
    assert sorted(explore["depends_on"]) == ["Dataset/default/colors", "Model/default/tiny"]
    # The notebook sees the digests the plan computed for its inputs.
    status = explore["change"]["after"]["status"]
    assert status["modelDigest"] == changes["Model/default/tiny"]["change"]["after"]["status"][
        "digest"]
    assert status["datasetDigest"] == changes["Dataset/default/colors"]["change"]["after"][
        "status"]["digest"]
    gpu = changes["Notebook/default/gpu"]
    assert spec(gpu) == {"model": {"name": "tiny"}, "suspend": True,
                         "resources": {"cpu": "4", "memory": "16Gi", "disk": "100Gi",
                                       "gpu": {"type": "nvidia-l4", "count": 2}}}
    assert gpu["depends_on"] == ["Model/default/tiny"]

    outputs = json.loads(cli("output", "--json", local_workspace).out)
    assert outputs["explore.notebook"]["value"] == "explore"
    assert outputs["gpu.notebook"]["value"] == "gpu"
    assert outputs["explore.endpoint"]["value"] is None  # known after apply


def test_notebook_refuses_a_model_the_workspace_does_not_declare_and_a_bad_quantity(
        cli, local_workspace: Path) -> None:
    (local_workspace / "notebooks.yaml").write_text(
        stack("explore", "notebook", {"model": "tiy", "dataset": "colors"}))
    missing = cli("validate", local_workspace)
    assert missing.code == ExitCode.INVALID_INPUT, missing.output
    assert 'stacks/notebook/notebook.yaml.j2:' in missing.err
    assert 'spec.model.name: Model "tiy" not found (defined: tiny)' in missing.err

    (local_workspace / "notebooks.yaml").write_text(
        stack("explore", "notebook", {"model": "tiny", "memory": "16 GB", "gpu_type": "l4"}))
    bad = cli("validate", local_workspace)
    assert bad.code == ExitCode.INVALID_INPUT, bad.output
    assert 'notebooks.yaml:7: spec.values.memory: "16 GB" does not match the pattern' in bad.err
    assert 'notebooks.yaml:7: spec.values.gpu_type: expected one of "", "nvidia-tesla-t4"' \
        in bad.err


def test_init_writes_a_file_per_stack_that_validates_once_its_required_values_are_filled_in(
        cli, tmp_path: Path) -> None:
    platform = cli("init", "gke-platform", tmp_path / "platform", "--name", "ml")
    assert platform.code == 0, platform.output
    written = tmp_path / "platform" / "ml.yaml"
    text = written.read_text()
    assert "    project: null  # REQUIRED\n" in text
    assert '    gpu_accelerator: "nvidia-l4"\n' in text
    written.write_text(text.replace("project: null  # REQUIRED", f"project: {PROJECT}"))
    valid = cli("validate", tmp_path / "platform")
    assert valid.code == 0, valid.output
    assert "(4 resources)" in valid.out

    notebook = cli("init", "notebook", tmp_path / "notebook")
    assert notebook.code == 0, notebook.output
    assert "REQUIRED" not in (tmp_path / "notebook" / "notebook.yaml").read_text()
    alone = cli("validate", tmp_path / "notebook")  # JupyterLab alone: no model, no dataset
    assert alone.code == 0, alone.output
    assert "(1 resource)" in alone.out
