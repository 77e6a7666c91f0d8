"""Apply progress and outcome lines, in Terraform's words."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.text import Text

from substratus_cli.action import Action
from substratus_cli.apply import Outcome, Reporter, StepResult, StepState
from substratus_cli.plan import Change

ING = {Action.CREATE: "Creating...", Action.UPDATE: "Modifying...",
       Action.REPLACE: "Replacing...", Action.DELETE: "Destroying..."}
DONE = {Action.CREATE: "Creation complete", Action.UPDATE: "Modifications complete",
        Action.REPLACE: "Replacement complete", Action.DELETE: "Destruction complete"}


class ConsoleReporter(Reporter):
    def __init__(self, console: Console, err: Console) -> None:
        self.console = console
        self.err = err
        self._mutex = threading.Lock()

    def started(self, change: Change) -> None:
        with self._mutex:
            self.console.print(Text(f"{change.address}: {ING[change.action]}"))

    def finished(self, result: StepResult) -> None:
        with self._mutex:
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
