"""The GKE fake (tests/gke) through the real google-cloud-container client over REST: operations
that finish by themselves, GKE's 409 / 400 incompatible-operation / 429 quota / 404 answers, and
the failure knobs other tests rely on."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import container_v1 as gke

from tests.gke import FakeGKE, Settings

REPO = Path(__file__).resolve().parents[2]
LOCATION = "projects/proj/locations/us-central1"
CLUSTER = f"{LOCATION}/clusters/c1"
Status = gke.Operation.Status
CA_PEM = b"-----BEGIN CERTIFICATE-----\nTUlJQnRlc3Q=\n-----END CERTIFICATE-----\n"


@pytest.fixture
def fake() -> Iterator[FakeGKE]:
    """Operations answer RUNNING to one poll and DONE to the next; time alone never ends them."""
    settings = Settings(endpoint="127.0.0.1:6443", ca_certificate=base64.b64encode(CA_PEM).decode(),
                        operation_polls=1, operation_seconds=None)
    with FakeGKE(settings) as server:
        yield server


@pytest.fixture
def client(fake: FakeGKE) -> gke.ClusterManagerClient:
    return gke.ClusterManagerClient(transport="rest", credentials=AnonymousCredentials(),
                                    client_options=fake.client_options)


def wait(client: gke.ClusterManagerClient, operation: gke.Operation,
         location: str = LOCATION) -> gke.Operation:
    for _ in range(10):
        operation = client.get_operation(request={"name": f"{location}/operations/{operation.name}"})
        if operation.status == Status.DONE:
            return operation
    raise AssertionError(f"{operation.name} never finished")


def make_cluster(client: gke.ClusterManagerClient, name: str = "c1") -> gke.Operation:
    return wait(client, client.create_cluster(
        parent=LOCATION, cluster=gke.Cluster(name=name, initial_node_count=1)))


def gpu_pool(name: str = "gpu") -> gke.NodePool:
    return gke.NodePool(
        name=name, initial_node_count=1, locations=["us-central1-a"],
        autoscaling=gke.NodePoolAutoscaling(enabled=True, min_node_count=0, max_node_count=3),
        config=gke.NodeConfig(
            machine_type="g2-standard-8", spot=True,
            accelerators=[gke.AcceleratorConfig(accelerator_count=1, accelerator_type="nvidia-l4")],
            taints=[gke.NodeTaint(key="nvidia.com/gpu", value="present",
                                  effect=gke.NodeTaint.Effect.NO_SCHEDULE)]))


def raw(fake: FakeGKE, method: str, path: str, body: dict[str, Any] | None = None,
        query: str = "") -> tuple[int, dict[str, Any]]:
    """A plain HTTP request, as a client other than the python library sends it."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{fake.url}{path}{query}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_cluster_create_runs_then_is_done_with_endpoint_and_ca(
        fake: FakeGKE, client: gke.ClusterManagerClient) -> None:
    operation = client.create_cluster(parent=LOCATION,
                                      cluster=gke.Cluster(name="c1", initial_node_count=1))
    assert (operation.status, operation.operation_type) == \
        (Status.RUNNING, gke.Operation.Type.CREATE_CLUSTER)
    assert operation.name.startswith("operation-")
    assert operation.target_link.endswith(CLUSTER)
    provisioning = client.get_cluster(name=CLUSTER)
    assert provisioning.status == gke.Cluster.Status.PROVISIONING
    assert provisioning.node_pools[0].status == gke.NodePool.Status.PROVISIONING
    assert provisioning.current_node_count == 0

    operation_path = f"{LOCATION}/operations/{operation.name}"
    assert client.get_operation(request={"name": operation_path}).status == Status.RUNNING
    done = client.get_operation(request={"name": operation_path})
    assert done.status == Status.DONE and not done.error.message and done.end_time

    cluster = client.get_cluster(name=CLUSTER)
    assert cluster.status == gke.Cluster.Status.RUNNING
    assert cluster.endpoint == "127.0.0.1:6443"
    assert base64.b64decode(cluster.master_auth.cluster_ca_certificate) == CA_PEM
    assert [p.name for p in cluster.node_pools] == ["default-pool"]
    assert cluster.node_pools[0].status == gke.NodePool.Status.RUNNING
    # A regional cluster's default pool: one node in each of three zones.
    assert list(cluster.locations) == ["us-central1-a", "us-central1-b", "us-central1-c"]
    assert cluster.current_node_count == 3
    assert [c.name for c in client.list_clusters(parent=LOCATION).clusters] == ["c1"]


def test_duplicate_cluster_is_409_already_exists(client: gke.ClusterManagerClient) -> None:
    make_cluster(client)
    with pytest.raises(gexc.Conflict) as caught:
        client.create_cluster(parent=LOCATION, cluster=gke.Cluster(name="c1", initial_node_count=1))
    assert caught.value.message.endswith(f"Already exists: {CLUSTER}.")


