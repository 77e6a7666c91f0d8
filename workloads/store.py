"""The artifact store as a pod reaches it: snapshot URLs, the store's layout, and its two backends.

Layout under a store root (shared with the CLI's `substratus_cli/artifacts/store.py`):
`blobs/sha256/<hex[:2]>/<hex>`, `manifests/sha256/<hex>.json`, `refs/<name>` (the ascii text
`sha256:<hex>`). A root is `file:///abs/path` or `gs://bucket[/prefix]`; google-cloud-storage is
imported only for gs:// and honours STORAGE_EMULATOR_HOST.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from substratus_workloads.manifest import CHUNK_SIZE, ManifestError, digest_hex

T = TypeVar("T")
_MANIFEST_URL = re.compile(r"(?P<root>.+)/manifests/sha256/(?P<hex>[0-9a-f]{64})\.json")
_READ_ONLY = 0o444
GCS_PARALLELISM = 8  # within the HTTP client's default pool of 10 connections
FILE_PARALLELISM = 4


class StoreError(Exception):
    """A store that cannot be read or written, or that lacks what was asked for."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclasses.dataclass(frozen=True)
class Location:
    """A snapshot URL taken apart: the store root and a ref name or a manifest digest."""

    url: str
    root: str
    ref: str | None = None
    digest: str | None = None


def parse_url(url: str) -> Location:
    """`<root>/refs/<name>` or `<root>/manifests/sha256/<hex>.json`; the root is all before."""
    _check_root_scheme(url)
    match = _MANIFEST_URL.fullmatch(url)
    if match:
        return Location(url, _root(match["root"], url), digest="sha256:" + match["hex"])
    # The first /refs/ after the bucket (or the file:// scheme) ends the root.
    head = len("gs://") if url.startswith("gs://") else len("file://")
    at = url.find("/refs/", head)
    if at < 0:
        raise StoreError(f"{url!r} names neither a ref (<root>/refs/<name>) nor a manifest "
                         "(<root>/manifests/sha256/<hex>.json)")
    name = url[at + len("/refs/"):]
    if (not name or any(part in ("", ".", "..") for part in name.split("/"))
            or any(char in name for char in "\\\x00\n\r")):
        raise StoreError(f"{url!r}: bad ref name {name!r}")
    return Location(url, _root(url[:at], url), ref=name)


def _check_root_scheme(url: str) -> None:
    if url.startswith("gs://") or url.startswith("file:///"):
        return
    raise StoreError(f"{url!r}: an artifact store URL is gs://bucket[/prefix]/… or "
                     "file:///absolute/path/…")


def _root(root: str, url: str) -> str:
    if root.startswith("gs://") and not root[len("gs://"):].split("/")[0]:
        raise StoreError(f"{url!r} names no bucket")
    return root


def blob_key(sha256_hex: str) -> str:
    return f"blobs/sha256/{sha256_hex[:2]}/{sha256_hex}"


def manifest_key(digest: str) -> str:
    return f"manifests/sha256/{digest_hex(digest)}.json"


def ref_key(name: str) -> str:
    return f"refs/{name}"


def parse_ref(raw: bytes, url: str) -> str:
    """The digest a ref holds (`sha256:<hex>`, surrounding whitespace tolerated)."""
    text = raw.decode("ascii", errors="replace").strip()
    try:
        return "sha256:" + digest_hex(text)
    except ManifestError:
        problem = f"ref {url} does not hold a digest (sha256:<hex>): {text[:80]!r}"
        raise StoreError(problem) from None


class Sink(Protocol):
    """Where a download goes: a file, or anything that writes like one."""

    def write(self, data: bytes, /) -> int: ...


class Backend(Protocol):
    url: str  # the store root
    parallelism: int

    def read(self, key: str) -> bytes | None:
        """The object's bytes; None when it does not exist."""
        ...

    def exists(self, key: str) -> bool: ...

    def download(self, key: str, sink: Sink) -> bool:
        """Write the object into sink; False when it does not exist."""
        ...

    def create(self, key: str, source: Path | bytes) -> bool:
        """Store the object unless it exists (content-addressed: equal bytes); True if written."""
        ...

    def replace(self, key: str, data: bytes) -> None:
        """Store the object, replacing any (a ref moving to a new digest)."""
        ...


def open_backend(root: str) -> Backend:
    if root.startswith("gs://"):
        bucket, _, prefix = root[len("gs://"):].partition("/")
        return GCSBackend(bucket, prefix.strip("/"), root)
    return FileBackend(Path(root[len("file://"):]), root)


