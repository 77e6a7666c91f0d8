"""State backends: the shared conformance suite, and the local backend's kernel-held lock."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus_cli.errors import SubstratusError
from substratus_cli.state import LocalStateBackend, LockHeldError
from tests.support.state_conformance import check_backend_conformance

HOLD = """
import sys, time
from pathlib import Path
from substratus_cli.state import LocalStateBackend
backend = LocalStateBackend(Path(sys.argv[1]))  # kept: the lock lives as long as it does
info = backend.lock("apply", 0)
print(info.id, flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_local_backend_passes_the_conformance_suite(tmp_path: Path) -> None:
    check_backend_conformance(lambda: LocalStateBackend(tmp_path / "state"))


def test_local_inventory_is_json_written_atomically(tmp_path: Path) -> None:
    from tests.support.state_conformance import sample_inventory

    backend = LocalStateBackend(tmp_path)
    backend.write(sample_inventory(1), None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".inventory.cas", "inventory.json"]
    (tmp_path / "inventory.json").write_text("{not json")
    with pytest.raises(SubstratusError, match="is damaged"):
        backend.read()


class Holder:
    """A subprocess that takes the lock on `directory` and keeps it for `seconds`."""

    def __init__(self, directory: Path, seconds: float) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory), str(seconds)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.lock_id = self.proc.stdout.readline().strip()
        assert self.lock_id, "the holder did not take the lock"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for h in started:
        h.stop()


@pytest.mark.slow
def test_lock_held_by_another_process_is_refused_naming_its_pid(
        tmp_path: Path, holders: list[Holder]) -> None:
    holder = Holder(tmp_path, 60)
    holders.append(holder)
    with pytest.raises(LockHeldError) as err:
        LocalStateBackend(tmp_path).lock("apply", 0)
    assert err.value.holder is not None
    assert (err.value.holder.pid, err.value.holder.id) == (holder.proc.pid, holder.lock_id)
    assert f"(pid {holder.proc.pid})" in err.value.message


@pytest.mark.slow
def test_lock_of_a_killed_process_is_free_at_once(tmp_path: Path, holders: list[Holder]) -> None:
    holder = Holder(tmp_path, 60)
    holders.append(holder)
    holder.stop()  # SIGKILL: no chance to clean up
    info = LocalStateBackend(tmp_path).lock("apply", 0)
    assert info.id != holder.lock_id


@pytest.mark.slow
def test_force_unlock_of_a_live_holder_is_refused(tmp_path: Path, holders: list[Holder]) -> None:
    holder = Holder(tmp_path, 60)
    holders.append(holder)
    backend = LocalStateBackend(tmp_path)
    with pytest.raises(SubstratusError) as err:
        backend.force_unlock(holder.lock_id)
    assert err.value.message.startswith(f"lock {holder.lock_id} is held by a live process: ")
    assert f"(pid {holder.proc.pid})" in err.value.message
    with pytest.raises(LockHeldError):
        backend.lock("apply", 0)


@pytest.mark.slow
def test_force_unlock_clears_the_record_a_dead_holder_left(
        tmp_path: Path, holders: list[Holder]) -> None:
    holder = Holder(tmp_path, 60)
    holders.append(holder)
    holder.stop()
    backend = LocalStateBackend(tmp_path)
    assert backend.current_lock() is not None
    assert backend.force_unlock(holder.lock_id) == (
        f"Lock {holder.lock_id} was left by a process that is gone; its record is cleared.")
    assert backend.current_lock() is None


@pytest.mark.slow
def test_lock_timeout_waits_for_the_holder_to_exit(tmp_path: Path, holders: list[Holder]) -> None:
    holder = Holder(tmp_path, 1)
    holders.append(holder)
    started = time.monotonic()
    info = LocalStateBackend(tmp_path).lock("apply", timeout=3)
    waited = time.monotonic() - started
    assert info.pid != holder.proc.pid
    assert 0.5 < waited < 3
