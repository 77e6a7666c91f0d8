"""Small builders for engine tests: resources, a target, and an inventory as a clean apply leaves it."""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import Any

from substratus_cli.address import Address
from substratus_cli.diff import spec_hash
from substratus_cli.plan import Target
from substratus_cli.resource import Resource
from substratus_cli.state import Inventory, InventoryEntry, Pending

LINEAGE = "ws-1"


def addr(text: str) -> Address:
    """`Kind/name` in the default namespace."""
    return Address.parse(text)


def res(text: str, spec: Mapping[str, Any] | None = None, *, refs: Iterable[str] = (),
        labels: Mapping[str, str] | None = None, line: int = 1) -> Resource:
    a = addr(text)
    return Resource(a, dict(spec if spec is not None else {"source": {"path": f"./{a.name}"}}),
                    labels=dict(labels or {}), file=f"{a.kind.lower()}s.yaml", line=line,
                    refs=tuple(addr(r) for r in refs))


def context(part_of: str = LINEAGE) -> Any:
    return types.SimpleNamespace(part_of=part_of)


def target(lineage: str | None = LINEAGE, serial: int | None = 1) -> Target:
    return Target(runtime="local", workdir="/work/example",
                  state="file:///work/example/.substratus/state",
                  artifacts="file:///work/example/.substratus/artifacts", lineage=lineage,
                  serial=serial)


def entry(resource: Resource, fingerprint: str | None, *, pending: str | None = None,
          provider: str = "simple") -> InventoryEntry:
    """The inventory entry a successful apply of `resource` leaves (or a pending mark on it)."""
    mark = Pending(pending, 0.0, 1, "host") if pending else None
    return InventoryEntry(resource.address, provider, spec_hash(resource.spec, resource.labels),
                          fingerprint, {}, mark, resource.refs)


def inventory(*entries: InventoryEntry, lineage: str = LINEAGE, serial: int = 1) -> Inventory:
    return Inventory(lineage, serial, {e.address: e for e in entries})


def applied(provider: Any, *resources: Resource, lineage: str = LINEAGE) -> Inventory:
    """Put each resource live in `provider` and return the inventory a clean apply leaves."""
    return inventory(*(entry(r, provider.put(r.address, r.spec, labels=r.labels).fingerprint)
                       for r in resources), lineage=lineage)
