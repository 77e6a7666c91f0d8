"""The apply executor: a parallel walk of the plan's DAG with write-ahead marks and readiness gates.

No rollback: when a step fails, independent branches go on and its dependents are skipped. The
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
from collections.abc import Callable, Mapping
from typing import Any

from substratus_cli import dispatch, failpoints
from substratus_cli.action import Action
from substratus_cli.address import Address
from substratus_cli.diff import spec_hash
from substratus_cli.errors import ExitCode
from substratus_cli.plan import Change, Plan
from substratus_cli.planner import recorded_statuses
from substratus_cli.provider import ApplyRequest, LiveObject, Provider, Registry
from substratus_cli.secrets import scrub
from substratus_cli.state import StateSession

READY_TIMEOUT_SECONDS = 30 * 60


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
    def finished(self, result: StepResult) -> None: ...
    def interrupted(self, running: int) -> None: ...


class Executor:
    def __init__(self, plan: Plan, registry: Registry, session: StateSession, *,
                 parallelism: int = 10, reporter: Reporter | None = None,
                 ready_timeout: float = READY_TIMEOUT_SECONDS) -> None:
        self.plan = plan
        self.registry = registry
        self.session = session
        self.parallelism = max(1, parallelism)
        self.reporter = reporter or Reporter()
        self.ready_timeout = ready_timeout
        self._stop = threading.Event()
        self._signals = 0

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
                                     status=dict(live[a].status))
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
                if self._stop.is_set() and not reported:
                    self.reporter.interrupted(len(running))
                    reported = True
        for a, c in changes.items():
            results.setdefault(a, StepResult(a, c.action, StepState.NOT_STARTED))
        return Outcome(tuple(results[a] for a in changes), self._stop.is_set())

    def _step(self, change: Change) -> StepResult:
        started = time.monotonic()
        provider = self._provider(change)
        self.reporter.started(change)
        failpoints.hit("apply.before-journal")
        self.session.mark_pending(change.address, provider.name, change.action.value)
        failpoints.hit("apply.after-journal")
        try:
            response = dispatch.apply(provider, ApplyRequest(
                change.address, change.action, change.desired, change.live,
                change.planned_status, change.private, self._upstream(change), self._stop))
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
            message = self._await_ready(provider, live)
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

    def _await_ready(self, provider: Provider, live: LiveObject) -> str | None:
        deadline = time.monotonic() + self.ready_timeout
        delay = 0.1
        while True:
            readiness = dispatch.ready(provider, live)
            if readiness.ready:
                return None
            if readiness.failed:
                return f"not ready: {readiness.message}"
            if time.monotonic() + delay > deadline:
                return f"not ready after {self.ready_timeout:.0f}s: {readiness.message}"
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _record(self, change: Change, live: LiveObject) -> None:
        r = change.desired
        self.session.record(
            change.address, change.provider,
            spec_hash=spec_hash(r.spec, r.labels) if r else None,
            fingerprint=live.fingerprint,
            status={k: scrub(v) if isinstance(v, str) else v for k, v in live.status.items()},
            deps=r.refs if r else (),
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
