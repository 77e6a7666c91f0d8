"""The local file backend: inventory.json written atomically, a lock the kernel releases on death.

The lock is an fcntl lock on `lock.json`, which also holds who took it. Like Terraform's local
backend, a process that dies (even by SIGKILL) releases it; force-unlock only clears the holder
record of a lock no live process holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import time
from pathlib import Path
from typing import IO

from substratus_artifacts.leftovers import remove_stale, stale_temp_files
from substratus_cli.errors import SubstratusError
from substratus_cli.state.backend import (
    ConflictError,
    LockHeldError,
    LockInfo,
    UnwritableStateError,
    restore_hint,
)
from substratus_cli.state.inventory import Inventory

POLL_SECONDS = 0.2
# The folder cannot hold a lock: a read-only or full disk, or no permission.
UNWRITABLE = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM})


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # What a killed writer left (its temp file, named after its pid) goes first.
    remove_stale(path.parent, stale_temp_files(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class LocalStateBackend:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.location = f"file://{directory}"
        self._inventory = directory / "inventory.json"
        self._backup = directory / "inventory.json.backup"
        self._lock_path = directory / "lock.json"
        self._held: IO[str] | None = None
        self._backed_up = False  # this run kept the state it started from

    def read(self) -> Inventory | None:
        try:
            raw = self._inventory.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:  # a file where the folder should be, no permission, …
            raise SubstratusError(f"cannot read the state at {self.location}: "
                                  f"{e.strerror or e}",
                                  hint="the Environment's `state` must name a folder substratus "
                                       "can write (file://PATH), or gs://BUCKET/PREFIX") from None
        try:
            return Inventory.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError) as e:
            raise SubstratusError(f"the state file {self._inventory} is damaged: {e}",
                                  hint=self._restore_hint()) from None

    def read_backup(self) -> Inventory | None:
        try:
            return Inventory.from_dict(json.loads(self._backup.read_bytes()))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as e:
            raise SubstratusError(f"the state backup {self._backup} is damaged too: {e}") from None

    def _restore_hint(self) -> str:
        return restore_hint(self, f"cp {self._backup} {self._inventory}",
                            "no backup of it is kept yet (one is, from the next apply on); "
                            "rebuild it with `substratus import` once the file is moved aside")

    def write(self, inventory: Inventory, expected_serial: int | None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".inventory.cas", "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            current = self.read()
            found = current.serial if current else None
            if found != expected_serial:
                raise ConflictError(
                    f"the state at {self.location} changed while this run held it "
                    f"(serial {found}, expected {expected_serial})")
            if not self._backed_up and current is not None:
                # The state this run started from, once per run (terraform.tfstate.backup).
                atomic_write(self._backup, self._inventory.read_bytes())
            self._backed_up = True
            atomic_write(self._inventory, json.dumps(inventory.to_dict(), indent=2).encode())

    def lock(self, operation: str, timeout: float) -> LockInfo:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            f = open(self._lock_path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        except OSError as e:
            if e.errno in UNWRITABLE:
                raise UnwritableStateError(self.location, os.strerror(e.errno)) from None
            raise
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self.current_lock()
                    f.close()
                    raise LockHeldError(holder, self.location) from None
                time.sleep(POLL_SECONDS)
        info = LockInfo.new(operation)
        try:  # unbuffered: a write the disk refuses leaves nothing for close() to retry
            os.ftruncate(f.fileno(), 0)
            os.write(f.fileno(), json.dumps(dataclasses.asdict(info)).encode())
            os.fsync(f.fileno())
        except OSError as e:  # a full disk: the lock holds; who holds it is not recorded
            if e.errno not in UNWRITABLE:
                fcntl.flock(f, fcntl.LOCK_UN)
                f.close()
                raise
        self._held = f
        return info

    def unlock(self, lock: LockInfo) -> None:
        if self._held is None:
            return
        with contextlib.suppress(OSError):
            self._held.seek(0)
            self._held.truncate()
        fcntl.flock(self._held, fcntl.LOCK_UN)
        self._held.close()
        self._held = None

    def current_lock(self) -> LockInfo | None:
        for _ in range(10):  # the holder writes its details right after taking the lock
            try:
                raw = self._lock_path.read_text()
            except FileNotFoundError:
                return None
            if raw.strip():
                try:
                    return LockInfo(**json.loads(raw))
                except (ValueError, TypeError):
                    return None
            time.sleep(0.05)
        return None

    def force_unlock(self, lock_id: str) -> str:
        holder = self.current_lock()
        if holder is None or holder.id != lock_id:
            current = f"the current lock is {holder.id}" if holder else "no lock is recorded"
            raise SubstratusError(f"no lock with ID {lock_id} at {self.location}: {current}")
        with open(self._lock_path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SubstratusError(
                    f"lock {lock_id} is held by a live process: {holder.describe()}",
                    hint="a local state lock is released when its process exits; stop that "
                         "process instead of unlocking under it",
                ) from None
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
        return f"Lock {lock_id} was left by a process that is gone; its record is cleared."
