"""The snapshot manifest (DESIGN.md section 3) as the CLI writes it: (path, size, sha256) per file,
canonical JSON, digest `sha256:` + sha256 of those bytes. Kept byte-exact with the CLI's
`substratus_cli.artifacts.manifest`, which this package may not import (a test checks they agree).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

VERSION = 1
DIGEST_PREFIX = "sha256:"
CHUNK_SIZE = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")


class ManifestError(ValueError):
    """A manifest, digest or folder that cannot be a snapshot; the message says why."""


def digest_hex(digest: str) -> str:
    """The 64 hex digits of `sha256:HEX` (or a bare HEX), lower-cased."""
    text = digest.strip().lower().removeprefix(DIGEST_PREFIX)
    if not _HEX64.fullmatch(text):
        raise ManifestError(f"not a sha256 digest: {digest!r} (expected sha256:<64 hex digits>)")
    return text


def check_path(path: str) -> None:
    # A manifest may come from a shared store: no path may escape the folder it is written into.
    if (not isinstance(path, str) or not path or "\\" in path or "\x00" in path
            or PurePosixPath(path).is_absolute() or str(PurePosixPath(path)) != path
            or any(part in ("", ".", "..") for part in path.split("/"))):
        raise ManifestError(f"manifest path must be relative, POSIX and normalized: {path!r}")


@dataclasses.dataclass(frozen=True)
class Entry:
    path: str  # POSIX, relative to the snapshot's root
    size: int
    sha256: str  # bare lower-case hex

    def __post_init__(self) -> None:
        check_path(self.path)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ManifestError(f"bad size for {self.path!r}: {self.size!r}")
        if not isinstance(self.sha256, str) or not _HEX64.fullmatch(self.sha256):
            raise ManifestError(f"bad sha256 for {self.path!r}: {self.sha256!r}")


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A snapshot's files, sorted by path, so equal trees have equal bytes and digests."""

    entries: tuple[Entry, ...]

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.entries, key=lambda e: e.path))
        for before, after in zip(ordered, ordered[1:], strict=False):
            if before.path == after.path:
                raise ManifestError(f"duplicate path in manifest: {before.path!r}")
        object.__setattr__(self, "entries", ordered)

    def canonical_json(self) -> bytes:
        data = {"version": VERSION, "entries": [
            {"path": e.path, "size": e.size, "sha256": e.sha256} for e in self.entries]}
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("ascii")

    @property
    def digest(self) -> str:
        return DIGEST_PREFIX + hashlib.sha256(self.canonical_json()).hexdigest()

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.entries)


def parse(raw: bytes, digest: str) -> Manifest:
    """The manifest stored under `digest`, refused unless its bytes hash to that digest."""
    actual = hashlib.sha256(raw).hexdigest()
    if actual != digest_hex(digest):
        raise ManifestError(f"its content hashes to sha256:{actual}, not {digest}")
    try:
        data: Any = json.loads(raw)
    except ValueError as e:
        raise ManifestError(f"not JSON: {e}") from None
    if not isinstance(data, dict) or data.get("version", VERSION) != VERSION:
        raise ManifestError(f"not a version {VERSION} manifest")
    if not isinstance(data.get("entries"), list):
        raise ManifestError("it has no 'entries' list")
    entries = []
    for item in data["entries"]:
        if not isinstance(item, dict):
            raise ManifestError(f"an entry is not an object: {item!r}")
        fields: Any = item  # Entry checks each field's type
        entries.append(Entry(fields.get("path"), fields.get("size"), fields.get("sha256")))
    return Manifest(tuple(entries))


def hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of one file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def list_files(root: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, path) of every regular file under root, hidden ones included, sorted.

    As the CLI does: a symlink is followed when it points inside root; one pointing outside, nowhere
    or back above itself is an error rather than a silent gap. Sockets, FIFOs, devices are skipped.
    """
    root_real = Path(os.path.realpath(root))
    found: list[tuple[str, Path]] = []
    _walk(Path(root), root_real, "", frozenset({root_real}), found)
    return sorted(found, key=lambda item: item[0])


def _walk(directory: Path, root_real: Path, prefix: str, ancestors: frozenset[Path],
          found: list[tuple[str, Path]]) -> None:
    with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        path = Path(entry.path)
        real = Path(os.path.realpath(path))
        if entry.is_symlink():
            if not real.exists():
                raise ManifestError(f"{path} is a broken symlink (to {os.readlink(path)})")
            if not real.is_relative_to(root_real):
                raise ManifestError(f"{path} is a symlink to {real}, outside {root_real}")
        if entry.is_dir(follow_symlinks=True):
            if real in ancestors:
                raise ManifestError(f"{path} is a symlink loop (it points back at {real})")
            _walk(path, root_real, f"{prefix}{entry.name}/", ancestors | {real}, found)
        elif entry.is_file(follow_symlinks=True):
            found.append((f"{prefix}{entry.name}", path))


def hash_tree(root: Path) -> tuple[Manifest, dict[str, Path]]:
    """The manifest of every file under a folder, and where each of its paths is on disk."""
    files = list_files(root)
    entries = []
    for rel, path in files:
        sha, size = hash_file(path)
        entries.append(Entry(rel, size, sha))
    return Manifest(tuple(entries)), dict(files)
