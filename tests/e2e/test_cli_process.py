"""The CLI as a real process (`python -m substratus_cli`).

What it imports, read with `-X importtime` (which logs every module the process imports, lazily
imported ones included): a no-change plan stores nothing, so it imports no google-cloud-storage,
and it sends plain dicts, so it imports none of the kubernetes library's generated API and model
modules (about 600 modules, half a second). `--help` and `validate` plan nothing: they import
neither library at all.

How it ends: without the interpreter's teardown (`os._exit`), but with its output whole, its
exit code, and what atexit handlers clean up cleaned up (the kubernetes library writes the
kubeconfig's CA, and a client key when there is one, to temporary files it removes at exit).
The kubernetes runtime's plans run against the real test control plane, their artifacts in a
fake-gcs-server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.conftest import EXAMPLES
from tests.support.cluster import started_cluster
from tests.support.gcs import bucket_beside

pytestmark = pytest.mark.timeout(1800)  # the first test may build the control plane

IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|( *)(\S+)$")
# Imported by the library's package __init__ files, never by the provider.
GENERATED = ("kubernetes.client.models", "kubernetes.client.api")
STORAGE = "google.cloud.storage"


def imports_of(*args: str | Path, **env: str) -> tuple[int, str, set[str]]:
    """Runs `python -m substratus_cli ARGS`: its exit code, its output, and every module it
    imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "substratus_cli",
                           *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_COLOR": "1", **env})
    modules = {m[2] for line in done.stderr.splitlines() if (m := IMPORTED.match(line))}
    assert "substratus_cli.cli" in modules, done.stderr[-3000:]  # the log was read
    rest = "\n".join(line for line in done.stderr.splitlines() if not IMPORTED.match(line))
    return done.returncode, done.stdout + rest, modules


def under(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


def quickstart_datasets(root: Path) -> Path:
    root.mkdir(parents=True)
    shutil.copy(EXAMPLES / "quickstart" / "datasets.yaml", root / "datasets.yaml")
    shutil.copytree(EXAMPLES / "quickstart" / "data", root / "data")
    return root


def test_help_and_validate_import_no_cloud_or_cluster_library(tmp_path: Path) -> None:
    root = quickstart_datasets(tmp_path / "quickstart")
    shutil.copy(EXAMPLES / "quickstart" / "environment.yaml", root / "environment.yaml")
    for args in (("--help",), ("plan", "--help"), ("validate", root)):
        code, output, modules = imports_of(*args)
        assert code == 0, output
        assert under(modules, "kubernetes") == [], args
        assert under(modules, "google") == [], args


def test_output_is_whole_and_exit_codes_kept_through_a_pipe(tmp_path: Path) -> None:
    schema = subprocess.run([sys.executable, "-m", "substratus_cli", "schema"],
                            capture_output=True, text=True, timeout=300)
    assert schema.returncode == 0, schema.stderr
    assert len(schema.stdout) > 10_000  # more than one pipe buffer's worth, all of it read
    assert json.loads(schema.stdout)["$schema"]

    unknown = subprocess.run([sys.executable, "-m", "substratus_cli", "plna"],
                             capture_output=True, text=True, timeout=300)
    assert unknown.returncode == 3
    assert "No such command 'plna'" in unknown.stderr

    (tmp_path / "bad.yaml").write_text("apiVersion: substratus.ai/v1\nkind: Dataset\n"
                                       "metadata: {name: x}\nspec: {source: {}}\n")
    invalid = subprocess.run([sys.executable, "-m", "substratus_cli", "validate", tmp_path],
                             capture_output=True, text=True, timeout=300)
    assert invalid.returncode == 3, invalid.stderr
    assert "bad.yaml" in invalid.stderr


def test_a_no_change_local_plan_imports_no_cloud_or_cluster_library(cli, tmp_path: Path) -> None:
    root = quickstart_datasets(tmp_path / "quickstart")
    shutil.copy(EXAMPLES / "quickstart" / "environment.yaml", root / "environment.yaml")
    assert cli("apply", "--auto-approve", root).code == 0

    code, output, modules = imports_of("plan", "--detailed-exitcode", root)
    assert code == 0, output
    assert "No changes. Live state matches the resource files." in output
    assert "substratus_providers.local.provider" in modules  # the control: it planned
    assert under(modules, "kubernetes") == []
    assert under(modules, "google") == []


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    yield from started_cluster(request)


def test_a_no_change_kubernetes_plan_imports_no_storage_client_or_generated_models(
        cli, cluster: ControlPlane, tmp_path: Path) -> None:
    with bucket_beside(cluster.kubeconfig) as bucket:
        root = quickstart_datasets(tmp_path / "quickstart")
        (root / "environment.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Environment
metadata: {{name: cluster}}
spec:
  runtime: kubernetes
  kubernetes: {{context: substratus-test, namespace: lazy-imports}}
  artifacts: gs://{bucket}/artifacts
  state: file://.substratus/state
""")
        applied = cli("apply", "--auto-approve", root)
        assert applied.code == 0, applied.output

        # The library writes the kubeconfig's CA data to a file in TMPDIR; the process's atexit
        # handlers remove it before it exits.
        assert "certificate-authority-data:" in cluster.kubeconfig.read_text()
        scratch = tmp_path / "tmpdir"
        scratch.mkdir()
        code, output, modules = imports_of("plan", "--detailed-exitcode", root,
                                           TMPDIR=str(scratch))
        assert code == 0, output
        assert "No changes. Live state matches the resource files." in output
        assert list(scratch.iterdir()) == []
        # The control: it read the kubeconfig with the library and planned on the cluster.
        assert "kubernetes.config.kube_config" in modules
        assert "substratus_providers.kubernetes.client" in modules
        for package in (*GENERATED, STORAGE):
            assert under(modules, package) == [], package

        # A plan with a change still plans it, with the same imports.
        (root / "data" / "favorite-colors.jsonl").write_text('{"color": "teal"}\n')
        code, output, modules = imports_of("plan", "--detailed-exitcode", root)
        assert code == 2, output
        assert ("# Dataset/lazy-imports/favorite-colors will be updated in-place (the files at "
                "data/favorite-colors.jsonl changed)") in output
        assert "Plan: 0 to add, 1 to change, 0 to destroy." in output
        for package in GENERATED:
            assert under(modules, package) == [], package
