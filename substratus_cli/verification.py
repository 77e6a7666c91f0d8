"""`substratus verify`: every dataset snapshot and model artifact the state reaches, read back
from the artifact store and checked against its manifest, blob by blob; and what `substratus gc`
must keep: every snapshot any state entry references."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping

from substratus_artifacts.layout import StoreError
from substratus_artifacts.store import Store
from substratus_cli.address import Address
from substratus_cli.provider import StepProgress, unwatched
from substratus_cli.state import Inventory

# The kinds whose status names a snapshot in the artifact store (an Image's names a registry's).
SNAPSHOT_KINDS = ("Dataset", "Model")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class Damage:
    address: Address
    digest: str  # the snapshot, or the ref that should name one
    problem: str


@dataclasses.dataclass(frozen=True)
class Verification:
    snapshots: int
    bytes_read: int
    damage: tuple[Damage, ...]


def reachable(inventory: Inventory | None, store: Store) -> tuple[dict[str, list[Address]],
                                                                  list[Damage]]:
    """snapshot digest -> the addresses whose state names it: their recorded digest, or the
    digest their artifact ref (a Job's output on Kubernetes) holds."""
    out: dict[str, list[Address]] = {}
    damage = []
    for a, entry in sorted((inventory.entries if inventory else {}).items()):
        if a.kind not in SNAPSHOT_KINDS:
            continue
        try:
            digest = _digest_of(entry.status, store)
        except StoreError as e:
            damage.append(Damage(a, str(entry.status.get("artifact")), e.message))
            continue
        if digest:
            out.setdefault(digest, []).append(a)
    return out, damage


def verify(inventory: Inventory | None, store: Store,
           progress: Callable[[Address], StepProgress] = unwatched) -> Verification:
    """Every reachable snapshot read back; the reading of each told to `progress` of the
    first address that names it."""
    snapshots, damage = reachable(inventory, store)
    total = 0
    for digest, addresses in sorted(snapshots.items()):
        problems, read = store.verify(digest, progress(sorted(addresses)[0]))
        total += read
        damage += [Damage(a, digest, p) for a in addresses for p in problems]
    return Verification(len(snapshots), total, tuple(damage))


def _digest_of(status: Mapping[str, object], store: Store) -> str | None:
    """The snapshot a status names; a ref that names none is a StoreError."""
    if status.get("digest"):
        return str(status["digest"])
    artifact = str(status.get("artifact") or "")
    if "/refs/" not in artifact:
        return None
    digest = store.get_ref(artifact.split("/refs/", 1)[1])
    if digest is None:
        raise StoreError(f"the ref {artifact} is missing")
    return digest


@dataclasses.dataclass(frozen=True)
class References:
    """What the state references in the artifact store: the snapshots Datasets and Models are
    (each must be there), and every other `sha256:` digest a status names (a trained model's
    inputs; kept when they are snapshots of the store)."""

    required: frozenset[str]
    named: frozenset[str]


def referenced(inventory: Inventory | None, store: Store) -> References:
    """StoreError when the state names a ref that is missing, or an entry is marked pending (an
    operation that did not finish may have recorded its snapshot only in live state)."""
    entries = inventory.entries if inventory else {}
    pending = [f"{a.short()} ({e.pending.operation})" for a, e in sorted(entries.items())
               if e.pending is not None]
    if pending:
        raise StoreError(f"the state holds operations that did not finish: {', '.join(pending)}",
                         hint="run `substratus apply` first: gc removes nothing while a snapshot "
                              "may be recorded only in live state")
    snapshots, damage = reachable(inventory, store)
    if damage:
        raise StoreError(f"{damage[0].address.short()}: {damage[0].problem}",
                         hint="`substratus verify` names what is damaged; gc removes nothing "
                              "while it cannot tell what the state needs")
    named = {d for e in entries.values() for d in _digests(e.status)}
    return References(frozenset(snapshots), frozenset(named | set(snapshots)))


def _digests(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield from _DIGEST.findall(value)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _digests(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _digests(v)
