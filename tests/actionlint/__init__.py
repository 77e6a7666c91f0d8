"""actionlint, the GitHub Actions workflow checker the tests run over examples/ci's workflows: the
version the wrapper module beside this file pins, and where build.sh puts the binary it builds
from the Go module proxy (tests/setup.sh runs it, so CI has it before pytest starts)."""

from __future__ import annotations

import os
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
MODULE = "github.com/rhysd/actionlint"


def version() -> str:
    """The pinned version, read from go.mod (as build.sh does)."""
    pattern = rf"^\s*(?:require\s+)?{re.escape(MODULE)}\s+(v\S+)"
    found = re.search(pattern, (HERE / "go.mod").read_text(), re.MULTILINE)
    if not found:
        raise RuntimeError(f"{HERE / 'go.mod'} does not require {MODULE}")
    return found.group(1)


def binary() -> Path:
    """Where build.sh puts actionlint of the pinned version."""
    root = Path(os.environ.get("SUBSTRATUS_CACHE") or Path.home() / ".cache" / "substratus")
    return root / "actionlint" / version() / "actionlint"


def how_to_build() -> str:
    return (f"actionlint {version()} is not built ({binary()} is missing): run `bash "
            f"{BUILD_SCRIPT.relative_to(HERE.parent.parent)}` (it needs Go 1.26 and the Go "
            "module proxy, about 25 s the first time; tests/setup.sh runs it)")
