"""providers/gcp/gke.py against the GKE fake: changes polled to DONE, a busy cluster and a full
operation quota waited out with capped backoff (and counted), failed operations and missing
credentials as errors a user can act on."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import container_v1 as gke

from substratus_cli.errors import ProviderError
from substratus_cli.retry import RetryPolicy
from substratus_providers.gcp.gke import ENDPOINT_ENV, GKE, ClusterRef, NodePoolRef
from substratus_providers.gcp.nodepools import (
    FORCES_REPLACEMENT,
    IN_PLACE,
    node_pool_message,
    node_pool_spec,
)
from tests.gke import FakeGKE, Settings

CLUSTER = ClusterRef("proj", "us-central1", "c1")
POOL = NodePoolRef(CLUSTER, "gpu")
SPEC = {"machineType": "g2-standard-24",
        "accelerator": {"type": "nvidia-l4", "count": 2, "gpuDriverVersion": "DEFAULT"},
        "spot": True, "autoscaling": {"min": 0, "max": 3}, "zones": ["us-central1-a"],
        "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]}
FAST = RetryPolicy(first_delay=0.02, max_delay=0.08, deadline=10.0)


@pytest.fixture
def fake() -> Iterator[FakeGKE]:
    with FakeGKE(Settings(operation_polls=1, operation_seconds=None)) as server:
        yield server


class Sleeps:
    """time.sleep that remembers what it was asked to wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        time.sleep(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(fake: FakeGKE, sleeps: Sleeps) -> GKE:
    return GKE.connect(fake.url, poll_interval=0.01, retry=FAST, sleep=sleeps)


@pytest.fixture
def raw(fake: FakeGKE) -> gke.ClusterManagerClient:
    """The library's client, for changes the test starts without waiting for them."""
    return gke.ClusterManagerClient(transport="rest", credentials=AnonymousCredentials(),
                                    client_options=fake.client_options)


def cluster_message() -> gke.Cluster:
    return gke.Cluster(initial_node_count=1, release_channel=gke.ReleaseChannel(channel="REGULAR"))


def test_cluster_create_is_polled_to_done(fake: FakeGKE, client: GKE) -> None:
    message = cluster_message()
    done = client.create_cluster(CLUSTER, message)
    assert done.operation is not None and done.operation.status == gke.Operation.Status.DONE
    assert done.retries == 0
    assert isinstance(done.resource, gke.Cluster)
    assert (done.resource.name, done.resource.status) == ("c1", gke.Cluster.Status.RUNNING)
    assert done.resource.endpoint == "127.0.0.1" and done.resource.master_auth.cluster_ca_certificate
    assert message.name == ""  # the caller's message is left as it was
    polls = [p for m, p in fake.requests if m == "GET" and "/operations/" in p]
    assert len(polls) == 2  # RUNNING once, then DONE
    assert client.get_cluster(CLUSTER) == done.resource
    assert [c.name for c in client.list_clusters("proj")] == ["c1"]


def test_node_pool_create_waits_out_a_busy_cluster(
        fake: FakeGKE, client: GKE, raw: gke.ClusterManagerClient, sleeps: Sleeps) -> None:
    fake.settings.operation_polls, fake.settings.operation_seconds = None, 0.3
    raw.create_cluster(parent=CLUSTER.parent, cluster=gke.Cluster(name="c1", initial_node_count=1))
    started = time.monotonic()
    done = client.create_node_pool(POOL, node_pool_message(SPEC))
    assert done.retries > 0 and client.retries == done.retries
    assert time.monotonic() - started >= 0.25  # not before the cluster's operation was DONE
    assert isinstance(done.resource, gke.NodePool)
    assert done.resource.status == gke.NodePool.Status.RUNNING
    refused = [p for m, p in fake.requests if m == "POST" and p.endswith("/nodePools")]
    assert len(refused) == done.retries + 1
    cluster = client.get_cluster(CLUSTER)
    assert cluster is not None and cluster.status == gke.Cluster.Status.RUNNING
    assert [p.name for p in cluster.node_pools] == ["default-pool", "gpu"]


def test_a_full_operation_quota_backs_off_exponentially(
        fake: FakeGKE, client: GKE, raw: gke.ClusterManagerClient, sleeps: Sleeps,
        caplog: pytest.LogCaptureFixture) -> None:
    client.create_cluster(CLUSTER, cluster_message())
    fake.settings.concurrent_operations = 1
    fake.settings.operation_polls, fake.settings.operation_seconds = None, 0.35
    raw.create_node_pool(parent=CLUSTER.path, node_pool=gke.NodePool(name="other",
                                                                   initial_node_count=1))
    sleeps.delays.clear()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="substratus_providers.gcp.gke"):
        done = client.create_node_pool(POOL, node_pool_message(SPEC))
    assert done.retries >= 1
    assert caplog.messages[0] == (
        'creating GKE node pool gpu of cluster c1 (proj/us-central1): Too many operations: '
        'cluster "c1" hits the concurrent operations quota 1, please try again later; '
        "retrying in 0.02 s (retry 1)")
    backoff = sleeps.delays[:done.retries]
    assert backoff[:3] == [0.02, 0.04, 0.08][:len(backoff)]  # doubling from first_delay...
    assert all(d == 0.08 for d in backoff[3:])  # ...capped at max_delay
    assert time.monotonic() - started >= sum(backoff)
    assert done.resource is not None and done.resource.status == gke.NodePool.Status.RUNNING


