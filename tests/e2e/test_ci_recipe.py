"""The CI drift-check recipe (examples/ci): drift-check.sh run as CI runs it, a real subprocess with
this venv's `substratus` on PATH, against copies of the recipe's datasets-only workspace: no
changes (exit 0), pending changes and drift (exit 2), invalid files (exit 1: substratus's own exit
3 is an error to CI) and the Markdown summary of each. A stand-in `substratus` feeds it the JSON
shapes it must read besides today's (Terraform's `show -json` drift entries, a diagnostics
document) and the other exit codes. The workflow's own `run:` steps are run with bash as a runner
runs them, over a git history with a base branch and a pull request; actionlint checks the
workflows and shellcheck the script."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import tests.actionlint as actionlint
from tests.conftest import EXAMPLES, REPO

RECIPE = EXAMPLES / "ci"
SCRIPT = RECIPE / "drift-check.sh"
WORKFLOWS = sorted((RECIPE / "github-actions").glob("*.yml"))
VENV_BIN = Path(sys.executable).parent
TITLE = "### substratus drift check: `workspace`"
NO_DRIFT = "None: nothing changed outside substratus since the last apply."


def run_env(**extra: str) -> dict[str, str]:
    """This environment with the venv's substratus first on PATH and nothing that would change
    what the script or substratus read."""
    assert (VENV_BIN / "substratus").exists(), f"no substratus beside {sys.executable}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SUBSTRATUS_VAR_", "GITHUB_"))
           and k not in ("SUBSTRATUS", "PYTHON")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def drift_check(*args: str | Path, cwd: Path, shell: tuple[str, ...] = (),
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*shell, str(SCRIPT), *map(str, args)], cwd=cwd, env=env or run_env(),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A private copy of the recipe's workspace (two datasets from files), no state."""
    dest = tmp_path / "workspace"
    shutil.copytree(RECIPE / "workspace", dest, ignore=shutil.ignore_patterns(".substratus"))
    return dest


def apply(cli: Any, workdir: Path) -> None:
    applied = cli("apply", workdir, "--auto-approve")
    assert applied.code == 0, applied.output


def change_outside_substratus(workdir: Path, name: str) -> None:
    """What `kubectl edit` is to a cluster: the local runtime's live record edited by hand."""
    record = workdir / f".substratus/runtime/objects/Dataset/default/{name}.json"
    data = json.loads(record.read_text())
    data["spec"]["source"]["path"] = "elsewhere.jsonl"
    data["version"] += 1
    record.write_text(json.dumps(data))


# --- the script against the real CLI ---------------------------------------------------------


