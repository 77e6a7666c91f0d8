"""Drift on the kubernetes runtime, against the real test control plane (kwok nodes, an L4 pool of
2 nodes with 2 GPUs each) and a real fake-gcs-server: what another tool's write makes a plan say,
and that an apply restores the files' state after it, whatever the write was.

Writes from outside are made with the built kubectl (annotate, label, edit, patch): each is its
own field manager, as on any cluster."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.controlplane import ApiError, ControlPlane
from tests.support.cluster import started_cluster
from tests.support.gcs import bucket_beside

pytestmark = pytest.mark.timeout(1800)  # the first test may build the control plane

L4 = "nvidia-l4"
BANNER = ("Objects changed outside substratus\n"
          "Substratus noticed that these objects changed since its last apply; the plan below "
          "puts them back to the resource files.\n")
NO_CHANGES = "No changes. Live state matches the resource files.\n"


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    for cp in started_cluster(request):
        cp.add_node_pool("l4-pool", 2, accelerator=L4, gpus=2, cpu="24", memory="96Gi")
        yield cp


@pytest.fixture(scope="module")
def bucket(cluster: ControlPlane) -> Iterator[str]:
    with bucket_beside(cluster.kubeconfig) as name:
        yield name


SERVER = """\
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
  replicas: {replicas}{extra}
"""
DATASET = """\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {name: prompts}
spec:
  source: {path: data/prompts.jsonl}
