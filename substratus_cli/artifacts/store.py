"""Artifact stores: blobs by sha256, manifests by digest, refs by name; `file://` is built here.

The layout under a store's root is a contract: the gs:// store (`substratus_providers.gcp.artifacts`)
and the workloads that read and write a store from inside a container use exactly these names:

    blobs/sha256/AB/ABCDEF…         a file's bytes, named by their sha256 (lower-case hex; AB = its
                                    first two digits)
    manifests/sha256/ABCDEF….json   a Manifest's canonical JSON, named by its own sha256: the
                                    snapshot id `sha256:ABCDEF…`
    refs/NAME                       exactly the ascii text `sha256:<64 hex>`, no newline: the
                                    snapshot a name points at now

Blobs and manifests are written once and never change (a reader checks what it reads against its
name); a ref is overwritten. NAME is a relative POSIX path (`default/model/colors/3f2a…`): no empty,
`.` or `..` parts, and no name is a folder of another. In a `file://` store every write goes to a
temporary file under `tmp/`, is fsynced and then renamed into place, so a reader never sees half an
object and two writers of the same blob cannot corrupt it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

from substratus_cli.artifacts.manifest import DIGEST_PREFIX, Manifest, digest_hex, normalize_sha256
from substratus_cli.exitcodes import ProviderError, UsageError

CHUNK_SIZE = 1 << 20
_READ_ONLY = 0o444
_READ_WRITE = 0o644
_REF_CONTENT = re.compile(rb"sha256:[0-9a-f]{64}")


def blob_key(sha256_hex: str) -> str:
    """`blobs/sha256/AB/ABCD…`: where a blob lives under a store's root."""
    hex_ = normalize_sha256(sha256_hex)
    return f"blobs/sha256/{hex_[:2]}/{hex_}"


def manifest_key(digest: str) -> str:
    """`manifests/sha256/ABCD….json`: where a snapshot's manifest lives under a store's root."""
    return f"manifests/sha256/{digest_hex(digest)}.json"


def ref_key(name: str) -> str:
    """`refs/NAME`, after checking NAME is a relative, normalized POSIX path."""
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or any(part in ("", ".", "..") for part in parts)
        or any(ch in name for ch in "\\\x00\n\r")
    ):
        raise ValueError(
            f"ref name must be a relative POSIX path with no empty, '.' or '..' parts: {name!r}"
        )
    return f"refs/{name}"


def ref_content(digest: str) -> bytes:
    """The bytes a ref holds: `sha256:<64 hex>`, ascii, no newline."""
    return (DIGEST_PREFIX + digest_hex(digest)).encode("ascii")


def parse_ref(data: bytes, where: str) -> str:
    """The digest a ref's bytes hold; ProviderError naming `where` when they are anything else."""
    if not _REF_CONTENT.fullmatch(data):
        shown = data[:80].decode("ascii", "replace")
        raise ProviderError(
            f"ref {where} does not hold a snapshot digest: expected exactly "
            f"'sha256:<64 hex digits>', found {shown!r}"
        )
    return data.decode("ascii")


@runtime_checkable
class ArtifactStore(Protocol):
    """Where snapshots live. Digests are `sha256:HEX`; blob ids are bare HEX.

    A read that cannot tell whether an object exists raises ProviderError; it never answers
    "absent"."""

    url: str

    def has_blob(self, sha256_hex: str) -> bool: ...

    def missing_blobs(self, sha256_hexes: Iterable[str]) -> set[str]:
        """Which of these blobs (HEX or sha256:HEX) the store lacks, as bare lower-case hex."""
        ...

    def put_file(self, path: Path, sha256_hex: str) -> int:
        """Store a file as the blob it hashes to, unless present; bytes written (0 if present).
        A file that does not hash to sha256_hex stores nothing and raises ProviderError."""
        ...

    def put_files(self, items: Sequence[tuple[Path, str]]) -> int:
        """put_file for each (path, sha256 hex), in parallel where the store gains by it; the
        bytes written in all. A blob is written at most once, whatever the duplicates. Callers
        pass what missing_blobs named: a store may skip looking first."""
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

    def ref_url(self, name: str) -> str:
        """Where the ref lives, `<store root>/refs/<name>`, as a URL a workload can open
        (`file:///absolute/…` or `gs://bucket/prefix/…`)."""
        ...

    def get_ref(self, name: str) -> str | None:
        """The digest the ref holds, None when there is no such ref."""
        ...

    def put_ref(self, name: str, digest: str) -> None:
        """Point the ref at a digest, replacing what it held."""
        ...


class FileArtifactStore:
    """A store in a local folder, laid out as the module docstring says."""

    def __init__(self, root: Path, url: str | None = None) -> None:
        self.root = Path(root)
        self.url = (url if url is not None else f"file://{self.root}").rstrip("/")

    def blob_path(self, sha256_hex: str) -> Path:
        return self.root / blob_key(sha256_hex)

    def manifest_path(self, digest: str) -> Path:
        return self.root / manifest_key(digest)

    def ref_path(self, name: str) -> Path:
        return self.root / ref_key(name)

    def has_blob(self, sha256_hex: str) -> bool:
        return self.blob_path(sha256_hex).is_file()

    def missing_blobs(self, sha256_hexes: Iterable[str]) -> set[str]:
        wanted = {normalize_sha256(sha) for sha in sha256_hexes}
        return {sha for sha in wanted if not self.has_blob(sha)}

    def put_files(self, items: Sequence[tuple[Path, str]]) -> int:
        # Local disk gains nothing from threads; put_file skips a blob stored earlier in the batch.
        return sum(self.put_file(path, sha) for path, sha in items)

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

    def ref_url(self, name: str) -> str:
        # Absolute, whatever `url` says: the URL is handed to workloads, which run elsewhere.
        return f"file://{self.root.absolute().as_posix()}/{ref_key(name)}"

    def get_ref(self, name: str) -> str | None:
        path = self.ref_path(name)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None  # a folder of refs, or a ref where a folder would be, is no ref
        except OSError as exc:
            raise ProviderError(f"cannot read ref {path}: {exc.strerror or exc}") from exc
        return parse_ref(data, str(path))

    def put_ref(self, name: str, digest: str) -> None:
        path = self.ref_path(name)
        try:
            # Writable, unlike blobs: a ref is replaced in place by whoever moves it next.
            self._write_atomically(path, [ref_content(digest)], mode=_READ_WRITE)
        except OSError as exc:
            raise ProviderError(f"cannot write ref {path}: {exc.strerror or exc}") from exc

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

    def _write_atomically(
        self, target: Path, chunks: Iterable[bytes], mode: int = _READ_ONLY
    ) -> None:
        with self._incoming() as incoming:
            for chunk in chunks:
                incoming.handle.write(chunk)
            incoming.commit(target, mode)

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

    def commit(self, target: Path, mode: int = _READ_ONLY) -> None:
        """fsync, set the mode (read-only by default: hard links to blobs are then safe) and
        rename into place."""
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.chmod(self.path, mode)
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
        # The core does not import google: gs:// stores come from the gcp provider, via wiring.
        raise UsageError(
            f"artifact store {url}: gs:// stores are opened by "
            "substratus_cli.wiring.open_artifact_store (the gcp provider), not by open_store"
        )
    raise UsageError(f"unsupported artifact store URL {url!r}: use file://PATH or gs://BUCKET/PREFIX")


__all__ = [
    "CHUNK_SIZE",
    "DIGEST_PREFIX",
    "ArtifactStore",
    "FileArtifactStore",
    "blob_key",
    "manifest_key",
    "open_store",
    "parse_ref",
    "ref_content",
    "ref_key",
]
