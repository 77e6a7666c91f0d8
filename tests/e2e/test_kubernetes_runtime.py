"""The kubernetes runtime end to end: the CLI against the real test control plane (kwok nodes, an
L4 pool of 2 nodes with 2 GPUs each) with its artifacts in a real fake-gcs-server.

kwok runs no containers: Job pods end Succeeded and server pods turn Ready without running the
workloads, so these tests check what substratus asks of the cluster, not what the pods compute
(tests/workloads checks that, with the same store layout)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from substratus_artifacts.store import open_store
from tests.cluster.controlplane import ControlPlane
from tests.conftest import EXAMPLES
from tests.support.cluster import started_cluster
from tests.support.gcs import bucket_beside

pytestmark = pytest.mark.timeout(1800)  # the first test may build the control plane

L4 = "nvidia-l4"


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    for cp in started_cluster(request):
        cp.add_node_pool("l4-pool", 2, accelerator=L4, gpus=2, cpu="24", memory="96Gi")
        yield cp


@pytest.fixture(scope="module")
def bucket(cluster: ControlPlane) -> Iterator[str]:
    """A bucket in a fake-gcs-server, and the environment that points substratus at both."""
    with bucket_beside(cluster.kubeconfig) as name:
        yield name


def workspace(root: Path, bucket: str, namespace: str, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "environment.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Environment
metadata: {{name: cluster}}
spec:
  runtime: kubernetes
  kubernetes: {{context: substratus-test, namespace: {namespace}}}
  artifacts: gs://{bucket}/artifacts
  state: file://.substratus/state
""")
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def with_weights(root: Path) -> Path:
    """A `weights/` folder for a Model with `source: {path: weights}`."""
    (root / "weights").mkdir()
    (root / "weights" / "config.json").write_text("{}")
    return root


def get(cluster: ControlPlane, path: str) -> dict[str, Any]:
    return cluster.request("GET", path)


def managed(cluster: ControlPlane, namespace: str) -> list[str]:
    """Every object substratus labelled in the namespace, as Kind/name."""
    out = []
    for path, kind in (("/apis/batch/v1", "Job"), ("/apis/apps/v1", "Deployment"),
                       ("/apis/apps/v1", "StatefulSet"), ("/api/v1", "Service"),
                       ("/api/v1", "ConfigMap"), ("/api/v1", "Secret")):
        plural = {"Job": "jobs", "Deployment": "deployments", "StatefulSet": "statefulsets",
                  "Service": "services", "ConfigMap": "configmaps", "Secret": "secrets"}[kind]
        items = cluster.request("GET", f"{path}/namespaces/{namespace}/{plural}", query={
            "labelSelector": "app.kubernetes.io/managed-by=substratus"})["items"]
        out += [f"{kind}/{i['metadata']['name']}" for i in items]
    return sorted(out)


# The quickstart on the cluster (Done means 2 and 3)


