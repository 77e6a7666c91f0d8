"""Content-addressed artifacts: manifests, blob stores, the stat cache and snapshots (DESIGN.md §3)."""

from __future__ import annotations

from substratus_cli.artifacts.manifest import Manifest, ManifestEntry, normalize_sha256
from substratus_cli.artifacts.snapshot import (
    SnapshotResult,
    Stats,
    hash_file,
    hash_tree,
    list_files,
    snapshot_tree,
)
from substratus_cli.artifacts.statcache import StatCache
from substratus_cli.artifacts.store import ArtifactStore, FileArtifactStore, open_store

__all__ = [
    "ArtifactStore",
    "FileArtifactStore",
    "Manifest",
    "ManifestEntry",
    "SnapshotResult",
    "StatCache",
    "Stats",
    "hash_file",
    "hash_tree",
    "list_files",
    "normalize_sha256",
    "open_store",
    "snapshot_tree",
]
