"""The one interface every store backend implements (objects by key under a root), and the
file:// backend: a folder on this machine, written through temp files renamed into place.

A backend knows nothing of manifests: it reads, lists the presence of, creates and replaces
objects. Content-addressed objects (blobs, manifests) are created once and checked against their
sha256 on the way in; store.Store builds snapshots, refs and checked reads on top.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol

from substratus_artifacts.files import CHUNK_SIZE
from substratus_artifacts.layout import StoreError
from substratus_artifacts.leftovers import remove_stale
from substratus_artifacts.progress import Meter

READ_ONLY = 0o444
_READ_WRITE = 0o644
FILE_PARALLELISM = 4


class DigestMismatch(StoreError):
    """What was to be created does not hash to the sha256 it was to be stored under."""

    def __init__(self, key: str, actual: str) -> None:
        super().__init__(f"{key}: the bytes hash to sha256:{actual}")
        self.actual = actual


class Sink(Protocol):
    """Where a download goes: a file, or anything that writes like one."""

    def write(self, data: bytes, /) -> int: ...


class Backend(Protocol):
    """Objects by key (`blobs/sha256/AB/HEX`, …) under one root. A read that cannot tell whether
    an object exists raises StoreError; it never answers "absent"."""

    url: str  # the store root: file:///abs/path or gs://bucket/prefix
    parallelism: int  # how many transfers at once gain something

    def read(self, key: str) -> bytes | None:
        """The object's bytes; None when it does not exist."""
        ...

    def exists(self, key: str) -> bool: ...

    def download(self, key: str, sink: Sink) -> bool:
        """Write the object into sink; False when it does not exist."""
        ...

    def create(self, key: str, source: Path | bytes, sha256: str, *,
               meter: Meter | None = None) -> int:
        """Store the object unless it exists; bytes written (0 when it existed), each counted
        on `meter` as it is sent. Bytes that do not hash to sha256 (bare hex) are not kept:
        DigestMismatch."""
        ...

    def replace(self, key: str, data: bytes) -> None:
        """Store the object, replacing any (a ref moving to a new digest)."""
        ...

    def local_path(self, key: str) -> Path | None:
        """Where the object is (or would be) on this machine; None for a remote backend."""
        ...

    def check_root(self) -> None:
        """StoreError, with a hint, when the root itself (the folder, the bucket) is missing."""
        ...


# A temp file of an object being written, named after its writer's pid.
INCOMING = re.compile(r"incoming-(?P<pid>\d+)-.*")


class FileBackend:
    """A folder; every write goes to a temp file in `<root>/tmp`, is fsynced and renamed into
    place, so a reader never sees half an object and two writers of one blob cannot corrupt it."""

    parallelism = FILE_PARALLELISM

    def __init__(self, root: Path, url: str | None = None) -> None:
        self.root = Path(root)
        self.url = (url if url is not None else f"file://{self.root}").rstrip("/")
        self._swept = False

    def local_path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def check_root(self) -> None:
        if not self.root.is_dir():
            raise StoreError(f"the artifact store {self.url} does not exist (no folder {self.root})")

    def read(self, key: str) -> bytes | None:
        try:
            return self.local_path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None  # a folder of refs, or a ref where a folder would be, is no object
        except OSError as exc:
            raise StoreError(f"cannot read {self.url}/{key}: {exc.strerror or exc}") from None

    def exists(self, key: str) -> bool:
        return self.local_path(key).is_file()

    def download(self, key: str, sink: Sink) -> bool:
        try:
            with open(self.local_path(key), "rb") as source:
                while chunk := source.read(CHUNK_SIZE):
                    sink.write(chunk)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def create(self, key: str, source: Path | bytes, sha256: str, *,
               meter: Meter | None = None) -> int:
        if self.exists(key):
            return 0
        digest, size = hashlib.sha256(), 0
        with self._incoming(key) as handle:
            if isinstance(source, bytes):
                digest.update(source)
                handle.write(source)
                size = len(source)
            else:
                with open(source, "rb") as reader:
                    while chunk := reader.read(CHUNK_SIZE):
                        digest.update(chunk)
                        handle.write(chunk)
                        size += len(chunk)
                        if meter is not None:
                            meter.advance(len(chunk))
            if digest.hexdigest() != sha256:
                raise DigestMismatch(key, digest.hexdigest())
            if self.exists(key):  # another writer was first: same name, same bytes
                return 0
            # Read-only: materialize hard-links blobs into content folders.
            self._commit(handle, key, READ_ONLY)
        return size

    def replace(self, key: str, data: bytes) -> None:
        with self._incoming(key) as handle:
            handle.write(data)
            # Writable, unlike blobs: a ref is replaced in place by whoever moves it next.
            self._commit(handle, key, _READ_WRITE)

    @contextlib.contextmanager
    def _incoming(self, key: str) -> Iterator[IO[bytes]]:
        """A temp file in the store (same filesystem, so the rename is atomic), removed unless
        it was committed; OSErrors become one StoreError naming the object."""
        try:
            tmp_dir = self.root / "tmp"
            tmp_dir.mkdir(parents=True, exist_ok=True)
            if not self._swept:  # what killed writers left, once per process
                self._swept = True
                remove_stale(tmp_dir, INCOMING)
            handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below
                dir=tmp_dir, prefix=f"incoming-{os.getpid()}-", delete=False)
            try:
                yield handle
            finally:
                try:
                    handle.close()  # may raise (ENOSPC on the last flush): removed all the same
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(handle.name)
        except OSError as exc:
            raise StoreError(f"cannot write {self.url}/{key}: {exc.strerror or exc}") from None

    def _commit(self, handle: IO[bytes], key: str, mode: int) -> None:
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        target = self.local_path(key)
        os.chmod(handle.name, mode)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(handle.name, target)
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
