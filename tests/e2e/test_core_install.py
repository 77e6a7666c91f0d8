"""The CLI on the core install alone (`pip install -e .`: no torch, transformers or JupyterLab),
run as a real `substratus` in a venv of its own: validate, plan, plan --json, show and graph of
the quickstart make the same plan as the full install; apply snapshots the datasets and refuses the
first step that runs a workload, naming the `pip install` that adds the workloads extra; state,
output and the next plan read what it did.

The venv is built once and kept under ~/.cache/substratus/core-venv/ (or $SUBSTRATUS_CACHE),
keyed by a hash of pyproject.toml and this checkout's path (the install is editable, so a venv
serves one checkout): the first run installs the core dependencies from the package index, about
a minute; later runs reuse it."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from substratus_cli.errors import ExitCode
from tests.conftest import REPO, Result

# What the workloads extra brings and the core install must do without.
EXTRA_MODULES = ("torch", "transformers", "tokenizers", "jupyterlab")
BUILD_SECONDS = 900
READY = ".substratus-core-venv-ready"

pytestmark = pytest.mark.timeout(BUILD_SECONDS + 120)


def venv_dir() -> Path:
    cache = Path(os.environ.get("SUBSTRATUS_CACHE") or Path.home() / ".cache" / "substratus")
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + b"\0" + str(REPO).encode())
    return cache / "core-venv" / key.hexdigest()[:16]


def how_to_build(venv: Path) -> str:
    return (f"Build it by hand with `{sys.executable} -m venv {venv} && {venv}/bin/python -m pip "
            f"install -e {REPO} && touch {venv}/{READY}` (it needs the package index), then run "
            "the test again.")


def clean_env() -> dict[str, str]:
    """This process's environment without what would point the venv's Python elsewhere."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
            and not k.startswith("SUBSTRATUS_VAR_")}


def probe(venv: Path) -> tuple[str, list[str]]:
    """Where the venv imports substratus from, and which of the extra's modules it finds."""
    script = ("import importlib.util, sys, substratus_cli; print(substratus_cli.__file__); "
              "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))")
    done = subprocess.run([str(venv / "bin" / "python"), "-c", script, *EXTRA_MODULES],
                          capture_output=True, text=True, env=clean_env(), timeout=60)
    if done.returncode != 0:
        return "", []
    where, _, found = done.stdout.partition("\n")
    return where.strip(), found.split()


def build(venv: Path) -> None:
    log = venv.with_suffix(".log")
    shutil.rmtree(venv, ignore_errors=True)
    started = time.monotonic()
    print(f"building the core-install venv {venv} (pip install -e {REPO}; log: {log})",
          file=sys.stderr)
    with log.open("w") as out:
        for argv in ([sys.executable, "-m", "venv", str(venv)],
                     [str(venv / "bin" / "python"), "-m", "pip", "install",
                      "--disable-pip-version-check", "-e", str(REPO)]):
            try:
                done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=clean_env(),
                                      timeout=BUILD_SECONDS)
            except subprocess.TimeoutExpired:
                pytest.fail(f"`{shlex.join(argv)}` took more than {BUILD_SECONDS} s (log: {log})."
                            f" {how_to_build(venv)}")
            if done.returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                pytest.fail(f"could not build the core-install venv: `{shlex.join(argv)}` exited "
                            f"{done.returncode}; the end of {log}:\n{tail}\n{how_to_build(venv)}")
    print(f"built the core-install venv in {time.monotonic() - started:.0f} s", file=sys.stderr)


@pytest.fixture(scope="module")
def core_venv() -> Path:
    """A venv with `pip install -e REPO` and nothing more, built the first time (under a lock:
    two test runs at once build it once)."""
    venv = venv_dir()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        where, _ = probe(venv) if (venv / READY).exists() else ("", [])
        if not where.startswith(f"{REPO}{os.sep}"):
            build(venv)
            (venv / READY).touch()
            where, _ = probe(venv)
    assert where.startswith(f"{REPO}{os.sep}"), (
        f"the core-install venv {venv} imports substratus from {where or 'nowhere'}, not from "
        f"{REPO}. {how_to_build(venv)}")
    _, found = probe(venv)
    assert not found, (f"the core-install venv {venv} has {', '.join(found)}, which the core "
                       f"install must do without: remove that folder and run the test again")
    return venv


@pytest.fixture
def core_cli(core_venv: Path):
    """Run the venv's `substratus ARGS…` as a subprocess."""

    def invoke(*args: object) -> Result:
        done = subprocess.run([str(core_venv / "bin" / "substratus"), *map(str, args)],
                              capture_output=True, text=True, env=clean_env(), timeout=120)
        return Result(done.returncode, done.stdout, done.stderr)

    return invoke


