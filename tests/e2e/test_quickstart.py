"""The quickstart's datasets end to end through the CLI: apply, empty re-plan, replace, drift,
destroy. The models, server and notebook are in test_local_ml.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from substratus_cli.errors import ExitCode


@pytest.fixture
def quickstart(quickstart_datasets: Path) -> Path:
    """These tests are about the engine's semantics: the datasets show them without training."""
    return quickstart_datasets


def records(workdir: Path) -> dict[str, dict]:
    root = workdir / ".substratus" / "runtime" / "objects"
    return {str(p.relative_to(root).with_suffix("")): json.loads(p.read_text())
            for p in root.glob("*/*/*.json")}


def test_apply_then_plan_is_empty(cli, quickstart):
    applied = cli("apply", quickstart, "--auto-approve")
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 2 added, 0 changed, 0 destroyed." in applied.out

    plan = cli("plan", "--detailed-exitcode", quickstart)
    assert plan.code == ExitCode.OK, plan.output
    assert "No changes. Live state matches the resource files." in plan.out


def test_first_plan_shows_creates_with_digests_and_exit_2(cli, quickstart):
    plan = cli("plan", "--detailed-exitcode", quickstart)
    assert plan.code == ExitCode.CHANGES_PRESENT
    assert "# Dataset/default/favorite-colors will be created (not in live state)" in plan.out
    assert '+ spec.source.path        = "data/favorite-colors.jsonl"' in plan.out
    assert "+ status.digest           = \"sha256:" in plan.out
    assert plan.out.rstrip().endswith("Plan: 2 to add, 0 to change, 0 to destroy.")
    assert not (quickstart / ".substratus" / "runtime").exists(), "plan must not change live state"


def test_changed_source_is_planned_as_replace_with_reason_and_values(cli, quickstart):
    assert cli("apply", quickstart, "--auto-approve").code == 0
    datasets = quickstart / "datasets.yaml"
    datasets.write_text(datasets.read_text().replace("path: data/color-facts",
                                                     "path: data/color-facts/primary.txt"))
    plan = cli("plan", "--detailed-exitcode", quickstart)
    assert plan.code == ExitCode.CHANGES_PRESENT
    assert ("# Dataset/default/color-facts must be replaced "
            "(spec.source.path changed: a snapshot is immutable)") in plan.out
    assert ('~ spec.source.path: "data/color-facts" -> "data/color-facts/primary.txt" '
            "# forces replacement") in plan.out
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in plan.out

    as_json = json.loads(cli("plan", "--json", quickstart).out)
    change = next(c for c in as_json["resource_changes"]
                  if c["address"] == "Dataset/default/color-facts")
    assert change["change"]["actions"] == ["delete", "create"]
    assert ["spec", "source", "path"] in change["change"]["replace_paths"]
    assert change["action_reason"] == "replace_because_cannot_update"
    assert change["reason"] == "spec.source.path changed: a snapshot is immutable"


def test_changed_file_content_is_planned_as_replace(cli, quickstart):
    assert cli("apply", quickstart, "--auto-approve").code == 0
    with open(quickstart / "data" / "color-facts" / "mixing.txt", "a") as f:
        f.write("Green and red are complementary.\n")
    plan = cli("plan", "--detailed-exitcode", quickstart)
    assert plan.code == ExitCode.CHANGES_PRESENT
    assert "# Dataset/default/color-facts must be replaced (source content changed)" in plan.out
    assert cli("apply", quickstart, "--auto-approve").code == 0
    assert cli("plan", "--detailed-exitcode", quickstart).code == 0


def test_label_change_is_an_update_in_place(cli, quickstart):
    assert cli("apply", quickstart, "--auto-approve").code == 0
    datasets = quickstart / "datasets.yaml"
    datasets.write_text(datasets.read_text().replace("example: quickstart", "example: renamed"))
    plan = cli("plan", "--detailed-exitcode", quickstart)
    assert plan.code == ExitCode.CHANGES_PRESENT
    assert "# Dataset/default/favorite-colors will be updated in-place (spec changed)" in plan.out
    assert '~ metadata.labels.example: "quickstart" -> "renamed"' in plan.out
    applied = cli("apply", quickstart, "--auto-approve")
    assert "Resources: 0 added, 1 changed, 0 destroyed." in applied.out
    assert cli("plan", "--detailed-exitcode", quickstart).code == 0


def test_saved_plan_applies_exactly_without_prompt(cli, quickstart, tmp_path):
    plan_file = tmp_path / "p.json"
    assert cli("plan", quickstart, "--out", plan_file).code == 0
    shown = cli("show", plan_file)
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in shown.out
    applied = cli("apply", plan_file)
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 2 added" in applied.out
    assert cli("plan", "--detailed-exitcode", quickstart).code == 0


def test_saved_plan_is_refused_after_another_apply(cli, quickstart, tmp_path):
    plan_file = tmp_path / "p.json"
    assert cli("plan", quickstart, "--out", plan_file).code == 0
    assert cli("apply", quickstart, "--auto-approve").code == 0  # live state moves on
    stale = cli("apply", plan_file)
    assert stale.code == ExitCode.STALE_PLAN
    assert "Saved plan is stale: the state changed since the plan was made" in stale.err
    assert "Traceback" not in stale.output


