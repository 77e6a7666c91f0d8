"""The golden JSON plans (test_json_plan.py makes them from real plans) read by a real consumer:
tfjson-check, a Go program on github.com/hashicorp/terraform-json (tests/tfjson/). It is built
once per version of its sources into ~/.cache/substratus/tfjson/ (tests/setup.sh builds it in CI;
here it is built when missing). Without Go these tests fail saying how to build it: they never
skip."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.goldens import GOLDENS
from tests.tfjson import checker

SCENARIOS = ("create", "update", "replace", "delete", "drift", "sensitive")


@pytest.fixture(scope="module")
def tfjson_check() -> Path:
    try:
        return checker.ensure_built()
    except checker.CheckerError as e:
        pytest.fail(str(e), pytrace=False)


def goldens() -> list[Path]:
    return [*sorted((GOLDENS / "tfjson").glob("*.json")), GOLDENS / "plan_every_action.json"]


def run(binary: Path, *plans: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *map(str, plans)], capture_output=True, text=True,
                          timeout=60)


def test_terraform_json_reads_and_checks_every_golden_plan(tfjson_check: Path) -> None:
    plans = goldens()
    assert {p.stem for p in plans} >= set(SCENARIOS), "a golden is missing: pytest --update-goldens"
    done = run(tfjson_check, *plans)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "github.com/hashicorp/terraform-json v0." in done.stdout
    for plan in plans:
        assert f"tfjson-check: {plan.name}: ok" in done.stdout, done.stdout
    # test_invalid_files.py's diagnostics document, read as `terraform validate -json`.
    assert "tfjson-check: diagnostics.json: ok (diagnostics: 4 error(s), 0 warning(s))" in done.stdout


def test_a_diagnostics_document_that_breaks_the_shape_fails_naming_what(
        tfjson_check: Path, tmp_path: Path) -> None:
    doc = json.loads((GOLDENS / "tfjson" / "diagnostics.json").read_text())
    doc["error_count"] = 2
    doc["diagnostics"][0]["severity"] = "fatal"
    doc["diagnostics"][1]["range"]["start"]["column"] = 0
    doc["diagnostics"][2]["range"]["end"]["column"] = 1
    (tmp_path / "diagnostics.json").write_text(json.dumps(doc))
    done = run(tfjson_check, tmp_path / "diagnostics.json")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.splitlines()[:4] == [
        'tfjson-check: diagnostics.json: diagnostics[0]: severity "fatal" is neither error nor '
        "warning",
        'tfjson-check: diagnostics.json: diagnostics[1]: range "b.yaml" 6:0 is not a position in '
        "a file",
        "tfjson-check: diagnostics.json: diagnostics[2]: range ends (8:1) before it starts (8:5)",
        "tfjson-check: diagnostics.json: error_count 2 and warning_count 0, but the diagnostics "
        "hold 3 and 0"]

    doc["format_version"] = "2.0"
    (tmp_path / "diagnostics.json").write_text(json.dumps(doc))
    done = run(tfjson_check, tmp_path / "diagnostics.json")
    assert done.returncode == 1 and "unsupported validation output format" in done.stderr, \
        done.stderr


def test_a_plan_that_breaks_the_shape_fails_naming_what(tfjson_check: Path, tmp_path: Path) -> None:
    doc = json.loads((GOLDENS / "tfjson" / "sensitive.json").read_text())
    change = next(c for c in doc["resource_changes"] if c["address"] == "Dataset/default/private")
    change["change"]["after_sensitive"] = ["spec.env.HF_TOKEN"]  # the old list of paths
    change["action_reason"] = "not in live state"  # words, not Terraform's keyword
    doc["resource_drift"].append({**change, "change": {**change["change"], "actions": ["create"]}})
    (tmp_path / "sensitive.json").write_text(json.dumps(doc))
    done = run(tfjson_check, tmp_path / "sensitive.json")
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("sensitive.json: resource_changes[Dataset/default/private].change.after_sensitive: "
            "a list of 1") in done.stderr
    assert 'action_reason "not in live state" does not fit actions [create]' in done.stderr
    assert "resource_drift[Dataset/default/private]: change.actions [create]" in done.stderr

    doc["format_version"] = "2.0"
    (tmp_path / "sensitive.json").write_text(json.dumps(doc))
    done = run(tfjson_check, tmp_path / "sensitive.json")
    assert done.returncode == 1 and "unsupported plan format version" in done.stderr


def test_build_script_and_tests_agree_on_where_the_binary_is() -> None:
    printed = subprocess.run(["bash", str(checker.BUILD_SCRIPT), "--print-path"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert Path(printed) == checker.binary_path()


def test_without_go_a_missing_binary_is_an_error_saying_how_to_build(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_go = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep)
                            if d and not (Path(d) / "go").exists())
    monkeypatch.setenv("PATH", no_go)
    monkeypatch.setenv("SUBSTRATUS_CACHE", str(tmp_path))
    with pytest.raises(checker.CheckerError) as raised:
        checker.ensure_built()
    assert "Go is not installed" in str(raised.value)
    assert "bash tests/tfjson/build.sh" in str(raised.value)
    script = subprocess.run(["bash", str(checker.BUILD_SCRIPT)], capture_output=True, text=True,
                            env={**os.environ, "PATH": no_go, "SUBSTRATUS_CACHE": str(tmp_path)})
    assert script.returncode == 1
    assert "then run: bash tests/tfjson/build.sh" in script.stderr
