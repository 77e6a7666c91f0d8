"""Where a `path` source is: a file or folder of the workspace (relative to it), refused when it
resolves outside the workspace unless the source says `allowOutside: true` (kustomize's load
restrictor), and never with the workspace's own `.substratus/` folder in it."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

DATA_DIR = ".substratus"  # the workspace's state, caches and store (workspace.DATA_DIR)


class SourcePathError(ValueError):
    """A path source that cannot be snapshotted; the message names the path as written."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def locate(workdir: Path, source: Mapping[str, Any]) -> Path:
    """The file or folder a source's `path` names (absolute, symlinks resolved), or
    SourcePathError: outside the workspace without `allowOutside: true`, or not there."""
    written = str(source["path"])
    try:
        root = Path(os.path.realpath(workdir))
        path = Path(os.path.realpath(root / written))
    except (OSError, ValueError) as error:  # a NUL byte, a name too long for the system
        raise SourcePathError(f"source path {written!r} is not a usable path: {error}") from None
    if not path.is_relative_to(root) and source.get("allowOutside") is not True:
        raise SourcePathError(
            f"source path {written!r} is outside the workspace (it resolves to {path})",
            "a snapshot holds what is inside the workspace folder; copy it in, or set "
            "`allowOutside: true` on the source to snapshot it from there on purpose")
    data = root / DATA_DIR
    if path.is_relative_to(data):
        raise SourcePathError(f"source path {written!r} is inside the workspace's {DATA_DIR} "
                              "folder (state, caches and artifacts), which no snapshot holds")
    if not os.path.exists(path):
        raise SourcePathError(f"source path {written!r} does not exist ({path})",
                              "paths are relative to the workspace folder")
    return path


def excluded(root: Path, data_dir: Path) -> Callable[[str], bool]:
    """What a snapshot of `root` skips (by path relative to it): the workspace's `.substratus/`
    (`data_dir`), which a snapshot of the workspace itself would otherwise hold, and which
    changes with every apply (so `path: .` would never converge)."""
    data = Path(os.path.realpath(data_dir))
    real = Path(os.path.realpath(root))
    skipped = {data.relative_to(real).as_posix()} if data.is_relative_to(real) and \
        data != real else set()
    return lambda relative: relative in skipped
