"""A saved plan file someone edited or damaged: `show` and `show --json` answer with a usage
error or a rendering, never an internal error (a field's type changed used to crash them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from substratus_cli.errors import ExitCode

REPLACEMENTS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False), st.text(max_size=8), st.just("\x1b[31mred"),
    st.just("Dataset/default/x"), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


def test_a_damaged_plan_file_is_never_an_internal_error(cli, quickstart_datasets, tmp_path):
    saved = tmp_path / "plan.json"
    assert cli("plan", quickstart_datasets, "--out", saved).code == 0
    base = json.loads(saved.read_text())
    places = paths(base)
    assert any(p[:1] == ("documents",) for p in places) and any(p[:1] == ("changes",)
                                                                   for p in places)

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(places), REPLACEMENTS, st.booleans())
    def damaged(place: tuple[Any, ...], value: Any, delete: bool) -> None:
        doc = json.loads(json.dumps(base))
        node = doc
        for key in place[:-1]:
            node = node[key]
        if delete and isinstance(node, dict):
            del node[place[-1]]
        else:
            node[place[-1]] = value
        mutated = tmp_path / "damaged.json"
        mutated.write_text(json.dumps(doc))
        for args in (("show", mutated), ("show", "--json", mutated)):
            result = cli(*args)
            assert "Internal error" not in result.err and "Traceback" not in result.err, \
                (place, value, result.err)
            assert result.code in (ExitCode.OK, ExitCode.INVALID_INPUT), (place, value, result)

    damaged()


def test_every_shallow_field_of_a_plan_file_with_a_wrong_type(cli, quickstart_datasets, tmp_path):
    """Each field up to four levels deep (a document's spec, a change's live labels) given a
    value of another type: the places random sampling rarely hits."""
    saved = tmp_path / "plan.json"
    assert cli("plan", quickstart_datasets, "--out", saved).code == 0
    base = json.loads(saved.read_text())
    shallow = [p for p in paths(base) if len(p) <= 4]
    assert ("documents", 0, "spec") in shallow
    failures = []
    for place in shallow:
        for value in (None, True, [1], "x"):
            doc = json.loads(json.dumps(base))
            node = doc
            for key in place[:-1]:
                node = node[key]
            node[place[-1]] = value
            mutated = tmp_path / "damaged.json"
            mutated.write_text(json.dumps(doc))
            result = cli("show", mutated)
            if result.code not in (ExitCode.OK, ExitCode.INVALID_INPUT) \
                    or "Internal error" in result.err:
                failures.append((place, value, result.err.splitlines()[:1]))
    assert not failures, failures


def test_a_plan_file_that_is_not_json_names_the_file(cli, tmp_path: Path):
    bogus = tmp_path / "plan.json"
    bogus.write_text("{not json")
    result = cli("show", bogus)
    assert result.code == ExitCode.INVALID_INPUT
    assert f"{bogus} is not a saved substratus plan" in result.err
