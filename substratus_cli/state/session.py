"""A state session: the inventory of one locked apply, each change written ahead and flushed at once."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from typing import Any

from substratus_cli.address import Address
from substratus_cli.state.backend import StateBackend
from substratus_cli.state.inventory import Inventory, InventoryEntry, Pending


class StateSession:
    """Thread-safe: apply workers record their steps through one session."""

    def __init__(self, backend: StateBackend, inventory: Inventory | None, *,
                 lineage: str | None = None) -> None:
        """`lineage`: the id a new inventory gets (the part-of the providers were built for)."""
        self.backend = backend
        self._inventory = inventory or Inventory.new(lineage)
        self._stored_serial = inventory.serial if inventory else None
        self._mutex = threading.Lock()

    @property
    def inventory(self) -> Inventory:
        return self._inventory

    def mark_pending(self, address: Address, provider: str, operation: str) -> None:
        """Write-ahead: recorded durably before the provider is called."""
        pending = Pending(operation, time.time(), os.getpid(), socket.gethostname())
        with self._mutex:
            entry = self._inventory.entries.get(address) or InventoryEntry(address, provider)
            self._commit(self._inventory.with_entry(dataclasses.replace(entry, pending=pending)))

    def record(self, address: Address, provider: str, *, spec_hash: str | None,
               fingerprint: str | None, status: dict[str, Any], deps: tuple[Address, ...],
               content: str | None = None) -> None:
        entry = InventoryEntry(address, provider, spec_hash, fingerprint, status, None, deps,
                               content)
        with self._mutex:
            self._commit(self._inventory.with_entry(entry))

    def refresh(self, address: Address, *, fingerprint: str | None,
                status: dict[str, Any], content: str | None = None) -> None:
        """Record what is live now, keeping what was applied (spec hash, deps, pending mark)."""
        with self._mutex:
            entry = self._inventory.entries.get(address)
            if entry is not None:
                self._commit(self._inventory.with_entry(
                    dataclasses.replace(entry, fingerprint=fingerprint, status=status,
                                        content=content)))

    def forget(self, address: Address) -> None:
        with self._mutex:
            if address in self._inventory.entries:
                self._commit(self._inventory.without(address))

    def ensure_stored(self) -> None:
        """Persist a new inventory so its lineage (the part-of id) is fixed before objects exist."""
        with self._mutex:
            if self._stored_serial is None:
                self._commit(self._inventory)

    def _commit(self, inventory: Inventory) -> None:
        new = dataclasses.replace(inventory, serial=inventory.serial + 1)
        self.backend.write(new, self._stored_serial)
        self._inventory = new
        self._stored_serial = new.serial
