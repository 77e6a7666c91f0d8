"""Action and FieldChange: what a plan says it will do to one resource, in Terraform's vocabulary."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any


class Action(enum.Enum):
    NOOP = "no-op"
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"

    @property
    def json_actions(self) -> list[str]:
        """Terraform's `change.actions` array."""
        return {
            Action.NOOP: ["no-op"],
            Action.CREATE: ["create"],
            Action.UPDATE: ["update"],
            Action.REPLACE: ["delete", "create"],
            Action.DELETE: ["delete"],
        }[self]

    @property
    def symbol(self) -> str:
        return {Action.NOOP: " ", Action.CREATE: "+", Action.UPDATE: "~",
                Action.REPLACE: "-/+", Action.DELETE: "-"}[self]


class _Unknown:
    """A value that is known only after apply (a digest of a URL not yet downloaded)."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "(known after apply)"


UNKNOWN = _Unknown()


@dataclasses.dataclass(frozen=True)
class FieldChange:
    """One field's old -> new value. Paths are dotted from the document root ("spec.source.path")."""

    path: str
    before: Any = None
    after: Any = None
    forces_replacement: bool = False
    sensitive: bool = False
