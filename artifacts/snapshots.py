"""Snapshots in and out of a store: a folder hashed and copied in (only the blobs the store lacks,
then the manifest, last), and a snapshot URL (a ref or a manifest) fetched into a folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from substratus_artifacts.files import files_of, hash_files
from substratus_artifacts.layout import StoreError, parse_url
from substratus_artifacts.manifest import Manifest
from substratus_artifacts.progress import SILENT, Progress
from substratus_artifacts.statcache import StatCache
from substratus_artifacts.store import Store, open_store


@dataclasses.dataclass(frozen=True)
class SnapshotResult:
    digest: str  # sha256:HEX of the manifest: the snapshot id
    manifest: Manifest
    bytes_copied: int  # bytes written into the store (0 when every blob was there)
    bytes_hashed: int  # bytes read to hash (0 with a warm stat cache)
    blobs_copied: int = 0  # blobs the store lacked


@dataclasses.dataclass(frozen=True)
class Fetched:
    digest: str
    manifest: Manifest
    blobs: int  # distinct blobs read


def snapshot_tree(root: Path, store: Store, cache: StatCache | None = None,
                  progress: Progress = SILENT,
                  skip: Callable[[str], bool] | None = None) -> SnapshotResult:
    """Hash a file or folder (with the stat cache; less the folders `skip` names), copy the blobs
    the store lacks, then store the manifest, last, so a stored manifest always names blobs
    that are there. The hashing and the copy (or upload) are each told to `progress` as they
    go."""
    files = files_of(root, skip)
    manifest, stats = hash_files(files, cache, progress)
    paths = dict(files)
    # One source per content: a file repeated under several names is uploaded once.
    sources: dict[str, Path] = {}
    for entry in manifest.entries:
        sources.setdefault(entry.sha256, paths[entry.path])
    missing = store.missing_blobs(sources)
    bytes_copied = store.put_files([(sources[sha], sha) for sha in sorted(missing)], progress)
    digest = store.put_manifest(manifest)
    return SnapshotResult(digest=digest, manifest=manifest, bytes_copied=bytes_copied,
                          bytes_hashed=stats.bytes_hashed, blobs_copied=len(missing))


def resolve(url: str) -> tuple[Store, str]:
    """The store a ref or manifest URL lives in, and the snapshot digest it names."""
    location = parse_url(url)
    store = open_store(location.root)
    if location.digest is not None:
        return store, location.digest
    assert location.ref is not None
    digest = store.get_ref(location.ref)
    if digest is None:
        store.backend.check_root()  # a missing store says so, rather than "no such ref"
        raise StoreError(f"ref {url} does not exist (nothing was pushed under that name)")
    return store, digest


def fetch(url: str, dest: Path, progress: Progress = SILENT) -> Fetched:
    """Write the snapshot `url` names under dest, every blob checked against its manifest entry."""
    store, digest = resolve(url)
    manifest = store.materialize(digest, dest, verify=True, progress=progress)
    return Fetched(digest, manifest, len({entry.sha256 for entry in manifest.entries}))


def push(folder: Path, ref_url: str, progress: Progress = SILENT) -> SnapshotResult:
    """Snapshot folder into the store of `ref_url` and point the ref at it."""
    location = parse_url(ref_url)
    if location.ref is None:
        raise StoreError(f"{ref_url} names a manifest; artifacts are pushed to a ref "
                         "(<root>/refs/<name>)")
    if not folder.is_dir():
        raise StoreError(f"the artifacts folder {folder} does not exist: nothing to push")
    if not files_of(folder):
        raise StoreError(f"the artifacts folder {folder} is empty: the program wrote nothing")
    store = open_store(location.root)
    result = snapshot_tree(folder, store, progress=progress)
    store.put_ref(location.ref, result.digest)
    return result
