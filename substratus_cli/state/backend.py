"""The state backend contract: inventory read/compare-and-swap write, and an exclusive lock."""

from __future__ import annotations

import dataclasses
import getpass
import os
import socket
import time
import uuid
from typing import Protocol

from substratus_cli.errors import LockError, SubstratusError
from substratus_cli.state.inventory import Inventory


@dataclasses.dataclass(frozen=True)
class LockInfo:
    id: str
    operation: str
    who: str
    host: str
    pid: int
    created: float

    @classmethod
    def new(cls, operation: str) -> LockInfo:
        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = str(os.getuid())
        return cls(id=str(uuid.uuid4()), operation=operation, who=who,
                   host=socket.gethostname(), pid=os.getpid(), created=time.time())

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.created))
        return (f"ID {self.id}, operation {self.operation}, held by {self.who}@{self.host} "
                f"(pid {self.pid}) since {when}")


class ConflictError(SubstratusError):
    """A compare-and-swap write found that someone else wrote the inventory first."""


class LockHeldError(LockError):
    def __init__(self, holder: LockInfo | None, location: str) -> None:
        who = holder.describe() if holder else "holder details unavailable"
        super().__init__(
            f"Cannot acquire the state lock for {location}: it is held: {who}",
            hint="wait for that operation to finish, or pass --lock-timeout=60s to wait for it; "
                 "if its process is gone, run `substratus force-unlock ID`",
        )
        self.holder = holder


class UnwritableStateError(LockError):
    """The state's folder cannot be written (a read-only or full disk): no lock can be taken
    there, and no apply can run there either."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"Cannot take the state lock for {location}: {reason}",
                         hint="free some space or make the folder writable; `substratus plan` "
                              "works meanwhile (without the lock)")


class StateBackend(Protocol):
    location: str

    def read(self) -> Inventory | None:
        """The inventory, or None when nothing was ever applied."""
        ...

    def write(self, inventory: Inventory, expected_serial: int | None) -> None:
        """Write if the stored serial is still `expected_serial` (None: nothing stored), else ConflictError.

        The first write of a run first keeps what was stored as the backup (`inventory.json.backup`,
        like terraform.tfstate.backup): the state as it was before this run changed it."""
        ...

    def read_backup(self) -> Inventory | None:
        """The state as it was before the last run that wrote it; None when there is none."""
        ...

    def lock(self, operation: str, timeout: float) -> LockInfo: ...

    def unlock(self, lock: LockInfo) -> None: ...

    def force_unlock(self, lock_id: str) -> str:
        """Release a lock left behind; returns what was done, for the user."""
        ...

    def current_lock(self) -> LockInfo | None: ...


def restore_hint(backend: StateBackend, restore_command: str, without_backup: str) -> str:
    """The hint under a damaged inventory: the command that puts the backup back and what the
    backup holds; `without_backup` where none can be read."""
    try:
        backup = backend.read_backup()
    except SubstratusError:
        backup = None
    if backup is None:
        return without_backup
    return (f"the state before the last apply is kept: `{restore_command}` restores it (serial "
            f"{backup.serial}, {len(backup.entries)} resources); the next plan shows what "
            "changed since")
