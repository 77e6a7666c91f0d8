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


class ManifestError(ValueError):
    """A manifest, digest or path that cannot be part of a snapshot; the message says why."""


def normalize_sha256(value: str) -> str:
    """Bare lower-case hex from `HEX` or `sha256:HEX`; ManifestError if it is not a sha256."""
    text = value.strip().lower().removeprefix(DIGEST_PREFIX)
    if not _HEX64.fullmatch(text):
        raise ManifestError(f"not a sha256 digest: {value!r} (expected 64 hex digits)")
    return text


def _check_relative_posix(path: str) -> None:
    # A manifest is data that may come from a shared store: a path must never escape the
    # directory it is materialized into.
    if (
        not isinstance(path, str)
        or not path
        or "\\" in path
        or "\x00" in path
        or PurePosixPath(path).is_absolute()
        or str(PurePosixPath(path)) != path
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise ManifestError(f"manifest path must be relative, POSIX and normalized: {path!r}")


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    path: str  # POSIX, relative to the snapshot root
    size: int
    sha256: str  # bare lower-case hex

    def __post_init__(self) -> None:
        _check_relative_posix(self.path)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ManifestError(f"bad size for {self.path!r}: {self.size!r}")
        if not isinstance(self.sha256, str) or not _HEX64.fullmatch(self.sha256):
            raise ManifestError(f"bad sha256 for {self.path!r}: {self.sha256!r}")

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
                raise ManifestError(f"duplicate path in manifest: {before.path!r}")
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
        if not isinstance(data, Mapping):
            raise ManifestError(f"not a version {MANIFEST_VERSION} manifest: {data!r:.80}")
        version = data.get("version", MANIFEST_VERSION)
        if version != MANIFEST_VERSION:
            raise ManifestError(f"unsupported manifest version {version!r}")
        entries = data.get("entries")
        if not isinstance(entries, list):
            raise ManifestError("manifest has no 'entries' list")
        parsed = []
        for raw in entries:
            if not isinstance(raw, Mapping):
                raise ManifestError(f"manifest entry is not an object: {raw!r}")
            path, size, sha = raw.get("path"), raw.get("size"), raw.get("sha256")
            if not isinstance(path, str) or not isinstance(sha, str):
                raise ManifestError(f"manifest entry needs string path and sha256: {raw!r}")
            if not isinstance(size, int) or isinstance(size, bool):
                raise ManifestError(f"manifest entry needs an integer size: {raw!r}")
            parsed.append(ManifestEntry(path=path, size=size, sha256=sha))
        return cls(tuple(parsed))

    @classmethod
    def parse(cls, raw: bytes, digest: str) -> Manifest:
        """The manifest stored under `digest`, refused unless its bytes hash to that digest."""
        actual = hashlib.sha256(raw).hexdigest()
        if actual != normalize_sha256(digest):
            raise ManifestError(f"its content hashes to {DIGEST_PREFIX}{actual}, not {digest}")
        try:
            return cls.from_dict(json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise ManifestError(f"it is not a valid manifest: {exc}") from None

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
