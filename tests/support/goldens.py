"""Golden files: compare rendered output with tests/unit/goldens/NAME, rewrite it under --update-goldens."""

from __future__ import annotations

import difflib
from pathlib import Path

GOLDENS = Path(__file__).resolve().parent.parent / "unit" / "goldens"


def check_golden(name: str, actual: str, update: bool) -> None:
    path = GOLDENS / name
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    assert path.exists(), f"{path} is missing: run `pytest --update-goldens` and review the diff"
    expected = path.read_text()
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True),
                                            actual.splitlines(keepends=True), str(path), "actual"))
        raise AssertionError(f"output differs from {path} (if intended, run `pytest "
                             f"--update-goldens` and review the diff):\n{diff}")
