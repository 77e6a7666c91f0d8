"""Content-addressed artifacts: manifests, blob stores, refs, the stat cache and snapshots (DESIGN.md §3)."""

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
from substratus_cli.artifacts.store import (
    CHUNK_SIZE,
    ArtifactStore,
    FileArtifactStore,
    blob_key,
    manifest_key,
    open_store,
    parse_ref,
    ref_content,
    ref_key,
)

__all__ = [
    "CHUNK_SIZE",
    "ArtifactStore",
    "FileArtifactStore",
    "Manifest",
    "ManifestEntry",
    "SnapshotResult",
    "StatCache",
    "Stats",
    "blob_key",
    "hash_file",
    "hash_tree",
    "list_files",
    "manifest_key",
    "normalize_sha256",
    "open_store",
    "parse_ref",
    "ref_content",
    "ref_key",
    "snapshot_tree",
]
