"""Type-check the project with mypy (`python -m tests.typecheck`): strict on substratus_cli, mypy's
defaults elsewhere (pyproject.toml's [tool.mypy]).

The packages install under other names than their folders (providers/ is substratus_providers),
which mypy cannot see through an editable install: it checks a temporary tree of links that
names each folder as it is imported."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"substratus_cli": "substratus_cli", "substratus_artifacts": "artifacts",
            "substratus_providers": "providers",
            "substratus_workloads": "workloads", "tests": "tests", "bench": "bench"}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="substratus-typecheck-") as tree:
        for name, folder in PACKAGES.items():
            if (ROOT / folder).is_dir():
                (Path(tree) / name).symlink_to(ROOT / folder)
        command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                   "--cache-dir", str(ROOT / ".mypy_cache"),
                   *[name for name in PACKAGES if (Path(tree) / name).exists()]]
        return subprocess.run(command, cwd=tree).returncode


if __name__ == "__main__":
    sys.exit(main())
