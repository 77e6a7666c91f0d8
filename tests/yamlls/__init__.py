"""yaml-language-server, the language server editors run for YAML: the version package.json pins,
and where install.sh puts it with npm (tests/setup.sh runs it, so CI has it before pytest
starts)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
INSTALL_SCRIPT = HERE / "install.sh"
PACKAGE = "yaml-language-server"


def version() -> str:
    """The pinned version, read from package.json."""
    return str(json.loads((HERE / "package.json").read_text())["dependencies"][PACKAGE])


def server() -> Path:
    """Where install.sh puts the server of the pinned version and lock file."""
    key = hashlib.sha256((HERE / "package.json").read_bytes()
                         + (HERE / "package-lock.json").read_bytes()).hexdigest()[:16]
    root = Path(os.environ.get("SUBSTRATUS_CACHE") or Path.home() / ".cache" / "substratus")
    return root / "yamlls" / key / "node_modules" / ".bin" / PACKAGE


def how_to_install() -> str:
    return (f"{PACKAGE} {version()} is not installed ({server()} is missing): run `bash "
            f"{INSTALL_SCRIPT.relative_to(HERE.parent.parent)}` (it needs Node.js 18+ and npm, "
            "and reaches the npm registry once, a few seconds; tests/setup.sh runs it)")
