"""The dependency graph as Graphviz DOT (`substratus graph`), its edges transitively reduced; with
a plan, each node coloured and marked by its planned action. Graphviz's `dot` turns it into SVG or
PNG when it is installed."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from typing import TYPE_CHECKING

from substratus_cli.action import Action
from substratus_cli.address import Address
from substratus_cli.errors import SubstratusError
from substratus_cli.graph import Graph

if TYPE_CHECKING:  # `substratus --help` imports FORMATS, and not the plan's modules
    from substratus_cli.plan import Plan

# Fill and border per action: Terraform's plan colours (green create, yellow update, red delete),
# orange for a replacement, grey for what stays as it is.
COLOURS: dict[Action, tuple[str, str]] = {
    Action.CREATE: ("#d9f2d9", "#2e7d32"),
    Action.UPDATE: ("#fff3c4", "#b58900"),
    Action.REPLACE: ("#ffe0c2", "#d9480f"),
    Action.DELETE: ("#f9d6d5", "#c62828"),
    Action.NOOP: ("#f2f2f2", "#9e9e9e"),
}
FORMATS = ("dot", "svg", "png")
HOW_TO_INSTALL = ("install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install "
                  "graphviz), or print DOT (the default) and render it elsewhere")


def graph_dot(graph: Graph, actions: Mapping[Address, Action] | None = None) -> str:
    """DOT of the reduced graph; edges point from a resource to what it depends on. With
    `actions` (from a plan), each node is filled with its action's colour and labelled with the
    plan's symbol (`+`, `~`, `-/+`, `-`)."""
    reduced = graph.reduced()
    lines = ["digraph substratus {", '  rankdir = "RL";', "  node [shape = box];"]
    for a in reduced.order():
        lines.append(f"  {_quote(str(a))}{_style(a, actions)};")
        lines.extend(f"  {_quote(str(a))} -> {_quote(str(d))};" for d in sorted(reduced.deps[a]))
    lines.append("}")
    return "\n".join(lines) + "\n"


def plan_graph(plan: Plan) -> tuple[Graph, dict[Address, Action]]:
    """Every change of the plan (deletions included) and the order the plan keeps between them."""
    graph = Graph({c.address: c.depends_on for c in plan.changes})
    return graph, {c.address: c.action for c in plan.changes}


def render_image(dot: str, image_format: str) -> bytes:
    """The graph drawn by Graphviz's `dot` as SVG or PNG."""
    program = shutil.which("dot")
    if program is None:
        raise SubstratusError(f"--format {image_format} needs Graphviz's `dot` program, which is "
                              "not installed (not found on PATH)", hint=HOW_TO_INSTALL)
    done = subprocess.run([program, f"-T{image_format}"], input=dot.encode(),
                          capture_output=True, check=False)
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip()
        raise SubstratusError(f"Graphviz's dot failed (exit {done.returncode}): {said}")
    return done.stdout


def _style(address: Address, actions: Mapping[Address, Action] | None) -> str:
    if actions is None or address not in actions:
        return ""
    action = actions[address]
    fill, border = COLOURS[action]
    label = f"{action.symbol} {address}" if action is not Action.NOOP else str(address)
    return (f" [label = {_quote(label)}, style = filled, fillcolor = {_quote(fill)}, "
            f"color = {_quote(border)}, tooltip = {_quote(action.value)}]")


def _quote(text: str) -> str:
    """A DOT quoted ID (addresses and colours: no newline to escape)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
