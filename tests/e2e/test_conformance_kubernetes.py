"""The provider conformance suite against the kubernetes provider on the real test control plane,
with its artifacts in a real fake-gcs-server: Datasets from a folder (an upload and a ConfigMap)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from substratus_artifacts.files import hash_tree
from substratus_artifacts.store import open_store
from substratus_cli.action import Action
from substratus_cli.address import Address
from substratus_cli.provider import LiveObject, PlanItem, PlannedChange, ProviderContext
from substratus_cli.resource import Resource
from substratus_providers.kubernetes.desired import ref_name, version_of
from substratus_providers.kubernetes.manifests import object_name
from substratus_providers.kubernetes.provider import KubernetesProvider
from tests.cluster.controlplane import ControlPlane
from tests.support import provider_conformance as conformance
from tests.support.cluster import started_cluster
from tests.support.gcs import bucket_beside

pytestmark = pytest.mark.timeout(1800)  # the first test may build the control plane

NAMESPACE = "conformance"


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    for cp in started_cluster(request):
        cp.create_namespace(NAMESPACE)
        yield cp


@pytest.fixture(scope="module")
def artifacts(cluster: ControlPlane) -> Iterator[str]:
    """gs://BUCKET/artifacts in a fake-gcs-server, with the environment pointing at both."""
    with bucket_beside(cluster.kubeconfig) as bucket:
        yield f"gs://{bucket}/artifacts"


class KubernetesHarness:
    def __init__(self, cluster: ControlPlane, artifacts: str, workdir: Path) -> None:
        self.cluster = cluster
        self.artifacts = artifacts
        self.workdir = workdir

    def provider(self, lineage: str) -> KubernetesProvider:
        settings = {"kubernetes": {"context": "substratus-test", "namespace": NAMESPACE}}
        return KubernetesProvider(ProviderContext(
            workdir=self.workdir, data_dir=self.workdir / ".substratus", part_of=lineage,
            artifacts_url=self.artifacts, settings=settings,
            open_artifacts=lambda: open_store(self.artifacts)))

    def resource(self, name: str) -> Resource:
        (self.workdir / name).mkdir()
        (self.workdir / name / "rows.jsonl").write_text(f'{{"name": "{name}"}}\n')
        return Resource(Address("Dataset", NAMESPACE, name), {"source": {"path": name}},
                        file="datasets.yaml", line=3)

    def updated(self, resource: Resource) -> Resource:
        return dataclasses.replace(resource, labels={**resource.labels, "team": "ml"})

    def _path(self, address: Address) -> str:
        return (f"/api/v1/namespaces/{address.namespace}/configmaps/"
                f"{object_name(address.kind, address.name)}")

    def delete_outside(self, address: Address) -> None:
        self.cluster.request("DELETE", self._path(address))

    def create_unowned(self, resource: Resource) -> None:
        a = resource.address
        self.cluster.request("POST", f"/api/v1/namespaces/{a.namespace}/configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": object_name(a.kind, a.name), "namespace": a.namespace},
            "data": {"owner": "someone else"}})

    def live_private(self, live: LiveObject) -> Mapping[str, Any]:
        # The API objects it was read from, by kind: here the ConfigMap as the server has it.
        return {"objects": {"ConfigMap": self.cluster.request("GET", self._path(live.address))}}

    def change_private(self, change: PlannedChange, item: PlanItem) -> Mapping[str, Any]:
        # What apply renders again: the version, the ref it publishes at and the planned digest.
        r = item.desired
        assert r is not None
        digest = hash_tree(self.workdir / r.spec["source"]["path"], None)[0].digest
        version = version_of(r, {}, digest)
        artifact = open_store(self.artifacts).ref_url(ref_name(r.address, version))
        return {"version": version, "artifact": artifact, "inputs": {}, "digest": digest,
                "gpu": None, "image": None, "image_from": None, "image_pinned": False}


@pytest.fixture
def harness(cluster: ControlPlane, artifacts: str, tmp_path: Path) -> KubernetesHarness:
    (tmp_path / "work").mkdir()
    return KubernetesHarness(cluster, artifacts, tmp_path / "work")


def test_kubernetes_provider_apply_then_plan_is_empty(
        harness: KubernetesHarness, tmp_path: Path) -> None:
    conformance.check_apply_then_plan_is_empty(harness, tmp_path)


def test_kubernetes_provider_plans_a_configmap_deleted_outside_as_create(
        harness: KubernetesHarness, tmp_path: Path) -> None:
    conformance.check_deleted_outside_is_planned_as_create(harness, tmp_path)


def test_kubernetes_provider_refuses_an_unlabelled_configmap(
        harness: KubernetesHarness, tmp_path: Path) -> None:
    conformance.check_unowned_object_is_refused(harness, tmp_path)


def test_kubernetes_provider_private_data_round_trips(
        harness: KubernetesHarness, tmp_path: Path) -> None:
    conformance.check_private_data_round_trips(harness, tmp_path)


def test_kubernetes_provider_answers_are_validated(
        harness: KubernetesHarness, tmp_path: Path) -> None:
    conformance.check_answers_are_validated(harness, tmp_path)


def test_a_dataset_whose_source_changes_kind_is_replaced_with_its_reason(
        harness: KubernetesHarness, tmp_path: Path) -> None:
    """A path source is a ConfigMap, a url source a Job: the replacement says so."""
    ws = conformance.Workspace.start(harness, tmp_path)
    r = harness.resource(conformance.unique("kind"))
    ws.apply_cleanly([r], Action.CREATE)
    url = dataclasses.replace(r, spec={"source": {"url": "http://127.0.0.1:9/rows.jsonl"}})
    (change,) = ws.plan([url]).changes
    assert (change.action, change.reason) == (
        Action.REPLACE, "it is now made of a Job, not a ConfigMap")
