"""Small trees for the store and pod tests: every kind of path a manifest must get right."""

from __future__ import annotations

import os
from pathlib import Path

# Nested, hidden, empty, non-ASCII, and the same content at two paths (one blob).
FILES = {
    "a.txt": b"alpha\n",
    "sub/deeper/b.bin": bytes(range(256)) * 40,
    ".hidden/c": b"",
    "dup/one": b"same bytes",
    "dup/two": b"same bytes",
    "na\u00efve \u2603.txt": b"unicode name",
}


def make_tree(root: Path, files: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """Write the files (and a symlink inside the tree, which snapshots follow); returns what a
    snapshot of root holds, path by path."""
    files = FILES if files is None else files
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    expected = dict(files)
    if "a.txt" in files:
        os.symlink("a.txt", root / "link.txt")
        expected["link.txt"] = files["a.txt"]
    return expected


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under root (symlinks followed), by relative POSIX path."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}
