"""The apply executor: a parallel walk of the plan's DAG with write-ahead marks and readiness gates.

Every step still running is reported every 10 s (Terraform's "Still creating... [10s elapsed]"),
with what the step last told its StepProgress. No rollback: when a step fails, independent branches go on and its dependents are skipped. The
first SIGINT/SIGTERM stops scheduling and lets running steps finish; a second aborts at once (the
write-ahead marks are already durable, so the next plan re-reads those objects and converges).
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import enum
import graphlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from substratus_cli import dispatch, failpoints
from substratus_cli.action import Action
from substratus_cli.address import Address
from substratus_cli.diff import spec_hash
from substratus_cli.errors import ExitCode
from substratus_cli.plan import Change, Plan
from substratus_cli.planner import recorded_statuses
from substratus_cli.provider import (
    QUIET,
    ApplyRequest,
    LiveObject,
    Provider,
    Registry,
    StepProgress,
    wait_until_ready,
)
from substratus_cli.secrets import scrub
from substratus_cli.state import StateSession

READY_TIMEOUT_SECONDS = 30 * 60
HEARTBEAT_SECONDS = 10.0  # Terraform's cadence


class StepState(enum.Enum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_STARTED = "not started"


@dataclasses.dataclass(frozen=True)
class StepResult:
    address: Address
    action: Action
    state: StepState
    message: str = ""
    seconds: float = 0.0
    status: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Outcome:
    results: tuple[StepResult, ...]
    interrupted: bool

    def count(self, state: StepState) -> list[StepResult]:
        return [r for r in self.results if r.state is state]

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        if self.count(StepState.FAILED) or self.count(StepState.SKIPPED):
            return ExitCode.PARTIAL_APPLY
        return ExitCode.OK


class Reporter:
    """Receives progress; the CLI prints it. Called from worker threads."""

    def started(self, change: Change) -> None: ...
    def progress(self, address: Address) -> StepProgress:
        """What the step (or the planning) of `address` tells as it goes (see StepProgress)."""
        return QUIET
    def still_running(self, change: Change, elapsed: float) -> None:
        """Every HEARTBEAT_SECONDS of a running step; `elapsed` is a multiple of it."""
    def finished(self, result: StepResult) -> None: ...
    def interrupted(self, running: int) -> None: ...
    def close(self) -> None:
        """The command is over (however it ended): stop drawing."""


class Executor:
    def __init__(self, plan: Plan, registry: Registry, session: StateSession, *,
                 parallelism: int = 10, reporter: Reporter | None = None,
                 ready_timeout: float = READY_TIMEOUT_SECONDS,
                 heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self.plan = plan
        self.registry = registry
        self.session = session
        self.parallelism = max(1, parallelism)
        self.reporter = reporter or Reporter()
        self.ready_timeout = ready_timeout
        self.heartbeat = heartbeat
        self._stop = threading.Event()
        self._signals = 0
        self._started: dict[Address, float] = {}  # when each running step began
        self._next_beat: dict[Address, float] = {}  # the elapsed time of its next heartbeat

    def run(self) -> Outcome:
        self.session.ensure_stored()
        self._refresh()
        with _handling_signals(self._on_signal):
            return self._walk()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1
        if self._signals > 1:
            os._exit(ExitCode.INTERRUPTED)  # marks written ahead are durable: safe to go now
        self._stop.set()

    def _refresh(self) -> None:
        """Bring inventory entries up to date where nothing live changes (after a crash, or
        the whole of a refresh-only plan)."""
        if not self.plan.refresh:
            return
        inventory = self.session.inventory
        live = dispatch.read_live(self.registry, self.plan.refresh, inventory.lineage,
                                  resources=self.plan.documents,
                                  recorded=recorded_statuses(inventory.entries))
        for a in self.plan.refresh:
            change = self.plan.change_for(a)
            if a in live and change is not None and change.desired is not None:
                self._record(change, live[a])
            elif a in live and self.plan.refresh_only:  # what was applied is kept
                self.session.refresh(a, fingerprint=live[a].fingerprint,
                                     status=dict(live[a].status),
                                     content=live[a].content or None)
            elif a not in live:
                self.session.forget(a)

    def _walk(self) -> Outcome:
        changes = {c.address: c for c in self.plan.actionable}
        sorter = graphlib.TopologicalSorter(
            {a: [d for d in c.depends_on if d in changes] for a, c in changes.items()})
        sorter.prepare()
        results: dict[Address, StepResult] = {}
        running: dict[futures.Future[StepResult], Address] = {}
        reported = False
        queue: list[Address] = []  # ready, waiting for a free worker (--parallelism)
        with futures.ThreadPoolExecutor(self.parallelism, "apply") as pool:
            while sorter.is_active() and not (self._stop.is_set() and not running):
                if not self._stop.is_set():
                    queue.extend(sorted(sorter.get_ready()))
                    while queue and len(running) < self.parallelism:
                        a = queue.pop(0)
                        blocked = [d for d in changes[a].depends_on
                                   if d in results and results[d].state is not StepState.DONE]
                        if blocked:
                            results[a] = StepResult(a, changes[a].action, StepState.SKIPPED,
                                                    f"{blocked[0]} did not complete")
                            self.reporter.finished(results[a])
                            sorter.done(a)
                        else:
                            running[pool.submit(self._step, changes[a])] = a
                if not running:
                    continue
                done, _ = futures.wait(running, timeout=0.2,
                                       return_when=futures.FIRST_COMPLETED)
                for f in done:
                    a = running.pop(f)
                    results[a] = f.result()
                    self.reporter.finished(results[a])
                    sorter.done(a)
                self._heartbeats(changes, running.values())
                if self._stop.is_set() and not reported:
                    self.reporter.interrupted(len(running))
                    reported = True
        for a, c in changes.items():
            results.setdefault(a, StepResult(a, c.action, StepState.NOT_STARTED))
        return Outcome(tuple(results[a] for a in changes), self._stop.is_set())

    def _heartbeats(self, changes: Mapping[Address, Change], running: Iterable[Address]) -> None:
        now = time.monotonic()
        for a in running:
            started = self._started.get(a)
            if started is None:  # submitted, not begun
                continue
            elapsed = now - started
            due = self._next_beat.get(a, self.heartbeat)
            if elapsed >= due:
                beat = elapsed // self.heartbeat * self.heartbeat
                self.reporter.still_running(changes[a], beat)
                self._next_beat[a] = beat + self.heartbeat

    def _step(self, change: Change) -> StepResult:
        started = time.monotonic()
        self._started[change.address] = started
        provider = self._provider(change)
        self.reporter.started(change)
        progress = self.reporter.progress(change.address)
        failpoints.hit("apply.before-journal")
        self.session.mark_pending(change.address, provider.name, change.action.value)
        failpoints.hit("apply.after-journal")
        try:
            response = dispatch.apply(provider, ApplyRequest(
                change.address, change.action, change.desired, change.live,
                change.planned_status, change.private, self._upstream(change), progress,
                self._stop))
        except Exception as e:  # a provider bug must not take the other branches down
            return self._failed(change, started, f"{type(e).__name__}: {e}")
        failpoints.hit("apply.after-provider")
        if response.errors:
            documents = {r.address: r for r in self.plan.documents}
            return self._failed(change, started, "; ".join(
                dispatch.message(d, documents) for d in response.errors))
        live = response.live
        if live is None:
            self.session.forget(change.address)
        else:
            self._record(change, live)
        failpoints.hit("apply.after-state")
        if live is not None:
            message = self._await_ready(provider, live, progress)
            if message is not None:
                return self._failed(change, started, message)
        status = dict(live.status) if live else {}
        return StepResult(change.address, change.action, StepState.DONE,
                          seconds=time.monotonic() - started, status=status)

    def _upstream(self, change: Change) -> dict[Address, Mapping[str, Any]]:
        """The recorded status of what the change depends on (applied before it in this run)."""
        refs = change.desired.refs if change.desired is not None else ()
        entries = self.session.inventory.entries
        return {a: dict(entries[a].status) for a in refs if a in entries}

    def _await_ready(self, provider: Provider, live: LiveObject,
                     progress: StepProgress) -> str | None:
        # A rollout's state, while it is not ready yet, is shown by the heartbeat.
        return wait_until_ready(lambda: dispatch.ready(provider, live), self.ready_timeout,
                                waiting=progress.status, stop=self._stop)

    def _record(self, change: Change, live: LiveObject) -> None:
        r = change.desired
        self.session.record(
            change.address, change.provider,
            spec_hash=spec_hash(r.spec, r.labels) if r else None,
            fingerprint=live.fingerprint,
            status={k: scrub(v) if isinstance(v, str) else v for k, v in live.status.items()},
            deps=r.refs if r else (), content=live.content or None,
        )

    def _failed(self, change: Change, started: float, message: str) -> StepResult:
        return StepResult(change.address, change.action, StepState.FAILED, scrub(message),
                          time.monotonic() - started)

    def _provider(self, change: Change) -> Provider:
        return self.registry[change.address.kind]


class _handling_signals:  # noqa: N801 - used as a context manager
    def __init__(self, handler: Callable[[int, Any], None]) -> None:
        self.handler = handler
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.previous[s] = signal.signal(s, self.handler)

    def __exit__(self, *exc: object) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)
