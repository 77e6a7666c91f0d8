"""Live progress: the executor's heartbeats and what a step tells them, the store's byte meters,
and the lines the CLI prints for both when the output is not a terminal."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from rich.console import Console

from substratus_artifacts.backend import FileBackend
from substratus_artifacts.progress import COPYING, HASHING
from substratus_artifacts.snapshots import snapshot_tree
from substratus_artifacts.statcache import StatCache
from substratus_artifacts.store import Store
from substratus_cli.action import Action
from substratus_cli.address import Address
from substratus_cli.apply import Executor, Reporter
from substratus_cli.plan import Change
from substratus_cli.planner import PlanOptions, build_plan
from substratus_cli.provider import QUIET, ApplyRequest, Readiness, Registry, StepProgress
from substratus_cli.render import progress as rendering
from substratus_cli.render.progress import ConsoleReporter, StepWatch, elapsed, one_line
from substratus_cli.render.transfers import Transfers
from substratus_cli.secrets import reveal
from substratus_cli.state import LocalStateBackend, StateSession
from substratus_providers.local.runs import latest_metric
from tests.support.builders import LINEAGE, addr, context, inventory, res, target
from tests.support.simple_provider import SimpleProvider

BEAT = 0.05


class Recorded:
    """What a test's meters saw."""

    def __init__(self) -> None:
        self.meters: list[list[object]] = []  # [operation, total, advanced, closed]
        self.statuses: list[str] = []

    def meter(self, operation: str, total: int) -> Recorded.Meter:
        self.meters.append([operation, total, 0, False])
        return Recorded.Meter(self.meters[-1])

    def status(self, text: str) -> None:
        self.statuses.append(text)

    class Meter:
        def __init__(self, row: list[object]) -> None:
            self.row = row
            self._lock = threading.Lock()

        def advance(self, nbytes: int, /) -> None:
            with self._lock:
                self.row[2] = int(self.row[2]) + nbytes  # type: ignore[call-overload]

        def close(self) -> None:
            self.row[3] = True


class Beats(Reporter):
    """Records heartbeats with the step's latest status; `enough` lets the step finish."""

    def __init__(self, enough: threading.Event, wanted: int) -> None:
        self.enough = enough
        self.wanted = wanted
        self.beats: list[tuple[str, float, list[str]]] = []
        self.watched: dict[Address, Recorded] = {}

    def progress(self, address: Address) -> StepProgress:
        return self.watched.setdefault(address, Recorded())

    def still_running(self, change: Change, elapsed_seconds: float) -> None:
        watched = self.watched.get(change.address, Recorded())
        self.beats.append((str(change.address), elapsed_seconds, list(watched.statuses)))
        if len(self.beats) >= self.wanted:
            self.enough.set()


def run(provider: SimpleProvider, tmp_path: Path, reporter: Reporter) -> None:
    backend = LocalStateBackend(tmp_path / "state")
    backend.write(inventory(serial=1), None)
    plan = build_plan(resources=[res("Dataset/d")], registry=Registry([provider]),
                      inventory=backend.read(), target=target(), options=PlanOptions())
    outcome = Executor(plan, Registry([provider]), StateSession(backend, backend.read()),
                       reporter=reporter, ready_timeout=30, heartbeat=BEAT).run()
    assert outcome.exit_code == 0, outcome


def test_a_running_step_gets_a_heartbeat_every_interval(tmp_path: Path) -> None:
    provider = SimpleProvider(context(LINEAGE))
    provider.delay = threading.Event()  # the apply runs until three heartbeats came
    reporter = Beats(provider.delay, wanted=3)
    run(provider, tmp_path, reporter)
    assert [a for a, _, _ in reporter.beats][:3] == ["Dataset/default/d"] * 3
    intervals = [round(e / BEAT) for _, e, _ in reporter.beats]
    assert intervals[0] >= 1 and intervals == sorted(set(intervals)), intervals


