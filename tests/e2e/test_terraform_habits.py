"""Terraform habits through the real CLI: single-dash long flags, --input=false, --refresh-only,
--target of an address that does not exist, the targeting warning, and kind typos."""

from __future__ import annotations

import json
from pathlib import Path

from substratus_cli.cli import terraform_flags
from substratus_cli.errors import ExitCode

RECORDS = Path(".substratus/runtime/objects/Dataset/default")
TARGETING = "Warning: Resource targeting is in effect"


def test_single_dash_long_flags_are_taken_as_terraform_users_type_them(cli, quickstart_datasets):
    ws = quickstart_datasets
    plan = cli("plan", ws, "-detailed-exitcode", "-target=Dataset/favorite-colors", "-input=false")
    assert plan.code == ExitCode.CHANGES_PRESENT, plan.output
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in plan.out
    applied = cli("apply", ws, "-auto-approve", "-parallelism", "2", "-lock-timeout=5s")
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 2 added" in applied.out
    assert cli("plan", ws, "-detailed-exitcode").code == 0


def test_a_misspelled_flag_gets_a_did_you_mean(cli, quickstart_datasets):
    for flag in ("-auto-aprove", "--auto-aprove"):
        result = cli("apply", quickstart_datasets, flag)
        assert result.code == ExitCode.INVALID_INPUT
        assert "No such option '--auto-aprove'. Did you mean '--auto-approve'?" in result.err
    assert not (quickstart_datasets / ".substratus").exists()


def test_only_known_long_options_are_rewritten():
    assert terraform_flags(["apply", "-auto-approve", "-var", "a=-b", "-var=x=1", "-f", "-fv",
                            "-json", "-h", "--", "-target"]) == [
        "apply", "--auto-approve", "--var", "a=-b", "--var=x=1", "-f", "-fv", "--json", "-h",
        "--", "-target"]
    # Close to a long option: rewritten so that click answers with a did-you-mean.
    assert terraform_flags(["-refresh-olny", "-xyzzy"]) == ["--refresh-olny", "-xyzzy"]


def test_input_false_never_prompts(cli, quickstart_datasets):
    ws = quickstart_datasets
    assert cli("plan", ws, "--input=false").code == 0
    refused = cli("apply", ws, "--input=false", input="yes\n")
    assert refused.code == ExitCode.INVALID_INPUT, refused.output
    assert "Enter a value" not in refused.out
    assert ("Error: Apply cancelled: it needs approval and --input=false forbids asking for it"
            in refused.err)
    assert "pass --auto-approve" in refused.err
    assert cli("state", "list", ws).out == ""
    assert cli("apply", ws, "--input=false", "--auto-approve").code == 0
    # Nothing to approve: nothing to refuse.
    assert cli("apply", ws, "-input=false").code == 0
    destroy = cli("destroy", ws, "-input=false")
    assert destroy.code == ExitCode.INVALID_INPUT
    assert "Destroy cancelled: it needs approval and --input=false forbids" in destroy.err
    assert cli("state", "list", ws).out.count("Dataset/") == 2


def test_refresh_only_records_what_changed_outside_and_forgets_what_is_gone(
        cli, quickstart_datasets):
    ws = quickstart_datasets
    assert cli("apply", ws, "--auto-approve").code == 0
    clean = cli("plan", ws, "--refresh-only", "--detailed-exitcode")
    assert clean.code == 0
    assert "No changes. The state matches the live objects." in clean.out

    record = ws / RECORDS / "favorite-colors.json"
    data = json.loads(record.read_text())
    data["spec"]["source"]["path"] = "elsewhere.jsonl"
    data["version"] += 1
    record.write_text(json.dumps(data))
    (ws / RECORDS / "color-facts.json").unlink()

    plan = cli("plan", ws, "-refresh-only", "-detailed-exitcode")
    assert plan.code == ExitCode.CHANGES_PRESENT, plan.output
    assert "This is a refresh-only plan: substratus will not change any object" in plan.out
    assert ("# Dataset/default/color-facts deleted outside substratus since the last apply: the "
            "state forgets it") in plan.out
    assert ("# Dataset/default/favorite-colors changed outside substratus since the last apply: "
            "the state records it as it is now") in plan.out
    assert "Refresh: 1 to update in the state, 1 to forget." in plan.out
    as_json = json.loads(cli("plan", ws, "--refresh-only", "--json").out)
    assert as_json["refresh_only"] is True
    assert json.loads(cli("plan", ws, "--json").out)["refresh_only"] is False
    assert as_json["resource_changes"] == []
    assert [d["address"] for d in as_json["resource_drift"]] == [
        "Dataset/default/color-facts", "Dataset/default/favorite-colors"]

    declined = cli("apply", ws, "--refresh-only", input="no\n")
    assert declined.code == ExitCode.ERROR
    assert "Would you like to update the state to reflect these detected changes?" in declined.out
    saved = ws.parent / "refresh.plan"
    assert cli("plan", ws, "--refresh-only", "--out", saved).code == 0
    applied = cli("apply", saved)
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 0 added, 0 changed, 0 destroyed." in applied.out
    # The state now holds what is live; nothing live was changed back.
    assert cli("state", "list", ws).out.startswith("Dataset/default/favorite-colors")
    assert "color-facts" not in cli("state", "list", ws).out
    assert json.loads(record.read_text())["spec"]["source"]["path"] == "elsewhere.jsonl"
    assert cli("plan", ws, "--refresh-only", "--detailed-exitcode").code == 0
    # The next plan puts the files back: no drift left to report, the changes themselves.
    after = cli("plan", ws)
    assert "Objects changed outside substratus" not in after.out
    assert "Plan: 2 to add, 0 to change, 1 to destroy." in after.out


