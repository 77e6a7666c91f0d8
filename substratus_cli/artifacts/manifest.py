"""Manifest: the list of (path, size, sha256) that makes a snapshot; its digest is the snapshot id.

The digest is the sha256 of the canonical JSON form, so it depends only on the files' paths and
contents, never on the order they were found in or on the machine that hashed them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

MANIFEST_VERSION = 1
DIGEST_PREFIX = "sha256:"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def normalize_sha256(value: str) -> str:
    """Bare lower-case hex from `HEX` or `sha256:HEX`; ValueError if it is not a sha256."""
    text = value.strip().lower()
    text = text.removeprefix(DIGEST_PREFIX)
    if not _HEX64.fullmatch(text):
        raise ValueError(f"not a sha256 digest: {value!r} (expected 64 hex digits)")
    return text


def digest_hex(digest: str) -> str:
    """The hex part of a snapshot digest `sha256:HEX` (a bare HEX is accepted too)."""
    return normalize_sha256(digest)


def _check_relative_posix(path: str) -> None:
    # A manifest is data that may come from a shared store: a path must never escape the
    # directory it is materialized into.
    pure = PurePosixPath(path)
    if (
        not path
        or "\\" in path
        or "\x00" in path
        or pure.is_absolute()
        or str(pure) != path
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise ValueError(f"manifest path must be relative, POSIX and normalized: {path!r}")


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    path: str  # POSIX, relative to the snapshot root
    size: int
    sha256: str  # bare lower-case hex

    def __post_init__(self) -> None:
        _check_relative_posix(self.path)
        if self.size < 0:
            raise ValueError(f"negative size for {self.path!r}")
        if not _HEX64.fullmatch(self.sha256):
            raise ValueError(f"bad sha256 for {self.path!r}: {self.sha256!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A snapshot's files, kept sorted by path (so equal contents compare equal)."""

    entries: tuple[ManifestEntry, ...] = ()

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.entries, key=lambda e: e.path))
        for before, after in zip(ordered, ordered[1:], strict=False):
            if before.path == after.path:
                raise ValueError(f"duplicate path in manifest: {before.path!r}")
        object.__setattr__(self, "entries", ordered)

    @classmethod
    def of(cls, entries: Iterable[ManifestEntry]) -> Manifest:
        return cls(tuple(entries))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "entries": [entry.to_dict() for entry in self.entries],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        version = data.get("version", MANIFEST_VERSION)
        if version != MANIFEST_VERSION:
            raise ValueError(f"unsupported manifest version {version!r}")
        entries = data.get("entries")
        if not isinstance(entries, list):
            raise ValueError("manifest has no 'entries' list")
        parsed = []
        for raw in entries:
            if not isinstance(raw, Mapping):
                raise ValueError(f"manifest entry is not an object: {raw!r}")
            path, size, sha = raw.get("path"), raw.get("size"), raw.get("sha256")
            if not isinstance(path, str) or not isinstance(sha, str):
                raise ValueError(f"manifest entry needs string path and sha256: {raw!r}")
            if not isinstance(size, int) or isinstance(size, bool):
                raise ValueError(f"manifest entry needs an integer size: {raw!r}")
            parsed.append(ManifestEntry(path=path, size=size, sha256=sha))
        return cls(tuple(parsed))

    def canonical_json(self) -> bytes:
        """Compact, sorted keys, entries sorted by path: the bytes the digest is taken of."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode("ascii")

    @property
    def digest(self) -> str:
        return DIGEST_PREFIX + hashlib.sha256(self.canonical_json()).hexdigest()

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.entries)

    def __len__(self) -> int:
        return len(self.entries)
