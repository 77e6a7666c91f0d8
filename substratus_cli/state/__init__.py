"""State: the inventory, the lock and the write-ahead marks, behind a backend interface."""

from __future__ import annotations

from pathlib import Path

from substratus_cli.errors import UsageError
from substratus_cli.state.backend import (
    ConflictError,
    LockHeldError,
    LockInfo,
    StateBackend,
    UnwritableStateError,
)
from substratus_cli.state.inventory import Inventory, InventoryEntry, Pending
from substratus_cli.state.local import LocalStateBackend
from substratus_cli.state.session import StateSession

__all__ = [
    "ConflictError", "Inventory", "InventoryEntry", "LockHeldError", "LockInfo",
    "LocalStateBackend", "Pending", "StateBackend", "StateSession",
    "UnwritableStateError", "open_backend",
]


def open_backend(url: str, base: Path) -> StateBackend:
    """`file://path` (relative to the resource directory). gs:// belongs to the gcp provider:
    `wiring.open_state_backend` opens it."""
    if url.startswith("file://"):
        path = Path(url.removeprefix("file://"))
        return LocalStateBackend(path if path.is_absolute() else (base / path).resolve())
    raise UsageError(f"state backend {url}: expected file://… or gs://…")
