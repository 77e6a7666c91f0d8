"""Secret references `${{ secrets.NAME.KEY }}`: found, redacted for display, resolved only at apply.

Plans, plan files and state hold the reference text, never a value. Anything shown to a person or
written as JSON passes through `redact`, which prints `(sensitive value)` for every field that
mentions a secret.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

from substratus_cli.errors import SubstratusError

SENSITIVE = "(sensitive value)"
SECRET_REF = re.compile(r"\$\{\{\s*secrets\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_.-]+)\s*\}\}")


def is_sensitive(value: Any) -> bool:
    if isinstance(value, str):
        return SECRET_REF.search(value) is not None
    if isinstance(value, Mapping):
        return any(is_sensitive(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_sensitive(v) for v in value)
    return False


def redact(value: Any) -> Any:
    """A copy of `value` with every string that references a secret replaced by SENSITIVE."""
    if isinstance(value, str):
        return SENSITIVE if SECRET_REF.search(value) else value
    if isinstance(value, Mapping):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def references(value: Any) -> list[tuple[str, str]]:
    """Every (NAME, KEY) referenced anywhere in `value`."""
    if isinstance(value, str):
        return [(m.group(1), m.group(2)) for m in SECRET_REF.finditer(value)]
    if isinstance(value, Mapping):
        return [r for v in value.values() for r in references(v)]
    if isinstance(value, list | tuple):
        return [r for v in value for r in references(v)]
    return []


def sensitive_paths(value: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the fields that reference secrets."""
    if isinstance(value, str):
        return [prefix] if SECRET_REF.search(value) else []
    items: list[tuple[str, Any]] = []
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        items = [(str(i), v) for i, v in enumerate(value)]
    out: list[str] = []
    for key, v in items:
        out.extend(sensitive_paths(v, f"{prefix}.{key}" if prefix else key))
    return out


class MissingSecretError(SubstratusError):
    pass


ENV_PREFIX = "SUBSTRATUS_SECRET_"


def env_var_name(name: str, key: str) -> str:
    """Where the local runtime looks for a secret: SUBSTRATUS_SECRET_<NAME>_<KEY>."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", f"{name}_{key}").upper()


# Every secret value this process has resolved: messages are scrubbed of them (a server that
# answers "401 invalid token <token>" must not get the token printed).
_revealed: set[str] = set()
_revealed_lock = threading.Lock()
# Shorter values would scrub ordinary words out of messages; a secret that short is no secret.
_MIN_SCRUBBED = 6


def reveal(value: str) -> str:
    """Note a resolved secret value (to be scrubbed from messages); returns it."""
    if len(value) >= _MIN_SCRUBBED:
        with _revealed_lock:
            _revealed.add(value)
    return value


def _encodings(value: str) -> set[str]:
    raw = value.encode()
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value),
             base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    forms |= {f.rstrip("=") for f in forms}
    return {f for f in forms if len(f) >= _MIN_SCRUBBED}


def scrub(text: str) -> str:
    """`text` with every resolved secret value, and its base64 and URL-encoded forms, replaced
    by SENSITIVE."""
    with _revealed_lock:
        values = list(_revealed)
    forms = sorted({f for v in values for f in _encodings(v)}, key=len, reverse=True)
    for form in forms:
        if form in text:
            text = text.replace(form, SENSITIVE)
    return text


def resolve_from_environ(name: str, key: str) -> str:
    var = env_var_name(name, key)
    try:
        return reveal(os.environ[var])
    except KeyError:
        raise MissingSecretError(
            f"secret {name}.{key} is not set",
            hint=f"export {var}=… before running substratus (the value is never printed or stored)",
        ) from None


def substitute(text: str, resolve_secret: Any) -> str:
    """`text` with each reference replaced by its value from `resolve_secret(name, key)`."""
    return SECRET_REF.sub(lambda m: resolve_secret(m.group(1), m.group(2)), text)
