"""A re-plan of an unchanged 1 GiB dataset copies nothing and does not read the file again."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

GIB = 1 << 30


def bytes_read_by_this_process() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("/proc/self/io has no rchar line")


def store_files(workdir: Path) -> dict[str, tuple[int, int]]:
    blobs = workdir / ".substratus" / "artifacts" / "blobs"
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in blobs.rglob("*")
            if p.is_file()}


@pytest.mark.slow
def test_replan_of_unchanged_1gib_dataset_reads_and_copies_nothing(cli, tmp_path):
    data = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(data, "wb") as f:
        for _ in range(GIB // len(block)):
            f.write(block)
    time.sleep(0.2)  # a file written within the last instant is never trusted to the stat cache
    (tmp_path / "big.yaml").write_text(
        "apiVersion: substratus.ai/v1\nkind: Dataset\nmetadata: {name: big}\n"
        "spec: {source: {path: big.bin}}\n")
    try:
        assert cli("apply", tmp_path, "--auto-approve").code == 0
        blobs_before = store_files(tmp_path)
        assert sum(os.path.getsize(p) for p in blobs_before) == GIB

        before = bytes_read_by_this_process()
        plan = cli("plan", "--detailed-exitcode", tmp_path)
        read = bytes_read_by_this_process() - before
        assert plan.code == 0, plan.output
        assert "No changes." in plan.out
        assert read < (1 << 20), f"the re-plan read {read} bytes"

        before = bytes_read_by_this_process()
        assert "No changes." in cli("apply", tmp_path, "--auto-approve").out
        assert bytes_read_by_this_process() - before < (1 << 20)
        assert store_files(tmp_path) == blobs_before, "no blob was written again"
    finally:
        data.unlink(missing_ok=True)
        for blob in (tmp_path / ".substratus" / "artifacts").rglob("*"):
            if blob.is_file():
                blob.chmod(0o644)
                blob.unlink()