def test_second_change_while_an_operation_runs_is_400_incompatible(
        fake: FakeGKE, client: gke.ClusterManagerClient) -> None:
    running = client.create_cluster(parent=LOCATION,
                                    cluster=gke.Cluster(name="c1", initial_node_count=1))
    with pytest.raises(gexc.BadRequest) as caught:
        client.create_node_pool(parent=CLUSTER, node_pool=gpu_pool())
    expected = f"Cluster is running incompatible operation {running.name}."
    assert caught.value.message.endswith(expected)
    assert caught.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"
    # The answer as GKE words it, to any HTTP client.
    status, body = raw(fake, "DELETE", f"/v1/{CLUSTER}")
    assert status == 400
    assert body["error"]["code"] == 400 and body["error"]["status"] == "FAILED_PRECONDITION"
    assert body["error"]["message"] == expected
    wait(client, running)
    wait(client, client.create_node_pool(parent=CLUSTER, node_pool=gpu_pool()))


def test_changes_to_one_node_pool_are_serialized_others_run_beside_them(
        client: gke.ClusterManagerClient) -> None:
    make_cluster(client)
    creating = client.create_node_pool(parent=CLUSTER, node_pool=gpu_pool("a"))
    with pytest.raises(gexc.BadRequest, match="incompatible operation"):
        client.set_node_pool_size(request={"name": f"{CLUSTER}/nodePools/a", "node_count": 2})
    with pytest.raises(gexc.BadRequest, match="incompatible operation"):
        client.update_cluster(name=CLUSTER, update=gke.ClusterUpdate(
            desired_release_channel=gke.ReleaseChannel(channel="RAPID")))
    beside = client.create_node_pool(parent=CLUSTER, node_pool=gpu_pool("b"))
    assert client.get_cluster(name=CLUSTER).status == gke.Cluster.Status.RECONCILING
    wait(client, creating)
    wait(client, beside)
    assert client.get_cluster(name=CLUSTER).status == gke.Cluster.Status.RUNNING


def test_operations_beyond_the_quota_are_429_resource_exhausted(
        fake: FakeGKE, client: gke.ClusterManagerClient) -> None:
    fake.settings.concurrent_operations = 2
    fake.settings.retry_after = 7
    make_cluster(client)
    first = [client.create_node_pool(parent=CLUSTER, node_pool=gpu_pool(n)) for n in ("a", "b")]
    with pytest.raises(gexc.TooManyRequests) as caught:
        client.create_node_pool(parent=CLUSTER, node_pool=gpu_pool("c"))
    assert caught.value.message.endswith(
        'Too many operations: cluster "c1" hits the concurrent operations quota 2, please try '
        "again later.")
    assert caught.value.response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert caught.value.response.headers["Retry-After"] == "7"
    for operation in first:
        wait(client, operation)
    wait(client, client.create_node_pool(parent=CLUSTER, node_pool=gpu_pool("c")))


def test_missing_things_are_404_not_found(client: gke.ClusterManagerClient) -> None:
    pool = f"{CLUSTER}/nodePools/gpu"
    for call, field, name, missing in (
            (client.get_cluster, "name", CLUSTER, CLUSTER),
            (client.delete_cluster, "name", CLUSTER, CLUSTER),
            (client.list_node_pools, "parent", CLUSTER, CLUSTER),
            (client.get_node_pool, "name", pool, CLUSTER),  # its cluster is what is missing
            (client.get_operation, "name", f"{LOCATION}/operations/operation-1",
             f"{LOCATION}/operations/operation-1")):
        with pytest.raises(gexc.NotFound) as caught:
            call(request={field: name})
        assert caught.value.message.endswith(f"Not found: {missing}.")
    make_cluster(client)
    for call in (client.get_node_pool, client.delete_node_pool):
        with pytest.raises(gexc.NotFound) as caught:
            call(request={"name": pool})
        assert caught.value.message.endswith(f"Not found: {pool}.")


