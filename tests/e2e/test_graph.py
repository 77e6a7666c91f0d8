"""`substratus graph`: the DOT of the files and of a real plan (nodes coloured by planned action,
edges transitively reduced), and pictures drawn by Graphviz's `dot` (Debian's graphviz, which
tests/setup.sh installs)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from substratus_cli.errors import ExitCode
from substratus_cli.render.dot import COLOURS

QUICKSTART_EDGES = [
    '"Model/default/colors" -> "Dataset/default/favorite-colors";',
    '"Model/default/colors" -> "Model/default/base";',
    '"ModelServer/default/colors" -> "Model/default/colors";',
    '"Notebook/default/explore" -> "Model/default/colors";',
]


def edges(dot: str) -> list[str]:
    return [line.strip() for line in dot.splitlines() if " -> " in line]


def test_graph_draws_no_edge_a_longer_path_implies(cli, quickstart):
    """The notebook references the model and the dataset; the model is trained on that dataset,
    so the notebook's own edge to it is implied and not drawn."""
    assert "dataset:\n    name: favorite-colors" in (quickstart / "notebook.yaml").read_text()
    graph = cli("graph", quickstart)
    assert graph.code == 0, graph.output
    assert edges(graph.out) == QUICKSTART_EDGES
    assert "fillcolor" not in graph.out, "no colours without a plan"


def dataset(name: str, path: str, labels: str = "{}") -> str:
    return (f"---\napiVersion: substratus.ai/v1\nkind: Dataset\n"
            f"metadata: {{name: {name}, labels: {labels}}}\nspec: {{source: {{path: {path}}}}}\n")


def test_graph_plan_colours_each_node_by_its_planned_action(cli, quickstart):
    datasets = quickstart / "datasets.yaml"
    datasets.write_text(dataset("favorite-colors", "data/favorite-colors.jsonl", "{team: a}")
                        + dataset("color-facts", "data/color-facts")
                        + dataset("extra", "data/color-facts")
                        + dataset("same", "data/favorite-colors.jsonl"))
    targets = [f"--target=Dataset/{n}" for n in ("favorite-colors", "color-facts", "extra", "same")]
    applied = cli("apply", "--auto-approve", quickstart, *targets)
    assert applied.code == 0, applied.output
    datasets.write_text(
        dataset("favorite-colors", "data/favorite-colors.jsonl", "{team: b}")  # update
        + dataset("color-facts", "data/color-facts/primary.txt")  # replace
        + dataset("same", "data/favorite-colors.jsonl"))  # no-op; extra is deleted

    graph = cli("graph", "--plan", quickstart)
    assert graph.code == 0, graph.output
    nodes = dict(re.findall(r'^  "([^"]+)" \[(.*)\];$', graph.out, re.MULTILINE))
    actions = {address: re.search(r'tooltip = "([^"]+)"', style).group(1)  # type: ignore[union-attr]
               for address, style in nodes.items()}
    assert actions == {
        "Dataset/default/favorite-colors": "update", "Dataset/default/color-facts": "replace",
        "Dataset/default/extra": "delete", "Dataset/default/same": "no-op",
        "Model/default/base": "create", "Model/default/colors": "create",
        "ModelServer/default/colors": "create", "Notebook/default/explore": "create"}
    assert nodes["Dataset/default/color-facts"] == (
        'label = "-/+ Dataset/default/color-facts", style = filled, fillcolor = "#ffe0c2", '
        'color = "#d9480f", tooltip = "replace"')
    for action, (fill, _) in COLOURS.items():
        assert all((f'fillcolor = "{fill}"' in style) == (actions[a] == action.value)
                   for a, style in nodes.items())
    assert edges(graph.out) == QUICKSTART_EDGES
    # The plan it drew is the plan `plan` prints.
    plan = cli("plan", quickstart)
    assert "Plan: 5 to add, 1 to change, 2 to destroy." in plan.out


def test_graph_plan_with_a_target_draws_what_it_plans(cli, quickstart):
    graph = cli("graph", "--plan", "--target", "Model/colors", quickstart)
    assert graph.code == 0, graph.output
    assert sorted(re.findall(r'^  "([^"]+)" \[', graph.out, re.MULTILINE)) == [
        "Dataset/default/favorite-colors", "Model/default/base", "Model/default/colors"]
    refused = cli("graph", "--target", "Model/colors", quickstart)
    assert refused.code == ExitCode.INVALID_INPUT
    assert refused.err == "Error: --target needs --plan\n  the graph of the files shows them all\n"


def test_graph_as_svg_and_png_drawn_by_graphviz(cli, quickstart, tmp_path: Path):
    if shutil.which("dot") is None:
        pytest.fail("Graphviz's dot is missing: apt-get install graphviz (tests/setup.sh does)")
    svg = cli("graph", "--plan", "--format", "svg", quickstart)
    assert svg.code == 0, svg.output
    assert svg.out.startswith("<?xml") and "</svg>" in svg.out
    assert "<title>Notebook/default/explore&#45;&gt;Model/default/colors</title>" in svg.out
    assert 'fill="#d9f2d9"' in svg.out  # created nodes are green
    png = tmp_path / "graph.png"
    written = cli("graph", "--format", "png", "--out", png, quickstart)
    assert written.code == 0, written.output
    assert written.out == ""
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_graph_image_without_graphviz_says_how_to_get_it(cli, quickstart, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no dot on it
    result = cli("graph", "--format", "svg", quickstart)
    assert result.code == ExitCode.ERROR
    assert result.err == (
        "Error: --format svg needs Graphviz's `dot` program, which is not installed (not found "
        "on PATH)\n  install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew "
        "install graphviz), or print DOT (the default) and render it elsewhere\n")
    assert result.out == ""
    assert cli("graph", quickstart).code == 0, "DOT needs no Graphviz"
