"""A lost, damaged or unreachable state, as a user meets it on the local runtime: the backup kept
beside the inventory, `substratus import` after the inventory is gone, and a plan that holds the
state lock (and goes on without it on a read-only or full disk)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from substratus_cli.errors import ExitCode
from tests.e2e.test_locking import slow_dataset, substratus, wait_until_locked
from tests.support.http_server import Route, serve

ENV = {**os.environ, "NO_COLOR": "1"}


def state_dir(workdir: Path) -> Path:
    return workdir / ".substratus" / "state"


def edit_rows(workdir: Path) -> None:
    prompts = workdir / "data" / "favorite-colors.jsonl"
    prompts.write_text(prompts.read_text() + '{"prompt": "one more"}\n')


def test_an_apply_keeps_the_state_it_started_from_as_the_backup(cli, quickstart_datasets):
    workdir = quickstart_datasets
    assert cli("apply", workdir, "--auto-approve").code == 0
    before = json.loads((state_dir(workdir) / "inventory.json").read_text())
    assert not (state_dir(workdir) / "inventory.json.backup").exists()  # nothing came before

    edit_rows(workdir)
    assert cli("apply", workdir, "--auto-approve").code == 0
    backup = json.loads((state_dir(workdir) / "inventory.json.backup").read_text())
    assert backup == before  # not one step old: the whole run's starting point

    # A damaged inventory: the error names the backup and the command that restores it.
    (state_dir(workdir) / "inventory.json").write_text('{"lineage": "x", "serial": ')
    damaged = cli("plan", workdir)
    assert damaged.code == ExitCode.ERROR and "Traceback" not in damaged.err
    assert "is damaged" in damaged.err
    restore = (f"cp {state_dir(workdir)}/inventory.json.backup "
               f"{state_dir(workdir)}/inventory.json")
    assert restore in " ".join(damaged.err.split()), damaged.err
    assert f"serial {before['serial']}" in damaged.err

    shutil.copy(state_dir(workdir) / "inventory.json.backup", state_dir(workdir) / "inventory.json")
    replan = cli("plan", workdir, "--detailed-exitcode")
    # The backup predates the second apply: the plan shows the edited dataset's new snapshot
    # as already there (refreshed), never as a change to make again by recreating anything.
    assert replan.code in (ExitCode.OK, ExitCode.CHANGES_PRESENT), replan
    assert "Traceback" not in replan.err
    assert cli("apply", workdir, "--auto-approve").code == 0
    assert cli("plan", workdir, "--detailed-exitcode").code == 0


def test_import_rebuilds_a_lost_state(cli, quickstart_datasets):
    workdir = quickstart_datasets
    assert cli("apply", workdir, "--auto-approve").code == 0
    lineage = json.loads((state_dir(workdir) / "inventory.json").read_text())["lineage"]
    (state_dir(workdir) / "inventory.json").unlink()

    locked_out = cli("plan", workdir)
    assert locked_out.code == ExitCode.ERROR
    assert f"managed by another substratus workspace (part-of {lineage})" in locked_out.err
    assert "`substratus import`" in locked_out.err

    refused = cli("import", "--dir", workdir, "--input=false")
    assert refused.code == ExitCode.INVALID_INPUT
    assert "Import cancelled: it needs approval and --input=false forbids asking" in refused.err
    assert not (state_dir(workdir) / "inventory.json").exists()

    cancelled = cli("import", "--dir", workdir, input="no\n")
    assert cancelled.code == ExitCode.ERROR and "Import cancelled." in cancelled.err
    shown = cancelled.out  # the labels are shown before anything is written
    assert "Dataset/favorite-colors" in shown and "Dataset/color-facts" in shown
    assert f"substratus.ai/part-of={lineage}" in shown
    assert "app.kubernetes.io/managed-by=substratus" in shown

    imported = cli("import", "--dir", workdir, input="yes\n")
    assert imported.code == 0, imported
    assert "Import successful! 2 objects adopted." in imported.out
    state = json.loads((state_dir(workdir) / "inventory.json").read_text())
    assert state["lineage"] == lineage
    assert sorted(e["address"] for e in state["resources"]) == [
        "Dataset/default/color-facts", "Dataset/default/favorite-colors"]

    replan = cli("plan", workdir, "--detailed-exitcode")
    assert replan.code == 0, replan
    assert "No changes." in replan.out

    again = cli("import", "--dir", workdir, "--auto-approve")
    assert again.code == ExitCode.ERROR
    assert "already holds 2 resources" in again.err and "not built yet" in again.err


def test_import_names_what_it_cannot_adopt(cli, quickstart_datasets):
    workdir = quickstart_datasets
    nothing = cli("import", "--dir", workdir, "--auto-approve")
    assert nothing.code == ExitCode.ERROR
    assert "nothing to import: no declared resource exists" in nothing.err
    assert cli("apply", workdir, "--auto-approve", "--target", "Dataset/favorite-colors").code == 0
    (state_dir(workdir) / "inventory.json").unlink()
    missing = cli("import", "Dataset/color-facts", "--dir", workdir, "--auto-approve")
    assert missing.code == ExitCode.ERROR
    assert "nothing to import: Dataset/color-facts does not exist" in missing.err
    typo = cli("import", "Dataset/favorite-color", "--dir", workdir, "--auto-approve")
    assert typo.code == ExitCode.INVALID_INPUT and "did you mean Dataset/favorite-colors?" in typo.err
    assert not (state_dir(workdir) / "inventory.json").exists()


def test_plan_holds_the_state_lock_unless_told_not_to(tmp_path):
    workdir = tmp_path / "ws"
    with serve({"/slow.csv": Route(b"a,b\n" * 1000, seconds=4.0)}) as server:
        slow_dataset(workdir, server.url)
        holder = substratus("apply", workdir, "--auto-approve")
        try:
            wait_until_locked(workdir)
            locked = subprocess.run([sys.executable, "-m", "substratus_cli", "plan", workdir],
                                    capture_output=True, text=True, env=ENV, timeout=60)
            assert locked.returncode == ExitCode.LOCKED, locked
            assert "Cannot acquire the state lock" in locked.stderr
            assert "operation apply" in locked.stderr
            unlocked = subprocess.run([sys.executable, "-m", "substratus_cli", "plan", workdir,
                                       "-lock=false"],
                                      capture_output=True, text=True, env=ENV, timeout=60)
            assert unlocked.returncode == 0, unlocked
            waited = subprocess.run([sys.executable, "-m", "substratus_cli", "plan", workdir,
                                     "--lock-timeout=60s", "--detailed-exitcode"],
                                    capture_output=True, text=True, env=ENV, timeout=90)
        finally:
            holder.communicate(timeout=60)
    assert holder.returncode == 0
    assert waited.returncode == 0, waited  # it waited for the apply, then found nothing to do
    assert "No changes." in waited.stdout


def confined(script: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run `script` (sh) in a user and mount namespace of its own, where it may mount a
    read-only bind or a tiny tmpfs without privileges on the machine."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed: apt-get install util-linux")
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-ec", script,
                           "sh", *map(str, args), sys.executable],
                          capture_output=True, text=True, env=ENV, timeout=120)
    if "unshare: " in done.stderr and done.returncode != 0:
        pytest.fail(f"user namespaces are needed for this test: {done.stderr.strip()}")
    return done


def test_plan_works_on_a_read_only_disk(cli, quickstart_datasets):
    workdir = quickstart_datasets
    assert cli("apply", workdir, "--auto-approve").code == 0
    done = confined('mount --bind "$1" "$1"; mount -o remount,bind,ro "$1"; touch "$1/x" || true; '
                    'exec "$2" -m substratus_cli plan "$1" --detailed-exitcode', workdir)
    assert "Read-only file system" in done.stderr  # the touch: the disk really is read-only
    assert done.returncode == 0, done
    assert "No changes." in done.stdout
    assert ("Warning: Cannot take the state lock for file://" in done.stderr
            and "Read-only file system; planning without the lock" in done.stderr), done.stderr
    assert "Traceback" not in done.stderr
    applied = confined('mount --bind "$1" "$1"; mount -o remount,bind,ro "$1"; '
                       'exec "$2" -m substratus_cli apply "$1" --auto-approve', workdir)
    assert applied.returncode == ExitCode.LOCKED, applied  # nothing can apply there
    assert "free some space or make the folder writable" in applied.stderr


def test_plan_works_on_a_full_disk(cli, quickstart_datasets, tmp_path):
    workdir = quickstart_datasets
    assert cli("apply", workdir, "--auto-approve").code == 0
    disk = tmp_path / "disk"
    disk.mkdir()
    # The workspace on a 16 MiB tmpfs, filled up before the plan runs. The lock is taken (the
    # kernel's lock needs no space); who holds it cannot be written, and need not be.
    done = confined('mount -t tmpfs -o size=16m tmpfs "$2"; cp -a "$1/." "$2/"; '
                    'dd if=/dev/zero of="$2/filler" bs=64k 2>/dev/null || true; '
                    'dd if=/dev/zero of="$2/probe" bs=4k count=1 || true; '
                    'exec "$3" -m substratus_cli plan "$2" --detailed-exitcode', workdir, disk)
    assert "No space left on device" in done.stderr  # the probe: the disk really is full
    assert done.returncode == 0, done
    assert "No changes." in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("location, expected", [
    ("file://\\0", "Error: env.yaml:6: spec.state: invalid location 'file://\\x00': control "
                  "characters (a NUL, a newline) cannot be in a path or object name"),
    ("file:///tmp/" + "a" * 5000, "Error: env.yaml:6: spec.state: invalid location "
                                  "'file:///tmp/aaaaaaaaaaaa"),
    ("file:///tmp/" + "a/" * 600, "longer than a path can be"),
])
def test_a_state_location_no_disk_can_hold_is_invalid_input(cli, tmp_path, location, expected):
    (tmp_path / "env.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Environment
metadata: {{name: local}}
spec:
  runtime: local
  state: "{location}"
""")
    result = cli("plan", tmp_path)
    assert result.code == ExitCode.INVALID_INPUT, result
    assert expected in result.err and "Internal error" not in result.err


def test_a_state_location_that_is_a_file_is_a_clear_error(cli, tmp_path):
    (tmp_path / "occupied").write_text("not a folder")
    (tmp_path / "env.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Environment
metadata: {{name: local}}
spec:
  runtime: local
  state: "file://{tmp_path}/occupied"
""")
    result = cli("plan", tmp_path)
    assert result.code == ExitCode.ERROR, result
    assert f"Error: cannot read the state at file://{tmp_path}/occupied: Not a directory" \
        in result.err
    assert "Internal error" not in result.err