def test_node_pool_keeps_its_config_and_counts_in_the_cluster(
        client: gke.ClusterManagerClient) -> None:
    make_cluster(client)
    operation = client.create_node_pool(parent=CLUSTER, node_pool=gpu_pool())
    assert operation.operation_type == gke.Operation.Type.CREATE_NODE_POOL
    assert client.get_node_pool(name=f"{CLUSTER}/nodePools/gpu").status == \
        gke.NodePool.Status.PROVISIONING
    wait(client, operation)
    pool = client.get_node_pool(name=f"{CLUSTER}/nodePools/gpu")
    assert pool.status == gke.NodePool.Status.RUNNING
    assert pool.config.machine_type == "g2-standard-8" and pool.config.spot
    assert [(a.accelerator_type, a.accelerator_count) for a in pool.config.accelerators] == \
        [("nvidia-l4", 1)]
    assert [(t.key, t.value, t.effect) for t in pool.config.taints] == \
        [("nvidia.com/gpu", "present", gke.NodeTaint.Effect.NO_SCHEDULE)]
    assert (pool.autoscaling.enabled, pool.autoscaling.min_node_count,
            pool.autoscaling.max_node_count) == (True, 0, 3)
    assert list(pool.locations) == ["us-central1-a"] and pool.initial_node_count == 1
    assert client.get_cluster(name=CLUSTER).current_node_count == 3 + 1
    names = [p.name for p in client.list_node_pools(parent=CLUSTER).node_pools]
    assert names == ["default-pool", "gpu"]


def test_node_pool_changes_show_when_their_operation_is_done(
        client: gke.ClusterManagerClient) -> None:
    make_cluster(client)
    wait(client, client.create_node_pool(parent=CLUSTER, node_pool=gpu_pool()))
    name = f"{CLUSTER}/nodePools/gpu"
    update = client.update_node_pool(request=gke.UpdateNodePoolRequest(
        name=name, machine_type="g2-standard-24", locations=["us-central1-a", "us-central1-b"],
        taints=gke.NodeTaints(taints=[])))
    assert update.operation_type == gke.Operation.Type.UPGRADE_NODES
    during = client.get_node_pool(name=name)
    assert during.status == gke.NodePool.Status.RECONCILING
    assert during.config.machine_type == "g2-standard-8"
    wait(client, update)
    after = client.get_node_pool(name=name)
    assert after.config.machine_type == "g2-standard-24" and not after.config.taints
    assert list(after.locations) == ["us-central1-a", "us-central1-b"]

    wait(client, client.set_node_pool_autoscaling(request=gke.SetNodePoolAutoscalingRequest(
        name=name, autoscaling=gke.NodePoolAutoscaling(enabled=True, min_node_count=2,
                                                       max_node_count=5))))
    assert client.get_node_pool(name=name).autoscaling.min_node_count == 2
    # Two zones, at least two nodes in each (the autoscaler's minimum).
    assert client.get_cluster(name=CLUSTER).current_node_count == 3 + 4
    wait(client, client.set_node_pool_size(request={"name": name, "node_count": 4}))
    assert client.get_cluster(name=CLUSTER).current_node_count == 3 + 8


def test_cluster_update_sets_the_desired_field_and_refuses_an_empty_one(
        fake: FakeGKE, client: gke.ClusterManagerClient) -> None:
    make_cluster(client)
    operation = client.update_cluster(name=CLUSTER, update=gke.ClusterUpdate(
        desired_release_channel=gke.ReleaseChannel(channel="RAPID")))
    assert operation.operation_type == gke.Operation.Type.UPDATE_CLUSTER
    assert client.get_cluster(name=CLUSTER).status == gke.Cluster.Status.RECONCILING
    wait(client, operation)
    assert client.get_cluster(name=CLUSTER).release_channel.channel == \
        gke.ReleaseChannel.Channel.RAPID
    status, body = raw(fake, "PUT", f"/v1/{CLUSTER}", {"update": {}})
    assert (status, body["error"]["message"]) == (400, "Must specify a field to update.")


def test_injected_operation_failure_ends_done_with_an_error(
        fake: FakeGKE, client: gke.ClusterManagerClient) -> None:
    make_cluster(client)
    fake.fail_next_operation("no L4 left in us-central1-a", match="CREATE_NODE_POOL")
    done = wait(client, client.create_node_pool(parent=CLUSTER, node_pool=gpu_pool()))
    assert done.status == Status.DONE
    assert (done.error.code, done.error.message) == (8, "no L4 left in us-central1-a")
    assert done.status_message == "no L4 left in us-central1-a"
    pool = client.get_node_pool(name=f"{CLUSTER}/nodePools/gpu")
    assert pool.status == gke.NodePool.Status.ERROR
    assert pool.status_message == "no L4 left in us-central1-a"


def test_injected_request_failure_answers_that_error(
        fake: FakeGKE, client: gke.ClusterManagerClient) -> None:
    fake.fail_requests(503, "UNAVAILABLE", "The service is currently unavailable.",
                       match="GET /v1/projects/proj/locations/us-central1/clusters")
    with pytest.raises(gexc.ServiceUnavailable, match="currently unavailable"):
        client.list_clusters(parent=LOCATION, retry=None)
    assert client.list_clusters(parent=LOCATION).clusters == []


