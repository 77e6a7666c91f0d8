"""The provider conformance suite against the local provider: Datasets snapshotted from a folder
into a file:// artifact store, live objects as records under `.substratus/runtime/objects/`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from substratus_artifacts.store import open_store
from substratus_cli.address import Address
from substratus_cli.provider import LiveObject, PlanItem, PlannedChange, ProviderContext
from substratus_cli.resource import Resource
from substratus_providers.local import LocalProvider
from substratus_providers.local.records import RecordStore
from tests.support import provider_conformance as conformance

ARTIFACTS = "file://.substratus/artifacts"


class LocalHarness:
    """One workdir (one machine) shared by every provider built: each Dataset has its folder."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.records = RecordStore(workdir / ".substratus" / "runtime" / "objects")

    def provider(self, lineage: str) -> LocalProvider:
        return LocalProvider(ProviderContext(
            workdir=self.workdir, data_dir=self.workdir / ".substratus", part_of=lineage,
            artifacts_url=ARTIFACTS, open_artifacts=lambda: open_store(ARTIFACTS, self.workdir)))

    def resource(self, name: str) -> Resource:
        folder = self.workdir / name
        folder.mkdir()
        (folder / "rows.jsonl").write_text(f'{{"name": "{name}"}}\n')
        return Resource(Address("Dataset", "default", name), {"source": {"path": name}},
                        file="datasets.yaml", line=3)

    def updated(self, resource: Resource) -> Resource:
        return dataclasses.replace(resource, labels={**resource.labels, "team": "ml"})

    def delete_outside(self, address: Address) -> None:
        assert self.records.get(address) is not None
        self.records.delete(address)

    def create_unowned(self, resource: Resource) -> None:
        self.records.put(resource.address, spec=resource.spec, status={}, labels={"team": "ml"},
                         new_object=True)

    def live_private(self, live: LiveObject) -> Mapping[str, Any]:
        return {}  # a record is all the local provider needs: it carries nothing

    def change_private(self, change: PlannedChange, item: PlanItem) -> Mapping[str, Any]:
        return {}


@pytest.fixture
def harness(tmp_path: Path) -> LocalHarness:
    (tmp_path / "work").mkdir()
    return LocalHarness(tmp_path / "work")


def test_local_provider_apply_then_plan_is_empty(harness: LocalHarness, tmp_path: Path) -> None:
    conformance.check_apply_then_plan_is_empty(harness, tmp_path)


def test_local_provider_plans_a_record_deleted_outside_as_create(
        harness: LocalHarness, tmp_path: Path) -> None:
    conformance.check_deleted_outside_is_planned_as_create(harness, tmp_path)


def test_local_provider_refuses_an_unowned_record(harness: LocalHarness, tmp_path: Path) -> None:
    conformance.check_unowned_object_is_refused(harness, tmp_path)


def test_local_provider_private_data_round_trips(harness: LocalHarness, tmp_path: Path) -> None:
    conformance.check_private_data_round_trips(harness, tmp_path)


def test_local_provider_answers_are_validated(harness: LocalHarness, tmp_path: Path) -> None:
    conformance.check_answers_are_validated(harness, tmp_path)
