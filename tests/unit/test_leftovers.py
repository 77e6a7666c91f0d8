"""What a killed writer leaves (temp files named after its pid) is removed by the next writer,
and only when that pid is gone; a temp file is removed even when closing it fails (ENOSPC)
(issue 13, item 3)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from substratus_artifacts.backend import FileBackend
from substratus_artifacts.layout import StoreError
from substratus_artifacts.statcache import StatCache
from substratus_cli.state.inventory import Inventory
from substratus_cli.state.local import LocalStateBackend


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_store_removes_incoming_files_of_dead_writers_only(tmp_path: Path) -> None:
    tmp = tmp_path / "store" / "tmp"
    tmp.mkdir(parents=True)
    dead, alive = dead_pid(), os.getppid()
    (tmp / f"incoming-{dead}-abc").write_bytes(b"x" * 1000)
    (tmp / f"incoming-{alive}-def").write_bytes(b"y")
    (tmp / "unrelated").write_bytes(b"z")
    backend = FileBackend(tmp_path / "store")
    backend.create("blobs/sha256/aa", b"hello", hashlib.sha256(b"hello").hexdigest())
    assert sorted(p.name for p in tmp.iterdir()) == [f"incoming-{alive}-def", "unrelated"]


def test_a_temp_file_is_removed_when_closing_it_fails(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    backend = FileBackend(tmp_path / "store")
    with pytest.raises(StoreError, match="No space left"), \
            backend._incoming("blobs/x") as handle:
        handle.write(b"data")

        def full(*args: object) -> None:
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(handle, "close", full)
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_state_and_stat_cache_temp_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead, alive = dead_pid(), os.getppid()
    state = tmp_path / "state"
    state.mkdir()
    (state / f".inventory.json.{dead}.tmp").write_text("{")
    (state / f".inventory.json.{alive}.tmp").write_text("{")
    backend = LocalStateBackend(state)
    backend.write(Inventory.new(), None)
    assert sorted(p.name for p in state.iterdir() if p.name.endswith(".tmp")) == [
        f".inventory.json.{alive}.tmp"]

    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / f".stat.json.{dead}.x1y2").write_text("{")
    data = tmp_path / "d.txt"
    data.write_text("d")
    cache = StatCache(cache_dir / "stat.json")
    stat = data.stat()
    cache.record(data, stat, "ab" * 32, read_started_ns=stat.st_mtime_ns + 10**10)
    assert cache.save()
    assert sorted(p.name for p in cache_dir.iterdir()) == ["stat.json"]
