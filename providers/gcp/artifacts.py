"""The gs:// artifact store: blobs, manifests and refs as objects under `gs://bucket/prefix`.

Object names follow the layout of `substratus_cli.artifacts.store` (`<prefix>/blobs/sha256/AB/HEX`,
`<prefix>/manifests/sha256/HEX.json`, `<prefix>/refs/NAME`). Blobs and manifests are created only
if absent (ifGenerationMatch=0); uploads, lookups and downloads of a batch run on a thread pool.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TypeVar

import requests
from google.api_core import exceptions as gexc
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption
from google.cloud.storage.retry import DEFAULT_RETRY

from substratus_cli.artifacts import (
    CHUNK_SIZE,
    Manifest,
    ManifestEntry,
    blob_key,
    manifest_key,
    normalize_sha256,
    parse_ref,
    ref_content,
    ref_key,
)
from substratus_cli.exitcodes import ProviderError, SubstratusError, UsageError
from substratus_providers.gcp.state import gcs_errors, parse_url

WORKERS = 16
_READ_ONLY = 0o444
_T = TypeVar("_T")
_R = TypeVar("_R")


class GCSArtifactStore:
    """An ArtifactStore in a Cloud Storage bucket. The client is made on first use (constructing
    the store needs no credentials) with a connection pool as large as its thread pool."""

    def __init__(self, url: str, client: storage.Client | None = None,
                 workers: int = WORKERS) -> None:
        try:
            self.bucket_name, self.prefix = parse_url(url)
        except SubstratusError:
            raise UsageError(f"artifact store {url}: expected gs://BUCKET[/PREFIX]") from None
        self.url = f"gs://{self.bucket_name}/{self.prefix}".rstrip("/")
        self.workers = workers
        self._client = client
        self._client_lock = threading.Lock()
        self._bucket_seen = False

    # -- blobs -----------------------------------------------------------------------------

    def has_blob(self, sha256_hex: str) -> bool:
        return not self.missing_blobs([sha256_hex])

    def missing_blobs(self, sha256_hexes: Iterable[str]) -> set[str]:
        wanted = sorted({normalize_sha256(sha) for sha in sha256_hexes})
        present = _parallel(lambda sha: self._exists(blob_key(sha)), wanted, self.workers)
        missing = {sha for sha, there in zip(wanted, present, strict=True) if not there}
        if missing:
            self._check_bucket()  # a missing bucket must not read as "no blob stored yet"
        return missing

    def put_file(self, path: Path, sha256_hex: str) -> int:
        expected = normalize_sha256(sha256_hex)
        if self.has_blob(expected):
            return 0
        return self._upload_file(Path(path), expected)

    def put_files(self, items: Sequence[tuple[Path, str]]) -> int:
        """Upload in parallel, without looking first: callers pass what missing_blobs named, and
        a blob someone else stored meanwhile is refused by its create-only write (0 bytes)."""
        sources: dict[str, Path] = {}
        for path, sha in items:
            sources.setdefault(normalize_sha256(sha), Path(path))
        written = _parallel(lambda item: self._upload_file(item[1], item[0]),
                            sorted(sources.items()), self.workers)
        return sum(written)

    def put_stream(self, chunks: Iterable[bytes],
                   expected_sha256: str | None = None) -> tuple[str, int, int]:
        """Spool the stream to a local temporary file while hashing it (the object's name is its
        hash, known only at the end), then upload that file."""
        expected = normalize_sha256(expected_sha256) if expected_sha256 else None
        with tempfile.TemporaryFile(prefix="substratus-upload-") as spool:
            sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
            for chunk in chunks:
                sha.update(chunk)
                md5.update(chunk)
                size += len(chunk)
                _write(spool, chunk, "the temporary upload file")
            actual = sha.hexdigest()
            if expected is not None and actual != expected:
                raise ProviderError(
                    f"checksum mismatch: expected sha256:{expected}, got sha256:{actual} "
                    f"({size} bytes); nothing was stored")
            if self.has_blob(actual):
                return actual, size, 0
            spool.seek(0)
            return actual, size, self._upload(spool, "the downloaded data", actual, size,
                                              _b64(md5))

    # -- manifests and snapshots -----------------------------------------------------------

    def put_manifest(self, manifest: Manifest) -> str:
        digest = manifest.digest
        blob = self._blob(manifest_key(digest))
        try:
            with self._errors(f"store manifest {digest}"):
                blob.upload_from_string(manifest.canonical_json(),
                                        content_type="application/json", if_generation_match=0)
        except gexc.PreconditionFailed:
            pass  # stored before: its name is its hash, so it holds these very bytes
        except gexc.NotFound:
            raise self._not_found(f"store manifest {digest}") from None
        return digest

    def get_manifest(self, digest: str) -> Manifest | None:
        key = manifest_key(digest)
        raw = self._download_bytes(key, f"read manifest {digest}")
        if raw is None:
            return None
        where = f"{self.url}/{key}"
        if hashlib.sha256(raw).hexdigest() != normalize_sha256(digest):
            raise ProviderError(f"manifest {where} is corrupt: its content does not hash to "
                                f"{digest}")
        try:
            return Manifest.from_dict(json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise ProviderError(f"manifest {where} is not a valid manifest: {exc}") from None

    def has_snapshot(self, digest: str) -> bool:
        manifest = self.get_manifest(digest)
        if manifest is None:
            return False
        return not self.missing_blobs(entry.sha256 for entry in manifest.entries)

    def materialize(self, digest: str, dest: Path) -> None:
        manifest = self.get_manifest(digest)
        if manifest is None:
            raise ProviderError(f"snapshot {digest} is not in the artifact store {self.url}")
        dest = Path(dest)
        targets = []
        for entry in manifest.entries:
            target = dest.joinpath(*entry.path.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            targets.append((entry, target))
        _parallel(lambda item: self._download_to(digest, *item), targets, self.workers)

    # -- refs ------------------------------------------------------------------------------

    def ref_url(self, name: str) -> str:
        return f"{self.url}/{ref_key(name)}"

    def get_ref(self, name: str) -> str | None:
        key = ref_key(name)
        raw = self._download_bytes(key, f"read ref {name}")
        return None if raw is None else parse_ref(raw, f"{self.url}/{key}")

    def put_ref(self, name: str, digest: str) -> None:
        blob = self._blob(ref_key(name))
        try:
            # Retried although unconditional: writing the same digest twice changes nothing,
            # and a ref is last-writer-wins by contract.
            with self._errors(f"write ref {name}"):
                blob.upload_from_string(ref_content(digest), content_type="text/plain",
                                        retry=DEFAULT_RETRY)
        except gexc.NotFound:
            raise self._not_found(f"write ref {name}") from None

    # -- plumbing --------------------------------------------------------------------------

    def _bucket(self) -> storage.Bucket:
        with self._client_lock:  # workers may be the first to ask
            if self._client is None:
                with gcs_errors("connect to Cloud Storage", self.url):
                    self._client = _pooled(storage.Client(), self.workers)
            return self._client.bucket(self.bucket_name)

    def _blob(self, key: str) -> storage.Blob:
        return self._bucket().blob(f"{self.prefix}/{key}" if self.prefix else key)

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """gcs_errors, plus the client's checksum failures (not API errors) as ProviderError."""
        try:
            with gcs_errors(what, self.url):
                yield
        except DataCorruption as exc:
            raise ProviderError(f"cannot {what} at {self.url}: the data was corrupted in "
                                f"transit ({exc}); run again") from None

    def _check_bucket(self) -> None:
        if self._bucket_seen:
            return
        # Listing needs only object permissions (roles/storage.objectAdmin has them), unlike
        # a bucket GET.
        try:
            with gcs_errors("read the artifact bucket", self.url):
                client = self._bucket().client
                list(client.list_blobs(self.bucket_name, max_results=1))
        except gexc.NotFound:
            raise ProviderError(
                f"the artifact bucket gs://{self.bucket_name} does not exist (artifact store "
                f"{self.url})",
                hint=f"create it: gcloud storage buckets create gs://{self.bucket_name}") from None
        self._bucket_seen = True

    def _not_found(self, what: str) -> ProviderError:
        self._check_bucket()  # raises the clearer error when the bucket is the missing part
        return ProviderError(f"cannot {what} at {self.url}: Cloud Storage answered 404")

    def _exists(self, key: str) -> bool:
        with self._errors("look up an object"):
            return bool(self._blob(key).exists(retry=DEFAULT_RETRY))

    def _download_bytes(self, key: str, what: str) -> bytes | None:
        try:
            with self._errors(what):
                return bytes(self._blob(key).download_as_bytes())
        except gexc.NotFound:
            self._check_bucket()
            return None

    def _upload_file(self, path: Path, expected: str) -> int:
        """Hash the file, then upload those bytes from the same open file; a file that does not
        hash as expected stores nothing."""
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise ProviderError(f"cannot read {path}: {exc.strerror or exc}") from None
        with handle:
            sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
            try:
                while chunk := handle.read(CHUNK_SIZE):
                    sha.update(chunk)
                    md5.update(chunk)
                    size += len(chunk)
                handle.seek(0)
            except OSError as exc:
                raise ProviderError(f"cannot read {path}: {exc.strerror or exc}") from None
            actual = sha.hexdigest()
            if actual != expected:
                raise ProviderError(
                    f"{path} changed while it was being snapshotted "
                    f"(hashed as sha256:{expected}, read as sha256:{actual}); run again")
            return self._upload(handle, str(path), expected, size, _b64(md5))

    def _upload(self, handle: IO[bytes], what: str, sha: str, size: int, md5: str) -> int:
        """Create the blob from handle unless it exists; bytes written (0 if it existed).

        The md5 sent along makes Cloud Storage refuse bytes other than those hashed (a file
        changed between hashing and reading it again); a server that does not check it (an
        emulator) is caught by comparing the md5 it answers, and its object removed."""
        blob = self._blob(blob_key(sha))
        blob.md5_hash = md5
        try:
            with self._errors(f"upload {what} as blob sha256:{sha}"):
                blob.upload_from_file(handle, size=size, content_type="application/octet-stream",
                                      if_generation_match=0)
        except gexc.PreconditionFailed:
            return 0  # another writer stored the same content first
        except gexc.NotFound:
            raise self._not_found(f"upload {what}") from None
        if blob.md5_hash is not None and blob.md5_hash != md5:
            with contextlib.suppress(gexc.NotFound, gexc.PreconditionFailed), \
                    self._errors(f"remove the bad blob sha256:{sha}"):
                blob.delete(if_generation_match=blob.generation)
            raise ProviderError(f"{what} changed while it was being uploaded (Cloud Storage "
                                f"stored md5 {blob.md5_hash}, hashed {md5}); nothing was kept; "
                                "run again")
        return size

    def _download_to(self, digest: str, entry: ManifestEntry, target: Path) -> None:
        """Download one blob beside target, check its hash, then rename it into place."""
        staging = target.with_name(f".{target.name}.substratus-tmp")
        key = blob_key(entry.sha256)
        try:
            with open(staging, "wb") as handle:
                writer = _HashingWriter(handle, target)
                with self._errors(f"download {entry.path} (blob sha256:{entry.sha256})"):
                    self._blob(key).download_to_file(writer)
            if (writer.sha.hexdigest(), writer.size) != (entry.sha256, entry.size):
                raise ProviderError(f"blob {self.url}/{key} is corrupt: its content does not "
                                    f"hash to sha256:{entry.sha256} ({entry.path})")
            os.chmod(staging, _READ_ONLY)  # as the file store's hard links to its blobs are
            os.replace(staging, target)
        except gexc.NotFound:
            _unlink(staging)
            self._check_bucket()
            raise ProviderError(f"snapshot {digest} is incomplete in {self.url}: blob "
                                f"sha256:{entry.sha256} for {entry.path} is missing") from None
        except OSError as exc:
            _unlink(staging)
            raise ProviderError(f"cannot write {target}: {exc.strerror or exc}") from None
        except BaseException:
            _unlink(staging)
            raise


