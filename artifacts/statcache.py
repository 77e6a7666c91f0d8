"""StatCache: remembers the sha256 of files by their stat, so a no-op plan does not re-read gigabytes.

An entry is trusted only while path, size, mtime, ctime, inode and device all match. A file changed
within a filesystem timestamp tick of being hashed is "racily clean" (as git calls it): a later
write could keep the same mtime, so such a file is not recorded and is hashed again next time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from substratus_artifacts.leftovers import remove_stale

_FORMAT_VERSION = 1
# Linux stamps mtimes from a clock that ticks every 1-10 ms; filesystems that keep whole seconds
# (some network and FAT-like ones) need up to 2 s.
_RACY_MARGIN_NS = 50_000_000
_COARSE_RACY_MARGIN_NS = 2_000_000_000

_Key = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device


def _stat_key(st: os.stat_result) -> _Key:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def is_racy(st: os.stat_result, read_started_ns: int) -> bool:
    """Whether a write after the read began could have left this mtime unchanged.

    Only an mtime in the current timestamp tick can: any later write moves an older mtime on.
    """
    coarse = st.st_mtime_ns % 1_000_000_000 == 0
    margin = _COARSE_RACY_MARGIN_NS if coarse else _RACY_MARGIN_NS
    return st.st_mtime_ns + margin > read_started_ns


class StatCache:
    """A JSON file mapping absolute path -> (stat key, sha256 hex).

    `save()` merges with what another process saved meanwhile and replaces the file atomically:
    two processes may lose each other's newest entries (last writer wins), never corrupt the file.
    Threads of one process (parallel downloads and apply steps) may share one.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._entries: dict[str, tuple[_Key, str]] = self._load()
        self._recorded: dict[str, tuple[_Key, str]] = {}
        self._lock = threading.Lock()

    @property
    def dirty(self) -> bool:
        return bool(self._recorded)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, path: Path, stat_result: os.stat_result) -> str | None:
        found = self._entries.get(_key_path(path))
        if found is None or found[0] != _stat_key(stat_result):
            return None
        return found[1]

    def record(
        self,
        path: Path,
        stat_result: os.stat_result,
        sha256: str,
        *,
        read_started_ns: int | None = None,
    ) -> bool:
        """Remember sha256 for this stat, taken before reading began; False if it is racy and
        was not recorded. `read_started_ns` is time.time_ns() when the read began (default: now)."""
        started = time.time_ns() if read_started_ns is None else read_started_ns
        key_path = _key_path(path)
        with self._lock:
            if is_racy(stat_result, started):
                self._entries.pop(key_path, None)
                self._recorded.pop(key_path, None)
                return False
            value = (_stat_key(stat_result), sha256)
            self._entries[key_path] = value
            self._recorded[key_path] = value
            return True

    def save(self) -> bool:
        """Merge this process's new entries into the file on disk and replace it atomically.

        A cache is only an optimisation: on a read-only or full disk it is not saved (False),
        its entries stay in memory for this process, and nothing fails."""
        with self._lock:
            try:
                self._save()
            except OSError:
                return False
            return True

    def _save(self) -> None:
        if not self._recorded and self.path.exists():
            return
        merged = self._load()
        merged.update(self._recorded)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(self.path.parent, re.compile(
            rf"\.{re.escape(self.path.name)}\.(?P<pid>\d+)\..*"))
        fd, name = tempfile.mkstemp(dir=self.path.parent,
                                    prefix=f".{self.path.name}.{os.getpid()}.")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                json.dump(_to_json(merged), handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(name, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise
        self._entries = {**merged, **self._entries}
        self._recorded.clear()

    def _load(self) -> dict[str, tuple[_Key, str]]:
        try:
            data = json.loads(self.path.read_text(encoding="ascii"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            # A cache is only an optimisation: an unreadable one is rebuilt, never fatal.
            return {}
        return _from_json(data)


def _key_path(path: Path) -> str:
    return os.path.abspath(path)


def _to_json(entries: dict[str, tuple[_Key, str]]) -> dict[str, Any]:
    return {
        "version": _FORMAT_VERSION,
        "entries": {path: [*key, sha] for path, (key, sha) in sorted(entries.items())},
    }


def _from_json(data: Any) -> dict[str, tuple[_Key, str]]:
    if not isinstance(data, dict) or data.get("version") != _FORMAT_VERSION:
        return {}
    raw_entries = data.get("entries")
    if not isinstance(raw_entries, dict):
        return {}
    entries: dict[str, tuple[_Key, str]] = {}
    for path, row in raw_entries.items():
        if (
            isinstance(row, list)
            and len(row) == 6
            and all(isinstance(v, int) for v in row[:5])
            and isinstance(row[5], str)
        ):
            size, mtime_ns, ctime_ns, ino, dev = row[:5]
            entries[path] = ((size, mtime_ns, ctime_ns, ino, dev), row[5])
    return entries