def test_retry_after_is_honoured(fake: FakeGKE, client: GKE, raw: gke.ClusterManagerClient,
                                 sleeps: Sleeps) -> None:
    client.create_cluster(CLUSTER, cluster_message())
    fake.settings.concurrent_operations, fake.settings.retry_after = 1, 0.4
    fake.settings.operation_polls, fake.settings.operation_seconds = None, 0.3
    raw.create_node_pool(parent=CLUSTER.path, node_pool=gke.NodePool(name="other",
                                                                   initial_node_count=1))
    sleeps.delays.clear()
    done = client.create_node_pool(POOL, node_pool_message(SPEC))
    assert done.retries >= 1  # the first delay (0.02 s) would be too short
    assert sleeps.delays[:done.retries] == [0.4] * done.retries


def test_a_cluster_busy_past_the_deadline_is_an_error_with_the_retry_count(
        fake: FakeGKE, raw: gke.ClusterManagerClient, sleeps: Sleeps) -> None:
    fake.settings.operation_polls = None  # the cluster's creation never ends
    raw.create_cluster(parent=CLUSTER.parent, cluster=gke.Cluster(name="c1", initial_node_count=1))
    client = GKE.connect(fake.url, retry=RetryPolicy(first_delay=0.05, max_delay=0.05,
                                                     deadline=0.3), sleep=sleeps)
    with pytest.raises(ProviderError) as caught:
        client.create_node_pool(POOL, node_pool_message(SPEC))
    retries = client.retries
    assert retries >= 2
    assert re.match(
        rf"creating GKE node pool gpu of cluster c1 \(proj/us-central1\): GKE still refuses "
        rf"after {retries} retries over 0\.\d\d s: Cluster is running incompatible operation "
        r"operation-\d+-[-0-9a-f]+\.$", caught.value.message)
    assert "gcloud container operations list" in (caught.value.hint or "")


def test_a_failed_operation_is_a_provider_error_naming_the_node_pool(
        fake: FakeGKE, client: GKE) -> None:
    client.create_cluster(CLUSTER, cluster_message())
    fake.fail_next_operation("The zone 'us-central1-a' does not have enough resources.")
    with pytest.raises(ProviderError) as caught:
        client.create_node_pool(POOL, node_pool_message(SPEC))
    assert caught.value.message.startswith(
        "creating GKE node pool gpu of cluster c1 (proj/us-central1) failed: The zone "
        "'us-central1-a' does not have enough resources. (operation operation-")
    pool = client.get_node_pool(POOL)
    assert pool is not None and pool.status == gke.NodePool.Status.ERROR


def test_delete_then_get_is_none(client: GKE) -> None:
    client.create_cluster(CLUSTER, cluster_message())
    client.create_node_pool(POOL, node_pool_message(SPEC))
    done = client.delete_node_pool(POOL)
    assert done.operation is not None and done.resource is None
    assert client.get_node_pool(POOL) is None
    assert [p.name for p in client.list_node_pools(CLUSTER)] == ["default-pool"]
    client.delete_cluster(CLUSTER)
    assert client.get_cluster(CLUSTER) is None
    assert client.get_node_pool(POOL) is None
    assert client.delete_cluster(CLUSTER).operation is None  # already gone: nothing to do
    assert client.list_clusters("proj") == []


def test_permanent_answers_are_not_retried(client: GKE) -> None:
    client.create_cluster(CLUSTER, cluster_message())
    with pytest.raises(ProviderError) as caught:
        client.create_cluster(CLUSTER, cluster_message())
    assert caught.value.message == (
        "creating GKE cluster c1 (proj/us-central1): Already exists: "
        "projects/proj/locations/us-central1/clusters/c1.")
    with pytest.raises(ProviderError, match=r"Not found: projects/proj/locations/us-central1/"
                                            r"clusters/c2\.$"):
        client.create_node_pool(NodePoolRef(ClusterRef("proj", "us-central1", "c2"), "gpu"),
                                node_pool_message(SPEC))
    assert client.retries == 0


def test_reads_retry_what_is_temporary(fake: FakeGKE, client: GKE) -> None:
    fake.fail_requests(503, "UNAVAILABLE", "The service is currently unavailable.", times=2,
                       match="GET ")
    assert client.get_cluster(CLUSTER) is None
    assert client.retries == 2


def test_a_read_gives_up_at_its_own_deadline_not_a_changes_one(fake: FakeGKE) -> None:
    # GKE keeps answering 503: a plan fails within the read deadline, not the 10 s of a change.
    reader = GKE.connect(fake.url, retry=RetryPolicy(first_delay=0.05, max_delay=0.05,
                                                     deadline=10.0, read_deadline=0.3))
    fake.fail_requests(503, "UNAVAILABLE", "The service is currently unavailable.", times=1000,
                       match="GET ")
    started = time.monotonic()
    with pytest.raises(ProviderError, match="The service is currently unavailable"):
        reader.get_cluster(CLUSTER)
    assert time.monotonic() - started < 2.0  # the change deadline (10 s) was never waited for
    # Retried, then stopped: how many tries fit in 0.3 s depends on the machine's load.
    assert 1 <= reader.retries <= 7


