"""tfjson-check, the terraform-json reader of substratus's JSON plans (main.go beside this file):
where build.sh puts it, and building it when it is missing."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
SOURCES = ("go.mod", "go.sum", "main.go")  # what the binary is built from: its cache key
HOW = ("Build it once with `bash tests/tfjson/build.sh` (tests/setup.sh does; needs Go 1.26 or "
       "newer and the Go module proxy, a few seconds to a minute).")

Log = Callable[[str], None]


class CheckerError(RuntimeError):
    """tfjson-check could not be built; the message says why and what to do."""


def stderr_log(message: str) -> None:
    print(f"tfjson: {message}", file=sys.stderr, flush=True)


def binary_path() -> Path:
    """Where build.sh puts the binary of these sources (the same hash as its `key`)."""
    key = hashlib.sha256(b"".join((HERE / name).read_bytes() for name in SOURCES)).hexdigest()
    root = Path(os.environ.get("SUBSTRATUS_CACHE") or Path.home() / ".cache" / "substratus")
    return root / "tfjson" / key[:16] / "tfjson-check"


def ensure_built(log: Log = stderr_log) -> Path:
    """The binary, built first with build.sh (logged beside it) when missing; without Go, or with
    SUBSTRATUS_NO_BUILD set, a missing binary is an error saying how to build it."""
    binary = binary_path()
    if os.access(binary, os.X_OK):
        return binary
    if shutil.which("go") is None:
        raise CheckerError(f"tfjson-check is not built ({binary} is missing) and Go is not "
                           f"installed to build it. {HOW}")
    if os.environ.get("SUBSTRATUS_NO_BUILD"):
        raise CheckerError(f"tfjson-check is not built ({binary} is missing) and "
                           f"SUBSTRATUS_NO_BUILD is set. {HOW}")
    build_log = binary.parent.parent / f"{binary.parent.name}.build.log"
    build_log.parent.mkdir(parents=True, exist_ok=True)
    log(f"building tfjson-check ({binary} is missing); log: {build_log}")
    started = time.monotonic()
    with build_log.open("w") as out:
        done = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0 or not os.access(binary, os.X_OK):
        raise CheckerError(f"building tfjson-check failed (exit {done.returncode}); from "
                           f"{build_log}:\n{build_log.read_text(errors='replace')[-4000:]}")
    log(f"built tfjson-check in {time.monotonic() - started:.0f} s")
    return binary