def test_refresh_only_refuses_what_does_not_fit_it(cli, quickstart_datasets):
    ws = quickstart_datasets
    for args in (("plan", ws, "--refresh-only", "--destroy"),
                 ("plan", ws, "--refresh-only", "--replace", "Dataset/favorite-colors"),
                 ("apply", ws, "--refresh-only", "--replace", "Dataset/favorite-colors")):
        result = cli(*args)
        assert result.code == ExitCode.INVALID_INPUT, args
        assert "--refresh-only cannot be used with" in result.err
    saved = ws.parent / "p.plan"
    assert cli("plan", ws, "--out", saved).code == 0
    result = cli("apply", saved, "--refresh-only")
    assert result.code == ExitCode.INVALID_INPUT
    assert "cannot be used with a saved plan" in result.err


def test_target_of_an_address_nothing_knows_is_an_error_with_a_suggestion(
        cli, quickstart_datasets):
    ws = quickstart_datasets
    for command in ("plan", "apply", "destroy"):
        result = cli(command, ws, "--target", "Dataset/favorite-colours", "--auto-approve"
                     if command != "plan" else "--input=true")
        assert result.code == ExitCode.INVALID_INPUT, (command, result.output)
        assert ("Error: --target Dataset/favorite-colours: no such resource (neither declared in "
                "the files nor in the state)") in result.err
        assert "did you mean Dataset/favorite-colors?" in result.err
        assert TARGETING not in result.err
    other_kind = cli("plan", ws, "--target", "Model/color-facts")
    assert other_kind.code == ExitCode.INVALID_INPUT
    assert "did you mean Dataset/color-facts?" in other_kind.err
    replace = cli("plan", ws, "--replace", "Dataset/nope")
    assert replace.code == ExitCode.INVALID_INPUT
    assert "--replace Dataset/nope: no such resource" in replace.err
    assert not (ws / ".substratus" / "state" / "inventory.json").exists()


def test_target_of_an_address_only_the_state_holds_is_taken_and_warned_about(
        cli, quickstart_datasets):
    ws = quickstart_datasets
    assert cli("apply", ws, "--auto-approve").code == 0
    untargeted = cli("plan", ws)
    assert TARGETING not in untargeted.err
    datasets = ws / "datasets.yaml"
    datasets.write_text(datasets.read_text().split("---")[0])  # color-facts leaves the files
    plan = cli("plan", ws, "--target", "Dataset/color-facts")
    assert plan.code == 0, plan.output
    assert "Plan: 0 to add, 0 to change, 1 to destroy." in plan.out
    assert TARGETING in plan.err and TARGETING not in plan.out
    as_json = cli("plan", ws, "--json", "--target", "Dataset/color-facts")
    assert json.loads(as_json.out)["summary"]["destroy"] == 1
    assert TARGETING in as_json.err
    applied = cli("apply", ws, "--auto-approve", "--target", "Dataset/color-facts")
    assert applied.code == 0 and TARGETING in applied.err
    assert "Resources: 0 added, 0 changed, 1 destroyed." in applied.out


def test_a_kind_typo_gets_a_did_you_mean(cli, quickstart_datasets):
    ws = quickstart_datasets
    for args in (("plan", ws, "--target", "Datset/favorite-colors"),
                 ("state", "show", "Datset/favorite-colors", ws),
                 ("logs", "datset/favorite-colors", ws)):
        result = cli(*args)
        assert result.code == ExitCode.INVALID_INPUT, args
        assert "unknown kind" in result.err and "(did you mean 'Dataset'?)" in result.err, args
    stack = cli("plan", ws, "--target", "Stak/colors")
    assert "(did you mean 'Stack'?)" in stack.err
    typo = cli("state", "show", "Dataset/favorite-colours", ws)
    assert typo.code == ExitCode.INVALID_INPUT
    assert "did you mean Dataset/favorite-colors?" in typo.err
    (ws / "typo.yaml").write_text("apiVersion: substratus.ai/v1\nkind: Datset\n"
                                  "metadata: {name: x}\nspec: {source: {path: data}}\n")
    invalid = cli("validate", ws)
    assert invalid.code == ExitCode.INVALID_INPUT
    assert 'Error: typo.yaml:2: kind: unknown kind "Datset" (did you mean "Dataset"?)' in invalid.err


def test_kind_slash_name_means_the_environments_namespace(cli, quickstart_datasets):
    ws = quickstart_datasets
    (ws / "environment.yaml").write_text(
        "apiVersion: substratus.ai/v1\nkind: Environment\nmetadata: {name: e}\n"
        "spec: {runtime: local, kubernetes: {namespace: ml}}\n")
    plan = cli("plan", ws, "--target", "Dataset/favorite-colors")
    assert plan.code == 0, plan.output
    assert "# Dataset/ml/favorite-colors will be created" in plan.out
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in plan.out
    shown = cli("state", "show", "Dataset/favorite-colors", ws)
    assert shown.code == 0 and shown.out.startswith("# Dataset/ml/favorite-colors")
    explicit = cli("plan", ws, "--target", "Dataset/other/favorite-colors")
    assert explicit.code == ExitCode.INVALID_INPUT
    assert "did you mean Dataset/ml/favorite-colors?" in explicit.err
