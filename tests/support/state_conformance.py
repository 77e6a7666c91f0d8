"""The contract every state backend passes (after Terraform's statemgr TestFull): local, GCS, …

`make_backend()` returns a new client of one store that starts empty; each call is another client
of that same store, the way two substratus processes would see it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from substratus_cli.address import Address
from substratus_cli.errors import ExitCode, SubstratusError
from substratus_cli.state import (
    ConflictError,
    Inventory,
    InventoryEntry,
    LockHeldError,
    Pending,
    StateBackend,
)


def check_backend_conformance(make_backend: Callable[[], StateBackend]) -> None:
    check_inventory_compare_and_swap(make_backend)
    check_lock_is_exclusive(make_backend)
    check_force_unlock_needs_the_lock_id(make_backend)
    check_backup_keeps_the_state_a_run_started_from(make_backend)


def sample_inventory(serial: int) -> Inventory:
    entry = InventoryEntry(Address.parse("Dataset/a"), "local", "sha256:" + "0" * 64, "uid/1",
                           {"digest": "sha256:" + "1" * 64}, Pending("create", 1.5, 42, "h"),
                           (Address.parse("Bucket/b"),))
    return Inventory("lineage-1", serial, {entry.address: entry})


def check_inventory_compare_and_swap(make_backend: Callable[[], StateBackend]) -> None:
    first, second = make_backend(), make_backend()
    assert first.read() is None
    one = sample_inventory(1)
    first.write(one, None)
    assert second.read() == one
    with pytest.raises(ConflictError):
        second.write(sample_inventory(2), None)  # "nothing stored" is stale now
    two = sample_inventory(2).without(Address.parse("Dataset/a"))
    second.write(two, 1)
    assert first.read() == two
    with pytest.raises(ConflictError):
        first.write(sample_inventory(3), 1)  # a stale serial
    assert second.read() == two  # the refused write changed nothing
    first.write(sample_inventory(3), 2)
    assert second.read() == sample_inventory(3)


def check_lock_is_exclusive(make_backend: Callable[[], StateBackend]) -> None:
    holder, other = make_backend(), make_backend()
    info = holder.lock("apply", 0)
    assert info.operation == "apply" and info.id
    assert other.current_lock() == info
    with pytest.raises(LockHeldError) as err:
        other.lock("destroy", 0)
    message = err.value.message
    for part in (f"ID {info.id}", "operation apply", f"{info.who}@{info.host}", f"(pid {info.pid})",
                 holder.location):
        assert part in message, f"{part!r} missing from {message!r}"
    assert err.value.exit_code == ExitCode.LOCKED
    assert err.value.holder == info
    holder.unlock(info)
    assert other.current_lock() is None
    again = other.lock("destroy", 0)
    assert again.id != info.id and again.operation == "destroy"
    other.unlock(again)


def check_force_unlock_needs_the_lock_id(make_backend: Callable[[], StateBackend]) -> None:
    holder, other = make_backend(), make_backend()
    info = holder.lock("apply", 0)
    with pytest.raises(SubstratusError) as err:
        other.force_unlock("not-" + info.id)
    assert f"no lock with ID not-{info.id}" in err.value.message
    assert info.id in err.value.message  # it says which lock is there
    with pytest.raises(LockHeldError):
        other.lock("apply", 0)  # still held
    holder.unlock(info)


def check_backup_keeps_the_state_a_run_started_from(make_backend: Callable[[], StateBackend]) -> None:
    """terraform.tfstate.backup: each run's first write keeps what was stored before it; the
    run's later writes (one per step) do not move it. (The store holds the earlier checks'
    state: this one starts from whatever serial it finds.)"""
    current = make_backend().read()
    n = current.serial if current is not None else 0
    run = make_backend()
    run.read()
    run.write(sample_inventory(n + 1), n if current is not None else None)
    run.write(sample_inventory(n + 2), n + 1)
    run.write(sample_inventory(n + 3), n + 2)
    assert make_backend().read_backup() == current  # None when nothing was stored before
    make_backend().write(sample_inventory(n + 4), n + 3)
    assert make_backend().read_backup() == sample_inventory(n + 3)
    assert make_backend().read() == sample_inventory(n + 4)
