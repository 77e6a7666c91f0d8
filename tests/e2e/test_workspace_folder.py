"""The workspace folder `.substratus/`: its own .gitignore, and `substratus gc`, through the real
CLI (and git, and a second process holding the state lock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from substratus_cli.errors import ExitCode

ENVIRONMENT = "apiVersion: substratus.ai/v1\nkind: Environment\nmetadata: {{name: e}}\n" \
              "spec: {{runtime: local, artifacts: {artifacts}}}\n"


def git(workdir: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(workdir), *args], check=True, capture_output=True,
                          text=True).stdout


def test_the_data_folder_ignores_itself_in_git(cli, quickstart_datasets: Path):
    ws = quickstart_datasets
    git(ws, "init", "-q")
    assert cli("validate", ws).code == 0
    assert not (ws / ".substratus").exists(), "validate writes nothing"
    assert cli("plan", ws).code == 0  # hashing the files fills a cache under .substratus/
    assert (ws / ".substratus" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert cli("apply", ws, "--auto-approve").code == 0
    untracked = git(ws, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert untracked and not [line for line in untracked if ".substratus" in line], untracked
    # A folder made before this existed gets one the next time substratus writes to it.
    (ws / ".substratus" / ".gitignore").unlink()
    assert cli("apply", ws, "--auto-approve").code == 0
    assert (ws / ".substratus" / ".gitignore").exists()


def test_gc_removes_only_what_no_state_entry_references(cli, quickstart_datasets: Path):
    ws = quickstart_datasets
    assert cli("apply", ws, "--auto-approve").code == 0
    nothing = cli("gc", ws)
    assert nothing.code == 0, nothing.output
    assert "Nothing to remove" in nothing.out
    rows = ws / "data" / "favorite-colors.jsonl"
    old = json.loads(cli("output", ws, "--json").out)["Dataset/favorite-colors.digest"]["value"]
    old_size = rows.stat().st_size
    rows.write_text(rows.read_text() + '{"prompt": "x", "completion": "y"}\n')
    assert cli("apply", ws, "--auto-approve").code == 0  # a new snapshot replaces the old one

    store = ws / ".substratus" / "artifacts"
    manifest = store / "manifests" / "sha256" / f"{old.removeprefix('sha256:')}.json"
    dry = cli("gc", ws, "--dry-run")
    assert dry.code == 0, dry.output
    assert f"Would remove snapshot {old}" in dry.out
    freed = old_size + manifest.stat().st_size
    assert (f"1 manifest(s) and 1 blob(s) would be removed: {freed / 1024:.1f} KiB ({freed} "
            "bytes) would be freed.") in dry.out
    assert manifest.exists(), "a dry run removes nothing"

    done = cli("gc", ws)
    assert done.code == 0, done.output
    assert f"Removed snapshot {old}" in done.out
    assert f"1 manifest(s) and 1 blob(s) removed: {freed / 1024:.1f} KiB ({freed} bytes) " \
           "freed." in done.out
    assert not manifest.exists()
    assert cli("verify", ws).code == 0
    assert cli("plan", ws, "--detailed-exitcode").code == 0
    assert "Nothing to remove" in cli("gc", ws).out

    # What destroy leaves behind (snapshots are kept after a destroy) is what gc frees.
    assert cli("destroy", ws, "--auto-approve").code == 0
    emptied = cli("gc", ws)
    assert "2 manifest(s) and 3 blob(s) removed" in emptied.out  # color-facts is 2 files
    assert not list((store / "blobs" / "sha256").iterdir())


def test_gc_takes_the_state_lock(cli, quickstart_datasets: Path):
    ws = quickstart_datasets
    assert cli("apply", ws, "--auto-approve").code == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from pathlib import Path\n"
         "from substratus_cli.state import open_backend\n"
         "backend = open_backend('file://.substratus/state', Path(sys.argv[1]))\n"
         "backend.lock('apply', 0)\n"
         "print('locked', flush=True)\n"
         "time.sleep(60)\n", str(ws)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        locked = cli("gc", ws, "--lock-timeout", "1s")
        assert locked.code == ExitCode.LOCKED, locked.output
        assert "Cannot acquire the state lock" in locked.err
        assert time.monotonic() - started >= 1
    finally:
        holder.kill()
        holder.wait()
    assert cli("gc", ws).code == 0


def test_gc_refuses_stores_it_cannot_sweep_safely(cli, quickstart_datasets: Path, tmp_path: Path):
    ws = quickstart_datasets
    environment = ws / "environment.yaml"
    environment.write_text(ENVIRONMENT.format(artifacts="gs://bucket/ml"))
    remote = cli("gc", ws)
    assert remote.code == ExitCode.ERROR
    assert ("Error: substratus gc is not built yet for gs:// artifact stores (this workspace's: "
            "gs://bucket/ml)") in remote.err
    shared = tmp_path / "shared-store"
    environment.write_text(ENVIRONMENT.format(artifacts=f"file://{shared}"))
    outside = cli("gc", ws)
    assert outside.code == ExitCode.ERROR
    assert f"the artifact store file://{shared} is outside this workspace" in outside.err
    assert not (ws / ".substratus").exists()


def test_gc_removes_nothing_while_an_operation_did_not_finish(cli, quickstart_datasets: Path):
    ws = quickstart_datasets
    assert cli("apply", ws, "--auto-approve").code == 0
    inventory = ws / ".substratus" / "state" / "inventory.json"
    data = json.loads(inventory.read_text())
    data["resources"][0]["pending"] = {"operation": "replace", "since": 0.0, "pid": 1,
                                       "host": "elsewhere"}
    inventory.write_text(json.dumps(data))
    result = cli("gc", ws)
    assert result.code == ExitCode.ERROR
    assert "Error: the state holds operations that did not finish: Dataset/" in result.err
    assert "run `substratus apply` first" in result.err