class _HashingWriter:
    """A file-like sink for downloads: hashes what it writes, and names the local file when
    writing fails (not Cloud Storage)."""

    def __init__(self, handle: IO[bytes], target: Path) -> None:
        self.handle, self.target = handle, target
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        _write(self.handle, data, str(self.target))
        return len(data)


def _write(handle: IO[bytes], data: bytes, what: str) -> None:
    try:
        handle.write(data)
    except OSError as exc:
        raise ProviderError(f"cannot write {what}: {exc.strerror or exc}") from None


def _parallel(fn: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]:
    """fn over items on up to `workers` threads, results in order. The first failure cancels
    what has not started, waits for what has, and is raised."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(workers, len(items)),
                                                 thread_name_prefix="gcs-artifacts")
    try:
        futures = [pool.submit(fn, item) for item in items]
        done, _ = concurrent.futures.wait(futures,
                                          return_when=concurrent.futures.FIRST_EXCEPTION)
        for future in futures:
            if future in done and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _pooled(client: storage.Client, size: int) -> storage.Client:
    """Give the client's session as many connections as there are workers (requests keeps 10
    a host and logs a warning for each one it has to drop)."""
    adapter = requests.adapters.HTTPAdapter(pool_connections=size, pool_maxsize=size)
    client._http.mount("https://", adapter)
    client._http.mount("http://", adapter)
    return client


def _b64(md5: hashlib._Hash) -> str:
    return base64.b64encode(md5.digest()).decode("ascii")


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