def test_validate_plan_show_and_graph_need_only_the_core_install(core_cli, cli, quickstart,
                                                                 tmp_path):
    validated = core_cli("validate", quickstart)
    assert validated.code == 0, validated.output
    assert "Success! The resource files are valid (7 resources)." in validated.out

    # The same plan the full install makes (this process has torch): nothing of it needs torch,
    # the scratch model's size included (GPT-2's arithmetic over its config).
    plan = core_cli("plan", "--detailed-exitcode", quickstart)
    assert plan.code == ExitCode.CHANGES_PRESENT, plan.output
    assert plan.err == ""
    assert plan.out == cli("plan", quickstart).out
    assert plan.out.rstrip().endswith("Plan: 6 to add, 0 to change, 0 to destroy.")
    for address in ("Dataset/default/color-facts", "Dataset/default/favorite-colors",
                    "Model/default/base", "Model/default/colors", "ModelServer/default/colors",
                    "Notebook/default/explore"):
        assert f"# {address} will be created (not in live state)" in plan.out
    assert re.search(r"\+ status\.parameterCount += 124736\n", plan.out), plan.out
    assert "# sizing: training needs 124.7k parameters x 16 bytes" in plan.out
    assert "# sizing: serving needs 124.7k parameters x 32 bits / 8" in plan.out

    as_json = core_cli("plan", "--json", quickstart)
    assert as_json.code == 0, as_json.output
    assert json.loads(as_json.out) == json.loads(cli("plan", "--json", quickstart).out)
    assert [c["change"]["actions"] for c in json.loads(as_json.out)["resource_changes"]] == \
        [["create"]] * 6

    saved = core_cli("plan", "--out", tmp_path / "plan.bin", quickstart)
    assert saved.code == 0, saved.output
    shown = core_cli("show", tmp_path / "plan.bin")
    assert shown.code == 0, shown.output
    assert "Plan: 6 to add, 0 to change, 0 to destroy." in shown.out
    shown_json = core_cli("show", "--json", tmp_path / "plan.bin")
    assert shown_json.code == 0, shown_json.output
    assert len(json.loads(shown_json.out)["resource_changes"]) == 6

    graph = core_cli("graph", quickstart)
    assert graph.code == 0, graph.output
    assert graph.out == cli("graph", quickstart).out
    assert '"Model/default/colors" -> "Model/default/base";' in graph.out
    assert not (quickstart / ".substratus" / "runtime").exists(), "nothing here changes live state"


def test_apply_snapshots_the_datasets_and_names_the_install_at_the_first_workload(
        core_cli, core_venv, quickstart):
    applied = core_cli("apply", "--auto-approve", quickstart)
    # Steps failed and others were done: the CLI's "apply partially done".
    assert applied.code == ExitCode.PARTIAL_APPLY, applied.output
    for name in ("color-facts", "favorite-colors"):
        assert f"Dataset/default/{name}: Creation complete after" in applied.out
    assert "Apply partially done: 1 failed, 3 skipped. Resources: 2 added" in applied.out
    refusal = ("Model/default/base: the scratch model build needs the workloads extra: torch, "
               "transformers, tokenizers are not installed")
    assert refusal in applied.err, applied.output
    install = re.search(r"install it \(about 3 GB, once\): (cd .*? -m pip install -e "
                        r"'\.\[workloads\]')", applied.err)
    assert install, applied.output
    # The exact command: this checkout, this venv's Python.
    assert re.fullmatch(rf"cd {re.escape(shlex.quote(str(REPO)))} && "
                        rf"{re.escape(str(core_venv))}/bin/python[0-9.]* -m pip install -e "
                        r"'\.\[workloads\]'", install.group(1)), install.group(1)
    for skipped in ("Model/default/colors", "ModelServer/default/colors",
                    "Notebook/default/explore"):
        assert f"{skipped}: Skipped" in applied.out
    # Refused before anything was recorded or started for it.
    assert not (quickstart / ".substratus" / "runtime" / "objects" / "Model").exists()
    assert not (quickstart / ".substratus" / "runtime" / "processes").exists()

    listed = core_cli("state", "list", quickstart)
    assert listed.code == 0, listed.output
    digests = dict(re.findall(r"^(Dataset/default/\S+)\tdigest=(sha256:\w+)$", listed.out, re.M))
    assert sorted(digests) == ["Dataset/default/color-facts", "Dataset/default/favorite-colors"]
    shown = core_cli("state", "show", "Dataset/favorite-colors", quickstart)
    assert shown.code == 0, shown.output
    assert f"status.digest: {digests['Dataset/default/favorite-colors']}" in shown.out
    outputs = core_cli("output", "--json", quickstart)
    assert outputs.code == 0, outputs.output
    assert digests["Dataset/default/color-facts"] in outputs.out

    # What is left is planned as it was: the refused model is still a create, not a repair.
    again = core_cli("plan", "--detailed-exitcode", quickstart)
    assert again.code == ExitCode.CHANGES_PRESENT, again.output
    assert "# Model/default/base will be created (not in live state)" in again.out
    assert again.out.rstrip().endswith("Plan: 4 to add, 0 to change, 0 to destroy.")


def test_a_gcp_object_in_the_state_without_the_gcp_extra_names_the_install(
        core_cli, core_venv, quickstart_datasets):
    """The files no longer declare the Cluster, but the state holds it: planning its deletion
    needs the Google library, which the core install lacks."""
    assert core_cli("apply", "--auto-approve", quickstart_datasets).code == 0
    inventory = quickstart_datasets / ".substratus" / "state" / "inventory.json"
    state = json.loads(inventory.read_text())
    state["resources"].append({"address": "Cluster/default/gke", "provider": "gcp",
                               "status": {"project": "p", "location": "us-central1"},
                               "deps": []})
    inventory.write_text(json.dumps(state))
    planned = core_cli("plan", quickstart_datasets)
    assert planned.code == 1, planned
    assert "Error: Cluster objects need the gcp extra (google is not installed): the state " \
           "holds some" in planned.err
    assert f"cd {REPO} && {core_venv}/bin/python" in planned.err
    assert "-m pip install -e '.[gcp]'" in planned.err and "Internal error" not in planned.err
