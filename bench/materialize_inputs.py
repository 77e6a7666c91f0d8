"""Benchmark: what a workload's inputs cost to lay out. A hard link to each blob is free but is the
blob (a workload running as root writes through it); a copy is not, and is checked while copied
unless the stat cache vouches for the blob. Prints seconds for each on one large snapshot.

    python bench/materialize_inputs.py [--gib 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from substratus_artifacts.backend import FileBackend  # noqa: E402
from substratus_artifacts.snapshots import snapshot_tree  # noqa: E402
from substratus_artifacts.statcache import StatCache  # noqa: E402
from substratus_artifacts.store import Store  # noqa: E402


def timed(run: object) -> float:
    start = time.perf_counter()
    run()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=1.0)
    size = int(parser.parse_args().gib * (1 << 30))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "model").mkdir()
        block = os.urandom(1 << 20)
        with open(work / "model" / "weights.bin", "wb") as f:
            for _ in range(size // len(block)):
                f.write(block)
        store = Store(FileBackend(work / "store"))
        digest = snapshot_tree(work / "model", store, None).digest
        time.sleep(0.2)  # past the stat cache's racy window
        cache = StatCache(work / "stat.json")
        link = timed(lambda: store.materialize(digest, work / "link"))
        cold = timed(lambda: store.materialize(digest, work / "cold", copies=cache))
        shutil.rmtree(work / "cold")
        warm = timed(lambda: store.materialize(digest, work / "warm", copies=cache))
        for p in work.rglob("*"):
            if p.is_file():
                p.chmod(0o644)
    mib = size / (1 << 20)
    print(f"snapshot: one file of {mib:.0f} MiB")
    print(f"hard link (the blob itself):                 {link:7.3f} s")
    print(f"copy, hashed while copied (first use):       {cold:7.3f} s  "
          f"({mib / cold:.0f} MiB/s)")
    print(f"copy, the stat cache vouches (later uses):   {warm:7.3f} s  "
          f"({mib / warm:.0f} MiB/s)")


if __name__ == "__main__":
    main()