def test_deleted_cluster_is_stopping_then_gone(client: gke.ClusterManagerClient) -> None:
    make_cluster(client)
    operation = client.delete_cluster(name=CLUSTER)
    assert operation.operation_type == gke.Operation.Type.DELETE_CLUSTER
    assert client.get_cluster(name=CLUSTER).status == gke.Cluster.Status.STOPPING
    wait(client, operation)
    with pytest.raises(gexc.NotFound):
        client.get_cluster(name=CLUSTER)
    assert client.list_clusters(parent=LOCATION).clusters == []
    kinds = [o.operation_type for o in client.list_operations(request={"parent": LOCATION}).operations]
    assert kinds == [gke.Operation.Type.CREATE_CLUSTER, gke.Operation.Type.DELETE_CLUSTER]


def test_operations_also_finish_by_time_without_polls(
        fake: FakeGKE, client: gke.ClusterManagerClient) -> None:
    fake.settings.operation_polls, fake.settings.operation_seconds = None, 0.2
    client.create_cluster(parent=LOCATION, cluster=gke.Cluster(name="c1", initial_node_count=1))
    assert client.get_cluster(name=CLUSTER).status == gke.Cluster.Status.PROVISIONING
    time.sleep(0.25)
    assert client.get_cluster(name=CLUSTER).status == gke.Cluster.Status.RUNNING


def test_location_dash_lists_every_location(client: gke.ClusterManagerClient) -> None:
    make_cluster(client)
    zone = "projects/proj/locations/europe-west4-a"
    wait(client, client.create_cluster(
        parent=zone, cluster=gke.Cluster(name="c2", initial_node_count=1)), zone)
    everywhere = client.list_clusters(parent="projects/proj/locations/-").clusters
    assert sorted((c.name, c.location) for c in everywhere) == \
        [("c1", "us-central1"), ("c2", "europe-west4-a")]
    assert [c.name for c in client.list_clusters(parent=LOCATION).clusters] == ["c1"]
    zonal = next(c for c in everywhere if c.name == "c2")
    assert list(zonal.locations) == ["europe-west4-a"]  # a zonal cluster's nodes: its zone


def test_enums_are_names_unless_the_client_asks_for_integers(fake: FakeGKE) -> None:
    body = {"cluster": {"name": "c1", "initialNodeCount": 1,
                        "releaseChannel": {"channel": 3}}}  # sent as the python client does
    status, operation = raw(fake, "POST", f"/v1/{LOCATION}/clusters", body)
    assert status == 200 and operation["status"] == "RUNNING"
    assert operation["operationType"] == "CREATE_CLUSTER"
    _, cluster = raw(fake, "GET", f"/v1/{CLUSTER}")
    assert cluster["status"] == "PROVISIONING" and cluster["releaseChannel"]["channel"] == "STABLE"
    _, as_int = raw(fake, "GET", f"/v1/{CLUSTER}", query="?%24alt=json%3Benum-encoding%3Dint")
    assert as_int["status"] == 1 and as_int["releaseChannel"]["channel"] == 3
    assert as_int["nodePools"][0]["status"] == 1


def test_invalid_names_and_unserved_paths_are_refused(
        fake: FakeGKE, client: gke.ClusterManagerClient) -> None:
    with pytest.raises(gexc.BadRequest, match='Invalid value for field "cluster.name": "Bad_Name"'):
        client.create_cluster(parent=LOCATION,
                              cluster=gke.Cluster(name="Bad_Name", initial_node_count=1))
    with pytest.raises(gexc.BadRequest, match="initial_node_count must be greater than zero"):
        client.create_cluster(parent=LOCATION, cluster=gke.Cluster(name="c1"))
    status, body = raw(fake, "GET", "/v1/projects/proj/zones/us-central1-a/clusters")
    assert status == 501 and body["error"]["status"] == "UNIMPLEMENTED"


def test_settings_point_clusters_at_a_real_api_server(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(CA_PEM)
    settings = Settings.pointing_at("https://127.0.0.1:41234", ca_file, operation_polls=0)
    assert settings.endpoint == "127.0.0.1:41234" and settings.operation_polls == 0
    assert base64.b64decode(settings.ca_certificate) == CA_PEM


def test_python_m_tests_gke_serves_until_stopped() -> None:
    process = subprocess.Popen([sys.executable, "-m", "tests.gke", "--operation-seconds", "0"],
                               cwd=REPO, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split(" at ")[1].strip()
        client = gke.ClusterManagerClient(transport="rest", credentials=AnonymousCredentials(),
                                          client_options={"api_endpoint": url})
        client.create_cluster(parent=LOCATION, cluster=gke.Cluster(name="c1", initial_node_count=1))
        assert client.get_cluster(name=CLUSTER).status == gke.Cluster.Status.RUNNING
    finally:
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=10) == 0
