"""Hash a file or folder into a Manifest, reusing the stat cache: with a warm cache an unchanged
tree is not read at all, only `stat` is called on each file."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from substratus_artifacts.layout import StoreError
from substratus_artifacts.manifest import Manifest, ManifestEntry
from substratus_artifacts.progress import HASHING, SILENT, Meter, Progress, metering
from substratus_artifacts.statcache import StatCache

CHUNK_SIZE = 1 << 20
_HASH_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True)
class Stats:
    bytes_hashed: int = 0
    files_hashed: int = 0
    files_cached: int = 0


def hash_file(path: Path, meter: Meter | None = None) -> tuple[str, int]:
    """(sha256 hex, bytes read) of one file, read in 1 MiB chunks, each counted on `meter`."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
            if meter is not None:
                meter.advance(len(chunk))
    return digest.hexdigest(), size


def list_files(root: Path,
               skip: Callable[[str], bool] | None = None) -> list[tuple[str, Path]]:
    """(POSIX path relative to root, path) of every regular file under a folder, sorted.

    Hidden files are included. Symlinks are followed when they point inside root; one pointing
    outside (or nowhere, or back at a folder above it) is an error rather than a silent gap.
    Sockets, FIFOs and devices are skipped, and so are the folders `skip` names (by relative
    path), without being walked.
    """
    root_real = Path(os.path.realpath(root))
    found: list[tuple[str, Path]] = []
    _walk(Path(root), root_real, "", frozenset({root_real}), found, skip or _nothing)
    found.sort(key=lambda item: item[0])
    return found


def _walk(
    directory: Path,
    root_real: Path,
    prefix: str,
    ancestors: frozenset[Path],
    found: list[tuple[str, Path]],
    skip: Callable[[str], bool],
) -> None:
    with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        rel = f"{prefix}{entry.name}"
        path = Path(entry.path)
        if entry.is_symlink():
            target = Path(os.path.realpath(path))
            if not target.exists():
                raise StoreError(f"{path} is a broken symlink (to {os.readlink(path)})")
            if not target.is_relative_to(root_real):
                raise StoreError(
                    f"{path} is a symlink to {target}, outside {root_real}: a snapshot holds "
                    "only what is inside its folder (copy the file in instead)"
                )
        if entry.is_dir(follow_symlinks=True):
            if skip(rel):
                continue
            real = Path(os.path.realpath(path))
            if real in ancestors:
                raise StoreError(f"{path} is a symlink loop (it points back at {real})")
            _walk(path, root_real, f"{rel}/", ancestors | {real}, found, skip)
        elif entry.is_file(follow_symlinks=True):
            found.append((rel, path))


def _nothing(rel: str) -> bool:
    return False


def files_of(root: Path, skip: Callable[[str], bool] | None = None) -> list[tuple[str, Path]]:
    """A file is one entry named by its basename; a folder is every file under it (less the
    folders `skip` names, see list_files)."""
    root = Path(root)
    if root.is_dir():
        return list_files(root, skip)
    if root.is_file():
        return [(Path(os.path.abspath(root)).name, root)]
    raise StoreError(f"{root} does not exist (or is neither a file nor a folder)")


def hash_tree(root: Path, cache: StatCache | None = None,
              progress: Progress = SILENT,
              skip: Callable[[str], bool] | None = None) -> tuple[Manifest, Stats]:
    """The manifest of a file (one entry named by its basename) or of a folder (every file, less
    the folders `skip` names)."""
    return hash_files(files_of(root, skip), cache, progress)


def hash_files(files: list[tuple[str, Path]], cache: StatCache | None,
               progress: Progress = SILENT) -> tuple[Manifest, Stats]:
    """The manifest of these files; what the stat cache does not vouch for is read, its bytes
    counted on one HASHING meter of `progress`."""
    entries = []
    bytes_hashed = files_hashed = files_cached = 0
    # Nobody watching: no second stat of every file to count the bytes ahead.
    total = 0 if progress is SILENT else _bytes_to_read(files, cache)
    with metering(progress, HASHING, total) as meter:
        for rel, path in files:
            sha, size, read = _hash_with_cache(path, cache, meter)
            entries.append(ManifestEntry(path=rel, size=size, sha256=sha))
            if read:
                bytes_hashed += size
                files_hashed += 1
            else:
                files_cached += 1
    if cache is not None and cache.dirty:
        cache.save()
    stats = Stats(bytes_hashed=bytes_hashed, files_hashed=files_hashed, files_cached=files_cached)
    return Manifest(tuple(entries)), stats


def _bytes_to_read(files: list[tuple[str, Path]], cache: StatCache | None) -> int:
    """What hashing these files will read: the sizes of those the stat cache does not vouch for
    (a file that cannot be stat'ed counts nothing here; hashing it says why)."""
    total = 0
    for _, path in files:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if cache is None or cache.lookup(path, st) is None:
            total += st.st_size
    return total


def _hash_with_cache(path: Path, cache: StatCache | None,
                     meter: Meter | None = None) -> tuple[str, int, bool]:
    """(sha256 hex, size, whether the file was read)."""
    try:
        before = os.stat(path)
        if cache is not None and (sha := cache.lookup(path, before)) is not None:
            return sha, before.st_size, False
        for _ in range(_HASH_ATTEMPTS):
            started = time.time_ns()
            sha, size = hash_file(path, meter)
            after = os.stat(path)
            if _same_file_state(before, after) and size == after.st_size:
                if cache is not None:
                    cache.record(path, after, sha, read_started_ns=started)
                return sha, size, True
            before = after
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    raise StoreError(f"{path} kept changing while it was being hashed; run again when it is still")


def _same_file_state(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns, a.st_ino, a.st_dev) == (
        b.st_size,
        b.st_mtime_ns,
        b.st_ctime_ns,
        b.st_ino,
        b.st_dev,
    )
