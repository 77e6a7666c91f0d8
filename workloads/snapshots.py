"""Fetch a snapshot from the artifact store into a folder, checking every blob's sha256, and push a
folder as a snapshot: the blobs the store lacks, then the manifest, then the ref."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import IO, TypeVar

from substratus_workloads.manifest import Entry, Manifest, ManifestError, hash_tree, parse
from substratus_workloads.store import (
    Backend,
    StoreError,
    blob_key,
    manifest_key,
    open_backend,
    parse_ref,
    parse_url,
    ref_key,
)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Fetched:
    digest: str
    files: int
    bytes: int
    blobs: int  # distinct blobs downloaded


@dataclasses.dataclass(frozen=True)
class Pushed:
    digest: str
    files: int
    bytes: int
    blobs_uploaded: int  # blobs the store lacked (0 when the same content was pushed before)
    bytes_uploaded: int


def resolve(url: str) -> tuple[Backend, str]:
    """The store a ref or manifest URL lives in, and the snapshot digest it names."""
    location = parse_url(url)
    backend = open_backend(location.root)
    if location.digest is not None:
        return backend, location.digest
    assert location.ref is not None
    raw = backend.read(ref_key(location.ref))
    if raw is None:
        raise StoreError(f"ref {url} does not exist (nothing was pushed under that name)")
    return backend, parse_ref(raw, url)


def fetch(url: str, dest: Path) -> Fetched:
    """Write the snapshot `url` names under dest; a blob that does not hash to its manifest
    entry is refused and leaves nothing at its path."""
    backend, digest = resolve(url)
    manifest = _read_manifest(backend, digest, url)
    by_blob: dict[str, list[Entry]] = {}
    for entry in manifest.entries:
        by_blob.setdefault(entry.sha256, []).append(entry)
    dest.mkdir(parents=True, exist_ok=True)

    def one(entries: list[Entry]) -> None:
        first = _target(dest, entries[0])
        _download_verified(backend, entries[0], first, digest)
        for other in entries[1:]:  # the same content at several paths: downloaded once
            shutil.copyfile(first, _target(dest, other))

    _in_parallel(backend.parallelism, one, by_blob.values())
    return Fetched(digest, len(manifest.entries), manifest.total_size, len(by_blob))


def _read_manifest(backend: Backend, digest: str, url: str) -> Manifest:
    key = manifest_key(digest)
    raw = backend.read(key)
    if raw is None:
        raise StoreError(f"snapshot {digest} (from {url}) has no manifest in {backend.url}")
    try:
        return parse(raw, digest)
    except ManifestError as e:
        raise StoreError(f"manifest {backend.url}/{key} is refused: {e}") from None


def _target(dest: Path, entry: Entry) -> Path:
    target = dest.joinpath(*entry.path.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _download_verified(backend: Backend, entry: Entry, target: Path, digest: str) -> None:
    partial = target.with_name(f".{target.name}.substratus-part")
    key = blob_key(entry.sha256)
    try:
        with open(partial, "wb") as handle:
            sink = _HashingSink(handle)
            if not backend.download(key, sink):
                raise StoreError(f"snapshot {digest} is incomplete in {backend.url}: blob "
                                 f"sha256:{entry.sha256} for {entry.path} is missing")
        actual = sink.hash.hexdigest()
        if actual != entry.sha256 or sink.size != entry.size:
            raise StoreError(
                f"checksum mismatch for {entry.path}: {backend.url}/{key} holds sha256:{actual} "
                f"({sink.size} bytes), the manifest says sha256:{entry.sha256} "
                f"({entry.size} bytes); refused")
        os.replace(partial, target)
    except OSError as e:
        raise StoreError(f"cannot write {target}: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


class _HashingSink:
    """A file the client library writes a download into, hashed on the way."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def tell(self) -> int:
        return self.size

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        # A download that restarts from the top (the only seek a client makes) starts over.
        if (offset, whence) != (0, os.SEEK_SET):
            raise OSError("a download sink can only go back to its start")
        self.handle.seek(0)
        self.handle.truncate()
        self.hash = hashlib.sha256()
        self.size = 0
        return 0


def push(folder: Path, ref_url: str) -> Pushed:
    """Snapshot folder into the store of `ref_url` and point the ref at it."""
    location = parse_url(ref_url)
    if location.ref is None:
        raise StoreError(f"{ref_url} names a manifest; artifacts are pushed to a ref "
                         "(<root>/refs/<name>)")
    if not folder.is_dir():
        raise StoreError(f"the artifacts folder {folder} does not exist: nothing to push")
    try:
        manifest, paths = hash_tree(folder)
    except (ManifestError, OSError) as e:
        raise StoreError(f"cannot snapshot {folder}: {e}") from None
    if not manifest.entries:
        raise StoreError(f"the artifacts folder {folder} is empty: the program wrote nothing")
    backend = open_backend(location.root)
    unique = {entry.sha256: entry for entry in manifest.entries}
    uploaded: list[Entry] = []

    def one(entry: Entry) -> None:
        # Check first: a present blob costs a metadata read instead of its bytes.
        if not backend.exists(blob_key(entry.sha256)) and backend.create(
                blob_key(entry.sha256), paths[entry.path]):
            uploaded.append(entry)

    _in_parallel(backend.parallelism, one, unique.values())
    backend.create(manifest_key(manifest.digest), manifest.canonical_json())
    backend.replace(ref_key(location.ref), manifest.digest.encode("ascii"))
    return Pushed(manifest.digest, len(manifest.entries), manifest.total_size, len(uploaded),
                  sum(e.size for e in uploaded))


def _in_parallel(workers: int, action: Callable[[T], None], items: Iterable[T]) -> None:
    """action on every item, `workers` at a time; the first error stops what has not started."""
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for future in as_completed([pool.submit(action, item) for item in items]):
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
