"""The human and JSON plans against golden files, secrets never shown, and saved plans round trip."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from substratus_cli import planfile
from substratus_cli.action import UNKNOWN, Action
from substratus_cli.plan import Plan
from substratus_cli.planner import PlanOptions, build_plan
from substratus_cli.provider import Registry
from substratus_cli.render.dot import COLOURS, graph_dot, plan_graph
from substratus_cli.render.human import NO_CHANGES, render_plan, summary_line
from substratus_cli.render.json_plan import plan_to_json
from tests.support.builders import LINEAGE, addr, applied, context, res, target
from tests.support.goldens import check_golden
from tests.support.simple_provider import SimpleProvider

TOKEN = "${{ secrets.hf.token }}"
DIGEST = "sha256:" + "ab" * 32


def every_action() -> Plan:
    """create, update (after drift), replace, delete and no-op; a secret in two of them."""
    provider = SimpleProvider(context(LINEAGE))
    data_v1 = res("Dataset/data", {"source": {"path": "./v1"},
                                   "env": {"HF_TOKEN": "${{ secrets.hf.old }}"}})
    server = res("Model/server", {"replicas": 1, "image": "vllm:0.4"}, refs=["Dataset/data"])
    inv = applied(provider, data_v1, server, res("Dataset/old"), res("Model/same", {"image": "x"}))
    provider.put(server.address, {"replicas": 3, "image": "vllm:0.4"})  # scaled by someone else
    provider.planned_status[addr("Dataset/new")] = {"digest": UNKNOWN}
    provider.planned_status[addr("Dataset/data")] = {"digest": DIGEST}
    desired = [
        res("Dataset/new", {"source": {"huggingface": {"name": "facebook/opt-125m"}},
                            "env": {"HF_TOKEN": TOKEN}}, labels={"team": "ml"}, line=4),
        res("Dataset/data", {"source": {"path": "./v2"}, "env": {"HF_TOKEN": TOKEN}}, line=12),
        server, res("Model/same", {"image": "x"}),
    ]
    return build_plan(resources=desired, registry=Registry([provider]), inventory=inv,
                      target=target(serial=1), options=PlanOptions())


@pytest.fixture(scope="module")
def plan() -> Plan:
    return every_action()


def human(plan: Plan) -> str:
    out = io.StringIO()
    render_plan(plan, Console(file=out, width=120, color_system=None, highlight=False, soft_wrap=True))
    return out.getvalue()


def machine(plan: Plan) -> dict[str, Any]:
    doc = plan_to_json(plan)
    doc["substratus_version"] = "VERSION"  # the golden outlives releases
    return doc


def test_the_fixture_plan_has_one_of_each_action(plan: Plan) -> None:
    assert {str(c.address): c.action for c in plan.changes} == {
        "Dataset/default/new": Action.CREATE, "Model/default/server": Action.UPDATE,
        "Dataset/default/data": Action.REPLACE, "Dataset/default/old": Action.DELETE,
        "Model/default/same": Action.NOOP}
    assert [str(d.address) for d in plan.drift] == ["Model/default/server"]


def test_human_plan_matches_golden(plan: Plan, update_goldens: bool) -> None:
    check_golden("plan_every_action.txt", human(plan), update_goldens)


def test_json_plan_matches_golden(plan: Plan, update_goldens: bool) -> None:
    check_golden("plan_every_action.json", json.dumps(machine(plan), indent=2) + "\n", update_goldens)


def test_human_plan_prints_the_summary_and_hides_secrets(plan: Plan) -> None:
    text = human(plan)
    assert summary_line(plan) == "Plan: 2 to add, 1 to change, 2 to destroy."
    assert text.rstrip("\n").splitlines()[-1] == "Plan: 2 to add, 1 to change, 2 to destroy."
    assert "      + spec.env.HF_TOKEN " in text
    assert "= (sensitive value)" in text
    assert "~ spec.env.HF_TOKEN: (sensitive value) -> (sensitive value)" in text
    assert "secrets.hf" not in text and "${{" not in text
    assert "+ spec.source.path" not in text
    assert "~ spec.source.path: \"./v1\" -> \"./v2\" # forces replacement" in text
    assert ("  # Dataset/default/data must be replaced (spec.source.path changed)\n"
            "-/+ Dataset/default/data\n") in text
    assert "  # Model/default/server changed outside substratus since the last apply\n" \
           "      ~ spec.replicas: 1 -> 3\n" in text
    assert "Model/default/same" not in text  # no-ops are not listed


def test_human_plan_without_changes_says_so() -> None:
    provider = SimpleProvider(context(LINEAGE))
    r = res("Dataset/a")
    p = build_plan(resources=[r], registry=Registry([provider]), inventory=applied(provider, r),
                   target=target(), options=PlanOptions())
    text = human(p)
    assert text.splitlines()[-1] == NO_CHANGES == "No changes. Live state matches the resource files."
    assert "Plan:" not in text


def test_json_plan_uses_terraform_action_arrays(plan: Plan) -> None:
    doc = plan_to_json(plan)
    by_address = {c["address"]: c for c in doc["resource_changes"]}
    assert {a: c["change"]["actions"] for a, c in by_address.items()} == {
        "Dataset/default/new": ["create"], "Model/default/server": ["update"],
        "Dataset/default/data": ["delete", "create"], "Dataset/default/old": ["delete"],
        "Model/default/same": ["no-op"]}
    assert {c["mode"] for c in by_address.values()} == {"managed"}
    assert {a: c["type"] for a, c in by_address.items()} == {
        "Dataset/default/new": "Dataset", "Model/default/server": "Model",
        "Dataset/default/data": "Dataset", "Dataset/default/old": "Dataset",
        "Model/default/same": "Model"}
    replaced = by_address["Dataset/default/data"]
    assert replaced["change"]["replace_paths"] == [["spec", "source", "path"]]
    assert replaced["action_reason"] == "replace_because_cannot_update"
    assert replaced["reason"] == "spec.source.path changed"
    assert by_address["Dataset/default/old"]["action_reason"] == "delete_because_no_resource_config"
    assert by_address["Dataset/default/old"]["reason"] == "not in the resource files"
    assert "action_reason" not in by_address["Dataset/default/new"]  # as in Terraform: none fits
    assert by_address["Dataset/default/old"]["change"]["after"] is None
    assert by_address["Dataset/default/new"]["change"]["before"] is None
    # Unknown after apply: left out of `after`, `true` in after_unknown (nested objects kept).
    new = by_address["Dataset/default/new"]["change"]
    assert new["after"]["status"] == {}
    assert new["after_unknown"]["status"] == {"digest": True}
    assert new["after_unknown"]["spec"] == {"source": {"huggingface": {}}, "env": {}}
    assert by_address["Model/default/server"]["change"]["after_unknown"] == {}
    assert by_address["Model/default/server"]["depends_on"] == ["Dataset/default/data"]
    assert doc["summary"] == {"add": 2, "change": 1, "destroy": 2}
    assert [(d["address"], d["reason"], d["change"]["actions"]) for d in doc["resource_drift"]] == [
        ("Model/default/server", "changed outside substratus since the last apply", ["update"])]


def test_json_plan_maps_replace_requests_and_destroys_to_terraform_reasons() -> None:
    provider = SimpleProvider(context(LINEAGE))
    a, b = res("Dataset/a"), res("Dataset/b")
    inv = applied(provider, a, b)
    replaced = build_plan(resources=[a, b], registry=Registry([provider]), inventory=inv,
                          target=target(serial=1), options=PlanOptions(replace=(a.address,)))
    change = plan_to_json(replaced)["resource_changes"][0]
    assert (change["address"], change["change"]["actions"], change["action_reason"],
            change["reason"]) == ("Dataset/default/a", ["delete", "create"], "replace_by_request",
                                  "replacement requested with --replace")
    destroyed = build_plan(resources=[a, b], registry=Registry([provider]), inventory=inv,
                           target=target(serial=1), options=PlanOptions(destroy=True))
    doc = plan_to_json(destroyed)
    assert [c["change"]["actions"] for c in doc["resource_changes"]] == [["delete"], ["delete"]]
    assert all("action_reason" not in c for c in doc["resource_changes"])


def test_json_drift_reads_from_the_last_apply_to_live(plan: Plan) -> None:
    # Someone scaled the server from 1 (applied) to 3; Terraform's resource_drift and the human
    # plan ("spec.replicas: 1 -> 3") both say before = as applied, after = as found.
    drift = plan_to_json(plan)["resource_drift"][0]
    (change,) = drift["field_changes"]
    assert (change["path"], change["before"], change["after"]) == ("spec.replicas", 1, 3)
    assert drift["change"]["before"]["spec"] == {"replicas": 1, "image": "vllm:0.4"}
    assert drift["change"]["after"]["spec"] == {"replicas": 3, "image": "vllm:0.4"}
    assert (drift["mode"], drift["type"], drift["provider_name"]) == ("managed", "Model", "simple")


def test_json_plan_hides_secrets_but_names_their_paths(plan: Plan) -> None:
    doc = plan_to_json(plan)
    text = json.dumps(doc)
    assert "secrets.hf" not in text and "${{" not in text
    by_address = {c["address"]: c["change"] for c in doc["resource_changes"]}
    new = by_address["Dataset/default/new"]
    assert new["after"]["spec"]["env"] == {"HF_TOKEN": "(sensitive value)"}
    # Terraform's shape: the values' objects, `true` at each secret, other leaves left out.
    assert new["after_sensitive"] == {"metadata": {"labels": {}}, "status": {},
                                      "spec": {"source": {"huggingface": {}},
                                               "env": {"HF_TOKEN": True}}}
    assert new["before_sensitive"] is False  # no before: false, as Terraform writes it
    replaced = by_address["Dataset/default/data"]
    assert replaced["before_sensitive"]["spec"]["env"] == {"HF_TOKEN": True}
    assert by_address["Dataset/default/old"]["after_sensitive"] is False


def test_json_marks_follow_terraform_for_lists_and_nulls() -> None:
    from substratus_cli.render.json_plan import _change

    before = {"spec": {"args": ["a", TOKEN, {"k": TOKEN}], "none": None, "n": 1}}
    after = {"spec": {"args": ["a", UNKNOWN]}, "status": {"digest": UNKNOWN, "port": 80}}
    change = _change(["update"], before, after)
    assert change["before_sensitive"] == {"spec": {"args": [False, True, {"k": True}]}}
    assert change["after_unknown"] == {"spec": {"args": [False, True]}, "status": {"digest": True}}
    assert change["after"] == {"spec": {"args": ["a", None]}, "status": {"port": 80}}
    assert change["before"]["spec"]["args"] == ["a", "(sensitive value)", {"k": "(sensitive value)"}]


def test_saved_plan_round_trip_keeps_what_apply_needs(plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    planfile.save(plan, path)
    loaded = planfile.load(path)
    assert loaded.target == plan.target and loaded.destroy == plan.destroy
    assert loaded.refresh == plan.refresh and loaded.drift == plan.drift
    assert [(c.address, c.action, c.provider, c.reason, c.before_fingerprint, c.depends_on)
            for c in loaded.changes] == [
        (c.address, c.action, c.provider, c.reason, c.before_fingerprint, c.depends_on)
        for c in plan.changes]
    assert all(c.before_fingerprint for c in loaded.changes if c.action is not Action.CREATE)
    status = {str(c.address): dict(c.planned_status) for c in loaded.changes}
    assert status["Dataset/default/new"]["digest"] is UNKNOWN
    assert status["Dataset/default/data"] == {"digest": DIGEST}
    assert [r.to_document() for r in loaded.documents] == [r.to_document() for r in plan.documents]
    assert [(r.file, r.line, r.refs) for r in loaded.documents] == [
        (r.file, r.line, r.refs) for r in plan.documents]
    assert {str(c.address): c.desired for c in loaded.changes} == {
        str(c.address): (next(r for r in loaded.documents if r.address == c.address)
                         if c.action is not Action.DELETE else None) for c in plan.changes}
    # `show --json` of the file prints what `plan --json` printed, drift and sensitivity included.
    assert plan_to_json(loaded) == plan_to_json(plan)
    # The file keeps secret references (resolved at apply), never a value, and shows them nowhere else.
    raw = json.loads(path.read_text())
    assert raw["documents"][0]["spec"]["env"] == {"HF_TOKEN": TOKEN}
    assert "secrets.hf" not in json.dumps({k: v for k, v in raw.items() if k != "documents"})


def test_json_values_of_an_unchanged_object_are_the_same_before_and_after() -> None:
    # Labels a stack gives (substratus.ai/…) are the resource's own and stay; the ownership
    # labels substratus puts on every object are not shown.
    provider = SimpleProvider(context(LINEAGE))
    r = res("Model/m", {"image": "x"}, labels={"substratus.ai/stack": "s", "team": "ml"})
    p = build_plan(resources=[r], registry=Registry([provider]), inventory=applied(provider, r),
                   target=target(serial=1), options=PlanOptions())
    (change,) = plan_to_json(p)["resource_changes"]
    assert change["change"]["actions"] == ["no-op"]
    assert change["change"]["before"] == change["change"]["after"] == {
        "metadata": {"labels": {"substratus.ai/stack": "s", "team": "ml"}},
        "spec": {"image": "x"}, "status": {}}


def test_plan_graph_matches_golden(plan: Plan, update_goldens: bool) -> None:
    """`substratus graph --plan`: each node filled with its action's colour and marked with the
    plan's symbol; the deleted resource is drawn too."""
    graph, actions = plan_graph(plan)
    assert actions == {c.address: c.action for c in plan.changes}
    text = graph_dot(graph, actions)
    check_golden("plan_every_action.dot", text, update_goldens)
    for action, (fill, border) in COLOURS.items():
        assert text.count(f'fillcolor = "{fill}", color = "{border}"') == 1, action
    assert '"Model/default/server" -> "Dataset/default/data";' in text