"""


def workspace(root: Path, bucket: str, namespace: str, *, replicas: int = 1,
              extra: str = "") -> Path:
    """A Model from files here, its server and a Dataset from files here, in `namespace`."""
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
    (root / "server.yaml").write_text(SERVER.format(replicas=replicas, extra=extra))
    (root / "dataset.yaml").write_text(DATASET)
    (root / "weights").mkdir(exist_ok=True)
    (root / "weights" / "config.json").write_text("{}")
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "prompts.jsonl").write_text('{"prompt": "red?"}\n')
    return root


def applied(cli, root: Path) -> Path:
    result = cli("apply", "--auto-approve", root)
    assert result.code == 0, result.output
    assert cli("plan", "--detailed-exitcode", root).code == 0
    return root


def header(root: Path) -> str:
    return f"Substratus read the resource files in {root} and the live state of kubernetes.\n"


def get(cluster: ControlPlane, path: str) -> dict[str, Any]:
    return cluster.request("GET", path)


def edit(cluster: ControlPlane, namespace: str, what: str, old: str, new: str,
         monkeypatch: pytest.MonkeyPatch) -> None:
    """`kubectl edit` as a person does it: the editor replaces the line `old` with `new`."""
    script = ("import sys; p = sys.argv[1]; t = open(p).read(); "
              f"n = t.replace({old!r}, {new!r}); assert n != t, t; open(p, 'w').write(n)")
    monkeypatch.setenv("KUBE_EDITOR", f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}")
    cluster.kubectl("-n", namespace, "edit", what)


# 1. Another field manager's metadata is not drift


def test_foreign_annotations_and_labels_are_not_drift(
        cli, cluster: ControlPlane, bucket: str, tmp_path: Path) -> None:
    root = applied(cli, workspace(tmp_path / "ws", bucket, "drift-meta"))
    before = get(cluster, "/apis/apps/v1/namespaces/drift-meta/deployments/server-tiny")
    for args in (("annotate", "deployment/server-tiny", "example.com/owner=team-ml"),
                 ("label", "deployment/server-tiny", "example.com/team=ml"),
                 ("label", "service/server-tiny", "example.com/team=ml"),
                 ("annotate", "configmap/dataset-prompts", "example.com/reviewed=yes"),
                 ("label", "configmap/model-tiny", "example.com/team=ml")):
        cluster.kubectl("-n", "drift-meta", *args)
    after = get(cluster, "/apis/apps/v1/namespaces/drift-meta/deployments/server-tiny")
    assert after["metadata"]["generation"] > before["metadata"]["generation"]

    plan = cli("plan", "--detailed-exitcode", root)
    assert plan.code == 0, plan.output
    assert plan.out == header(root) + "\n" + NO_CHANGES

    # A change in the files is planned as itself: the foreign metadata is still not drift.
    workspace(root, bucket, "drift-meta", replicas=2)
    plan = cli("plan", "--detailed-exitcode", root)
    assert plan.code == 2, plan.output
    assert "Objects changed outside substratus" not in plan.out
    assert ("  # ModelServer/drift-meta/tiny will be updated in-place\n"
            "  ~ ModelServer/drift-meta/tiny\n"
            "      ~ Deployment.spec.replicas: 1 -> 2\n") in plan.out
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.out

    result = cli("apply", "--auto-approve", root)
    assert result.code == 0, result.output
    deployment = get(cluster, "/apis/apps/v1/namespaces/drift-meta/deployments/server-tiny")
    assert deployment["spec"]["replicas"] == 2
    # Server-side apply leaves what the other manager wrote where it was.
    assert deployment["metadata"]["annotations"]["example.com/owner"] == "team-ml"
    assert deployment["metadata"]["labels"]["example.com/team"] == "ml"
    again = cli("plan", "--detailed-exitcode", root)
    assert again.code == 0, again.output
    assert again.out == header(root) + "\n" + NO_CHANGES


# 2. A foreign edit of a list-map key never wedges the workspace


def test_a_kubectl_edit_of_the_service_port_is_planned_and_put_back(
        cli, cluster: ControlPlane, bucket: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = applied(cli, workspace(tmp_path / "ws", bucket, "drift-port"))
    path = "/api/v1/namespaces/drift-port/services/server-tiny"
    edit(cluster, "drift-port", "service/server-tiny", "port: 8080", "port: 9090", monkeypatch)
    assert [p["port"] for p in get(cluster, path)["spec"]["ports"]] == [9090]

    plan = cli("plan", "--detailed-exitcode", root)
    assert plan.code == 2, plan.output
    assert plan.out == header(root) + "\n" + BANNER + (
        "\n"
        "  # ModelServer/drift-port/tiny changed outside substratus since the last apply\n"
        "      ~ Service.spec.ports.http.port: 8080 -> 9090\n"
        "\n"
        "Resource actions are indicated with the following symbols:\n"
        "  ~ update in-place\n"
        "\n"
        "Substratus will perform the following actions:\n"
        "\n"
        "  # ModelServer/drift-port/tiny will be updated in-place (changed outside substratus: "
        "Service.spec.ports.http.port)\n"
        "  ~ ModelServer/drift-port/tiny\n"
        "      ~ Service.spec.ports.http.port: 9090 -> 8080\n"
        "\n"
        "Plan: 0 to add, 1 to change, 0 to destroy.\n")

    result = cli("apply", "--auto-approve", root)
    assert result.code == 0, result.output
    assert "Apply complete! Resources: 0 added, 1 changed, 0 destroyed." in result.out
    service = get(cluster, path)
    ports = service["spec"]["ports"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in ports] == [("http", 8080, "http")]
    # Its fields are substratus's again, and only through its applies: no other manager (nor an
    # update of its own) keeps a field the files may stop setting.
    assert [(m["manager"], m["operation"]) for m in service["metadata"]["managedFields"]] == [
        ("substratus", "Apply")]
    again = cli("plan", "--detailed-exitcode", root)
    assert again.code == 0, again.output
    assert again.out == header(root) + "\n" + NO_CHANGES


def test_a_kubectl_edit_of_the_container_port_is_planned_and_put_back(
        cli, cluster: ControlPlane, bucket: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = applied(cli, workspace(tmp_path / "ws", bucket, "drift-cport"))
    path = "/apis/apps/v1/namespaces/drift-cport/deployments/server-tiny"
    edit(cluster, "drift-cport", "deployment/server-tiny", "containerPort: 8080",
         "containerPort: 9090", monkeypatch)
    container = get(cluster, path)["spec"]["template"]["spec"]["containers"][0]
    assert [p["containerPort"] for p in container["ports"]] == [9090]

    plan = cli("plan", "--detailed-exitcode", root)
    assert plan.code == 2, plan.output
    field = "Deployment.spec.template.spec.containers.server.ports.http.containerPort"
    assert plan.out == header(root) + "\n" + BANNER + (
        "\n"
        "  # ModelServer/drift-cport/tiny changed outside substratus since the last apply\n"
        f"      ~ {field}: 8080 -> 9090\n"
        "\n"
        "Resource actions are indicated with the following symbols:\n"
        "  ~ update in-place\n"
        "\n"
        "Substratus will perform the following actions:\n"
        "\n"
        "  # ModelServer/drift-cport/tiny will be updated in-place (changed outside substratus: "
        f"{field})\n"
        "  ~ ModelServer/drift-cport/tiny\n"
        f"      ~ {field}: 9090 -> 8080\n"
        "\n"
        "Plan: 0 to add, 1 to change, 0 to destroy.\n")

    result = cli("apply", "--auto-approve", root)
    assert result.code == 0, result.output
    deployment = get(cluster, path)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("http", 8080)]
    managers = [(m["manager"], m["operation"], m.get("subresource"))
                for m in deployment["metadata"]["managedFields"]]
    assert ("substratus", "Apply", None) in managers
    assert [m for m in managers if m[2] is None and m != ("substratus", "Apply", None)] == []
    again = cli("plan", "--detailed-exitcode", root)
    assert again.code == 0, again.output
    assert again.out == header(root) + "\n" + NO_CHANGES


POLICY = "substratus-test-frozen"


def test_a_dry_run_the_cluster_refuses_is_a_plan_error_with_a_hint(
        cli, cluster: ControlPlane, bucket: str, tmp_path: Path) -> None:
    root = applied(cli, workspace(tmp_path / "ws", bucket, "drift-frozen"))
    # A cluster policy (a ValidatingAdmissionPolicy, no webhook) refuses any change of the
    # namespace's Deployments, dry runs included.
    cluster.request("POST", "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies", {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{
                     "apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"],
                     "resources": ["deployments"]}]},
                 "validations": [{"expression": "object.spec.replicas == oldObject.spec.replicas",
                                  "message": "replicas are frozen here"}]}})
    cluster.request(
        "POST", "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings", {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": POLICY},
            "spec": {"policyName": POLICY, "validationActions": ["Deny"],
                     "matchResources": {"namespaceSelector": {"matchLabels": {
                         "kubernetes.io/metadata.name": "drift-frozen"}}}}})
    path = "/apis/apps/v1/namespaces/drift-frozen/deployments/server-tiny"
    _wait_until_refused(cluster, path)
    try:
        workspace(root, bucket, "drift-frozen", replicas=3)
        plan = cli("plan", "--detailed-exitcode", root)
        assert plan.code == 1, plan.output
        assert "cannot apply" not in plan.output
        assert plan.err == (
            "Error: cannot plan ModelServer/drift-frozen/tiny: the cluster refused a dry run of "
            "the change to Deployment drift-frozen/server-tiny: deployments.apps \"server-tiny\" "
            f"is forbidden: ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied "
            "request: replicas are frozen here\n"
            "  the cluster refuses what apply would send: change what the message names (or the "
            "resource files), then plan again\n")
    finally:
        for plural in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
            cluster.request("DELETE", f"/apis/admissionregistration.k8s.io/v1/{plural}/{POLICY}")
    _wait_until_allowed(cluster, path)

    plan = cli("plan", "--detailed-exitcode", root)
    assert plan.code == 2, plan.output
    assert "      ~ Deployment.spec.replicas: 1 -> 3\n" in plan.out
    result = cli("apply", "--auto-approve", root)
    assert result.code == 0, result.output
    assert cli("plan", "--detailed-exitcode", root).code == 0


def _dry_run_scale(cluster: ControlPlane, path: str) -> ApiError | None:
    try:
        cluster.request("PATCH", path, {"spec": {"replicas": 7}}, query={"dryRun": "All"},
                        content_type="application/merge-patch+json")
    except ApiError as e:
        return e
    return None


def _wait_until_refused(cluster: ControlPlane, path: str) -> None:
    """The apiserver takes in a new policy asynchronously: wait until a dry run meets it."""
    for _ in range(600):
        if _dry_run_scale(cluster, path) is not None:
            return
        time.sleep(0.1)
    pytest.fail("the ValidatingAdmissionPolicy never took effect")


def _wait_until_allowed(cluster: ControlPlane, path: str) -> None:
    for _ in range(600):
        if _dry_run_scale(cluster, path) is None:
            return
        time.sleep(0.1)
    pytest.fail("the ValidatingAdmissionPolicy was never lifted")


# 3. The reason names the field changed outside


def test_a_dataset_digest_changed_outside_is_planned_as_changed_outside(
        cli, cluster: ControlPlane, bucket: str, tmp_path: Path) -> None:
    root = applied(cli, workspace(tmp_path / "ws", bucket, "drift-digest"))
    path = "/api/v1/namespaces/drift-digest/configmaps/dataset-prompts"
    digest = get(cluster, path)["data"]["digest"]
    other = "sha256:" + "0" * 64
    cluster.kubectl("-n", "drift-digest", "patch", "configmap/dataset-prompts", "--type=merge",
                    "-p", json.dumps({"data": {"digest": other}}))

    plan = cli("plan", "--detailed-exitcode", root)
    assert plan.code == 2, plan.output
    assert plan.out == header(root) + "\n" + BANNER + (
        "\n"
        "  # Dataset/drift-digest/prompts changed outside substratus since the last apply\n"
        f'      ~ ConfigMap.data.digest: "{digest}" -> "{other}"\n'
        "\n"
        "Resource actions are indicated with the following symbols:\n"
        "  ~ update in-place\n"
        "\n"
        "Substratus will perform the following actions:\n"
        "\n"
        "  # Dataset/drift-digest/prompts will be updated in-place (changed outside substratus: "
        "ConfigMap.data.digest)\n"
        "  ~ Dataset/drift-digest/prompts\n"
        f'      ~ ConfigMap.data.digest: "{other}" -> "{digest}"\n'
        "\n"
        "Plan: 0 to add, 1 to change, 0 to destroy.\n")
    assert "the files at" not in plan.out

    result = cli("apply", "--auto-approve", root)
    assert result.code == 0, result.output
    assert get(cluster, path)["data"]["digest"] == digest
    again = cli("plan", "--detailed-exitcode", root)
    assert again.code == 0, again.output
    assert again.out == header(root) + "\n" + NO_CHANGES


# 4. A declared GPU type the cluster does not offer is refused at plan time


def test_a_declared_gpu_type_no_node_offers_is_refused_at_plan_time(
        cli, cluster: ControlPlane, bucket: str, tmp_path: Path) -> None:
    def gpu(kind: str, count: int) -> str:
        return f"\n  resources: {{gpu: {{type: {kind}, count: {count}}}}}"

    root = workspace(tmp_path / "ws", bucket, "drift-gpu", extra=gpu("nvidia-tesla-t4", 1))
    for command in (("plan", "--detailed-exitcode"), ("apply", "--auto-approve")):
        result = cli(*command, root)
        assert result.code == 1, result.output
        assert result.err == (
            "Error: server.yaml:13: ModelServer 'tiny': spec.resources.gpu asks for 1 x "
            "nvidia-tesla-t4, which no node or node pool of the cluster offers (it offers: 2 x "
            "nvidia-l4 per node)\n"
            "  ask for a type it offers, or declare a NodePool with that accelerator (autoscaling "
            "from min: 0 adds nodes only when a workload needs them)\n")
        assert "Traceback" not in result.output
    assert cluster.request("GET", "/apis/apps/v1/namespaces/drift-gpu/deployments",
                           query={"labelSelector": "app.kubernetes.io/managed-by=substratus"}
                           )["items"] == []

    # More GPUs than any node of the type holds cannot be scheduled either.
    workspace(root, bucket, "drift-gpu", extra=gpu(L4, 4))
    plan = cli("plan", root)
    assert plan.code == 1, plan.output
    assert plan.err == (
        "Error: server.yaml:13: ModelServer 'tiny': spec.resources.gpu asks for 4 x nvidia-l4, "
        "but no node of the cluster has more than 2 x nvidia-l4\n"
        "  ask for at most 2, or declare a NodePool whose nodes have 4 (accelerator count)\n")

    workspace(root, bucket, "drift-gpu", extra=gpu(L4, 1))
    plan = cli("plan", "--detailed-exitcode", root)
    assert plan.code == 2, plan.output
    assert "      # sizing: spec.resources.gpu asks for 1 x nvidia-l4\n" in plan.out
    result = cli("apply", "--auto-approve", root)
    assert result.code == 0, result.output
    pod = cluster.request("GET", "/api/v1/namespaces/drift-gpu/pods", query={
        "labelSelector": "substratus.ai/kind=ModelServer,substratus.ai/name=tiny"})["items"][0]
    assert pod["spec"]["nodeName"].startswith("l4-pool-")
    assert cli("plan", "--detailed-exitcode", root).code == 0


# 5. No noise


def test_an_input_change_shows_no_version_annotation_and_no_cpu_sizing_note(
        cli, cluster: ControlPlane, bucket: str, tmp_path: Path) -> None:
    root = applied(cli, workspace(tmp_path / "ws", bucket, "drift-noise"))
    (root / "weights" / "config.json").write_text('{"hidden_size": 8}')

    plan = cli("plan", "--detailed-exitcode", root)
    assert plan.code == 2, plan.output
    actions = plan.out.partition("Substratus will perform the following actions:\n")[2]
    server = actions[actions.index("  # ModelServer/drift-noise/tiny"):]
    server = server[:server.index("\n\n")]
    lines = server.splitlines()
    assert lines[:2] == [
        "  # ModelServer/drift-noise/tiny will be updated in-place (a new version of its model "
        "input)",
        "  ~ ModelServer/drift-noise/tiny"]
    assert [line.split(":")[0] for line in lines[2:]] == [
        "      ~ Deployment.spec.template.spec.containers.server.env.SUBSTRATUS_INPUT_MODEL_URL."
        "value"]
    assert "substratus.ai/version" not in plan.out
    assert "no GPU requested" not in plan.out

    verbose = cli("plan", "--verbose", root)
    assert verbose.code == 0, verbose.output
    assert ("      # sizing: the model's size is known only after it is built or fetched (or set "
            "spec.size on the Model); no GPU requested\n") in verbose.out
    assert "substratus.ai/version" not in verbose.out
    assert cli("plan", "-v", root).out == verbose.out

    result = cli("apply", "--auto-approve", root)
    assert result.code == 0, result.output
    again = cli("plan", "--detailed-exitcode", root)
    assert again.code == 0, again.output
    assert again.out == header(root) + "\n" + NO_CHANGES
