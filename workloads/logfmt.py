"""One logfmt line per event (`step=3 loss=5.1234`), flushed at once, for people and for parsers."""

from __future__ import annotations

import sys
from typing import Any, TextIO


def format_value(value: Any) -> str:
    if isinstance(value, float):
        # Four decimals at most (loss=5.1234), trailing zeros dropped (seconds=2.8), tiny
        # values in exponent form so a small learning rate does not print as 0.
        if value and abs(value) < 1e-3:
            return f"{value:.3g}"
        return f"{value:.4f}".rstrip("0").rstrip(".") or "0"
    text = str(value)
    if not text or any(c in text for c in ' ="\\') or not text.isprintable():
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


def line(*words: str, **fields: Any) -> str:
    """Bare words first (`done`), then key=value pairs in the order given."""
    return " ".join([*words, *(f"{k}={format_value(v)}" for k, v in fields.items())])


def log(*words: str, stream: TextIO | None = None, **fields: Any) -> None:
    # Flushed per line: the runtime streams these to the user while the workload runs.
    print(line(*words, **fields), file=stream or sys.stdout, flush=True)


def parse(text: str) -> dict[str, str]:
    """The key=value pairs of one line (bare words are dropped); for tests and log readers."""
    import shlex

    pairs = (token.partition("=") for token in shlex.split(text))
    return {key: value for key, sep, value in pairs if sep}