def test_node_pool_spec_reads_back_what_was_created(client: GKE) -> None:
    client.create_cluster(CLUSTER, cluster_message())
    done = client.create_node_pool(POOL, node_pool_message(SPEC, initial_node_count=1))
    assert isinstance(done.resource, gke.NodePool)
    assert node_pool_spec(done.resource) == SPEC


def test_a_node_pool_gke_reports_without_a_driver_reads_as_installation_disabled(
        client: GKE) -> None:
    client.create_cluster(CLUSTER, cluster_message())
    message = node_pool_message(SPEC)  # then as a pool made before the driver option: none
    message.config.accelerators = [gke.AcceleratorConfig(accelerator_type="nvidia-l4",
                                                         accelerator_count=2)]
    done = client.create_node_pool(POOL, message)
    assert isinstance(done.resource, gke.NodePool)
    assert node_pool_spec(done.resource)["accelerator"] == {
        "type": "nvidia-l4", "count": 2, "gpuDriverVersion": "INSTALLATION_DISABLED"}
    made = node_pool_message({**SPEC, "accelerator": {"type": "nvidia-l4", "count": 1}})
    assert made.config.accelerators[0].gpu_driver_installation_config.gpu_driver_version == \
        gke.GPUDriverInstallationConfig.GPUDriverVersion.LATEST  # undeclared: LATEST


def test_in_place_changes_are_applied_to_the_live_node_pool(client: GKE) -> None:
    client.create_cluster(CLUSTER, cluster_message())
    client.create_node_pool(POOL, node_pool_message(SPEC))
    client.set_node_pool_autoscaling(POOL, gke.NodePoolAutoscaling(
        enabled=True, min_node_count=1, max_node_count=8))
    client.update_node_pool(POOL, taints=gke.NodeTaints(taints=[]),
                            locations=["us-central1-a", "us-central1-b"])
    done = client.update_node_pool(POOL, machine_type="g2-standard-16")
    assert isinstance(done.resource, gke.NodePool)
    assert node_pool_spec(done.resource) == {
        **SPEC, "machineType": "g2-standard-16", "autoscaling": {"min": 1, "max": 8},
        "taints": [], "zones": ["us-central1-a", "us-central1-b"]}
    resized = client.set_node_pool_size(POOL, 2)
    assert resized.operation is not None
    assert resized.operation.operation_type == gke.Operation.Type.SET_NODE_POOL_SIZE


def test_cluster_update_is_applied(client: GKE) -> None:
    client.create_cluster(CLUSTER, cluster_message())
    done = client.update_cluster(CLUSTER, gke.ClusterUpdate(
        desired_release_channel=gke.ReleaseChannel(channel="STABLE")))
    assert isinstance(done.resource, gke.Cluster)
    assert done.resource.release_channel.channel == gke.ReleaseChannel.Channel.STABLE


def test_every_node_pool_field_is_either_updated_in_place_or_forces_replacement() -> None:
    assert not set(IN_PLACE) & FORCES_REPLACEMENT
    assert set(SPEC) <= set(IN_PLACE) | FORCES_REPLACEMENT
    assert {"accelerator", "spot"} <= FORCES_REPLACEMENT
    assert IN_PLACE["autoscaling"] == "setAutoscaling" and IN_PLACE["nodeCount"] == "setSize"


def test_the_endpoint_comes_from_the_environment(
        fake: FakeGKE, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, fake.url)
    client = GKE.connect(poll_interval=0.01)
    assert client.list_clusters("proj") == []
    assert fake.requests == [("GET", "/v1/projects/proj/locations/-/clusters")]


def test_no_credentials_names_the_gcloud_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENDPOINT_ENV, "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    with pytest.raises(ProviderError) as caught:
        GKE.connect()
    assert caught.value.message.startswith("cannot reach GKE: no Google credentials found")
    assert "gcloud auth application-default login" in (caught.value.hint or "")


def test_each_request_is_logged_at_debug_with_its_status_and_counted(
        fake: FakeGKE, client: GKE, capsys: pytest.CaptureFixture[str]) -> None:
    from substratus_cli import verbosity

    verbosity.configure(verbose=True)
    try:
        client.create_cluster(CLUSTER, cluster_message())
    finally:
        verbosity.finish()
    lines = capsys.readouterr().err.splitlines()
    logged = [re.fullmatch(r"DEBUG substratus_providers\.gcp\.gke: ([A-Z]+) (\S+) (\d{3}) \d+ ms",
                           line) for line in lines]
    sent = [(m[1], m[2], m[3]) for m in logged if m]
    assert sent == [(method, path, "200") for method, path in fake.requests]
    assert f"DEBUG substratus_cli.verbosity: gke: {len(sent)} API requests in all" in lines
