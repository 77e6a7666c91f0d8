"""The dependency graph: deterministic order, the reversed graph for destroy, closure for --target,
and cycles reported with a readable path and where they are in the files."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from substratus_cli.address import Address
from substratus_cli.diagnostics import Subject
from substratus_cli.graph import Graph, find_cycles
from substratus_cli.resource import Resource


def a(name: str, kind: str = "Model") -> Address:
    return Address(kind, "default", name)


# server -> model -> {base, data}; base -> data; tool is alone.
DEPS = {a("server", "ModelServer"): [a("model")], a("model"): [a("base"), a("data", "Dataset")],
        a("base"): [a("data", "Dataset")], a("tool"): []}


def names(addresses: list[Address] | set[Address]) -> list[str]:
    return [x.name for x in addresses]


def test_order_puts_dependencies_first_and_breaks_ties_by_address() -> None:
    assert names(Graph(DEPS).order()) == ["data", "tool", "base", "model", "server"]


def test_a_dependency_named_only_as_a_target_becomes_a_node() -> None:
    g = Graph({a("x"): [a("y")]})
    assert set(g.deps) == {a("x"), a("y")} and g.deps[a("y")] == frozenset()
    assert names(g.order()) == ["y", "x"]


def test_reversed_graph_orders_dependents_first_for_destroy() -> None:
    r = Graph(DEPS).reversed()
    assert r.deps[a("data", "Dataset")] == {a("base"), a("model")}
    assert r.deps[a("server", "ModelServer")] == frozenset()
    assert names(r.order()) == ["tool", "server", "model", "base", "data"]


def test_closure_is_the_roots_and_everything_they_depend_on() -> None:
    g = Graph(DEPS)
    assert g.closure([a("model")]) == {a("model"), a("base"), a("data", "Dataset")}
    assert g.closure([a("tool")]) == {a("tool")}
    assert g.closure([]) == set()
    assert g.reversed().closure([a("base")]) == {a("base"), a("model"), a("server", "ModelServer")}


def test_dependents_inverts_the_edges() -> None:
    assert Graph(DEPS).dependents()[a("model")] == {a("server", "ModelServer")}


def test_from_resources_ignores_references_to_undeclared_resources() -> None:
    rs = [Resource(a("m"), {}, refs=(a("gone"), a("d", "Dataset"))), Resource(a("d", "Dataset"), {})]
    assert Graph.from_resources(rs).deps == {a("m"): {a("d", "Dataset")}, a("d", "Dataset"): frozenset()}


def model(name: str, base: str, line: int) -> Resource:
    """A Model in models.yaml whose spec.training.baseModel.name (two lines down) is `base`."""
    return Resource(a(name), {"training": {"baseModel": {"name": base}}}, file="models.yaml", line=line,
                    field_lines={"metadata.name": line + 2, "spec.training.baseModel.name": line + 6},
                    refs=(a(base),))


def test_no_cycle_no_diagnostic() -> None:
    assert len(find_cycles([model("a", "b", 1), Resource(a("b"), {})])) == 0


def test_two_cycle_names_its_path_in_the_direction_of_the_references() -> None:
    (d,) = find_cycles([model("a", "b", 1), model("b", "a", 10)])
    assert d.summary == "dependency cycle: Model/default/a -> Model/default/b -> Model/default/a"
    assert d.detail == "each resource in the cycle waits for the next; remove one of the references"
    assert d.subject == Subject("models.yaml", 7, "spec.training.baseModel.name")


def test_three_cycle_each_resource_points_to_what_it_depends_on() -> None:
    # a uses b, b uses c, c uses a: read forwards, never "a -> c -> b".
    (d,) = find_cycles([model("a", "b", 1), model("b", "c", 10), model("c", "a", 20)])
    path = d.summary.removeprefix("dependency cycle: ").split(" -> ")
    assert path[0] == path[-1] and len(path) == 4
    refs = {f"Model/default/{n}": f"Model/default/{m}" for n, m in (("a", "b"), ("b", "c"), ("c", "a"))}
    assert all(refs[x] == y for x, y in zip(path, path[1:], strict=False))
    assert d.summary == ("dependency cycle: Model/default/a -> Model/default/b -> Model/default/c "
                         "-> Model/default/a")


def test_cycle_without_field_lines_points_at_the_document() -> None:
    bare = [Resource(a("a"), {}, file="m.yaml", line=3, refs=(a("b"),)),
            Resource(a("b"), {}, file="m.yaml", line=9, refs=(a("a"),))]
    (d,) = find_cycles(bare)
    assert d.subject == Subject("m.yaml", 3, None)


def test_self_reference_is_a_cycle() -> None:
    (d,) = find_cycles([model("a", "a", 1)])
    assert d.summary == "dependency cycle: Model/default/a -> Model/default/a"


def test_every_independent_cycle_is_reported() -> None:
    diags = find_cycles([model("a", "b", 1), model("b", "a", 10), model("x", "y", 20),
                         model("y", "x", 30), model("ok", "a", 40)])
    assert sorted(d.summary for d in diags) == [
        "dependency cycle: Model/default/a -> Model/default/b -> Model/default/a",
        "dependency cycle: Model/default/x -> Model/default/y -> Model/default/x"]


def test_cycle_points_at_the_file_and_line_of_the_reference() -> None:
    (d,) = find_cycles([model("a", "b", 1), model("b", "a", 10)])
    assert str(d) == (
        "models.yaml:7: spec.training.baseModel.name: dependency cycle: "
        "Model/default/a -> Model/default/b -> Model/default/a\n"
        "  each resource in the cycle waits for the next; remove one of the references")


# Transitive reduction (what `substratus graph` draws)


def test_reduction_drops_the_edge_a_longer_path_implies() -> None:
    reduced = Graph(DEPS).reduced()
    # model -> data is implied by model -> base -> data.
    assert reduced.deps == {a("server", "ModelServer"): {a("model")}, a("model"): {a("base")},
                            a("base"): {a("data", "Dataset")}, a("data", "Dataset"): frozenset(),
                            a("tool"): frozenset()}


def test_reduction_keeps_a_diamond() -> None:
    # server -> {x, y} -> data: no edge implies another.
    g = Graph({a("server"): [a("x"), a("y")], a("x"): [a("data")], a("y"): [a("data")]})
    assert g.reduced().deps == g.deps


def _reachable(deps: dict[Address, frozenset[Address]], start: Address,
               without: tuple[Address, Address] | None = None) -> set[Address]:
    """What `start` reaches in one or more steps, optionally without the edge `without`."""
    seen: set[Address] = set()
    stack = [start]
    while stack:
        node = stack.pop()
        for d in deps[node]:
            if (node, d) != without and d not in seen:
                seen.add(d)
                stack.append(d)
    return seen


@st.composite
def dags(draw: st.DrawFn) -> Graph:
    """A random DAG: edges only from a later node to an earlier one."""
    n = draw(st.integers(min_value=0, max_value=14))
    nodes = [a(f"n{i:02d}") for i in range(n)]
    return Graph({nodes[i]: draw(st.sets(st.sampled_from(nodes[:i]))) if i else set()
                  for i in range(n)})


@settings(max_examples=300, deadline=None)
@given(dags())
def test_reduction_keeps_reachability_and_no_edge_a_path_implies(graph: Graph) -> None:
    reduced = graph.reduced()
    assert reduced.deps.keys() == graph.deps.keys()
    for node in graph.deps:
        assert reduced.deps[node] <= graph.deps[node], "only edges are dropped"
        assert _reachable(reduced.deps, node) == _reachable(graph.deps, node)
        for d in reduced.deps[node]:
            assert d not in _reachable(reduced.deps, node, without=(node, d)), (
                f"{node} -> {d} is implied by a longer path")
