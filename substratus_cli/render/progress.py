"""Apply progress and outcome lines, in Terraform's words: a line when a step starts and ends,
and every 10 s for each step still running, with what the step last told (a transfer's bytes,
a training metric, a rollout's replicas)."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.text import Text

from substratus_cli.action import Action
from substratus_cli.address import Address
from substratus_cli.apply import Outcome, Reporter, StepResult, StepState
from substratus_cli.plan import Change
from substratus_cli.provider import StepProgress
from substratus_cli.render.transfers import Meter, Transfers
from substratus_cli.secrets import scrub

ING = {Action.CREATE: "Creating...", Action.UPDATE: "Modifying...",
       Action.REPLACE: "Replacing...", Action.DELETE: "Destroying..."}
DONE = {Action.CREATE: "Creation complete", Action.UPDATE: "Modifications complete",
        Action.REPLACE: "Replacement complete", Action.DELETE: "Destruction complete"}
STILL = {Action.CREATE: "Still creating...", Action.UPDATE: "Still modifying...",
         Action.REPLACE: "Still replacing...", Action.DELETE: "Still destroying..."}
STATUS_WIDTH = 160  # a status line longer than this is cut


def elapsed(seconds: float) -> str:
    """Terraform's way: 10s, 1m0s, 1h2m3s."""
    s = int(seconds)
    h, m, s = s // 3600, s % 3600 // 60, s % 60
    return f"{h}h{m}m{s}s" if h else f"{m}m{s}s" if m else f"{s}s"


def one_line(text: str) -> str:
    """A status as one printable line, secrets scrubbed: what a workload wrote is not trusted to
    hold no control codes (a colourised log) or to fit."""
    text = scrub(text.strip().splitlines()[-1] if text.strip() else "")
    text = "".join(c if c.isprintable() else " " for c in text)
    return text if len(text) <= STATUS_WIDTH else text[:STATUS_WIDTH - 3] + "..."


class StepWatch(StepProgress):
    """What one address's planning or apply step tells: its meters and its latest status."""

    def __init__(self, label: str, transfers: Transfers, *, heartbeat: bool) -> None:
        self.label = label
        self.transfers = transfers
        self.heartbeat = heartbeat  # apply's heartbeat shows its state: no lines of its own
        self.latest = ""
        self._meters: list[Meter] = []
        self._lock = threading.Lock()

    def status(self, text: str) -> None:
        self.latest = one_line(text)

    def meter(self, operation: str, total: int) -> Meter:
        meter = self.transfers.meter(self.label, operation, total,
                                     plain_lines=not self.heartbeat)
        with self._lock:
            self._meters = [m for m in self._meters if m.running] + [meter]
        return meter

    def state(self) -> str:
        """The running transfer, else the latest status."""
        with self._lock:
            running = [m for m in self._meters if m.running]
        return running[-1].state() if running else self.latest


class ConsoleReporter(Reporter):
    def __init__(self, console: Console, err: Console) -> None:
        self.console = console
        self.err = err
        self.transfers = Transfers(console)
        self._mutex = threading.Lock()
        self._steps: dict[Address, StepWatch] = {}

    def started(self, change: Change) -> None:
        with self._mutex:
            self._steps[change.address] = StepWatch(str(change.address), self.transfers,
                                                    heartbeat=True)
            self.console.print(Text(f"{change.address}: {ING[change.action]}"))

    def progress(self, address: Address) -> StepProgress:
        """A started step's watch; before apply (the plan), one of its own."""
        with self._mutex:
            return self._steps.get(address) or StepWatch(str(address), self.transfers,
                                                         heartbeat=False)

    def still_running(self, change: Change, elapsed_seconds: float) -> None:
        with self._mutex:
            watch = self._steps.get(change.address)
            state = watch.state() if watch else ""
            line = f"{change.address}: {STILL[change.action]} [{elapsed(elapsed_seconds)} elapsed]"
            self.console.print(Text(f"{line} {state}" if state else line))

    def close(self) -> None:
        self.transfers.close()

    def finished(self, result: StepResult) -> None:
        with self._mutex:
            self._steps.pop(result.address, None)
            if result.state is StepState.DONE:
                shown = [f"{k}={result.status[k]}" for k in ("digest", "endpoint")
                         if result.status.get(k)]
                extra = f" [{', '.join(shown)}]" if shown else ""
                self.console.print(Text(
                    f"{result.address}: {DONE[result.action]} after {result.seconds:.1f}s{extra}"))
            elif result.state is StepState.FAILED:
                self.err.print(Text(f"Error: {result.address}: {result.message}", style="red"))
            elif result.state is StepState.SKIPPED:
                self.console.print(Text(f"{result.address}: Skipped ({result.message})",
                                        style="yellow"))

    def interrupted(self, running: int) -> None:
        with self._mutex:
            self.err.print(Text(
                f"Interrupt received: no new steps will start; waiting for {running} running "
                "step(s) to finish. Press Ctrl-C again to abort now.", style="yellow"))


def render_outcome(outcome: Outcome, console: Console, *, destroy: bool) -> None:
    done = outcome.count(StepState.DONE)
    added = sum(r.action in (Action.CREATE, Action.REPLACE) for r in done)
    changed = sum(r.action is Action.UPDATE for r in done)
    destroyed = sum(r.action in (Action.DELETE, Action.REPLACE) for r in done)
    counts = f"Resources: {added} added, {changed} changed, {destroyed} destroyed."
    if destroy:
        counts = f"Resources: {destroyed} destroyed."
    console.print()
    if outcome.interrupted:
        left = len(outcome.count(StepState.NOT_STARTED))
        console.print(Text(f"Apply interrupted; {left} step(s) not started. {counts}", style="yellow"))
        console.print("Run `substratus plan` to see what remains; the next apply picks it up.")
        return
    failed, skipped = outcome.count(StepState.FAILED), outcome.count(StepState.SKIPPED)
    if failed or skipped:
        console.print(Text(f"Apply partially done: {len(failed)} failed, {len(skipped)} skipped. "
                           f"{counts}", style="bold red"))
        for r in failed:
            console.print(Text(f"  failed:  {r.address}: {r.message}"))
        for r in skipped:
            console.print(Text(f"  skipped: {r.address}: {r.message}"))
        return
    verb = "Destroy" if destroy else "Apply"
    console.print(Text(f"{verb} complete! {counts}", style="bold green"))


class PlanProgress:
    """What a command that is no apply tells as it goes (`plan`: a path source's files hashed;
    `verify`: the snapshots read back), its meters on a console of their own (stderr, so that
    what the command prints on stdout stays as it is)."""

    def __init__(self, console: Console) -> None:
        self.transfers = Transfers(console)

    def __call__(self, address: Address) -> StepProgress:
        return StepWatch(str(address), self.transfers, heartbeat=False)

    def close(self) -> None:
        self.transfers.close()
