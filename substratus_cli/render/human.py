"""The human plan: Terraform's words and symbols, colored by rich, plain when not a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from substratus_cli.action import Action, FieldChange
from substratus_cli.plan import Change, Drift, Plan
from substratus_cli.planner import FORGOTTEN
from substratus_cli.render.values import leaves, show

STYLE = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.REPLACE: "magenta",
         Action.DELETE: "red", Action.NOOP: ""}
VERB = {Action.CREATE: "will be created", Action.UPDATE: "will be updated in-place",
        Action.REPLACE: "must be replaced", Action.DELETE: "will be destroyed"}
NO_CHANGES = "No changes. Live state matches the resource files."
NO_REFRESH = "No changes. The state matches the live objects."


def render_plan(plan: Plan, console: Console, *, verbose: bool = False) -> None:
    """The plan as Terraform prints one; `verbose`: with each change's details (see Change)."""
    where = "the local runtime" if plan.target.runtime == "local" else plan.target.runtime
    console.print(Text(f"Substratus read the resource files in {plan.target.workdir} and the "
                       f"live state of {where}."))
    if plan.refresh_only:
        _render_refresh_only(plan, console)
        return
    if plan.drift:
        _render_drift(plan.drift, console)
    if not plan.has_changes:
        console.print()
        console.print(Text(NO_CHANGES, style="bold green"))
        return
    console.print()
    console.print("Resource actions are indicated with the following symbols:")
    for action in (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE):
        if any(c.action is action for c in plan.changes):
            label = {Action.CREATE: "create", Action.UPDATE: "update in-place",
                     Action.REPLACE: "destroy and then create replacement",
                     Action.DELETE: "destroy"}[action]
            console.print(Text(f"{action.symbol:>3} ", style=STYLE[action]) + Text(label))
    console.print()
    console.print("Substratus will perform the following actions:")
    for change in plan.actionable:
        console.print()
        _render_change(change, console, verbose)
    console.print()
    console.print(Text(summary_line(plan), style="bold"))
    if plan.cost is not None:
        console.print(Text(plan.cost.line(), style="bold"))


def summary_line(plan: Plan) -> str:
    s = plan.summary
    return f"Plan: {s.add} to add, {s.change} to change, {s.destroy} to destroy."


def _render_change(change: Change, console: Console, verbose: bool) -> None:
    style = STYLE[change.action]
    reason = f" ({change.reason})" if change.reason else ""
    console.print(Text(f"  # {change.address} {VERB[change.action]}{reason}", style="bold"))
    console.print(Text(f"{change.action.symbol:>3} ", style=style) + Text(str(change.address)))
    if change.desired is not None and change.desired.stack:
        console.print(Text(f'      # in stack "{change.desired.stack}", from {change.desired.file}:'
                           f"{change.desired.line}", style="dim"))
    for line in _field_lines(change):
        console.print(line)
    for note in (*change.notes, *(change.cost.lines if change.cost else ()),
                 *(change.details if verbose else ())):
        console.print(Text(f"      # {note}", style="dim"))


def _field_lines(change: Change) -> list[Text]:
    if change.action is Action.CREATE and change.desired is not None:
        pairs = leaves(dict(change.desired.spec), "spec")
        pairs += leaves(dict(change.desired.labels), "metadata.labels") if change.desired.labels else []
        pairs += leaves(dict(change.planned_status), "status") if change.planned_status else []
        return _aligned([(f"+ {p}", f"= {show(v)}", "green") for p, v in pairs])
    if change.action is Action.DELETE:
        return []
    return [_field_change_line(f) for f in change.field_changes]


def _field_change_line(f: FieldChange) -> Text:
    if f.before is None:
        symbol, body, style = "+", f"{f.path} = {show(f.after)}", "green"
    elif f.after is None:
        symbol, body, style = "-", f"{f.path} = {show(f.before)}", "red"
    else:
        symbol, body, style = "~", f"{f.path}: {show(f.before)} -> {show(f.after)}", "yellow"
    line = Text("      ") + Text(symbol, style=style) + Text(f" {body}")
    if f.forces_replacement:
        line += Text(" # forces replacement", style="red")
    return line


def _aligned(rows: list[tuple[str, str, str]]) -> list[Text]:
    width = max((len(r[0]) for r in rows), default=0)
    return [Text("      ") + Text(left[:1], style=style) + Text(f"{left[1:]:<{width - 1}} {right}")
            for left, right, style in rows]


def _render_refresh_only(plan: Plan, console: Console) -> None:
    """Terraform's -refresh-only: what changed outside, recorded in the state, nothing undone."""
    if not plan.refresh:
        console.print()
        console.print(Text(NO_REFRESH, style="bold green"))
        console.print("Substratus checked that the live objects are still as its most recent "
                      "apply left them, and found no differences.")
        return
    _render_drift(plan.drift, console, refresh_only=True)
    console.print()
    forget = sum(d.reason.endswith(FORGOTTEN) for d in plan.drift)
    console.print(Text(f"Refresh: {len(plan.refresh) - forget} to update in the state, {forget} "
                       "to forget.", style="bold"))


def _render_drift(drift: tuple[Drift, ...], console: Console, *,
                  refresh_only: bool = False) -> None:
    console.print()
    console.print(Text("Objects changed outside substratus", style="bold yellow"))
    if refresh_only:
        console.print("Substratus noticed that these objects changed since its last apply. This "
                      "is a refresh-only plan: substratus will not change any object to undo "
                      "this; applying it records the objects as they are in the state.")
    else:  # drift is only what the plan changes back (planner._drift)
        console.print("Substratus noticed that these objects changed since its last apply; the "
                      "plan below puts them back to the resource files.")
    for d in drift:
        console.print()
        console.print(Text(f"  # {d.address} {d.reason}", style="bold"))
        for f in d.live_changes():
            console.print(_field_change_line(f))
