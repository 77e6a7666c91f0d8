"""Garbage collection of a file:// store (`substratus gc`): the manifests of snapshots nobody
keeps, then the blobs no kept manifest names, removed.

The caller says which snapshot digests to keep (what its state references); every ref in the
store keeps the snapshot it holds too. A kept snapshot whose manifest is missing or corrupt stops
the sweep before anything is removed: which blobs it needs cannot be told. Manifests go before
blobs, so an interrupted sweep never leaves a manifest naming a removed blob. Files that are not
named as the layout names objects (`tmp/`, strays) are left alone. Only the file:// backend is
swept: a remote store's listing, deletion and concurrency are not built yet.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Iterable
from pathlib import Path

from substratus_artifacts.backend import FileBackend
from substratus_artifacts.layout import StoreError, manifest_key, parse_ref
from substratus_artifacts.manifest import DIGEST_PREFIX, ManifestError, normalize_sha256
from substratus_artifacts.store import Store

_HEX = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class Swept:
    """What a sweep removed (or, dry, would remove)."""

    manifests: tuple[str, ...]  # snapshot digests, sorted
    blobs: int
    bytes: int  # the size of every file removed
    # Of those bytes, what another hard link still holds (a workload's checked copy of a blob):
    # freed on disk only once that copy goes too.
    linked_bytes: int = 0


def sweep(store: Store, keep: Iterable[str], *, dry_run: bool = False) -> Swept:
    """Remove what neither `keep` (snapshot digests, `sha256:HEX`) nor a ref reaches."""
    backend = store.backend
    if not isinstance(backend, FileBackend):
        scheme = store.url.split("://", 1)[0]
        raise StoreError(f"gc is not built yet for {scheme}:// artifact stores ({store.url})",
                         hint="it removes what no state entry references from a local file:// "
                              "store; a bucket's lifecycle rules can expire old objects meanwhile")
    root = backend.root
    if not root.is_dir():
        return Swept((), 0, 0)
    kept = {normalize_sha256(d) for d in keep} | _ref_digests(root)
    needed: set[str] = set()
    for hex_ in sorted(kept):
        manifest_file = root.joinpath(*manifest_key(hex_).split("/"))
        if not manifest_file.is_file():
            continue  # not a snapshot of this store (an image digest), or already gone
        manifest = store.get_manifest(DIGEST_PREFIX + hex_)  # StoreError when corrupt
        if manifest is None:
            raise StoreError(f"manifest {DIGEST_PREFIX}{hex_} vanished during gc")
        needed.update(entry.sha256 for entry in manifest.entries)

    manifests = [(hex_, path) for hex_, path in _objects(root / "manifests" / "sha256", ".json")
                 if hex_ not in kept]
    blobs = [(hex_, path) for folder in _folders(root / "blobs" / "sha256")
             for hex_, path in _objects(folder, "") if hex_ not in needed]
    removed = linked = 0
    for _, path in [*manifests, *blobs]:  # manifests first: none ever names a missing blob
        info = path.stat()
        removed += info.st_size
        linked += info.st_size if info.st_nlink > 1 else 0
        if not dry_run:
            path.unlink()
    if not dry_run:
        for folder in _folders(root / "blobs" / "sha256"):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
    return Swept(tuple(DIGEST_PREFIX + hex_ for hex_, _ in manifests), len(blobs), removed,
                 linked)


def check_keepable(store: Store, digests: Iterable[str]) -> None:
    """StoreError unless every snapshot digest has a readable manifest in the store: a sweep
    must know every blob a kept snapshot needs."""
    for digest in sorted(set(digests)):
        try:
            manifest = store.get_manifest(digest)
        except ManifestError as exc:  # a malformed digest
            raise StoreError(f"{digest!r}: {exc}") from None
        if manifest is None:
            raise StoreError(f"the manifest of {digest} is missing from {store.url}",
                             hint="`substratus verify` names what is damaged; gc removes nothing "
                                  "while it cannot tell which blobs a kept snapshot needs")


def _ref_digests(root: Path) -> set[str]:
    out = set()
    refs = root / "refs"
    for folder, _, names in os.walk(refs):
        for name in names:
            path = Path(folder, name)
            where = f"refs/{path.relative_to(refs).as_posix()}"
            out.add(normalize_sha256(parse_ref(path.read_bytes(), where)))
    return out


def _folders(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and not p.is_symlink())


def _objects(folder: Path, suffix: str) -> list[tuple[str, Path]]:
    """(hex, path) of each object file named as the layout names them."""
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir()):
        hex_ = path.name.removesuffix(suffix) if path.name.endswith(suffix) else ""
        if _HEX.fullmatch(hex_) and path.is_file() and not path.is_symlink():
            out.append((hex_, path))
    return out
