"""Store: snapshots, blobs and refs on any Backend, with every remote read checked against its
sha256 and transfers run as many at once as the backend gains by. `open_store` picks the backend
from a root URL (file://, gs:// or oci://; s3:// would be a further backend)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from substratus_artifacts.backend import READ_ONLY, Backend, DigestMismatch, FileBackend
from substratus_artifacts.files import CHUNK_SIZE as CHUNK
from substratus_artifacts.files import hash_file
from substratus_artifacts.layout import (
    StoreError,
    blob_key,
    manifest_key,
    parse_ref,
    ref_content,
    ref_key,
)
from substratus_artifacts.manifest import Manifest, ManifestEntry, ManifestError, normalize_sha256
from substratus_artifacts.progress import (
    COPYING,
    DOWNLOADING,
    HASHING,
    SILENT,
    UPLOADING,
    Meter,
    Progress,
    metering,
)
from substratus_artifacts.statcache import StatCache

_T = TypeVar("_T")
_R = TypeVar("_R")


class Store:
    """Where snapshots live. Digests are `sha256:HEX`; blob ids are bare HEX (or sha256:HEX)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.url = backend.url

    # -- blobs -----------------------------------------------------------------------------

    def has_blob(self, sha256_hex: str) -> bool:
        return not self.missing_blobs([sha256_hex])

    def missing_blobs(self, sha256_hexes: Iterable[str]) -> set[str]:
        """Which of these blobs the store lacks, as bare lower-case hex."""
        wanted = sorted({normalize_sha256(sha) for sha in sha256_hexes})
        present = in_parallel(lambda sha: self.backend.exists(blob_key(sha)), wanted,
                              self.backend.parallelism)
        return {sha for sha, there in zip(wanted, present, strict=True) if not there}

    @property
    def is_local(self) -> bool:
        """Whether the store is a folder on this machine (its transfers are copies)."""
        return self.backend.local_path(blob_key("0" * 64)) is not None

    def put_file(self, path: Path, sha256_hex: str, meter: Meter | None = None) -> int:
        """Store a file as the blob it hashes to, unless present; bytes written (0 if present),
        counted on `meter`. A file that does not hash to sha256_hex stores nothing and raises
        StoreError."""
        expected = normalize_sha256(sha256_hex)
        try:
            return self.backend.create(blob_key(expected), Path(path), expected, meter=meter)
        except DigestMismatch as exc:
            raise StoreError(f"{path} changed while it was being snapshotted (hashed as "
                             f"sha256:{expected}, read as sha256:{exc.actual}); run again") from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None

    def put_files(self, items: Sequence[tuple[Path, str]], progress: Progress = SILENT) -> int:
        """put_file for each (path, sha256 hex), in parallel; the bytes written in all, counted
        on one COPYING (or UPLOADING) meter of `progress`. A blob is written at most once,
        whatever the duplicates."""
        sources: dict[str, Path] = {}
        for path, sha in items:
            sources.setdefault(normalize_sha256(sha), Path(path))
        total = 0 if progress is SILENT else sum(_size(p) for p in sources.values())
        with metering(progress, COPYING if self.is_local else UPLOADING, total) as meter:
            written = in_parallel(lambda item: self.put_file(item[1], item[0], meter),
                                  sorted(sources.items()), self.backend.parallelism)
        return sum(written)

    # -- manifests and snapshots -----------------------------------------------------------

    def put_manifest(self, manifest: Manifest) -> str:
        digest = manifest.digest
        self.backend.create(manifest_key(digest), manifest.canonical_json(),
                            normalize_sha256(digest))
        return digest

    def get_manifest(self, digest: str) -> Manifest | None:
        key = manifest_key(digest)
        raw = self.backend.read(key)
        if raw is None:
            return None
        try:
            return Manifest.parse(raw, digest)
        except ManifestError as exc:
            raise StoreError(f"manifest {self.url}/{key} is corrupt: {exc}") from None

    def has_snapshot(self, digest: str) -> bool:
        """The manifest and every blob it names are present."""
        manifest = self.get_manifest(digest)
        if manifest is None:
            return False
        return not self.missing_blobs(entry.sha256 for entry in manifest.entries)

    def verify(self, digest: str, progress: Progress = SILENT) -> tuple[list[str], int]:
        """Every blob of the snapshot read back and hashed (streamed, nothing kept): the problems
        found, each naming the blob and the path it holds, and the bytes read, counted on one
        HASHING (or DOWNLOADING) meter of `progress`."""
        try:
            manifest = self.get_manifest(digest)
        except StoreError as exc:
            return [exc.message], 0
        if manifest is None:
            return [f"manifest of {digest} is missing from {self.url}"], 0
        entries = {e.sha256: e for e in manifest.entries}

        def one(entry: ManifestEntry, meter: Meter) -> tuple[str | None, int]:
            key = blob_key(entry.sha256)
            sink = _HashingSink(_Discard(), meter=meter)
            if not self.backend.download(key, sink):
                return f"blob sha256:{entry.sha256} ({entry.path}) is missing", 0
            actual = sink.hash.hexdigest()
            if (actual, sink.size) != (entry.sha256, entry.size):
                return (f"blob sha256:{entry.sha256} ({entry.path}) is corrupt: it holds "
                        f"sha256:{actual} ({sink.size} bytes, {entry.size} expected)"), sink.size
            return None, sink.size

        total = sum(e.size for e in entries.values())
        with metering(progress, HASHING if self.is_local else DOWNLOADING, total) as meter:
            results = in_parallel(lambda entry: one(entry, meter), list(entries.values()),
                                  self.backend.parallelism)
        return [p for p, _ in results if p], sum(n for _, n in results)

    def damaged(self, digest: str, cache: StatCache, *,
                thorough: bool = False) -> list[ManifestEntry]:
        """The blobs of a snapshot kept in a local folder that no longer hold their content (a
        workload wrote through one, a byte flipped on disk). A blob the stat cache knows to be
        unchanged since it was last hashed is not read again, so this costs a stat per blob once
        each has been hashed. A flipped bit that changes no inode is `substratus verify`'s to
        find, or this with `thorough` (every blob hashed). A remote store's blobs: none (every
        read of one is checked)."""
        manifest = self.get_manifest(digest)
        recorded = self.backend.local_path(manifest_key(digest))
        if manifest is None or recorded is None:
            return []
        # Blobs are create-only and written before their manifest: one whose inode has not
        # changed since the manifest was written (ctime, which no write or chmod leaves alone)
        # holds what it held when it was hashed into the snapshot.
        snapshotted_ns = os.stat(recorded).st_ctime_ns
        out = []
        for entry in {e.sha256: e for e in manifest.entries}.values():
            path = self.backend.local_path(blob_key(entry.sha256))
            if path is None:
                return []
            try:
                st = os.stat(path)
                if not thorough and (st.st_ctime_ns <= snapshotted_ns
                                     or cache.lookup(path, st) == entry.sha256):
                    continue
                started = time.time_ns()
                actual, size = hash_file(path)
            except FileNotFoundError:
                continue  # missing, not damaged: has_snapshot says so
            except OSError as exc:
                raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
            if (actual, size) == (entry.sha256, entry.size):
                cache.record(path, st, entry.sha256, read_started_ns=started)
            else:
                out.append(entry)
        cache.save()
        return out

    def discard(self, entries: Iterable[ManifestEntry]) -> None:
        """Remove damaged blobs from a local folder, so that the next snapshot of the same
        content writes them again (a blob present is never rewritten)."""
        for entry in entries:
            path = self.backend.local_path(blob_key(entry.sha256))
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def materialize(self, digest: str, dest: Path, *, verify: bool = False,
                    copies: StatCache | None = None, progress: Progress = SILENT) -> Manifest:
        """Write the snapshot's files under dest, read-only. Blobs in a local folder are
        hard-linked unless `verify` (the store checked them when it wrote them) or `copies`; any
        other read is checked against the manifest and a mismatch leaves nothing at its path.

        `copies`: for a workload, which must not be able to write through to a blob (a hard link
        is the blob, and root writes read-only files): each local blob is copied, hashed on the
        way unless this stat cache vouches that the blob is unchanged since it last hashed it.

        What is copied or downloaded is counted on one meter of `progress` (links are not)."""
        manifest = self.get_manifest(digest)
        if manifest is None:
            raise StoreError(f"snapshot {digest} is not in the artifact store {self.url}")
        by_blob: dict[str, list[ManifestEntry]] = {}
        for entry in manifest.entries:
            by_blob.setdefault(entry.sha256, []).append(entry)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        linked = self.is_local and not verify and copies is None
        total = 0 if linked or progress is SILENT else sum(
            entries[0].size for entries in by_blob.values())

        def one(entries: list[ManifestEntry], meter: Meter) -> None:
            first = _target(dest, entries[0])
            local = None if verify else self.backend.local_path(blob_key(entries[0].sha256))
            if local is not None:
                if not local.is_file():
                    raise self._incomplete(digest, entries[0])
                if copies is not None:
                    self._copy_checked(local, first, entries[0], copies, meter)
                else:
                    _link_or_copy(local, first)
            else:
                self._download_checked(entries[0], first, digest, meter)
            for other in entries[1:]:  # the same content at several paths: read once
                _link_or_copy(first, _target(dest, other))

        with metering(progress, COPYING if self.is_local else DOWNLOADING, total) as meter:
            in_parallel(lambda entries: one(entries, meter), list(by_blob.values()),
                        self.backend.parallelism)
        return manifest

    def _download_checked(self, entry: ManifestEntry, target: Path, digest: str,
                          meter: Meter) -> None:
        def fill(sink: _HashingSink) -> None:
            if not self.backend.download(blob_key(entry.sha256), sink):
                raise self._incomplete(digest, entry)

        self._staged(entry, target, fill, check=True, meter=meter)

    def _copy_checked(self, blob: Path, target: Path, entry: ManifestEntry,
                      cache: StatCache, meter: Meter) -> None:
        """A read-only copy of a local blob. Hashed while copied (at disk speed) unless the stat
        cache knows this very file (size, mtime, ctime, inode) holds `entry`'s content; a blob
        that does not is refused and nothing is left at `target`."""
        try:
            vouched = cache.lookup(blob, os.stat(blob)) == entry.sha256
        except OSError as exc:
            raise StoreError(f"cannot read {blob}: {exc.strerror or exc}") from None
        started = time.time_ns()

        def fill(sink: _HashingSink) -> None:
            with open(blob, "rb") as source:
                shutil.copyfileobj(source, sink, CHUNK)

        self._staged(entry, target, fill, check=not vouched, meter=meter)
        if not vouched:
            cache.record(blob, os.stat(blob), entry.sha256, read_started_ns=started)

    def _staged(self, entry: ManifestEntry, target: Path, fill: Callable[[_HashingSink], None],
                *, check: bool, meter: Meter | None = None) -> None:
        """`target` written through a staging file beside it by `fill`, read-only; when `check`,
        hashed on the way and refused unless it is `entry`'s content. On any failure nothing is
        left at `target`."""
        staging = target.with_name(f".{target.name}.substratus-part")
        try:
            with open(staging, "wb") as handle:
                sink = _HashingSink(handle, hashing=check, meter=meter)
                fill(sink)
            actual = sink.hash.hexdigest()
            if check and (actual, sink.size) != (entry.sha256, entry.size):
                raise StoreError(
                    f"checksum mismatch for {entry.path}: {self.url}/{blob_key(entry.sha256)} "
                    f"holds sha256:{actual} ({sink.size} bytes), the manifest says "
                    f"sha256:{entry.sha256} ({entry.size} bytes); refused",
                    hint="`substratus verify` lists what is damaged")
            os.chmod(staging, READ_ONLY)  # as the file backend's hard links to its blobs are
            os.replace(staging, target)
        except OSError as exc:
            raise StoreError(f"cannot write {target}: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                staging.unlink()

    def _incomplete(self, digest: str, entry: ManifestEntry) -> StoreError:
        return StoreError(f"snapshot {digest} is incomplete in {self.url}: blob "
                          f"sha256:{entry.sha256} for {entry.path} is missing")

    # -- refs ------------------------------------------------------------------------------

    def ref_url(self, name: str) -> str:
        """Where the ref lives, `<store root>/refs/<name>`, as a URL a workload can open."""
        if isinstance(self.backend, FileBackend):
            # Absolute, whatever `url` says: the URL is handed to workloads, which run elsewhere.
            return f"file://{self.backend.root.absolute().as_posix()}/{ref_key(name)}"
        return f"{self.url}/{ref_key(name)}"

    def get_ref(self, name: str) -> str | None:
        """The digest the ref holds, None when there is no such ref."""
        key = ref_key(name)
        raw = self.backend.read(key)
        return None if raw is None else parse_ref(raw, f"{self.url}/{key}")

    def put_ref(self, name: str, digest: str) -> None:
        """Point the ref at a digest, replacing what it held."""
        self.backend.replace(ref_key(name), ref_content(digest))


class _Discard:
    """Where a verification's download goes: nowhere."""

    def write(self, data: bytes) -> int:
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return 0

    def truncate(self) -> int:
        return 0


class _HashingSink:
    """A file a download is written into, hashed on the way."""

    def __init__(self, handle: IO[bytes] | _Discard, *, hashing: bool = True,
                 meter: Meter | None = None) -> None:
        self.handle = handle
        self.hashing = hashing  # False: counted and written only (a blob already vouched for)
        self.meter = meter
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        if self.hashing:
            self.hash.update(data)
        self.size += len(data)
        if self.meter is not None:
            self.meter.advance(len(data))
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


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # put_file says why it cannot read it


def _target(dest: Path, entry: ManifestEntry) -> Path:
    target = dest.joinpath(*entry.path.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link the (read-only) file at target, replacing what is there; copy across devices."""
    staging = target.with_name(f".{target.name}.substratus-tmp")
    with contextlib.suppress(FileNotFoundError):
        staging.unlink()
    try:
        os.link(source, staging)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise StoreError(f"cannot write {target}: {exc}") from exc
        shutil.copyfile(source, staging)
        os.chmod(staging, READ_ONLY)
    os.replace(staging, target)


def in_parallel(fn: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]:
    """fn over items on up to `workers` threads, results in order. The first failure cancels
    what has not started, waits for what has, and is raised."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(workers, len(items)),
                                                 thread_name_prefix="artifact-store")
    try:
        futures = [pool.submit(fn, item) for item in items]
        done, _ = concurrent.futures.wait(futures,
                                          return_when=concurrent.futures.FIRST_EXCEPTION)
        for future in futures:
            if future in done and (error := future.exception()) is not None:
                raise error
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def open_store(url: str, base: Path | None = None, *, client: Any = None) -> Store:
    """The store at a root URL: `file://PATH` (a relative PATH is under base) or
    `gs://BUCKET[/PREFIX]` (client: a google.cloud.storage.Client to use instead of a new one)
    or `oci://HOST[:PORT]/REPOSITORY` (client: a registry.RegistryClient for HOST)."""
    if url.startswith("file://"):
        rest = url[len("file://"):]
        if not rest:
            raise StoreError(
                f"artifact store URL {url!r} names no folder (e.g. file://.substratus/artifacts)")
        path = Path(rest)
        if not path.is_absolute():
            if base is None:
                raise StoreError(f"artifact store URL {url!r}: the folder must be absolute here")
            path = Path(base) / path
        return Store(FileBackend(path, url=url))
    if url.startswith("gs://"):
        bucket, _, prefix = url[len("gs://"):].partition("/")
        if not bucket:
            raise StoreError(f"artifact store {url}: the bucket name is missing")
        from substratus_artifacts.gcs import GCSBackend

        return Store(GCSBackend(bucket, prefix, client))
    if url.startswith("oci://"):
        from substratus_artifacts.oci import OCIBackend, parse_root

        host, repository = parse_root(url)
        return Store(OCIBackend(host, repository, client))
    raise StoreError(f"unsupported artifact store URL {url!r}: use file://PATH, "
                     "gs://BUCKET/PREFIX or oci://HOST[:PORT]/REPOSITORY")