@pytest.fixture(scope="module")
def quickstart(cluster: ControlPlane, bucket: str,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("k8s") / "quickstart"
    shutil.copytree(EXAMPLES / "quickstart", root, ignore=shutil.ignore_patterns(".substratus"))
    (root / "environment.yaml").unlink()
    return workspace(root, bucket, "quickstart", {})


def test_quickstart_applies_runs_its_jobs_and_replans_empty(
        cli, cluster: ControlPlane, quickstart: Path, bucket: str) -> None:
    applied = cli("apply", "--auto-approve", quickstart)
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 6 added, 0 changed, 0 destroyed." in applied.out

    jobs = get(cluster, "/apis/batch/v1/namespaces/quickstart/jobs")["items"]
    assert sorted(j["metadata"]["name"] for j in jobs) == ["model-base", "model-colors"]
    for job in jobs:
        assert {c["type"]: c["status"] for c in job["status"]["conditions"]}["Complete"] == "True"
    deployment = get(cluster, "/apis/apps/v1/namespaces/quickstart/deployments/server-colors")
    assert deployment["status"]["availableReplicas"] == 1
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    # The datasets were uploaded from this machine, content addressed, and their refs written.
    store = open_store(f"gs://{bucket}/artifacts")
    record = get(cluster, "/api/v1/namespaces/quickstart/configmaps/dataset-favorite-colors")
    digest = record["data"]["digest"]
    assert store.has_snapshot(digest)
    ref = record["data"]["artifact"].split("/refs/", 1)[1]
    assert store.get_ref(ref) == digest
    # The training Job reads that ref and publishes its model at its own.
    trainer = next(j for j in jobs if j["metadata"]["name"] == "model-colors")
    env = {e["name"]: e.get("value") for e in
           trainer["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SUBSTRATUS_INPUT_DATA_URL"] == record["data"]["artifact"]
    assert env["SUBSTRATUS_ARTIFACTS_URL"].startswith(f"gs://{bucket}/artifacts/refs/quickstart/"
                                                      "model/colors/")

    listed = {address: fields for address, _, fields in
              (line.partition("\t") for line in cli("state", "list", quickstart).out.splitlines())}
    assert listed["Model/quickstart/colors"] == f"artifact={env['SUBSTRATUS_ARTIFACTS_URL']}"
    assert listed["ModelServer/quickstart/colors"] == (
        "endpoint=http://server-colors.quickstart.svc.cluster.local:8080")

    again = cli("plan", "--detailed-exitcode", quickstart)
    assert again.code == 0, again.output
    assert "No changes." in again.out


def test_a_kubectl_edit_is_drift_and_the_next_apply_restores_it(
        cli, cluster: ControlPlane, quickstart: Path) -> None:
    cluster.kubectl("-n", "quickstart", "scale", "deployment/server-colors", "--replicas=3")
    cluster.kubectl("-n", "quickstart", "set", "env", "deployment/server-colors",
                    "PARAM_MAX_TOKENS=99")

    plan = cli("plan", "--detailed-exitcode", quickstart)
    assert plan.code == 2, plan.output
    drift, _, actions = plan.out.partition("Substratus will perform the following actions:")
    assert "Objects changed outside substratus" in drift
    assert "ModelServer/quickstart/colors changed outside substratus" in drift
    assert "Deployment.spec.replicas: 1 -> 3" in drift
    assert 'Deployment.spec.template.spec.containers.server.env.PARAM_MAX_TOKENS.value: "48" -> ' \
           '"99"' in drift
    assert "~ ModelServer/quickstart/colors" in actions
    assert "Deployment.spec.replicas: 3 -> 1" in actions
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in actions
    # What the server defaults, and what kubectl added that the files do not declare, never show.
    for defaulted in ("dnsPolicy", "terminationMessagePath", "clusterIP", "protocol",
                      "revisionHistoryLimit", "kubectl.kubernetes.io", "imagePullPolicy"):
        assert defaulted not in plan.out

    applied = cli("apply", "--auto-approve", quickstart)
    assert applied.code == 0, applied.output
    deployment = get(cluster, "/apis/apps/v1/namespaces/quickstart/deployments/server-colors")
    assert deployment["spec"]["replicas"] == 1
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "PARAM_MAX_TOKENS", "value": "48"} in env
    assert cli("plan", "--detailed-exitcode", quickstart).code == 0


def test_a_saved_plan_is_refused_after_a_kubectl_edit(
        cli, cluster: ControlPlane, quickstart: Path, tmp_path: Path) -> None:
    models = quickstart / "models.yaml"
    original = models.read_text()
    models.write_text(original.replace("epochs: 200", "epochs: 150"))
    try:
        planned = cli("plan", "--out", tmp_path / "plan.bin", quickstart)
        assert planned.code == 0, planned.output
        cluster.kubectl("-n", "quickstart", "scale", "deployment/server-colors", "--replicas=2")
        stale = cli("apply", tmp_path / "plan.bin")
        assert stale.code == 5, stale.output
        assert "ModelServer/quickstart/colors" in stale.output
    finally:
        models.write_text(original)
    assert cli("apply", "--auto-approve", quickstart).code == 0
    assert cli("plan", "--detailed-exitcode", quickstart).code == 0


def test_a_changed_training_param_runs_the_job_again_and_rolls_the_server_out(
        cli, cluster: ControlPlane, quickstart: Path) -> None:
    before = get(cluster, "/apis/batch/v1/namespaces/quickstart/jobs/model-colors")
    models = quickstart / "models.yaml"
    models.write_text(models.read_text().replace("epochs: 200", "epochs: 120"))

    plan = cli("plan", quickstart)
    assert plan.code == 0, plan.output
    assert "# Model/quickstart/colors must be replaced (a Job cannot be changed, so it runs " \
           "again)" in plan.out
    assert 'env.PARAM_EPOCHS.value: "200" -> "120" # forces replacement' in plan.out
    assert "# ModelServer/quickstart/colors will be updated in-place (a new version of its " \
           "model input)" in plan.out
    # The base model and the datasets did not change: they are not in the plan.
    assert "Model/quickstart/base" not in plan.out
    assert "Plan: 1 to add, 2 to change, 1 to destroy." in plan.out

    applied = cli("apply", "--auto-approve", quickstart)
    assert applied.code == 0, applied.output
    after = get(cluster, "/apis/batch/v1/namespaces/quickstart/jobs/model-colors")
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    assert cli("plan", "--detailed-exitcode", quickstart).code == 0


def test_destroy_removes_every_object_and_a_second_destroy_has_nothing_to_do(
        cli, cluster: ControlPlane, quickstart: Path) -> None:
    assert managed(cluster, "quickstart")  # what the tests above applied
    destroyed = cli("destroy", "--auto-approve", quickstart)
    assert destroyed.code == 0, destroyed.output
    assert "Destroy complete! Resources: 6 destroyed." in destroyed.out
    assert managed(cluster, "quickstart") == []
    again = cli("destroy", "--auto-approve", quickstart)
    assert again.code == 0 and "No changes." in again.out


# Objects substratus does not own (Done means 4)

DATASET = """\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {name: colors}
spec:
  source: {path: colors.jsonl}
"""


def test_an_object_of_the_same_name_that_substratus_does_not_own_is_refused(
        cli, cluster: ControlPlane, bucket: str, tmp_path: Path) -> None:
    root = workspace(tmp_path / "ws", bucket, "foreign", {"dataset.yaml": DATASET})
    (root / "colors.jsonl").write_text('{"text": "red"}\n')
    cluster.create_namespace("foreign")
    cluster.kubectl("-n", "foreign", "create", "configmap", "dataset-colors",
                    "--from-literal=owner=someone-else")
    before = get(cluster, "/api/v1/namespaces/foreign/configmaps/dataset-colors")

    for command in (("plan",), ("apply", "--auto-approve")):
        result = cli(*command, root)
        assert result.code == 1, result.output
        assert "refusing to change objects substratus does not own" in result.err
        assert "Dataset/foreign/colors (dataset.yaml:1): exists (ConfigMap/dataset-colors) and " \
               "is not managed by substratus" in result.err
        assert "Traceback" not in result.output

    after = get(cluster, "/api/v1/namespaces/foreign/configmaps/dataset-colors")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["data"] == {"owner": "someone-else"}


# GPU sizing against the cluster's node pools (Done means 5)

SIZED = """\
apiVersion: substratus.ai/v1
kind: Model
metadata: {{name: {name}}}
spec:
  source: {{path: weights}}
  size: {{parameterCount: {count}, parameterBits: 16}}
---
apiVersion: substratus.ai/v1
kind: ModelServer
metadata: {{name: {name}}}
spec:
  model: {{name: {name}}}
"""


def test_a_model_that_fits_one_l4_is_scheduled_onto_the_l4_pool_with_one_gpu(
        cli, cluster: ControlPlane, bucket: str, tmp_path: Path) -> None:
    root = with_weights(workspace(tmp_path / "ws", bucket, "gpus", {
        "model.yaml": SIZED.format(name="llm-9b", count=9_000_000_000)}))

    plan = cli("plan", root)
    assert plan.code == 0, plan.output
    assert ("# sizing: serving needs 9.0B parameters x 16 bits / 8 = 16.8 GiB of weights, x 1.2 "
            "for the KV cache and activations = 20.1 GiB, which fits 1 x L4 (22.5 GiB usable of "
            "24 GB) (substratus's trainer and server load a model onto one GPU, so one GPU must "
            "hold it)") in plan.out
    applied = cli("apply", "--auto-approve", root)
    assert applied.code == 0, applied.output

    pods = cluster.request("GET", "/api/v1/namespaces/gpus/pods", query={
        "labelSelector": "substratus.ai/kind=ModelServer,substratus.ai/name=llm-9b"})["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["spec"]["nodeName"].startswith("l4-pool-")
    assert pod["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": L4}
    # The node has 2 L4s; the server loads the model onto one, so it asks for one.
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["status"]["phase"] == "Running"
    assert cli("plan", "--detailed-exitcode", root).code == 0


def test_a_model_that_fits_no_single_gpu_is_refused_at_plan_time_with_the_arithmetic(
        cli, cluster: ControlPlane, bucket: str, tmp_path: Path) -> None:
    root = with_weights(workspace(tmp_path / "ws", bucket, "gpus-huge", {
        "model.yaml": SIZED.format(name="llm-13b", count=13_000_000_000)}))

    plan = cli("plan", root)
    assert plan.code == 1, plan.output
    # 29.1 GiB: two of the nodes' L4s would hold it, but the server uses one GPU.
    assert ("ModelServer 'llm-13b': serving needs 13.0B parameters x 16 bits / 8 = 24.2 GiB of "
            "weights, x 1.2 for the KV cache and activations = 29.1 GiB, which no GPU the node "
            "pools offer holds: the largest is L4 (22.5 GiB usable of 24 GB), and substratus's "
            "trainer and server load a model onto one GPU, so one GPU must hold it") in plan.err
    assert "Traceback" not in plan.output
    assert managed(cluster, "gpus-huge") == []


# Rollouts (Done means 6)

SERVED = """\
apiVersion: substratus.ai/v1
kind: Model
metadata: {{name: tiny}}
spec:
  source: {{path: weights}}
---
apiVersion: substratus.ai/v1
kind: ModelServer
metadata: {{name: tiny}}
spec:
  model: {{name: tiny}}
  replicas: 2
  rollout: {{readinessTimeoutSeconds: 8}}
  resources: {{memory: {memory}}}
"""


def test_a_rollout_that_never_gets_ready_keeps_the_old_replicaset_serving(
        cli, cluster: ControlPlane, bucket: str, tmp_path: Path) -> None:
    root = with_weights(workspace(tmp_path / "ws", bucket, "rollout",
                                  {"server.yaml": SERVED.format(memory="1Gi")}))
    assert cli("apply", "--auto-approve", root).code == 0
    path = "/apis/apps/v1/namespaces/rollout/deployments/server-tiny"
    assert get(cluster, path)["status"]["availableReplicas"] == 2

    # No node has 10 TiB of memory: the new version's pods stay Pending.
    (root / "server.yaml").write_text(SERVED.format(memory="10Ti"))
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(int(get(cluster, path)["status"].get("availableReplicas", 0)))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        applied = cli("apply", "--auto-approve", root)
    finally:
        stop.set()
        watcher.join()

    assert applied.code == 6, applied.output
    assert "the new version did not become ready within 8 s" in applied.output
    assert "Insufficient memory" in applied.output
    assert "2 replica(s) of the previous version keep serving" in applied.output
    assert len(seen) > 10 and min(seen) == 2, seen  # never fewer ready replicas than asked for
    sets = cluster.request("GET", "/apis/apps/v1/namespaces/rollout/replicasets")["items"]
    ready = {json.dumps(s["spec"]["template"]["spec"]["containers"][0]["resources"]):
             s["status"].get("readyReplicas", 0) for s in sets}
    assert ready == {json.dumps({"limits": {"memory": "1Gi"}, "requests": {"memory": "1Gi"}}): 2,
                     json.dumps({"limits": {"memory": "10Ti"}, "requests": {"memory": "10Ti"}}):
                         0}


# An unreachable cluster


def test_an_unreachable_cluster_fails_the_plan_with_how_to_check_it(
        cli, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.gcs import free_port

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""\
apiVersion: v1
kind: Config
clusters: [{{name: gone, cluster: {{server: "https://127.0.0.1:{free_port()}"}}}}]
users: [{{name: me, user: {{token: t}}}}]
contexts: [{{name: substratus-test, context: {{cluster: gone, user: me}}}}]
current-context: substratus-test
""")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    root = workspace(tmp_path / "ws", bucket, "nowhere", {"dataset.yaml": DATASET})
    (root / "colors.jsonl").write_text('{"text": "red"}\n')
    plan = cli("plan", root)
    assert plan.code == 1, plan.output
    assert "cannot reach the Kubernetes API server at https://127.0.0.1:" in plan.err
    assert "kubectl --context substratus-test cluster-info" in plan.err
    assert "Traceback" not in plan.output


def test_a_saved_plan_is_refused_on_another_cluster(
        cli, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = workspace(tmp_path / "ws", bucket, "elsewhere", {"dataset.yaml": DATASET})
    (root / "colors.jsonl").write_text('{"text": "red"}\n')
    planned = cli("plan", "--out", tmp_path / "plan.bin", root)
    assert planned.code == 0, planned.output

    # Another cluster behind the same kubeconfig context name: the kube-system uid tells them apart.
    with ControlPlane(default_pool=False) as other:
        monkeypatch.setenv("KUBECONFIG", str(other.kubeconfig))
        refused = cli("apply", tmp_path / "plan.bin")
    assert refused.code == 5, refused.output
    assert "the saved plan was made for another target" in refused.err
    assert "kube-system" in refused.err


# Environments the kubernetes runtime cannot run, refused before anything is read


@pytest.mark.parametrize(("spec", "line", "message"), [
    ("{runtime: kubernetes, kubernetes: {context: c}, artifacts: file://.substratus/artifacts}",
     "environment.yaml:4: spec.artifacts: the kubernetes runtime needs an artifact store its pods can reach",
     "set `artifacts: gs://BUCKET/PREFIX` in the Environment"),
    ("{runtime: kubernetes, kubernetes: {context: c}, artifacts: 'oci://127.0.0.1:5000/ml'}",
     "environment.yaml:4: spec.artifacts: the kubernetes runtime needs an artifact store its pods can reach",
     "pods do not fetch from an oci:// store yet (its registry credentials are not handed to "
     "them): set `artifacts: gs://BUCKET/PREFIX`"),
])
def test_what_the_kubernetes_runtime_cannot_run_is_refused_with_file_and_line(
        cli, tmp_path: Path, spec: str, line: str, message: str) -> None:
    (tmp_path / "environment.yaml").write_text(
        f"apiVersion: substratus.ai/v1\nkind: Environment\nmetadata: {{name: e}}\nspec: {spec}\n")
    (tmp_path / "dataset.yaml").write_text(DATASET)
    (tmp_path / "colors.jsonl").write_text('{"text": "red"}\n')  # the path source it names
    result = cli("plan", tmp_path)
    assert result.code == 3, result.output
    assert line in result.err
    assert message in result.err


def test_a_notebook_update_keeps_its_token(cli, cluster: ControlPlane, bucket: str,
                                           tmp_path: Path) -> None:
    def notebook(params: str) -> dict[str, str]:
        return {"notebook.yaml": f"""\
apiVersion: substratus.ai/v1
kind: Notebook
metadata: {{name: lab}}
spec: {{params: {params}}}
"""}

    root = workspace(tmp_path / "nb", bucket, "notebook-token", notebook("{theme: dark}"))
    assert cli("apply", "--auto-approve", root).code == 0
    path = "/api/v1/namespaces/notebook-token/secrets/notebook-lab-token"
    before = get(cluster, path)["metadata"]["uid"]
    workspace(root, bucket, "notebook-token", notebook("{theme: light}"))
    planned = cli("plan", root)
    assert "~ Notebook/notebook-token/lab" in planned.out, planned.output
    assert cli("apply", "--auto-approve", root).code == 0
    assert get(cluster, path)["metadata"]["uid"] == before
