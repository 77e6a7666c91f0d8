"""Diagnostics as JSON for machines, in the shape of `terraform validate -json` (format_version
1.0): `valid`, the counts, and each diagnostic's severity, summary, detail and source range."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from substratus_cli.config.loader import MAX_FILE_BYTES
from substratus_cli.diagnostics import Diagnostic, Severity
from substratus_cli.secrets import scrub

FORMAT_VERSION = "1.0"


def diagnostics_to_json(diagnostics: Iterable[Diagnostic], root: Path) -> dict[str, Any]:
    """The document for these diagnostics; file names are as the diagnostics give them
    (relative to the workspace directory `root`), where the columns are read from."""
    items = list(diagnostics)
    errors = sum(d.severity is Severity.ERROR for d in items)
    lines = _Lines(root)
    return {
        "format_version": FORMAT_VERSION,
        "valid": errors == 0,
        "error_count": errors,
        "warning_count": len(items) - errors,
        "diagnostics": [_diagnostic(d, lines) for d in items],
    }


def _diagnostic(d: Diagnostic, lines: _Lines) -> dict[str, Any]:
    out: dict[str, Any] = {"severity": d.severity.value, "summary": scrub(d.summary),
                           "detail": scrub(d.detail)}
    subject = d.subject
    if subject.file:
        line = subject.line or 1
        start, end = _columns(lines.get(subject.file, line), subject.field)
        out["range"] = {"filename": subject.file,
                        "start": {"line": line, "column": start},
                        "end": {"line": line, "column": end}}
    if subject.field:
        out["field"] = subject.field  # substratus's own: the field path in the document
    return out


def _columns(text: str | None, field: str | None) -> tuple[int, int]:
    """1-based columns of the field's key on its line (of the line's text when the key is not
    on it, e.g. a list item); 1 and 1 when the line cannot be read."""
    if text is None:
        return 1, 1
    key = next((p for p in reversed((field or "").split(".")) if p and not p.isdigit()), None)
    if key is not None:
        found = re.search(rf"(?<![\w.-])[\"']?{re.escape(key)}[\"']?\s*:", text)
        if found:
            return found.start() + 1, found.start() + len(found.group(0).rstrip(": \t")) + 1
    content = text.rstrip()
    first = len(content) - len(content.lstrip())
    return first + 1, max(len(content), first) + 1


class _Lines:
    """The text of source lines, each file read at most once; None for what cannot be read."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[str, list[str] | None] = {}

    def get(self, file: str, line: int) -> str | None:
        if file not in self._files:
            self._files[file] = _read_lines(self.root / file)
        text = self._files[file]
        return text[line - 1] if text is not None and 0 < line <= len(text) else None


def _read_lines(path: Path) -> list[str] | None:
    # Only what the loader reads: a regular file (never a FIFO, which would block) of its size.
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_FILE_BYTES:
            return None
        return path.read_text(errors="replace").splitlines()
    except (OSError, ValueError):
        return None
