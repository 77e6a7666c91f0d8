"""`substratus verify` reads back what the state names from the artifact store: intact, corrupt
and missing blobs, on the local runtime's file:// store."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

DATASET = """\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {name: rows}
spec:
  source: {path: data}
"""


def workspace(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "data" / "a.jsonl").write_text('{"a": 1}\n')
    (root / "data" / "b.jsonl").write_text('{"b": 2}\n')
    (root / "dataset.yaml").write_text(DATASET)
    time.sleep(0.2)
    return root


def blob(root: Path, text: str) -> Path:
    hexdigest = hashlib.sha256(text.encode()).hexdigest()
    return (root / ".substratus" / "artifacts" / "blobs" / "sha256" / hexdigest[:2] / hexdigest)


def test_verify_names_corrupt_and_missing_blobs_and_exits_1(cli, tmp_path: Path) -> None:
    root = workspace(tmp_path / "ws")
    assert cli("apply", "--auto-approve", root).code == 0
    intact = cli("verify", root)
    assert intact.code == 0, intact.output
    assert intact.out.startswith("Verified 1 snapshot(s), 0.0 MiB read: intact.")

    corrupt = blob(root, '{"a": 1}\n')
    corrupt.chmod(0o644)
    corrupt.write_text('{"a": 9}\n')  # one byte flipped, as a workload writing through could
    gone = blob(root, '{"b": 2}\n')
    gone.unlink()
    damaged = cli("verify", root)
    assert damaged.code == 1, damaged.output
    digest = next(line for line in cli("state", "list", root).out.splitlines()).split(
        "digest=")[1].split("\t")[0]
    a_sha = hashlib.sha256(b'{"a": 1}\n').hexdigest()
    flipped = hashlib.sha256(b'{"a": 9}\n').hexdigest()
    b_sha = hashlib.sha256(b'{"b": 2}\n').hexdigest()
    assert (f"Error: Dataset/default/rows: {digest}: blob sha256:{a_sha} (a.jsonl) is corrupt: "
            f"it holds sha256:{flipped} (9 bytes, 9 expected)") in damaged.err
    assert f"Error: Dataset/default/rows: {digest}: blob sha256:{b_sha} (b.jsonl) is missing" \
        in damaged.err
    assert "Error: 1 of 1 snapshot(s) damaged" in damaged.err
    assert corrupt.read_text() == '{"a": 9}\n'  # verify changes nothing


def test_verify_with_nothing_applied_has_nothing_to_check(cli, tmp_path: Path) -> None:
    checked = cli("verify", workspace(tmp_path / "ws"))
    assert checked.code == 0
    assert checked.out.startswith("Verified 0 snapshot(s)")


def test_a_workload_that_writes_to_its_inputs_leaves_the_store_intact(cli,
                                                                     tmp_path: Path) -> None:
    # A training command (as root, which read-only files do not stop) appending to its dataset.
    root = workspace(tmp_path / "ws")
    (root / "weights").mkdir()
    (root / "weights" / "config.json").write_text("{}")
    (root / "models.yaml").write_text("""\
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: base}
spec:
  source: {path: weights}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: tuned}
spec:
  training: {baseModel: {name: base}, dataset: {name: rows}}
  command: ["sh", "-c", "echo tampered >> $SUBSTRATUS_CONTENT/data/a.jsonl && echo tampered >> $SUBSTRATUS_CONTENT/model/config.json && echo w > $SUBSTRATUS_CONTENT/artifacts/w.bin"]