def test_the_step_is_handed_its_progress_and_a_readiness_message_becomes_its_status(
        tmp_path: Path) -> None:
    provider = SimpleProvider(context(LINEAGE))
    enough = threading.Event()
    reporter = Beats(enough, wanted=1)
    provider.readiness[addr("Dataset/d")] = lambda live: (
        Readiness(True) if enough.is_set() else Readiness(False, message="1 of 2 replicas ready"))
    run(provider, tmp_path, reporter)
    request: ApplyRequest = provider.apply_requests[0]
    assert request.progress is reporter.watched[addr("Dataset/d")]
    assert reporter.beats[0][2][-1:] == ["1 of 2 replicas ready"]


def test_a_request_made_without_one_has_the_quiet_progress() -> None:
    request = ApplyRequest(addr("Dataset/d"), Action.CREATE, None, None)
    assert request.progress is QUIET
    assert isinstance(QUIET, StepProgress)


# -- the store's meters ------------------------------------------------------------------------

def test_a_snapshot_meters_its_hashing_and_its_copy(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.bin").write_bytes(b"a" * 3_000_000)
    (tree / "sub" / "b.bin").write_bytes(b"b" * 1000)
    (tree / "sub" / "same.bin").write_bytes(b"a" * 3_000_000)  # one blob, copied once
    store = Store(FileBackend(tmp_path / "store"))
    seen = Recorded()
    snapshot_tree(tree, store, None, seen)
    assert seen.meters == [[HASHING, 6_001_000, 6_001_000, True],
                           [COPYING, 3_001_000, 3_001_000, True]]

    again = Recorded()
    snapshot_tree(tree, store, None, again)  # every blob is there: nothing is copied
    assert again.meters == [[HASHING, 6_001_000, 6_001_000, True]]


def test_files_the_stat_cache_vouches_for_are_not_metered(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * 5000)
    past = data.stat().st_mtime - 10
    import os

    os.utime(data, (past, past))
    cache = StatCache(tmp_path / "stat.json")
    store = Store(FileBackend(tmp_path / "store"))
    snapshot_tree(data, store, cache, Recorded())
    warm = Recorded()
    snapshot_tree(data, store, cache, warm)
    assert warm.meters == []  # nothing read, nothing copied


def test_a_workloads_copy_of_its_inputs_is_metered(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "w.bin").write_bytes(b"w" * 2048)
    store = Store(FileBackend(tmp_path / "store"))
    digest = snapshot_tree(tmp_path / "in", store).digest
    seen = Recorded()
    store.materialize(digest, tmp_path / "out", copies=StatCache(tmp_path / "s.json"),
                      progress=seen)
    assert seen.meters == [[COPYING, 2048, 2048, True]]
    linked = Recorded()
    store.materialize(digest, tmp_path / "linked", progress=linked)
    assert linked.meters == []  # hard links move no bytes


def test_a_verification_meters_every_blob_it_reads_back(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.bin").write_bytes(b"a" * 3000)
    (tmp_path / "in" / "b.bin").write_bytes(b"a" * 3000)  # the same blob
    (tmp_path / "in" / "c.bin").write_bytes(b"c" * 500)
    store = Store(FileBackend(tmp_path / "store"))
    digest = snapshot_tree(tmp_path / "in", store).digest
    seen = Recorded()
    assert store.verify(digest, seen) == ([], 3500)
    assert seen.meters == [[HASHING, 3500, 3500, True]]


# -- what the CLI prints when the output is not a terminal ------------------------------------

def plain() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


def test_heartbeat_line_is_terraforms_with_the_running_transfer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    console, buffer = plain()
    reporter = ConsoleReporter(console, console)
    change = Change(addr("Dataset/big"), "local", Action.CREATE, "not in live state")
    reporter.started(change)
    watch = reporter.progress(change.address)
    meter = watch.meter(COPYING, 4 << 20)
    meter.advance(1 << 20)
    reporter.still_running(change, 10.0)
    meter.close()
    watch.status("step=120 loss=0.41")
    reporter.still_running(change, 70.0)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "Dataset/default/big: Creating..."
    assert lines[1].startswith("Dataset/default/big: Still creating... [10s elapsed] copying "
                               "1.0 MiB of 4.0 MiB (25%, ")
    assert lines[2] == "Dataset/default/big: Still creating... [1m10s elapsed] step=120 loss=0.41"
    assert "\x1b" not in buffer.getvalue()


def test_plan_meters_print_a_plain_line_every_ten_seconds_and_one_when_done(
        monkeypatch: pytest.MonkeyPatch) -> None:
    console, buffer = plain()
    clock = [100.0]
    monkeypatch.setattr("substratus_cli.render.transfers.time.monotonic", lambda: clock[0])
    watch = StepWatch("Dataset/default/big", Transfers(console), heartbeat=False)
    meter = watch.meter(HASHING, 4 << 20)
    for _ in range(4):
        clock[0] += 4
        meter.advance(1 << 20)
    meter.close()
    assert buffer.getvalue().splitlines() == [
        "Dataset/default/big: hashing 3.0 MiB of 4.0 MiB (75%, 256.0 KiB/s)",
        "Dataset/default/big: hashed 4.0 MiB in 16.0s (256.0 KiB/s)"]


def test_a_transfer_that_stops_short_says_how_far_it_got(monkeypatch: pytest.MonkeyPatch) -> None:
    console, buffer = plain()
    clock = [0.0]
    monkeypatch.setattr("substratus_cli.render.transfers.time.monotonic", lambda: clock[0])
    meter = Transfers(console).meter("Dataset/default/big", COPYING, 4 << 20)
    clock[0] = 2.0
    meter.advance(1 << 20)
    meter.close()  # as metering() does when the copy raised
    assert buffer.getvalue() == "Dataset/default/big: copied 1.0 MiB of 4.0 MiB in 2.0s " \
                                "(512.0 KiB/s)\n"


def test_bars_are_drawn_on_a_terminal_and_removed_when_done(
        monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, color_system=None)
    clock = [0.0]
    monkeypatch.setattr("substratus_cli.render.transfers.time.monotonic", lambda: clock[0])
    transfers = Transfers(console)
    meter = transfers.meter("Dataset/default/big", COPYING, 4 << 20)
    clock[0] = 2.0
    meter.advance(2 << 20)
    assert transfers._progress is not None  # drawing
    transfers._progress.refresh()
    drawn = buffer.getvalue()
    assert "Dataset/default/big: copying" in drawn and "2.0/4.0 MiB" in drawn
    meter.advance(2 << 20)
    meter.close()
    assert transfers._progress is None  # the terminal is given back
    assert buffer.getvalue().endswith("Dataset/default/big: copied 4.0 MiB in 2.0s (2.0 MiB/s)\n")


def test_a_quick_transfer_prints_nothing() -> None:
    console, buffer = plain()
    meter = Transfers(console).meter("Dataset/default/d", COPYING, 100)
    meter.advance(100)
    meter.close()
    assert buffer.getvalue() == ""


def test_elapsed_reads_as_terraforms() -> None:
    assert [elapsed(s) for s in (10, 60, 70, 3725)] == ["10s", "1m0s", "1m10s", "1h2m5s"]


def test_a_status_is_one_printable_line_with_secrets_scrubbed() -> None:
    reveal("s3cr3t-value-for-progress")
    assert one_line("first\n\x1b[31mstep=3 token=s3cr3t-value-for-progress\x1b[0m\n") == \
        " [31mstep=3 token=(sensitive value) [0m"
    assert len(one_line("x" * 500)) == rendering.STATUS_WIDTH


def test_latest_metric_is_the_last_step_line_of_a_workloads_log() -> None:
    log = "loading\nstep=1 epoch=0 loss=2.5 lr=0.001\nsaving\nstep=2 epoch=0 loss=1.25\nwrote\n"
    assert latest_metric(log) == "step=2 epoch=0 loss=1.25"
    assert latest_metric("starting\n") is None
