"""The optional extras (`gcp`, `kubernetes`, `workloads`) and the exact command that installs
one. substratus is installed from its repository, not a package index: the command is an
editable install of this checkout, run with the Python that runs substratus."""

from __future__ import annotations

import shlex
import sys
import tomllib
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def install_command(extra: str, checkout: Path | None = None) -> str:
    """`cd REPO && PYTHON -m pip install -e '.[EXTRA]'`, or the pip line and where to run it
    when this substratus does not run from a checkout that declares the extra."""
    root = CHECKOUT if checkout is None else checkout
    pip = f"{shlex.quote(sys.executable)} -m pip install -e '.[{extra}]'"
    if _declares(root, extra):
        return f"cd {shlex.quote(str(root))} && {pip}"
    return f"{pip}, run in the substratus repository"


def _declares(root: Path, extra: str) -> bool:
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    except (OSError, ValueError, KeyError):
        return False
    return bool(project.get("name") == "substratus"
                and extra in project.get("optional-dependencies", {}))
