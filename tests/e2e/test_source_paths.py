"""Path sources through the CLI: a Dataset of the whole workspace (`path: .`) converges, since the
workspace's own `.substratus/` is never in it; a path outside the workspace is refused at
validate unless the source allows it; what apply would refuse, validate refuses first (exit 3)."""

from __future__ import annotations

from pathlib import Path

from substratus_cli.errors import ExitCode


def dataset(workdir: Path, source: str) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "dataset.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {{name: everything}}
spec:
  source: {source}
""")


def test_a_dataset_of_the_whole_workspace_converges(cli, tmp_path: Path) -> None:
    workdir = tmp_path / "ws"
    dataset(workdir, "{path: .}")
    (workdir / "notes.txt").write_text("hello\n")
    applied = cli("apply", workdir, "--auto-approve")
    assert applied.code == ExitCode.OK, applied.output
    assert "Apply complete! Resources: 1 added" in applied.out
    again = cli("plan", workdir, "--detailed-exitcode")
    assert again.code == ExitCode.OK, again.output
    assert "No changes." in again.out
    listed = cli("state", "show", "Dataset/everything", workdir)
    assert "files: 2" in listed.out, listed.output  # dataset.yaml and notes.txt, no .substratus


def test_allow_outside_snapshots_a_folder_beside_the_workspace(cli, tmp_path: Path) -> None:
    shared = tmp_path / "team-data"
    shared.mkdir()
    (shared / "rows.csv").write_text("a,b\n")
    workdir = tmp_path / "ws"
    dataset(workdir, "{path: ../team-data}")
    refused = cli("validate", workdir)
    assert refused.code == ExitCode.INVALID_INPUT
    assert refused.err.startswith(
        f"Error: dataset.yaml:5: spec.source.path: source path '../team-data' is outside the "
        f"workspace (it resolves to {shared})\n")
    dataset(workdir, "{path: ../team-data, allowOutside: true}")
    applied = cli("apply", workdir, "--auto-approve")
    assert applied.code == ExitCode.OK, applied.output
    assert cli("plan", workdir, "--detailed-exitcode").code == ExitCode.OK


def test_validate_refuses_what_apply_would_with_exit_3(cli, tmp_path: Path) -> None:
    dataset(tmp_path, '{url: "file:///etc/passwd"}')
    (tmp_path / "more.yaml").write_text("""\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {name: gone, labels: {app.kubernetes.io/managed-by: helm}}
spec:
  source: {path: data/gone.csv}
""")
    refused = cli("validate", tmp_path)
    assert refused.code == ExitCode.INVALID_INPUT
    assert refused.err.splitlines()[0].startswith(
        "Error: dataset.yaml:5: spec.source.url: unsupported url 'file:///etc/passwd'")
    assert "Error: more.yaml:3: metadata.labels.app.kubernetes.io/managed-by: label " \
           "'app.kubernetes.io/managed-by' is reserved" in refused.err
    assert "Error: more.yaml:5: spec.source.path: source path 'data/gone.csv' does not exist" \
        in refused.err
    assert "3 errors in the resource files." in refused.err
