"""The provider conformance suite against the gcp provider's Bucket kind, on a real fake-gcs-server
reached by the real google-cloud-storage client (STORAGE_EMULATOR_HOST)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from substratus_cli.address import Address
from substratus_cli.provider import LiveObject, PlanItem, PlannedChange, ProviderContext
from substratus_cli.resource import Resource
from substratus_providers.gcp import buckets
from substratus_providers.gcp.provider import GCPProvider
from tests.support import provider_conformance as conformance
from tests.support.gcs import fake_gcs_server

PROJECT, LOCATION = "test-project", "us-central1"


@pytest.fixture(scope="module")
def client() -> Iterator[storage.Client]:
    with fake_gcs_server() as url, pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", url)
        yield storage.Client(project=PROJECT, credentials=AnonymousCredentials())


class GCPHarness:
    def __init__(self, client: storage.Client, workdir: Path) -> None:
        self.client = client
        self.workdir = workdir

    def provider(self, lineage: str) -> GCPProvider:
        context = ProviderContext(workdir=self.workdir, data_dir=self.workdir / ".substratus",
                                  part_of=lineage, artifacts_url="")
        return GCPProvider(context, storage_client=self.client)

    def resource(self, name: str) -> Resource:
        return Resource(Address("Bucket", "default", name),
                        {"project": PROJECT, "location": LOCATION}, file="buckets.yaml", line=2)

    def updated(self, resource: Resource) -> Resource:
        # Not a label: fake-gcs-server drops bucket labels (see buckets.py), so a label change
        # would never read back. The storage class changes in place.
        return dataclasses.replace(resource, spec={**resource.spec, "storageClass": "NEARLINE"})

    def delete_outside(self, address: Address) -> None:
        self.client.bucket(address.name).delete(force=True)  # the marker with it
        assert self.client.lookup_bucket(address.name) is None

    def create_unowned(self, resource: Resource) -> None:
        bucket = self.client.create_bucket(resource.name, location=LOCATION)
        bucket.blob("data.csv").upload_from_string("a,b\n")
        assert bucket.get_blob(buckets.MARKER) is None

    def live_private(self, live: LiveObject) -> Mapping[str, Any]:
        return {}  # a bucket's read carries nothing to its plan (a NodePool's carries its cluster)

    def change_private(self, change: PlannedChange, item: PlanItem) -> Mapping[str, Any]:
        return {}


@pytest.fixture
def harness(client: storage.Client, tmp_path: Path) -> GCPHarness:
    return GCPHarness(client, tmp_path)


def test_gcp_bucket_apply_then_plan_is_empty(harness: GCPHarness, tmp_path: Path) -> None:
    conformance.check_apply_then_plan_is_empty(harness, tmp_path)


def test_gcp_bucket_deleted_outside_is_planned_as_create(
        harness: GCPHarness, tmp_path: Path) -> None:
    conformance.check_deleted_outside_is_planned_as_create(harness, tmp_path)


def test_gcp_bucket_without_the_marker_is_refused(harness: GCPHarness, tmp_path: Path) -> None:
    conformance.check_unowned_object_is_refused(harness, tmp_path)


def test_gcp_bucket_private_data_round_trips(harness: GCPHarness, tmp_path: Path) -> None:
    conformance.check_private_data_round_trips(harness, tmp_path)


def test_gcp_bucket_answers_are_validated(harness: GCPHarness, tmp_path: Path) -> None:
    conformance.check_answers_are_validated(harness, tmp_path)
