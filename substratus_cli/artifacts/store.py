"""Artifact stores: blobs kept by sha256 and manifests kept by digest; `file://` is built here.

Every write goes to a temporary file inside the store, is fsynced and then renamed into place, so
a reader never sees half a blob and two writers of the same blob cannot corrupt it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

from substratus_cli.artifacts.manifest import DIGEST_PREFIX, Manifest, digest_hex, normalize_sha256
from substratus_cli.exitcodes import ProviderError, UsageError

CHUNK_SIZE = 1 << 20
_READ_ONLY = 0o444


@runtime_checkable
class ArtifactStore(Protocol):
    """Where snapshots live. Digests are `sha256:HEX`; blob ids are bare HEX."""

    url: str

    def has_blob(self, sha256_hex: str) -> bool: ...

    def put_file(self, path: Path, sha256_hex: str) -> int:
        """Store a file as the blob it hashes to, unless present; bytes written (0 if present)."""
        ...

    def put_stream(
        self, chunks: Iterable[bytes], expected_sha256: str | None = None
    ) -> tuple[str, int, int]:
        """Store a stream; (sha256 hex, size, bytes written). A mismatch stores nothing."""
        ...

    def put_manifest(self, manifest: Manifest) -> str: ...

    def get_manifest(self, digest: str) -> Manifest | None: ...

    def has_snapshot(self, digest: str) -> bool:
        """The manifest and every blob it names are present."""
        ...

    def materialize(self, digest: str, dest: Path) -> None:
        """Write the snapshot's files under dest."""
        ...


