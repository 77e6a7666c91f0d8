"""The stat cache keeps a no-op snapshot of a 1 GiB file from reading it again."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus_artifacts.backend import FileBackend
from substratus_artifacts.files import hash_tree
from substratus_artifacts.snapshots import snapshot_tree
from substratus_artifacts.statcache import StatCache
from substratus_artifacts.store import Store

GIB = 1 << 30
MIB = 1 << 20


def rchar() -> int:
    """Bytes this process has read through read(2) and friends, from any file."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("/proc/self/io has no rchar line")


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)  # 2 GiB: do not leave it in pytest's basetemp


@pytest.mark.slow
def test_unchanged_1gib_file_is_not_read_again_and_a_touch_rehashes_it(workdir: Path) -> None:
    data = workdir / "data" / "big.bin"
    data.parent.mkdir()
    block = os.urandom(MIB)
    with open(data, "wb") as handle:
        for _ in range(GIB // MIB):
            handle.write(block)
    # A file modified within a timestamp tick of being hashed is racily clean and not cached
    # (git's rule); a dataset written a moment before `plan` is the common case, so wait it out.
    time.sleep(0.2)
    store = Store(FileBackend(workdir / "artifacts"))
    cache_path = workdir / "statcache.json"

    first = snapshot_tree(data.parent, store, StatCache(cache_path))
    assert first.bytes_hashed == first.bytes_copied == GIB

    before = rchar()
    manifest, stats = hash_tree(data.parent, StatCache(cache_path))
    again = snapshot_tree(data.parent, store, StatCache(cache_path))
    read = rchar() - before
    assert manifest.digest == again.digest == first.digest
    assert (stats.files_cached, stats.files_hashed, stats.bytes_hashed) == (1, 0, 0)
    assert again.bytes_copied == 0 and again.bytes_hashed == 0
    assert read < MIB, f"a warm no-op snapshot read {read} bytes"

    os.utime(data)  # touch: same content, new mtime
    before = rchar()
    touched = snapshot_tree(data.parent, store, StatCache(cache_path))
    assert rchar() - before >= GIB
    assert touched.bytes_hashed == GIB and touched.bytes_copied == 0
    assert touched.digest == first.digest
