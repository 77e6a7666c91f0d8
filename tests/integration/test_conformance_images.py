"""The provider conformance suite against the images provider: Images built with buildah from a
folder and pushed to a real registry (Debian's docker-registry on 127.0.0.1).

The unowned-object check does not apply: an image is content addressed, so a tag that holds what
these files build is the same image whoever pushed it (and a tag pushed over with other content
is drift, caught by its digest: tests/e2e/test_images.py)."""

from __future__ import annotations

import dataclasses
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from substratus_artifacts.registry import RegistryClient
from substratus_cli.address import Address
from substratus_cli.provider import LiveObject, PlanItem, PlannedChange, ProviderContext
from substratus_cli.resource import Resource
from substratus_providers.images.context import identity
from substratus_providers.images.provider import ImagesProvider, inputs_of
from tests.registry import RegistryServer, registry_server
from tests.support import provider_conformance as conformance


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    with registry_server() as server:
        yield server


class ImagesHarness:
    def __init__(self, registry: RegistryServer, workdir: Path) -> None:
        self.registry = registry
        self.workdir = workdir

    def provider(self, lineage: str) -> ImagesProvider:
        return ImagesProvider(ProviderContext(
            workdir=self.workdir, data_dir=self.workdir / ".substratus", part_of=lineage,
            artifacts_url="", settings={"registry": f"{self.registry.host}/conformance"}))

    def resource(self, name: str) -> Resource:
        context = self.workdir / name
        context.mkdir()
        (context / "Dockerfile").write_text("FROM scratch\nARG N\nCOPY main.py /main.py\n")
        (context / "main.py").write_text(f"print({name!r})\n")
        time.sleep(0.2)  # files written within the last instant are never trusted to the stat cache
        return Resource(Address("Image", "default", name), {"context": name},
                        file="images.yaml", line=2)

    def updated(self, resource: Resource) -> Resource:
        return dataclasses.replace(resource, spec={**resource.spec, "buildArgs": {"N": "2"}})

    def delete_outside(self, address: Address) -> None:
        repository = f"conformance/{address.name}"
        client = RegistryClient(self.registry.host)
        for tag in self._tags(repository):
            found = client.head_manifest(repository, tag)
            assert found is not None
            urllib.request.urlopen(urllib.request.Request(
                f"{self.registry.url}/v2/{repository}/manifests/{found.digest}",
                method="DELETE"), timeout=10).close()

    def _tags(self, repository: str) -> list[str]:
        import json

        with urllib.request.urlopen(f"{self.registry.url}/v2/{repository}/tags/list",
                                    timeout=10) as answer:
            return list(json.loads(answer.read()).get("tags") or [])

    def create_unowned(self, resource: Resource) -> None:
        raise AssertionError("images are content addressed: there is no unowned image")

    def live_private(self, live: LiveObject) -> Mapping[str, Any]:
        # The digest substratus recorded pushing at the tag it reads (a read after an apply).
        return {"pushed": live.status["digest"]}

    def change_private(self, change: PlannedChange, item: PlanItem) -> Mapping[str, Any]:
        assert item.desired is not None
        return {"identity": identity(inputs_of(item.desired, self.workdir), None).digest}


@pytest.fixture
def harness(registry: RegistryServer, tmp_path: Path) -> ImagesHarness:
    (tmp_path / "ws").mkdir()
    return ImagesHarness(registry, tmp_path / "ws")


def test_images_provider_apply_then_plan_is_empty(harness: ImagesHarness,
                                                  tmp_path: Path) -> None:
    conformance.check_apply_then_plan_is_empty(harness, tmp_path)


def test_images_provider_plans_an_image_deleted_from_the_registry_as_create(
        harness: ImagesHarness, tmp_path: Path) -> None:
    conformance.check_deleted_outside_is_planned_as_create(harness, tmp_path)


def test_images_provider_private_data_round_trips(harness: ImagesHarness,
                                                  tmp_path: Path) -> None:
    conformance.check_private_data_round_trips(harness, tmp_path)


def test_images_provider_answers_are_validated(harness: ImagesHarness, tmp_path: Path) -> None:
    conformance.check_answers_are_validated(harness, tmp_path)
