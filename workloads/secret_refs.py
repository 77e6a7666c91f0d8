"""Secret references `${{ secrets.NAME.KEY }}` in a workload's input, resolved from the environment
variable the runtime sets for each (SUBSTRATUS_SECRET_<NAME>_<KEY>, named as the CLI's
`substratus_cli.secrets.env_var_name` names it; a test checks they agree)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

SECRET_REF = re.compile(r"\$\{\{\s*secrets\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_.-]+)\s*\}\}")


class MissingSecret(LookupError):
    def __init__(self, name: str, key: str) -> None:
        super().__init__(f"secret {name}.{key} is not set: the runtime passes it as "
                         f"{env_var_name(name, key)}")


def env_var_name(name: str, key: str) -> str:
    return "SUBSTRATUS_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", f"{name}_{key}").upper()


class Resolver:
    """Substitutes references from `environ` and remembers every value it put in, so that
    messages can be scrubbed of them."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.values: list[str] = []

    def text(self, text: str) -> str:
        return SECRET_REF.sub(lambda m: self._value(m.group(1), m.group(2)), text)

    def deep(self, value: Any) -> Any:
        """A copy of a JSON value with every string's references substituted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.deep(v) for v in value]
        return value

    def _value(self, name: str, key: str) -> str:
        value = self.environ.get(env_var_name(name, key))
        if value is None:
            raise MissingSecret(name, key)
        if value:
            self.values.append(value)
        return value
