"""Benchmark: plan of an unchanged large dataset, cold (hashes) and warm (stat cache), beside
`sha256sum` of the same file as the reference. Prints seconds, bytes read and ratios.

    python bench/replan_large_dataset.py [--gib 1]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import tempfile
import time
from pathlib import Path

from substratus_cli.cli import run


def rchar() -> int:
    line = next(x for x in Path("/proc/self/io").read_text().splitlines() if x.startswith("rchar"))
    return int(line.split()[1])


def timed_cli(*args: str) -> tuple[float, int, int]:
    before, start = rchar(), time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = run(list(args))
    return time.perf_counter() - start, rchar() - before, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=1.0)
    size = int(parser.parse_args().gib * (1 << 30))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        block = os.urandom(1 << 20)
        with open(work / "big.bin", "wb") as f:
            for _ in range(size // len(block)):
                f.write(block)
        time.sleep(0.2)  # let the file age past the stat cache's racy window
        (work / "big.yaml").write_text("apiVersion: substratus.ai/v1\nkind: Dataset\n"
                                       "metadata: {name: big}\nspec: {source: {path: big.bin}}\n")
        sha256sum = ["sha256sum", str(work / "big.bin")]
        subprocess.run(sha256sum, check=True, capture_output=True)  # same page cache for both
        start = time.perf_counter()
        subprocess.run(sha256sum, check=True, capture_output=True)
        reference = time.perf_counter() - start
        cold = timed_cli("plan", str(work))
        applied = timed_cli("apply", "--auto-approve", str(work))
        warm = timed_cli("plan", "--detailed-exitcode", str(work))
        for blob in (work / ".substratus").rglob("*"):
            if blob.is_file():
                blob.chmod(0o644)
    mib = size / (1 << 20)
    print(f"dataset: {mib:.0f} MiB")
    print(f"sha256sum (reference):      {reference:7.3f} s")
    print(f"substratus plan, cold:      {cold[0]:7.3f} s  read {cold[1] / (1 << 20):9.1f} MiB")
    print(f"substratus apply:           {applied[0]:7.3f} s  read {applied[1] / (1 << 20):9.1f} MiB"
          f"  exit {applied[2]}")
    print(f"substratus plan, no change: {warm[0]:7.3f} s  read {warm[1] / (1 << 20):9.3f} MiB"
          f"  exit {warm[2]}")
    print(f"no-change plan vs sha256sum: {reference / warm[0]:.1f}x faster; "
          f"cold plan vs sha256sum: {cold[0] / reference:.2f}x the time")


if __name__ == "__main__":
    main()