class FileArtifactStore:
    """A store in a local folder: `blobs/sha256/AB/ABCD…` and `manifests/sha256/ABCD….json`."""

    def __init__(self, root: Path, url: str | None = None) -> None:
        self.root = Path(root)
        self.url = url if url is not None else f"file://{self.root}"

    def blob_path(self, sha256_hex: str) -> Path:
        hex_ = normalize_sha256(sha256_hex)
        return self.root / "blobs" / "sha256" / hex_[:2] / hex_

    def manifest_path(self, digest: str) -> Path:
        return self.root / "manifests" / "sha256" / f"{digest_hex(digest)}.json"

    def has_blob(self, sha256_hex: str) -> bool:
        return self.blob_path(sha256_hex).is_file()

    def put_file(self, path: Path, sha256_hex: str) -> int:
        expected = normalize_sha256(sha256_hex)
        if self.has_blob(expected):
            return 0
        try:
            with open(path, "rb") as source:
                chunks = iter(lambda: source.read(CHUNK_SIZE), b"")
                actual, _, written = self._store_chunks(chunks, expected)
        except OSError as exc:
            raise ProviderError(f"cannot copy {path} into the artifact store: {exc}") from exc
        if actual != expected:
            raise ProviderError(
                f"{path} changed while it was being snapshotted "
                f"(hashed as sha256:{expected}, read as sha256:{actual}); run again"
            )
        return written

    def put_stream(
        self, chunks: Iterable[bytes], expected_sha256: str | None = None
    ) -> tuple[str, int, int]:
        expected = normalize_sha256(expected_sha256) if expected_sha256 else None
        actual, size, written = self._store_chunks(chunks, expected)
        if expected is not None and actual != expected:
            raise ProviderError(
                f"checksum mismatch: expected sha256:{expected}, got sha256:{actual} "
                f"({size} bytes); nothing was stored"
            )
        return actual, size, written

    def put_manifest(self, manifest: Manifest) -> str:
        digest = manifest.digest
        target = self.manifest_path(digest)
        if not target.is_file():
            self._write_atomically(target, [manifest.canonical_json()])
        return digest

    def get_manifest(self, digest: str) -> Manifest | None:
        path = self.manifest_path(digest)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        expected = digest_hex(digest)
        if hashlib.sha256(raw).hexdigest() != expected:
            raise ProviderError(
                f"manifest {path} is corrupt: its content does not hash to {digest}"
            )
        try:
            return Manifest.from_dict(json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise ProviderError(f"manifest {path} is not a valid manifest: {exc}") from exc

    def has_snapshot(self, digest: str) -> bool:
        manifest = self.get_manifest(digest)
        if manifest is None:
            return False
        return all(self.has_blob(entry.sha256) for entry in manifest.entries)

    def materialize(self, digest: str, dest: Path) -> None:
        manifest = self.get_manifest(digest)
        if manifest is None:
            raise ProviderError(f"snapshot {digest} is not in the artifact store {self.url}")
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for entry in manifest.entries:
            blob = self.blob_path(entry.sha256)
            if not blob.is_file():
                raise ProviderError(
                    f"snapshot {digest} is incomplete in {self.url}: "
                    f"blob sha256:{entry.sha256} for {entry.path} is missing"
                )
            target = dest.joinpath(*entry.path.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(blob, target)

    # -- internals ---------------------------------------------------------------------------

    def _store_chunks(self, chunks: Iterable[bytes], expected: str | None) -> tuple[str, int, int]:
        """Write chunks to a temp file while hashing; move it to its blob path if it is new
        and matches `expected` (when given). Returns (sha256 hex, size, bytes written)."""
        digest = hashlib.sha256()
        size = 0
        with self._incoming() as incoming:
            for chunk in chunks:
                digest.update(chunk)
                incoming.handle.write(chunk)
                size += len(chunk)
            actual = digest.hexdigest()
            if (expected is not None and actual != expected) or self.has_blob(actual):
                return actual, size, 0
            incoming.commit(self.blob_path(actual))
        return actual, size, size

    def _write_atomically(self, target: Path, chunks: Iterable[bytes]) -> None:
        with self._incoming() as incoming:
            for chunk in chunks:
                incoming.handle.write(chunk)
            incoming.commit(target)

    @contextlib.contextmanager
    def _incoming(self) -> Iterator[_Incoming]:
        """A temp file in the store (same filesystem, so the rename is atomic), removed unless
        it was committed."""
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="incoming-")
        incoming = _Incoming(Path(name), os.fdopen(fd, "wb"))
        try:
            yield incoming
        finally:
            incoming.handle.close()
            if not incoming.committed:
                with contextlib.suppress(FileNotFoundError):
                    incoming.path.unlink()


class _Incoming:
    def __init__(self, path: Path, handle: IO[bytes]) -> None:
        self.path = path
        self.handle = handle
        self.committed = False

    def commit(self, target: Path) -> None:
        """fsync, make read-only (hard links to blobs are then safe) and rename into place."""
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.chmod(self.path, _READ_ONLY)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, target)
        self.committed = True
        _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_or_copy(blob: Path, target: Path) -> None:
    """Hard-link the (read-only) blob at target, replacing what is there; copy across devices."""
    staging = target.with_name(f".{target.name}.substratus-tmp")
    with contextlib.suppress(FileNotFoundError):
        staging.unlink()
    try:
        os.link(blob, staging)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise ProviderError(f"cannot write {target}: {exc}") from exc
        shutil.copyfile(blob, staging)
        os.chmod(staging, _READ_ONLY)
    os.replace(staging, target)


def open_store(url: str, base: Path) -> ArtifactStore:
    """The store an Environment's `artifacts:` URL names; relative `file://` paths are under base."""
    if url.startswith("file://"):
        rest = url[len("file://") :]
        if not rest:
            raise UsageError(
                f"artifact store URL {url!r} names no folder (e.g. file://.substratus/artifacts)"
            )
        path = Path(rest)
        return FileArtifactStore(path if path.is_absolute() else Path(base) / path, url=url)
    if url.startswith("gs://"):
        raise ProviderError(
            "gs:// artifact stores are not built yet: they come with the GCP provider; "
            "use file://… (for example file://.substratus/artifacts)"
        )
    raise UsageError(
        f"unsupported artifact store URL {url!r}: use file://PATH (gs:// comes with the GCP provider)"
    )


__all__ = ["CHUNK_SIZE", "DIGEST_PREFIX", "ArtifactStore", "FileArtifactStore", "open_store"]
