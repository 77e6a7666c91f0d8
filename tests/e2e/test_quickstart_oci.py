"""The whole quickstart (datasets, a model trained on them, its server) on the local runtime with
its artifacts in a real OCI registry: it serves, re-plans empty, and every snapshot in the state
is an artifact skopeo reads from the registry."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, tear_down
from tests.registry import registry_server

pytestmark = pytest.mark.slow


def skopeo(*args: str) -> str:
    done = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_quickstart_trains_and_serves_from_a_registry(cli, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))  # anonymous, whatever ~ holds
    workdir = tmp_path / "quickstart"
    shutil.copytree(EXAMPLES / "quickstart", workdir,
                    ignore=shutil.ignore_patterns(".substratus"))
    with registry_server() as registry:
        url = f"oci://{registry.host}/ml/quickstart"
        environment = workdir / "environment.yaml"
        environment.write_text(environment.read_text().replace(
            "artifacts: file://.substratus/artifacts", f"artifacts: {url}"))
        try:
            applied = cli("apply", "--auto-approve", workdir)
            assert applied.code == 0, applied.output
            assert "Resources: 6 added, 0 changed, 0 destroyed." in applied.out
            assert not (workdir / ".substratus" / "artifacts").exists()

            listed = cli("state", "list", workdir).out
            endpoint = re.search(r"ModelServer/default/colors\tendpoint=(\S+)", listed)
            assert endpoint, listed
            request = urllib.request.Request(
                f"{endpoint.group(1)}/v1/completions",
                json.dumps({"prompt": "What is Alice's favorite color?"}).encode(),
                {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                completion = json.loads(response.read())
            assert completion["choices"][0]["text"] == " Alice's favorite color is indigo."

            plan = cli("plan", "--detailed-exitcode", workdir)
            assert plan.code == 0, plan.output
            assert "No changes" in plan.out

            digests = dict(re.findall(r"^((?:Dataset|Model)/\S+)\tdigest=(sha256:[0-9a-f]{64})",
                                      listed, re.M))
            assert set(digests) == {"Dataset/default/favorite-colors",
                                    "Dataset/default/color-facts", "Model/default/base",
                                    "Model/default/colors"}, listed
            image = f"docker://{registry.host}/ml/quickstart"
            tags = json.loads(skopeo("list-tags", "--tls-verify=false", image))["Tags"]
            assert sorted(tags) == sorted(f"sha256-{d[7:]}" for d in digests.values())
            trained = json.loads(skopeo("inspect", "--tls-verify=false", "--raw",
                                        f"{image}:sha256-{digests['Model/default/colors'][7:]}"))
            paths = {layer["annotations"]["org.cncf.model.filepath"]
                     for layer in trained["layers"]}
            assert any(path.endswith(".safetensors") for path in paths), paths
        finally:
            tear_down(workdir)