def test_no_changes_exits_0(cli, workspace: Path):
    apply(cli, workspace)
    done = drift_check("workspace", cwd=workspace.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == (f"{TITLE}\n\n**No changes.** Live state matches the resource files, "
                           "and nothing changed outside substratus.\n")
    assert done.stderr.splitlines()[-1] == "drift-check.sh: no changes (exit 0)"


@pytest.mark.parametrize("shell", [(), ("sh",), ("bash",), ("busybox", "sh")],
                         ids=["shebang", "sh", "bash", "busybox-sh"])
def test_pending_changes_exit_2_with_a_table_of_them(cli, workspace: Path, shell: tuple[str, ...]):
    if shell:
        assert shutil.which(shell[0]), f"{shell[0]} is missing (tests/setup.sh installs it)"
    apply(cli, workspace)
    with (workspace / "data/prompts.jsonl").open("a") as f:
        f.write('{"prompt": "one more"}\n')
    datasets = workspace / "datasets.yaml"
    text = datasets.read_text()
    head, tail = text.split("name: answers")
    extra = ("---\napiVersion: substratus.ai/v1\nkind: Dataset\nmetadata: {name: extra}\n"
             "spec: {source: {path: data/answers.jsonl}}\n")
    datasets.write_text(head + "name: answers" + tail.replace("example: ci", "example: ci-answers")
                        + extra)

    done = drift_check("workspace", cwd=workspace.parent, shell=shell)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == "\n".join([
        TITLE, "",
        "**3 pending changes.**", "",
        "| action | count |",
        "| --- | ---: |",
        "| create | 1 |",
        "| update | 1 |",
        "| replace | 1 |", "",
        "#### Pending changes", "",
        "| address | action | reason |",
        "| --- | --- | --- |",
        "| `Dataset/default/answers` | update | spec changed |",
        "| `Dataset/default/extra` | create | not in live state |",
        "| `Dataset/default/prompts` | replace | source content changed |", "",
        "#### Drift", "",
        NO_DRIFT, ""])
    assert done.stderr.splitlines()[-1] == "drift-check.sh: drift or pending changes (exit 2)"


def test_first_plan_of_a_workspace_is_all_creates(workspace: Path):
    done = drift_check(workspace, cwd=workspace)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "| create | 2 |" in done.stdout
    assert "| `Dataset/default/answers` | create | not in live state |" in done.stdout
    assert "| `Dataset/default/prompts` | create | not in live state |" in done.stdout
    assert not (workspace / ".substratus/runtime/objects").exists(), "a plan applies nothing"


def test_drift_exits_2_with_its_own_section(cli, workspace: Path, tmp_path: Path):
    apply(cli, workspace)
    change_outside_substratus(workspace, "prompts")
    summary, plan = tmp_path / "summary.md", tmp_path / "plan.json"

    done = drift_check("--summary", summary, "--json", plan, "workspace", cwd=workspace.parent)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == "", "with --summary, the Markdown goes to the file only"
    text = summary.read_text()
    assert text.startswith(f"{TITLE}\n\n**1 resource changed outside substratus; "
                           "1 pending change.**\n"), text
    assert ("| `Dataset/default/prompts` | replace | spec.source.path changed: a snapshot is "
            "immutable |") in text
    drift = text.split("#### Drift\n", 1)[1]
    assert drift == "\n".join([
        "",
        "Changed outside substratus since the last apply (the pending changes put them back):", "",
        "| address | what happened | fields |",
        "| --- | --- | --- |",
        "| `Dataset/default/prompts` | changed outside substratus since the last apply | "
        "`spec.source.path` |", ""])
    document = json.loads(plan.read_text())
    assert [d["address"] for d in document["resource_drift"]] == ["Dataset/default/prompts"]

    # The check changed nothing: the drift is still there for the next run to see.
    assert drift_check("workspace", cwd=workspace.parent).returncode == 2
    apply(cli, workspace)
    assert drift_check("workspace", cwd=workspace.parent).returncode == 0


def test_the_readme_example_is_what_the_script_writes(cli, tmp_path: Path):
    """examples/ci/README.md's summary, made as it says: one dataset's file changed, another's
    record edited by hand."""
    workdir = tmp_path / "examples/ci/workspace"
    shutil.copytree(RECIPE / "workspace", workdir, ignore=shutil.ignore_patterns(".substratus"))
    apply(cli, workdir)
    with (workdir / "data/answers.jsonl").open("a") as f:
        f.write('{"completion": "x"}\n')
    change_outside_substratus(workdir, "prompts")
    done = drift_check("examples/ci/workspace", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    readme = (RECIPE / "README.md").read_text()
    assert done.stdout == readme.split("```markdown\n", 1)[1].split("```", 1)[0]


def test_invalid_files_exit_1_with_the_cli_error_lines(workspace: Path):
    (workspace / "bad.yaml").write_text(
        "apiVersion: substratus.ai/v1\nkind: Datasett\nmetadata: {name: a}\nspec: {}\n")
    direct = subprocess.run([str(VENV_BIN / "substratus"), "plan", "--detailed-exitcode", "--json",
                             str(workspace)], capture_output=True, text=True, env=run_env())
    assert direct.returncode == 3, "substratus's own exit code for invalid files"
    assert json.loads(direct.stdout)["valid"] is False, "a diagnostics document"

    done = drift_check("workspace", cwd=workspace.parent)
    assert done.returncode == 1, done.stdout + done.stderr
    # The error from the diagnostics document, then what substratus said on stderr.
    assert done.stdout == "\n".join([
        TITLE, "",
        "**Error:** `substratus plan` exited 3 (invalid resource files or usage).", "",
        "```text",
        'Error: bad.yaml:2: kind: unknown kind "Datasett" (did you mean "Dataset"?)',
        "1 error in the resource files.",
        "```", ""])
    assert "1 error in the resource files." in done.stderr, "substratus's messages stay in the log"
    assert done.stderr.splitlines()[-1] == (
        "drift-check.sh: error (exit 1; substratus plan exited 3)")
    assert not (workspace / ".substratus").exists()


def test_plan_arguments_after_double_dash_reach_substratus(workspace: Path):
    done = drift_check(workspace, "--", "--target", "Dataset/prompts", cwd=workspace)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "`Dataset/default/prompts`" in done.stdout
    assert "answers" not in done.stdout

    refused = drift_check(workspace, "--", "--no-such-option", cwd=workspace)
    assert refused.returncode == 1
    assert "Error: No such option '--no-such-option'" in refused.stdout


def test_usage(workspace: Path):
    helped = drift_check("--help", cwd=workspace)
    assert helped.returncode == 0
    assert helped.stdout.startswith(
        "Usage: drift-check.sh [--summary FILE] [--json FILE] [DIR] [-- PLAN_ARGS...]\n")
    unknown = drift_check("--target", "x", cwd=workspace)
    assert unknown.returncode == 1
    assert "drift-check.sh: unknown option: --target (plan options go after --)" in unknown.stderr
    two = drift_check("a", "b", cwd=workspace)
    assert two.returncode == 1
    assert "one workspace at a time" in two.stderr
    missing = drift_check(workspace, cwd=workspace, env=run_env(SUBSTRATUS="no-such-substratus"))
    assert missing.returncode == 1
    assert "no-such-substratus not found on PATH" in missing.stderr


# --- the script against a stand-in CLI: the JSON shapes and exit codes it must handle -----------

STAND_IN = f"""#!{sys.executable}
# A stand-in substratus: `plan --help` lists --input when STAND_IN_INPUT says so ("value": it takes
# --input=false; "flag": only --input/--no-input); `plan` prints STAND_IN_DOC and exits
# STAND_IN_CODE. Every call's arguments are appended to STAND_IN_LOG.
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STAND_IN_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
mode = os.environ.get("STAND_IN_INPUT", "")
if "--help" in args:
    if any(a.startswith("--input=") for a in args) and mode != "value":
        print("Error: No such option" if not mode else "Error: takes no value", file=sys.stderr)
        sys.exit(3)
    print("Usage: substratus plan [OPTIONS] [DIRECTORY]")
    print({{"value": "  --input BOOLEAN  Ask for input.", "flag": "  --input / --no-input",
            "": ""}}[mode])
    sys.exit(0)
sys.stdout.write(open(os.environ["STAND_IN_DOC"]).read())
sys.stderr.write(os.environ.get("STAND_IN_STDERR", ""))
sys.exit(int(os.environ["STAND_IN_CODE"]))
"""


@pytest.fixture
def stand_in(tmp_path: Path):
    """Run the script against the stand-in: (document or text, its exit code) -> result, calls."""
    program = tmp_path / "stand-in-substratus"
    program.write_text(STAND_IN)
    program.chmod(0o755)

    def run(document: Any, code: int, *, input_mode: str = "", stderr: str = ""
            ) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
        doc = tmp_path / "doc.json"
        doc.write_text(document if isinstance(document, str) else json.dumps(document))
        log = tmp_path / "calls.log"
        log.write_text("")
        env = run_env(SUBSTRATUS=str(program), STAND_IN_DOC=str(doc), STAND_IN_CODE=str(code),
                      STAND_IN_LOG=str(log), STAND_IN_INPUT=input_mode, STAND_IN_STDERR=stderr)
        done = drift_check("workspace", cwd=tmp_path, env=env)
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        return done, calls

    return run


def change(address: str, actions: list[str], reason: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"address": address, "mode": "managed", "type": address.split("/")[0],
                             "name": address.split("/")[-1],
                             "change": {"actions": actions, "before": None, "after": None}}
    if reason is not None:
        entry["action_reason"] = reason
    return entry


EMPTY_PLAN = {"format_version": "1.2", "resource_changes": [], "resource_drift": []}


@pytest.mark.parametrize(("input_mode", "passed"), [("", False), ("value", True), ("flag", False)],
                         ids=["no --input", "--input=false", "--input/--no-input"])
def test_input_false_is_passed_only_where_plan_takes_it(stand_in, input_mode: str, passed: bool):
    done, calls = stand_in(EMPTY_PLAN, 0, input_mode=input_mode)
    assert done.returncode == 0, done.stdout + done.stderr
    plans = [c for c in calls if "--help" not in c]
    assert plans == [["plan", "--detailed-exitcode", "--json",
                      *(["--input=false"] if passed else []), "workspace"]]


def test_terraform_show_json_shape(stand_in):
    """resource_changes[].change.actions of every kind Terraform writes, action_reason from its
    enum or absent, and resource_drift[] entries that carry a full change (no reason, no
    field_changes): what `plan --json` becomes in Terraform's shape."""
    document = {
        "format_version": "1.2",
        "resource_changes": [
            change("Dataset/default/same", ["no-op"]),
            change("Dataset/default/read", ["read"]),
            change("Dataset/default/new", ["create"]),
            change("Model/default/m", ["update"], "spec | labels changed"),
            change("Model/default/r1", ["delete", "create"], "replace_because_cannot_update"),
            change("Model/default/r2", ["create", "delete"], "replace_by_request"),
            change("Notebook/default/gone", ["delete"], "delete_because_no_resource_config"),
        ],
        "resource_drift": [
            {"address": "Model/default/m", "mode": "managed", "type": "Model", "name": "m",
             "change": {"actions": ["update"],
                        "before": {"spec": {"epochs": 3, "params": {"lr": 1, "bs": 8}}},
                        "after": {"spec": {"epochs": 3, "params": {"lr": 2, "bs": 8}},
                                  "labels": {"team": "x"}}}},
            {"address": "Notebook/default/gone", "mode": "managed", "type": "Notebook",
             "name": "gone", "change": {"actions": ["delete"], "before": {"spec": {}},
                                        "after": None}},
        ],
    }
    done, _ = stand_in(document, 2)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == "\n".join([
        TITLE, "",
        "**2 resources changed outside substratus; 5 pending changes.**", "",
        "| action | count |",
        "| --- | ---: |",
        "| create | 1 |",
        "| update | 1 |",
        "| replace | 2 |",
        "| delete | 1 |", "",
        "#### Pending changes", "",
        "| address | action | reason |",
        "| --- | --- | --- |",
        "| `Dataset/default/new` | create | - |",
        "| `Model/default/m` | update | spec \\| labels changed |",
        "| `Model/default/r1` | replace | replace_because_cannot_update |",
        "| `Model/default/r2` | replace | replace_by_request |",
        "| `Notebook/default/gone` | delete | delete_because_no_resource_config |", "",
        "#### Drift", "",
        "Changed outside substratus since the last apply (the pending changes put them back):", "",
        "| address | what happened | fields |",
        "| --- | --- | --- |",
        "| `Model/default/m` | changed outside substratus | `labels`, `spec.params.lr` |",
        "| `Notebook/default/gone` | deleted outside substratus | (whole object) |", ""])


def test_drift_alone_is_exit_2_even_when_plan_says_0(stand_in):
    """A drift with nothing to put back (substratus exits 0) is still what a drift check is for."""
    document = dict(EMPTY_PLAN, resource_drift=[
        {"address": "Dataset/default/d",
         "reason": "changed outside substratus since the last apply",
         "field_changes": [{"path": f"spec.f{i}"} for i in range(8)]}])
    done, _ = stand_in(document, 0)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "**1 resource changed outside substratus.**" in done.stdout
    assert "#### Pending changes" not in done.stdout
    assert ("| `Dataset/default/d` | changed outside substratus since the last apply | `spec.f0`, "
            "`spec.f1`, `spec.f2`, `spec.f3`, `spec.f4`, `spec.f5` and 2 more |") in done.stdout


def test_diagnostics_document_is_an_error(stand_in):
    """`plan --json` on invalid files as `terraform validate -json` writes them."""
    document = {"valid": False, "error_count": 1, "diagnostics": [
        {"severity": "error", "summary": 'unknown kind "Datset"', "detail": "did you mean Dataset?",
         "range": {"filename": "a.yaml", "start": {"line": 2, "column": 7}}}]}
    done, _ = stand_in(document, 3, stderr="1 error in the resource files.\n")
    assert done.returncode == 1
    assert done.stdout.endswith("\n".join([
        "**Error:** `substratus plan` exited 3 (invalid resource files or usage).", "",
        "```text",
        'Error: a.yaml:2: unknown kind "Datset": did you mean Dataset?',
        "1 error in the resource files.",
        "```", ""])), done.stdout


@pytest.mark.parametrize(("code", "stdout", "stderr", "expected"), [
    (4, "", "Error: the state is locked by ci@runner (ID 17)\n  force-unlock 17 releases it\n",
     ["**Error:** `substratus plan` exited 4 (the state is locked).", "", "```text",
      "Error: the state is locked by ci@runner (ID 17)", "  force-unlock 17 releases it", "```"]),
    (1, "", "Traceback?\nboom\n",
     ["**Error:** `substratus plan` exited 1.", "", "```text", "Traceback?", "boom", "```"]),
    (2, "{not json", "",
     ["**Error:** `substratus plan` exited 2 but its JSON plan could not be read (Expecting "
      "property name enclosed in double quotes: line 1 column 2 (char 1))."]),
    (0, "[]", "", ["**Error:** `substratus plan` exited 0 but its JSON plan could not be read "
                   "(not a JSON object)."]),
], ids=["locked", "error", "unreadable", "not-a-plan"])
def test_every_other_outcome_is_exit_1(stand_in, code: int, stdout: str, stderr: str,
                                       expected: list[str]):
    done, _ = stand_in(stdout, code, stderr=stderr)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == "\n".join([TITLE, "", *expected, ""])
    assert done.stderr.splitlines()[-1] == (
        f"drift-check.sh: error (exit 1; substratus plan exited {code})")


# --- the workflow ----------------------------------------------------------------------------


def workflow() -> dict[Any, Any]:
    assert [w.name for w in WORKFLOWS] == ["drift-check.yml"]
    loaded = yaml.safe_load(WORKFLOWS[0].read_text())
    assert isinstance(loaded, dict)
    return loaded


def step(job: dict[str, Any], name: str) -> dict[str, Any]:
    found = [s for s in job["steps"] if s.get("name", "").startswith(name)]
    assert len(found) == 1, f"one step named {name!r}"
    return found[0]


def test_workflow_shape():
    flow = workflow()
    triggers = flow[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) >= {"schedule", "pull_request"}
    assert flow["permissions"] == {"contents": "read"}
    local, gke = flow["jobs"]["local"], flow["jobs"]["gke"]
    for job in (local, gke):
        install = step(job, "Install substratus")["run"]
        # From the checkout (the package is not published), never the workloads extra.
        assert re.fullmatch(r"python -m pip install (\.|'\.\[[a-z,]+\]')\n?", install), install
        assert "workloads" not in install
        check = step(job, "Drift check")["run"]
        assert "examples/ci/drift-check.sh --summary summary.md" in check
        assert 'cat summary.md >> "$GITHUB_STEP_SUMMARY"' in check
        comment = step(job, "Comment on the pull request")
        assert comment["uses"].startswith("marocchino/sticky-pull-request-comment@")
        assert comment["with"]["path"] == "summary.md"
        assert job["permissions"]["pull-requests"] == "write"
        for s in job["steps"]:
            assert "${{" not in s.get("run", ""), "expressions reach run: scripts through env"
    assert "vars.GCP_WORKLOAD_IDENTITY_PROVIDER != ''" in gke["if"]
    assert gke["permissions"]["id-token"] == "write"
    auth = step(gke, "Authenticate to Google Cloud")
    assert auth["uses"].startswith("google-github-actions/auth@")
    assert set(auth["with"]) == {"workload_identity_provider", "service_account"}
    assert "gcp" in step(gke, "Install substratus")["run"]


def git(repo: Path, *args: str) -> str:
    env = run_env(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com",
                           "-c", "init.defaultBranch=main", *args], cwd=repo, capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A repository like the one the workflow checks out on a pull request: the recipe on a base
    branch, a pull request that changes a dataset's file, and the merge commit checked out (its
    first parent is the base branch)."""
    repo = tmp_path / "repo"
    shutil.copytree(RECIPE, repo / "examples" / "ci", ignore=shutil.ignore_patterns(".substratus"))
    (repo / ".gitignore").write_text(".substratus/\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "switch", "-q", "-c", "pr")
    with (repo / "examples/ci/workspace/data/prompts.jsonl").open("a") as f:
        f.write('{"prompt": "added by the pull request"}\n')
    git(repo, "commit", "-q", "-am", "pull request")
    git(repo, "switch", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge", "pr")
    return repo


def run_step(repo: Path, job: str, name: str, **env: str) -> subprocess.CompletedProcess[str]:
    """One `run:` step as a runner runs it (bash -e, the job's and step's env, GITHUB_* files)."""
    flow = workflow()
    steps = step(flow["jobs"][job], name)
    variables = {**flow["jobs"][job].get("env", {}), **env}
    for key in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        variables.setdefault(key, str(repo.parent / key.lower()))
        Path(variables[key]).touch()
    return subprocess.run(["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c",
                           steps["run"]], cwd=repo, env=run_env(**variables), capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)


def outputs(repo: Path) -> dict[str, str]:
    lines = (repo.parent / "github_output").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_workflow_local_job_on_a_pull_request(checkout: Path):
    baseline = run_step(checkout, "local", "Baseline", EVENT="pull_request")
    assert baseline.returncode == 0, baseline.stdout + baseline.stderr
    assert "Apply complete! Resources: 2 added" in baseline.stdout
    assert git(checkout, "log", "-1", "--format=%s") == "merge", "back on the merge commit"

    check = run_step(checkout, "local", "Drift check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert outputs(checkout) == {"exit-code": "2"}
    summary = (checkout.parent / "github_step_summary").read_text()
    assert summary == (checkout / "summary.md").read_text()
    assert summary.startswith("### substratus drift check: `examples/ci/workspace`\n")
    assert "| `Dataset/default/prompts` | replace | source content changed |" in summary
    assert "answers" not in summary
    assert json.loads((checkout / "plan.json").read_text())["resource_changes"]

    reported = run_step(checkout, "local", "Pass or fail", CODE="2", EVENT="pull_request")
    assert reported.returncode == 0
    assert reported.stdout.startswith("::notice title=substratus::merging this pull request")
    blocked = run_step(checkout, "local", "Pass or fail", CODE="2", EVENT="pull_request",
                       BLOCK_PR_CHANGES="true")
    assert blocked.returncode == 2
    failed = run_step(checkout, "local", "Pass or fail", CODE="1", EVENT="pull_request")
    assert failed.returncode == 1
    assert "::error title=substratus::the drift check failed" in failed.stdout


def test_workflow_local_job_on_schedule_fails_on_drift(checkout: Path):
    baseline = run_step(checkout, "local", "Baseline", EVENT="schedule")
    assert baseline.returncode == 0, baseline.stdout + baseline.stderr
    check = run_step(checkout, "local", "Drift check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert outputs(checkout) == {"exit-code": "0"}
    passed = run_step(checkout, "local", "Pass or fail", CODE="0", EVENT="schedule")
    assert passed.returncode == 0

    change_outside_substratus(checkout / "examples/ci/workspace", "answers")
    (checkout.parent / "github_output").write_text("")
    check = run_step(checkout, "local", "Drift check")
    assert check.returncode == 0, "the step reports; the last step fails the job"
    assert outputs(checkout) == {"exit-code": "2"}
    assert "| `Dataset/default/answers` | changed outside substratus since the last apply | " \
           "`spec.source.path` |" in (checkout / "summary.md").read_text()
    failed = run_step(checkout, "local", "Pass or fail", CODE="2", EVENT="schedule")
    assert failed.returncode == 2
    assert "::error title=substratus drift::" in failed.stdout


# --- linters ---------------------------------------------------------------------------------


def run_actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    binary = actionlint.binary()
    if not os.access(binary, os.X_OK):
        pytest.fail(actionlint.how_to_build())
    return subprocess.run([str(binary), "-verbose", "-no-color", *map(str, files)], cwd=REPO,
                          capture_output=True, text=True, env=run_env(), timeout=120)


def test_actionlint_passes_the_workflows():
    assert WORKFLOWS
    done = run_actionlint(*WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'Rule "shellcheck" was disabled' not in done.stderr, (
        "actionlint checks run: scripts with shellcheck: apt-get install shellcheck "
        "(tests/setup.sh installs it)")


def test_actionlint_finds_a_broken_workflow(tmp_path: Path):
    """The check above checks something: a misspelled step id and an unknown input are errors."""
    broken = tmp_path / "broken.yml"
    text = WORKFLOWS[0].read_text()
    text = text.replace("steps.check.outputs.exit-code != ''",
                        "steps.chek.outputs.exit-code != ''", 1)
    broken.write_text(text.replace("service_account:", "service_acount:", 1))
    done = run_actionlint(broken)
    assert done.returncode == 1
    assert 'property "chek" is not defined' in done.stdout
    assert 'input "service_acount" is not defined' in done.stdout


def test_shellcheck_passes_the_script():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is missing: apt-get install shellcheck "
                    "(tests/setup.sh installs it)")
    done = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
