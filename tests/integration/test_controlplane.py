"""The test Kubernetes control plane (tests/cluster) does what the kubernetes provider's tests will
rely on: GPU node pools, scheduling, Jobs that complete, Deployments that become available,
server-side apply, and kubectl with the written kubeconfig."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.cluster.controlplane import (
    FAILING_POD_LABEL,
    ApiError,
    ControlPlane,
    versions,
)
from tests.support.cluster import started_cluster

# The first test may build the binaries (once per version set, ~8 minutes on 2 cores); every
# wait inside the tests has its own short timeout.
pytestmark = pytest.mark.timeout(1800)

NS = "controlplane-test"
L4 = "nvidia-l4"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    for cp in started_cluster(request):
        cp.add_node_pool("l4-pool", 2, accelerator=L4, gpus=2, cpu="24", memory="96Gi")
        cp.create_namespace(NS)
        yield cp


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def pod(name: str, *, gpus: int = 0, accelerator: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "registry.invalid/never-pulled:1"}
    spec: dict[str, Any] = {"containers": [container]}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
        spec["nodeSelector"] = {"cloud.google.com/gke-accelerator": accelerator}
        spec["tolerations"] = [GPU_TOLERATION]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def get(cluster: ControlPlane, path: str) -> dict[str, Any]:
    return cluster.request("GET", path)


def condition(obj: dict[str, Any], kind: str) -> str | None:
    for c in obj.get("status", {}).get("conditions") or []:
        if c["type"] == kind:
            return c["status"]
    return None


def test_gpu_node_pools_are_ready_with_gke_labels_and_capacity(cluster: ControlPlane) -> None:
    nodes = {n["metadata"]["name"]: n for n in get(cluster, "/api/v1/nodes")["items"]}

    assert sorted(nodes) == ["default-pool-0", "l4-pool-0", "l4-pool-1"]
    for name in ("l4-pool-0", "l4-pool-1"):
        node = nodes[name]
        assert condition(node, "Ready") == "True"
        assert node["metadata"]["labels"]["cloud.google.com/gke-nodepool"] == "l4-pool"
        assert node["metadata"]["labels"]["cloud.google.com/gke-accelerator"] == L4
        assert node["status"]["capacity"]["nvidia.com/gpu"] == "2"
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "2"
        assert node["spec"]["taints"] == [
            {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    cpu = nodes["default-pool-0"]
    assert condition(cpu, "Ready") == "True"
    assert cpu["metadata"]["labels"]["cloud.google.com/gke-nodepool"] == "default-pool"
    assert "nvidia.com/gpu" not in cpu["status"]["capacity"]
    assert not cpu["spec"].get("taints")


def test_gpu_pod_is_scheduled_on_the_l4_pool_and_runs(cluster: ControlPlane) -> None:
    cluster.request("POST", f"/api/v1/namespaces/{NS}/pods", pod("gpu", gpus=2, accelerator=L4))

    running = wait_until("the GPU pod to run", lambda: (
        p := get(cluster, f"/api/v1/namespaces/{NS}/pods/gpu"))["status"].get("phase")
        == "Running" and p)

    assert running["spec"]["nodeName"] in ("l4-pool-0", "l4-pool-1")
    assert condition(running, "Ready") == "True"


def test_pod_for_a_gpu_type_no_node_has_stays_pending(cluster: ControlPlane) -> None:
    cluster.request("POST", f"/api/v1/namespaces/{NS}/pods",
                    pod("no-h100", gpus=1, accelerator="nvidia-h100-80gb"))

    events = wait_until("a FailedScheduling event", lambda: get(
        cluster, f"/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.name%3Dno-h100"
    )["items"])

    assert {e["reason"] for e in events} == {"FailedScheduling"}
    assert "didn't match Pod's node affinity/selector" in events[0]["message"]
    pending = get(cluster, f"/api/v1/namespaces/{NS}/pods/no-h100")
    assert pending["status"]["phase"] == "Pending"
    assert condition(pending, "PodScheduled") == "False"
    assert not pending["spec"].get("nodeName")


def job(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": labels or {}},
            "spec": {**pod("x")["spec"], "restartPolicy": "Never"}}},
    }


def deployment(name: str, image: str = "registry.invalid/server:1") -> dict[str, Any]:
    labels = {"app": name}
    spec = pod("x")["spec"]
    spec["containers"][0]["image"] = image
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels}, "spec": spec}},
    }


def test_job_completes(cluster: ControlPlane) -> None:
    cluster.request("POST", f"/apis/batch/v1/namespaces/{NS}/jobs", job("train"))

    done = wait_until("the Job to complete", lambda: condition(
        j := get(cluster, f"/apis/batch/v1/namespaces/{NS}/jobs/train"), "Complete") == "True"
        and j)

    assert done["status"]["succeeded"] == 1


def test_job_whose_pod_is_labelled_to_fail_fails(cluster: ControlPlane) -> None:
    cluster.request("POST", f"/apis/batch/v1/namespaces/{NS}/jobs",
                    job("broken", labels={FAILING_POD_LABEL: "true"}))

    failed = wait_until("the Job to fail", lambda: condition(
        j := get(cluster, f"/apis/batch/v1/namespaces/{NS}/jobs/broken"), "Failed") == "True"
        and j)

    assert failed["status"]["failed"] == 1
    assert not failed["status"].get("succeeded")


def wait_for_rollout(cluster: ControlPlane, name: str) -> dict[str, Any]:
    def rolled_out() -> dict[str, Any] | None:
        d = get(cluster, f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")
        status = d.get("status", {})
        done = (status.get("observedGeneration") == d["metadata"]["generation"]
                and status.get("updatedReplicas") == status.get("availableReplicas")
                == status.get("replicas") == d["spec"]["replicas"]
                and condition(d, "Available") == "True")
        return d if done else None

    return wait_until(f"Deployment {name} to roll out", rolled_out)


def pods_of(cluster: ControlPlane, app: str) -> list[dict[str, Any]]:
    return get(cluster, f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3D{app}")["items"]


def test_deployment_becomes_available(cluster: ControlPlane) -> None:
    cluster.request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", deployment("server"))

    available = wait_for_rollout(cluster, "server")

    assert available["status"]["readyReplicas"] == 2
    assert {p["spec"]["nodeName"] for p in pods_of(cluster, "server")} == {"default-pool-0"}


def test_deployment_rollout_replaces_its_pods(cluster: ControlPlane) -> None:
    cluster.request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", deployment("web"))
    wait_for_rollout(cluster, "web")

    cluster.request("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/web",
                    deployment("web", image="registry.invalid/server:2"),
                    content_type="application/apply-patch+yaml",
                    query={"fieldManager": "substratus", "force": "true"})
    wait_for_rollout(cluster, "web")

    def images() -> list[str]:
        return [p["spec"]["containers"][0]["image"] for p in pods_of(cluster, "web")]

    wait_until("the new pods alone", lambda: images() == ["registry.invalid/server:2"] * 2)


def test_deleting_a_deployment_removes_its_pods(cluster: ControlPlane) -> None:
    cluster.request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", deployment("gone"))
    wait_for_rollout(cluster, "gone")

    cluster.request("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/gone",
                    {"propagationPolicy": "Background"})

    wait_until("the garbage collector and kwok to remove the pods",
               lambda: not pods_of(cluster, "gone"))


def test_server_side_apply_with_a_field_manager(cluster: ControlPlane) -> None:
    path = f"/api/v1/namespaces/{NS}/configmaps/settings"
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
               "data": {"replicas": "1"}}

    def apply(body: dict[str, Any], **query: str) -> dict[str, Any]:
        return cluster.request("PATCH", path, body, content_type="application/apply-patch+yaml",
                               query={"fieldManager": "substratus", **query})

    dry = apply(desired, dryRun="All")
    assert dry["data"] == {"replicas": "1"}
    with pytest.raises(ApiError) as absent:
        get(cluster, path)
    assert absent.value.status == 404

    applied = apply(desired)
    managers = {(m["manager"], m["operation"]) for m in applied["metadata"]["managedFields"]}
    assert managers == {("substratus", "Apply")}

    # Someone edits the object by hand; applying our value again is a conflict on that field.
    cluster.kubectl("-n", NS, "patch", "configmap", "settings", "-p", '{"data":{"replicas":"3"}}')
    with pytest.raises(ApiError) as conflict:
        apply(desired)
    assert conflict.value.status == 409
    assert "kubectl-patch" in conflict.value.body
    assert apply(desired, force="true")["data"] == {"replicas": "1"}


def test_kubectl_get_nodes_with_the_written_kubeconfig(cluster: ControlPlane) -> None:
    kubectl = str(cluster.bin_dir / "kubectl")
    env = {**os.environ, **cluster.env()}

    nodes = subprocess.run([kubectl, "get", "nodes", "-o", "name"], env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    version = json.loads(subprocess.run([kubectl, "version", "-o", "json"], env=env, check=True,
                                        capture_output=True, text=True).stdout)

    assert nodes == ["node/default-pool-0", "node/l4-pool-0", "node/l4-pool-1"]
    assert version["serverVersion"]["gitVersion"] == versions()["kubernetes"]
    assert version["clientVersion"]["gitVersion"] == versions()["kubernetes"]


def test_kubernetes_python_client_reads_the_written_kubeconfig(cluster: ControlPlane) -> None:
    try:
        from kubernetes import client, config
    except ImportError:
        pytest.fail("the kubernetes client is not installed: pip install -e '.[test]'")

    api = client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig),
                                                         context="substratus-test"))
    gpus = {n.metadata.name: n.status.allocatable.get("nvidia.com/gpu")
            for n in api.list_node(label_selector="cloud.google.com/gke-accelerator=nvidia-l4").items}

    assert gpus == {"l4-pool-0": "2", "l4-pool-1": "2"}
