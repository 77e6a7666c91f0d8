"""`.dockerignore` as Docker reads it (moby's patternmatcher): one pattern a line, `#` comments,
`!` re-includes, `**` matches any number of folders, the last pattern that matches a path wins,
and a folder that matches excludes everything under it."""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Sequence
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool  # a `!` line: what it matches is sent after all
    regex: re.Pattern[str]


def parse(text: str) -> list[Pattern]:
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        cleaned = posixpath.normpath(line.lstrip("/")) if line.lstrip("/") else "."
        out.append(Pattern(line, exclusion, _compile(cleaned)))
    return out


def read(context: Path) -> list[Pattern]:
    path = context / ".dockerignore"
    return parse(path.read_text()) if path.is_file() else []


def ignored(path: str, patterns: Sequence[Pattern]) -> bool:
    """Whether the POSIX `path` (relative to the context) is left out of the build context: the
    last pattern matching it or one of its parent folders decides."""
    parents = [path]
    head = path
    while "/" in head:
        head = head.rsplit("/", 1)[0]
        parents.append(head)
    result = False
    for pattern in patterns:
        if any(pattern.regex.fullmatch(p) for p in parents):
            result = not pattern.exclusion
    return result


def prunable(folder: str, patterns: Sequence[Pattern]) -> bool:
    """Whether nothing under `folder` can be sent, so it need not be walked: it is ignored and no
    `!` pattern could bring back a path inside it."""
    if not ignored(folder, patterns):
        return False
    return not any(p.exclusion and (p.text.startswith(f"{folder}/") or any(
        c in p.text for c in "*?[")) for p in patterns)


def _compile(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match syntax (`*`, `?`, `[...]`, `\\` escapes) plus `**` for any depth."""
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):  # `**/` : zero or more folders
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out += re.escape(c)
            else:
                body = pattern[i + 1:end]
                body = "^" + body[1:] if body.startswith("^") else body
                out += f"[{body}]"
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out)
