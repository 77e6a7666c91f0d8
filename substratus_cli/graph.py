"""The dependency graph: references between resources, cycles reported with their path, order,
and the transitive reduction that is drawn."""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping, Sequence

from substratus_cli.address import Address
from substratus_cli.diagnostics import Diagnostic, Diagnostics, Subject
from substratus_cli.resource import Resource


class Graph:
    """Edges point from a resource to what it depends on (a server -> its model)."""

    def __init__(self, deps: Mapping[Address, Iterable[Address]]) -> None:
        self.deps: dict[Address, frozenset[Address]] = {a: frozenset(d) for a, d in deps.items()}
        for dependencies in list(self.deps.values()):
            for d in dependencies:
                self.deps.setdefault(d, frozenset())

    @classmethod
    def from_resources(cls, resources: Sequence[Resource]) -> Graph:
        known = {r.address for r in resources}
        return cls({r.address: [d for d in r.refs if d in known] for r in resources})

    def dependents(self) -> dict[Address, set[Address]]:
        out: dict[Address, set[Address]] = {a: set() for a in self.deps}
        for a, ds in self.deps.items():
            for d in ds:
                out[d].add(a)
        return out

    def reversed(self) -> Graph:
        """The graph for destroy: a thing goes only after everything that depends on it."""
        return Graph({a: ds for a, ds in self.dependents().items()})

    def closure(self, roots: Iterable[Address]) -> set[Address]:
        """`roots` and everything they depend on, transitively (what --target includes)."""
        seen: set[Address] = set()
        stack = list(roots)
        while stack:
            a = stack.pop()
            if a not in seen:
                seen.add(a)
                stack.extend(self.deps.get(a, ()))
        return seen

    def reduced(self) -> Graph:
        """The transitive reduction: the same reachability with no edge a longer path implies (a
        server -> its model -> the base model, without server -> base model). What is drawn, as
        `terraform graph` draws. Needs an acyclic graph (the loader refuses cycles)."""
        below: dict[Address, frozenset[Address]] = {}  # everything reachable, not itself
        for a in self.order():
            below[a] = frozenset().union(*(below[d] | {d} for d in self.deps[a]))
        return Graph({a: [d for d in ds if not any(d in below[o] for o in ds if o != d)]
                      for a, ds in self.deps.items()})

    def order(self) -> list[Address]:
        """A deterministic topological order: dependencies first, ties by address."""
        sorter = graphlib.TopologicalSorter(self.deps)
        sorter.prepare()
        out: list[Address] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            out.extend(ready)
            sorter.done(*ready)
        return out


def find_cycles(resources: Sequence[Resource]) -> Diagnostics:
    """One diagnostic per cycle, naming its path and where it starts in the files."""
    diags = Diagnostics()
    graph = Graph.from_resources(resources)
    by_address = {r.address: r for r in resources}
    remaining = dict(graph.deps)
    while True:
        try:
            graphlib.TopologicalSorter(remaining).prepare()
            return diags
        except graphlib.CycleError as e:
            cycle: list[Address] = list(reversed(e.args[1]))
            path = " -> ".join(str(a) for a in cycle)
            first = by_address.get(cycle[0])
            field = _ref_field(first, cycle[1]) if first else None
            diags.add(Diagnostic(
                "dependency cycle: " + path,
                "each resource in the cycle waits for the next; remove one of the references",
                Subject(first.file if first else None,
                        (first.line_of(field) if field else first.line) if first else None, field),
            ))
            for a in set(cycle):  # drop the cycle and look for others
                remaining.pop(a, None)
            remaining = {a: ds & remaining.keys() for a, ds in remaining.items()}


def _ref_field(resource: Resource, target: Address) -> str | None:
    for field in resource.field_lines:
        if field.endswith(".name") and target.kind.lower() in field.lower():
            return field
    return None
