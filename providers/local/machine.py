"""This machine as the local kinds' handlers see it (object records, process book, artifact store,
stat cache, workload runtime), and what the handlers share: reads of records, labels, readiness."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from substratus_artifacts.manifest import ManifestEntry
from substratus_artifacts.statcache import StatCache
from substratus_artifacts.store import Store
from substratus_cli.address import Address
from substratus_cli.provider import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PART_OF_LABEL,
    ApplyRequest,
    Batch,
    LiveObject,
    PlanItem,
    ProviderContext,
    Readiness,
    ReadRequest,
    ReadResponse,
)
from substratus_cli.resource import Resource
from substratus_providers.local import secret_env
from substratus_providers.local.host import Host, this_host
from substratus_providers.local.process_book import ProcessBook
from substratus_providers.local.records import RecordStore
from substratus_providers.local.runs import Runtime


class Machine:
    """Opened on first use: a plan of datasets only never starts what workloads need, and a read
    needs no artifact store."""

    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        self.root = context.data_dir / "runtime"  # .substratus/runtime
        self.records = RecordStore(self.root / "objects")
        self.book = ProcessBook(self.root / "processes")
        self.host: Callable[[], Host] = this_host  # memory and GPUs, asked when a plan sizes

    @property
    def workdir(self) -> Path:
        return self.context.workdir

    @property
    def resolve_secret(self) -> secret_env.Resolver:
        return self.context.resolve_secret

    @functools.cached_property
    def store(self) -> Store:
        return self.context.artifact_store()

    @functools.cached_property
    def cache(self) -> StatCache:
        return StatCache(self.context.data_dir / "cache" / "stat.json")

    @functools.cached_property
    def runtime(self) -> Runtime:
        return Runtime(self.root, self.context.workdir, self.store, self.book, self.cache)

    def labels(self, desired: Resource) -> dict[str, str]:
        """The resource's labels and the ownership labels every object substratus makes carries."""
        return {**desired.labels, MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                PART_OF_LABEL: self.context.part_of}


class RecordedKind:
    """What the local kinds' handlers share: their objects are records, and a read also says what
    is wrong with the processes behind one (live is the truth: a dead server is not running)."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.records = machine.records
        self.book = machine.book

    @property
    def runtime(self) -> Runtime:
        return self.machine.runtime

    def read(self, request: ReadRequest) -> ReadResponse:
        listed = self.records.list(request.kind)
        wanted = set(request.addresses)
        objects = {a: self._with_problem(o) for a, o in listed.items()
                   if a in wanted or (request.part_of and o.owner == request.part_of)}
        return ReadResponse(objects, requests=1)

    def problem(self, live: LiveObject) -> str | None:
        """What is wrong with the processes behind the object right now, or None."""
        return None

    def _with_problem(self, live: LiveObject) -> LiveObject:
        problem = self.problem(live)
        if problem is None:
            return live
        return dataclasses.replace(live, status={**live.status, "problem": problem},
                                   fingerprint=f"{live.fingerprint}/down")

    def declared(self, item: PlanItem) -> Resource:
        """The resource an item declares, its secret references checked: a secret that is not set
        fails the plan, not the apply."""
        assert item.desired is not None, "plan_batch plans deletes itself"
        secret_env.check(item.desired.spec, self.machine.resolve_secret)
        return item.desired

    @staticmethod
    def desired_of(request: ApplyRequest) -> Resource:
        assert request.desired is not None, \
            f"{request.action} of {request.address} without a desired resource"
        return request.desired


def planned_status(batch: Batch, address: Address) -> Mapping[str, Any]:
    """The outputs planned earlier in the batch for `address` (a digest, or UNKNOWN); {} if none."""
    change = batch.planned.get(address)
    return change.planned_status if change else {}


def artifact_readiness(store: Store, live: LiveObject) -> Readiness:
    """A dataset or model is ready when its snapshot is in the artifact store."""
    digest = live.status.get("digest")
    if digest and store.has_snapshot(str(digest)):
        return Readiness(True, message=f"artifact {digest}")
    return Readiness(False, failed=True, message=f"artifact {digest} is not in the store")


def damage_reason(digest: str, damaged: Sequence[ManifestEntry]) -> str:
    """Why a snapshot whose blobs no longer hold their content is made again."""
    named = ", ".join(e.path for e in damaged[:3]) + (f" and {len(damaged) - 3} more"
                                                     if len(damaged) > 3 else "")
    return (f"snapshot {digest} is corrupt in the artifact store ({named}: the blob no longer "
            "holds the content it was stored as); snapshot it again")


def discard_damaged(store: Store, live: LiveObject | None, cache: StatCache) -> None:
    """Before a snapshot is made again: its damaged blobs go, so that the new one writes them
    (a blob present is never rewritten)."""
    digest = live.status.get("digest") if live is not None else None
    if isinstance(digest, str) and digest.startswith("sha256:"):
        store.discard(store.damaged(digest, cache))


def user_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels a resource file gives, without the ownership labels substratus adds."""
    return {k: v for k, v in labels.items() if k not in (MANAGED_BY_LABEL, PART_OF_LABEL)}