def test_saved_plan_is_refused_when_a_live_object_changed(cli, quickstart, tmp_path):
    assert cli("apply", quickstart, "--auto-approve").code == 0
    (quickstart / "data" / "favorite-colors.jsonl").write_text('{"prompt": "x", "completion": "y"}\n')
    plan_file = tmp_path / "p.json"
    assert cli("plan", quickstart, "--out", plan_file).code == 0
    # Someone else rewrites the live object behind substratus's back (the state is untouched).
    record = quickstart / ".substratus/runtime/objects/Dataset/default/favorite-colors.json"
    data = json.loads(record.read_text())
    data["version"] += 1
    record.write_text(json.dumps(data))
    stale = cli("apply", plan_file)
    assert stale.code == ExitCode.STALE_PLAN
    assert "Dataset/default/favorite-colors changed since the plan was made" in stale.err


def test_edit_outside_substratus_is_shown_as_drift_and_restored(cli, quickstart):
    assert cli("apply", quickstart, "--auto-approve").code == 0
    record = quickstart / ".substratus/runtime/objects/Dataset/default/favorite-colors.json"
    data = json.loads(record.read_text())
    data["spec"]["source"]["path"] = "elsewhere.jsonl"
    data["version"] += 1
    record.write_text(json.dumps(data))

    plan = cli("plan", "--detailed-exitcode", quickstart)
    assert plan.code == ExitCode.CHANGES_PRESENT
    assert "Objects changed outside substratus" in plan.out
    assert ("# Dataset/default/favorite-colors changed outside substratus since the last apply"
            in plan.out)
    assert '~ spec.source.path: "data/favorite-colors.jsonl" -> "elsewhere.jsonl"' in plan.out
    assert cli("apply", quickstart, "--auto-approve").code == 0
    assert cli("plan", "--detailed-exitcode", quickstart).code == 0


def test_object_without_ownership_labels_is_refused(cli, quickstart):
    record = quickstart / ".substratus/runtime/objects/Dataset/default/favorite-colors.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"uid": "u", "version": 1, "labels": {},
                                  "spec": {"source": {"path": "x"}}, "status": {}}))
    plan = cli("plan", quickstart)
    assert plan.code == ExitCode.ERROR
    assert "refusing to change objects substratus does not own" in plan.err
    assert "Dataset/default/favorite-colors (datasets.yaml:3): exists and is not managed by substratus" in plan.err


def test_removed_resource_is_destroyed_and_destroy_twice_is_a_noop(cli, quickstart):
    assert cli("apply", quickstart, "--auto-approve").code == 0
    datasets = quickstart / "datasets.yaml"
    datasets.write_text(datasets.read_text().split("---")[0])
    plan = cli("plan", quickstart)
    assert "# Dataset/default/color-facts will be destroyed (not in the resource files)" in plan.out
    assert "Plan: 0 to add, 0 to change, 1 to destroy." in plan.out

    destroyed = cli("destroy", quickstart, "--auto-approve")
    assert destroyed.code == 0, destroyed.output
    assert "# Dataset/default/favorite-colors will be destroyed (destroy requested)" in destroyed.out
    assert "Destroy complete! Resources: 2 destroyed." in destroyed.out
    assert records(quickstart) == {}
    assert cli("state", "list", quickstart).out == ""
    again = cli("destroy", quickstart, "--auto-approve")
    assert again.code == 0
    assert "No changes." in again.out


def test_apply_asks_for_yes(cli, quickstart):
    refused = cli("apply", quickstart, input="no\n")
    assert refused.code == ExitCode.ERROR
    assert "Only 'yes' will be accepted to approve." in refused.out
    assert "Apply cancelled." in refused.err
    assert records(quickstart) == {}
    accepted = cli("apply", quickstart, input="yes\n")
    assert accepted.code == 0, accepted.output
    assert len(records(quickstart)) == 2


def test_state_list_shows_digests(cli, quickstart):
    assert cli("apply", quickstart, "--auto-approve").code == 0
    lines = cli("state", "list", quickstart).out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        "Dataset/default/color-facts", "Dataset/default/favorite-colors"]
    assert all(line.split("\t")[1].startswith("digest=sha256:") for line in lines)


def test_target_limits_the_plan(cli, quickstart):
    plan = cli("plan", quickstart, "--target", "Dataset/color-facts")
    assert "Dataset/default/color-facts" in plan.out
    assert "favorite-colors" not in plan.out
    assert "Plan: 1 to add" in plan.out


def test_replace_flag_forces_replacement(cli, quickstart):
    assert cli("apply", quickstart, "--auto-approve").code == 0
    plan = cli("plan", quickstart, "--replace", "dataset/favorite-colors", "--detailed-exitcode")
    assert plan.code == ExitCode.CHANGES_PRESENT
    assert "must be replaced (replacement requested with --replace)" in plan.out


def test_graph_prints_dot(cli, quickstart):
    graph = cli("graph", quickstart)
    assert graph.code == 0
    assert graph.out.startswith("digraph substratus {")
    assert '"Dataset/default/favorite-colors";' in graph.out


def test_help_lists_exit_codes_and_every_command_has_help(cli):
    top = cli("--help")
    assert top.code == 0
    for line in ("4    state lock not acquired within --lock-timeout",
                 "5    saved plan is stale or was made for another target",
                 "6    apply partially done"):
        assert line in top.out
    for command in ("validate", "plan", "apply", "destroy", "show", "graph", "state",
                    "force-unlock", "schema"):
        assert cli(command, "--help").code == 0, command


def test_usage_error_exits_3_not_2(cli, quickstart):
    result = cli("plan", quickstart, "--no-such-flag")
    assert result.code == ExitCode.INVALID_INPUT
    bad_address = cli("plan", quickstart, "--target", "Nope/x")
    assert bad_address.code == ExitCode.INVALID_INPUT
    assert "unknown kind 'Nope'" in bad_address.err
