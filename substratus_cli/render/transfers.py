"""Byte meters drawn for a person: rich progress bars (bytes, throughput, time left) on a
terminal; plain lines without control codes when not (one every 10 s, unless apply's heartbeat
already says it). A meter that ends within a second draws nothing; a longer one leaves one line
saying what it did."""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from substratus_cli import failpoints

SHOW_AFTER_SECONDS = 1.0  # a quicker operation is not worth a bar
PLAIN_EVERY_SECONDS = 10.0
PAST = {"hashing": "hashed", "copying": "copied", "uploading": "uploaded",
        "downloading": "downloaded"}


def size(n: float) -> str:
    """1536 -> 1.5 KiB."""
    value, unit = float(n), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{int(n)} B" if unit == "B" else f"{value:.1f} {unit}"


class _Speed(ProgressColumn):
    """Throughput in the units the byte counts use (rich's own column is decimal)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{size(speed)}/s" if speed else "?", style="progress.data.speed")


class Transfers:
    """The meters of one command, on one console. Thread safe."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = console.is_terminal
        self._lock = threading.RLock()
        self._progress: Progress | None = None
        self._shown = 0  # tasks on the bars now

    def meter(self, label: str, operation: str, total: int, *,
              plain_lines: bool = True) -> Meter:
        """A meter named `label: operation`. plain_lines False: when not on a terminal, only
        its closing line is printed (apply's heartbeat prints its state every 10 s)."""
        return Meter(self, label, operation, total, plain_lines)

    def close(self) -> None:
        """Stop drawing (whatever is still running is no longer shown)."""
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
                self._shown = 0

    def _add(self, meter: Meter) -> TaskID:
        with self._lock:
            if self._progress is None:
                self._progress = Progress(
                    TextColumn("{task.description}"), BarColumn(),
                    DownloadColumn(binary_units=True), _Speed(),
                    TimeRemainingColumn(), console=self.console, transient=True)
                self._progress.start()
            self._shown += 1
            return self._progress.add_task(f"{meter.label}: {meter.operation}",
                                           total=meter.total, completed=meter.done)

    def _update(self, task: TaskID, done: int) -> None:
        with self._lock:
            if self._progress is not None and task in self._progress.task_ids:
                self._progress.update(task, completed=done)

    def _remove(self, task: TaskID) -> None:
        with self._lock:
            if self._progress is None:
                return
            self._progress.remove_task(task)
            self._shown -= 1
            if self._shown == 0:  # nothing to draw: give the terminal back
                self._progress.stop()
                self._progress = None


class Meter:
    """One operation's bytes (the store package's Meter)."""

    def __init__(self, transfers: Transfers, label: str, operation: str, total: int,
                 plain_lines: bool) -> None:
        self.transfers = transfers
        self.label = label
        self.operation = operation
        self.total = total
        self.plain_lines = plain_lines
        self.done = 0
        self.started = time.monotonic()
        self._last_line = self.started
        self._task: TaskID | None = None
        self._closed = False
        self._lock = threading.Lock()

    def advance(self, nbytes: int, /) -> None:
        # Tests slow an operation down with SUBSTRATUS_FAILPOINTS="progress.copying=sleep(0.01)".
        failpoints.hit(f"progress.{self.operation}")
        now = time.monotonic()
        with self._lock:
            if self._closed:
                return
            self.done += nbytes
            show = now - self.started >= SHOW_AFTER_SECONDS
            if self.transfers.bars and show and self._task is None:
                self._task = self.transfers._add(self)
            due = self.plain_lines and now - self._last_line >= PLAIN_EVERY_SECONDS
            if due:
                self._last_line = now
        if self._task is not None:
            self.transfers._update(self._task, self.done)
        elif due and not self.transfers.bars:
            self.transfers.console.print(Text(f"{self.label}: {self.state()}"))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            task, self._task = self._task, None
        if task is not None:
            self.transfers._remove(task)
        seconds = time.monotonic() - self.started
        if seconds >= SHOW_AFTER_SECONDS and self.done:
            # Short of the total: the operation failed (its error follows) or was interrupted.
            of = f" of {size(self.total)}" if self.done < self.total else ""
            self.transfers.console.print(Text(
                f"{self.label}: {PAST.get(self.operation, self.operation)} {size(self.done)}{of} "
                f"in {seconds:.1f}s ({size(self.done / seconds)}/s)"))

    @property
    def running(self) -> bool:
        return not self._closed

    def state(self) -> str:
        """`copying 512.0 MiB of 1.0 GiB (50%, 85.3 MiB/s)`."""
        seconds = max(time.monotonic() - self.started, 1e-6)
        percent = f"{100 * self.done // self.total}%, " if self.total else ""
        return (f"{self.operation} {size(self.done)} of {size(self.total)} "
                f"({percent}{size(self.done / seconds)}/s)")