""")
    time.sleep(0.2)
    applied = cli("apply", "--auto-approve", root)
    assert applied.code == 0, applied.output
    assert blob(root, '{"a": 1}\n').read_text() == '{"a": 1}\n'
    assert blob(root, "{}").read_text() == "{}"
    checked = cli("verify", root)
    assert checked.code == 0, checked.output
    assert checked.out.startswith("Verified 3 snapshot(s)")


def test_a_blob_written_through_is_planned_as_a_new_snapshot_and_apply_repairs_it(
        cli, tmp_path: Path) -> None:
    root = workspace(tmp_path / "ws")
    assert cli("apply", "--auto-approve", root).code == 0
    assert cli("plan", "--detailed-exitcode", root).code == 0

    corrupt = blob(root, '{"a": 1}\n')
    corrupt.chmod(0o644)
    corrupt.write_text('{"a": 9}\n')  # what a workload writing through a hard link did
    digest = next(line for line in cli("state", "list", root).out.splitlines()).split(
        "digest=")[1].split("\t")[0]
    planned = cli("plan", "--detailed-exitcode", root)
    assert planned.code == 2, planned.output
    assert (f"snapshot {digest} is corrupt in the artifact store (a.jsonl: the blob no longer "
            "holds the content it was stored as); snapshot it again") in " ".join(
                planned.out.split())
    assert "# Dataset/default/rows must be replaced" in planned.out, planned.out
    assert "-/+ Dataset/default/rows" in planned.out

    assert cli("apply", "--auto-approve", root).code == 0
    assert corrupt.read_text() == '{"a": 1}\n'  # written again from the source
    assert cli("verify", root).code == 0
    assert cli("plan", "--detailed-exitcode", root).code == 0


def test_an_unchanged_snapshot_is_not_read_again_at_plan(cli, tmp_path: Path) -> None:
    """The plan's check costs a stat per blob: a blob the snapshot wrote is trusted until its
    inode changes (proved here by a blob whose bytes differ but whose inode never changed:
    only `verify`, which reads everything, finds that)."""
    root = workspace(tmp_path / "ws")
    assert cli("apply", "--auto-approve", root).code == 0
    target = blob(root, '{"b": 2}\n')
    # A same-size corrupt write, after which the manifests' inodes change too: the blob's ctime
    # is then older than its manifest's, as for a blob no one touched since the snapshot.
    manifests = list((root / ".substratus" / "artifacts" / "manifests").rglob("*"))
    target.chmod(0o644)
    target.write_text('{"b": 7}\n')
    target.chmod(0o444)
    for m in manifests:  # the manifest's inode changes after the blob's: as if written later
        if m.is_file():
            m.chmod(m.stat().st_mode)
            m.touch()
    assert cli("plan", "--detailed-exitcode", root).code == 0  # not read: trusted by ctime
    assert cli("verify", root).code == 1  # the full read finds it


def test_verify_repair_makes_the_damaged_snapshots_again(cli, tmp_path: Path) -> None:
    root = workspace(tmp_path / "ws")
    assert cli("apply", "--auto-approve", root).code == 0
    corrupt, gone = blob(root, '{"a": 1}\n'), blob(root, '{"b": 2}\n')
    corrupt.chmod(0o644)
    corrupt.write_text('{"a": 9}\n')
    gone.unlink()

    declined = cli("verify", "--repair", root, input="no\n")
    assert declined.code == 1, declined.output
    assert "Do you want to perform these actions?" in declined.out
    assert "-/+ Dataset/default/rows" in declined.out, declined.out
    assert not corrupt.exists()  # removed before asking: nothing can read it as good

    repaired = cli("verify", "--repair", "--auto-approve", root)
    assert repaired.code == 0, repaired.output
    assert "Apply complete! Resources: 1 added, 0 changed, 1 destroyed." in repaired.out
    assert corrupt.read_text() == '{"a": 1}\n' and gone.read_text() == '{"b": 2}\n'
    assert cli("verify", root).code == 0
    assert cli("plan", "--detailed-exitcode", root).code == 0


def test_verify_repair_with_nothing_damaged_changes_nothing(cli, tmp_path: Path) -> None:
    root = workspace(tmp_path / "ws")
    assert cli("apply", "--auto-approve", root).code == 0
    checked = cli("verify", "--repair", root)
    assert checked.code == 0 and "intact" in checked.out, checked.output