class FileBackend:
    """A folder; every write goes to a temp file in `<root>/tmp` and is renamed into place."""

    parallelism = FILE_PARALLELISM

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _missing_root(self) -> None:
        if not self.root.is_dir():
            raise StoreError(f"the artifact store {self.url} does not exist "
                             f"(no folder {self.root})")

    def read(self, key: str) -> bytes | None:
        self._missing_root()
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"cannot read {self.url}/{key}: {e.strerror or e}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def download(self, key: str, sink: Sink) -> bool:
        self._missing_root()
        try:
            with open(self._path(key), "rb") as source:
                while chunk := source.read(CHUNK_SIZE):
                    sink.write(chunk)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise StoreError(f"cannot read {self.url}/{key}: {e.strerror or e}") from None
        return True

    def create(self, key: str, source: Path | bytes) -> bool:
        if self.exists(key):
            return False
        # Read-only, as the CLI's store keeps blobs (it hard-links them into place).
        self._write(key, source, _READ_ONLY)
        return True

    def replace(self, key: str, data: bytes) -> None:
        self._write(key, data, 0o644)

    def _write(self, key: str, source: Path | bytes, mode: int) -> None:
        target = self._path(key)
        try:
            with self._incoming() as (handle, tmp):
                if isinstance(source, bytes):
                    handle.write(source)
                else:
                    with open(source, "rb") as reader:
                        while chunk := reader.read(CHUNK_SIZE):
                            handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()
                os.chmod(tmp, mode)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
        except OSError as e:
            raise StoreError(f"cannot write {self.url}/{key}: {e.strerror or e}") from None

    @contextlib.contextmanager
    def _incoming(self) -> Iterator[tuple[IO[bytes], Path]]:
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="incoming-")
        handle = os.fdopen(fd, "wb")
        try:
            yield handle, Path(name)
        finally:
            handle.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


class GCSBackend:
    """A bucket (and prefix); blobs and manifests are written create-only (ifGenerationMatch=0)."""

    parallelism = GCS_PARALLELISM

    def __init__(self, bucket: str, prefix: str, url: str) -> None:
        self.url = url
        self.prefix = prefix
        self._bucket_name = bucket
        try:
            from google.cloud import storage
        except ImportError:
            raise StoreError(f"{url}: gs:// stores need google-cloud-storage "
                             "(pip install google-cloud-storage)") from None
        # project=None: objects need no project, so none is looked up (or required).
        self._bucket = self._call("connect to", lambda: storage.Client(project=None).bucket(bucket))

    def _blob(self, key: str) -> Any:
        return self._bucket.blob(f"{self.prefix}/{key}" if self.prefix else key)

    def read(self, key: str) -> bytes | None:
        from google.api_core.exceptions import NotFound

        try:
            return self._call(f"read {key} from", lambda: self._blob(key).download_as_bytes(
                raw_download=True, checksum=None), answers=(NotFound,))
        except NotFound:
            return None

    def exists(self, key: str) -> bool:
        return bool(self._call(f"look up {key} in", lambda: self._blob(key).exists()))

    def download(self, key: str, sink: Sink) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            # The caller checks the sha256 of what arrives, so no second checksum here.
            self._call(f"read {key} from", lambda: self._blob(key).download_to_file(
                sink, raw_download=True, checksum=None), answers=(NotFound,))
        except NotFound:
            return False
        return True

    def create(self, key: str, source: Path | bytes) -> bool:
        from google.api_core.exceptions import PreconditionFailed

        blob = self._blob(key)
        try:
            if isinstance(source, bytes):
                self._call(f"write {key} to", lambda: blob.upload_from_string(
                    source, content_type="application/octet-stream", if_generation_match=0),
                    answers=(PreconditionFailed,))
            else:
                self._call(f"write {key} to", lambda: blob.upload_from_filename(
                    str(source), content_type="application/octet-stream", if_generation_match=0),
                    answers=(PreconditionFailed,))
        except PreconditionFailed:
            return False  # written meanwhile by someone else: same key, same bytes
        return True

    def replace(self, key: str, data: bytes) -> None:
        self._call(f"write {key} to", lambda: self._blob(key).upload_from_string(
            data, content_type="text/plain"))

    def _call(self, what: str, action: Callable[[], T], answers: tuple[type[BaseException], ...] = ()) -> T:
        """Run one client call; its errors become one StoreError line, except `answers`: the
        errors the caller expects (NotFound on a read, PreconditionFailed on a create)."""
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth

        try:
            return action()
        except answers:
            raise
        except api.Forbidden as e:
            denied = f"access denied: cannot {what} {self.url}: {_line(e.message)}"
            raise StoreError(denied) from None
        except api.GoogleAPICallError as e:
            raise StoreError(f"cannot {what} {self.url}: {_line(e.message)}") from None
        except auth.GoogleAuthError as e:
            raise StoreError(f"no credentials to {what} {self.url}: {_line(str(e))}") from None
        except (OSError, ValueError) as e:  # connection errors (requests' are OSErrors)
            raise StoreError(f"cannot {what} {self.url}: {_line(str(e))}") from None


def _line(text: str) -> str:
    """The first line of a client error, which is its gist (the rest repeats the response)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:300]
