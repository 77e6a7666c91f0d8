"""The inventory: per address, what substratus last applied and saw. Small; live state is the truth."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from substratus_cli.address import Address
from substratus_cli.errors import SubstratusError

FORMAT_VERSION = 1


class NewerStateError(SubstratusError):
    """State in a format this version cannot read without losing what it does not know."""


@dataclasses.dataclass(frozen=True)
class Pending:
    """A write-ahead mark: an operation was started on this address and may not have finished."""

    operation: str  # create | update | replace | delete
    since: float
    pid: int
    host: str


@dataclasses.dataclass(frozen=True)
class InventoryEntry:
    address: Address
    provider: str
    spec_hash: str | None = None  # hash of the last applied spec
    fingerprint: str | None = None  # live fingerprint seen right after the last apply
    status: dict[str, Any] = dataclasses.field(default_factory=dict)  # digest, endpoint, …
    pending: Pending | None = None
    deps: tuple[Address, ...] = ()  # what it depended on when applied: destroy runs in reverse
    # The live content digest (LiveObject.content) seen right after the last apply; None: the
    # provider gives none (or an older substratus recorded the entry), the fingerprint tells drift.
    content: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["address"], d["deps"] = str(self.address), [str(a) for a in self.deps]
        if self.pending is None:
            d.pop("pending")
        if self.content is None:
            d.pop("content")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InventoryEntry:
        pending = d.get("pending")
        return cls(
            address=Address.parse(d["address"]), provider=d["provider"],
            spec_hash=d.get("spec_hash"), fingerprint=d.get("fingerprint"),
            status=dict(d.get("status") or {}), pending=Pending(**pending) if pending else None,
            deps=tuple(map(Address.parse, d.get("deps", ()))), content=d.get("content"),
        )


@dataclasses.dataclass(frozen=True)
class Inventory:
    lineage: str  # this workspace's identity; also the part-of label on every object it creates
    serial: int  # bumped on every write; compare-and-swap token
    entries: dict[Address, InventoryEntry]

    @classmethod
    def new(cls, lineage: str | None = None) -> Inventory:
        return cls(lineage=lineage or str(uuid.uuid4()), serial=0, entries={})

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "lineage": self.lineage,
            "serial": self.serial,
            "resources": [self.entries[k].to_dict() for k in sorted(self.entries)],
        }

    @classmethod
    def from_dict(cls, d: Any) -> Inventory:
        """The inventory in `d` (parsed JSON); ValueError naming what is wrong with its shape."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, found {type(d).__name__}")
        if not isinstance(d.get("resources", []), list) or \
                not all(isinstance(e, dict) for e in d.get("resources", [])):
            raise ValueError("resources: expected a list of objects")
        version = d.get("format_version", FORMAT_VERSION)
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise NewerStateError(
                f"the state was written by a newer substratus (state format {version}; this one "
                f"reads format {FORMAT_VERSION} and older)",
                hint="upgrade substratus; writing it with this version could lose what the "
                     "newer one recorded")
        entries = [InventoryEntry.from_dict(e) for e in d.get("resources", [])]
        return cls(lineage=d["lineage"], serial=int(d["serial"]),
                   entries={e.address: e for e in entries})

    def with_entry(self, entry: InventoryEntry) -> Inventory:
        return dataclasses.replace(self, entries={**self.entries, entry.address: entry})

    def without(self, address: Address) -> Inventory:
        return dataclasses.replace(
            self, entries={k: v for k, v in self.entries.items() if k != address})
