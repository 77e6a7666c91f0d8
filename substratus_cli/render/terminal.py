"""Text from files and servers made safe to print on a terminal.

A file name, a value or a server's answer can hold escape sequences (`ESC [2J` clears the screen,
OSC 8 writes links, bidi overrides reorder what is shown). Messages print them as visible escapes
(`\\x1b[2J`), the way Python's repr would, and keep newlines and tabs."""

from __future__ import annotations

import re
import unicodedata

# C0 and C1 controls except tab and newline, DEL, and the bidi/format characters that reorder
# or hide text (Trojan Source).
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def safe(text: str) -> str:
    return _UNSAFE.sub(_escaped, text)


def _escaped(m: re.Match[str]) -> str:
    c = m.group()
    code = ord(c)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    assert unicodedata.category(c) in ("Cf", "Cc")
    return f"\\u{code:04x}"
