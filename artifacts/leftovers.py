"""Temporary files a killed process left behind (SIGKILL, a second Ctrl-C, a full disk): each
writer names its temp files with its pid, and the next run removes those whose owner is gone."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path


def owner_gone(pid: int) -> bool:
    """Whether no process has this pid (a live one, even another user's, keeps its files)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_stale(folder: Path, pattern: re.Pattern[str]) -> int:
    """Remove the files in `folder` whose name matches `pattern` (its `pid` group naming the
    writer) and whose writer is gone; how many were removed. Never raises for what it finds."""
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or not owner_gone(int(match.group("pid"))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(folder / name)
            removed += 1
    return removed


def stale_temp_files(path: Path) -> re.Pattern[str]:
    """The names `.NAME.PID.tmp` that writers of `path` give their temp files."""
    return re.compile(rf"\.{re.escape(path.name)}\.(?P<pid>\d+)\.tmp")
