"""The provider conformance suite against the simple in-memory test provider."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from substratus_cli.address import Address
from substratus_cli.provider import LiveObject, PlanItem, PlannedChange
from substratus_cli.resource import Resource
from tests.support import provider_conformance as conformance
from tests.support.builders import context, res
from tests.support.simple_provider import SimpleProvider


class SimpleHarness:
    """One store of objects shared by every provider built (as one API server would be)."""

    def __init__(self) -> None:
        self.objects: dict[Address, LiveObject] = {}

    def provider(self, lineage: str) -> SimpleProvider:
        provider = SimpleProvider(context(lineage))
        provider.objects = self.objects
        return provider

    def resource(self, name: str) -> Resource:
        return res(f"Dataset/{name}")

    def updated(self, resource: Resource) -> Resource:
        return dataclasses.replace(resource, labels={**resource.labels, "team": "ml"})

    def delete_outside(self, address: Address) -> None:
        del self.objects[address]

    def create_unowned(self, resource: Resource) -> None:
        self.provider("someone-else").put(resource.address, resource.spec, owned=False)

    def live_private(self, live: LiveObject) -> Mapping[str, Any]:
        return {"version": int(live.fingerprint.split("/")[1])}

    def change_private(self, change: PlannedChange, item: PlanItem) -> Mapping[str, Any]:
        version = int(item.live.fingerprint.split("/")[1]) if item.live is not None else None
        return {"planned_from": version}


@pytest.fixture
def harness() -> SimpleHarness:
    return SimpleHarness()


def test_simple_provider_apply_then_plan_is_empty(harness: SimpleHarness, tmp_path: Path) -> None:
    conformance.check_apply_then_plan_is_empty(harness, tmp_path)


def test_simple_provider_plans_an_object_deleted_outside_as_create(
        harness: SimpleHarness, tmp_path: Path) -> None:
    conformance.check_deleted_outside_is_planned_as_create(harness, tmp_path)


def test_simple_provider_refuses_an_unowned_object(harness: SimpleHarness, tmp_path: Path) -> None:
    conformance.check_unowned_object_is_refused(harness, tmp_path)


def test_simple_provider_private_data_round_trips(harness: SimpleHarness, tmp_path: Path) -> None:
    conformance.check_private_data_round_trips(harness, tmp_path)


def test_simple_provider_answers_are_validated(harness: SimpleHarness, tmp_path: Path) -> None:
    conformance.check_answers_are_validated(harness, tmp_path)
