"""A registry that refuses us, or fails in the middle of a push, as a user of `substratus plan`
and `apply` sees it: the real registry (Debian's docker-registry, with htpasswd auth for the
refusals), real buildah pushes, and for the 5xx a real HTTP proxy in front of the registry that
answers one blob upload with 503 (tests/registry/proxy.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus_artifacts.registry import RegistryClient
from tests.e2e.test_images import workspace
from tests.registry import RegistryServer, registry_server
from tests.registry.proxy import fault_proxy, once

USER, PASSWORD = "ci", "s3cret-password"


@pytest.fixture(scope="module")
def guarded() -> Iterator[RegistryServer]:
    with registry_server((USER, PASSWORD)) as server:
        yield server


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    with registry_server() as server:
        yield server


def docker_config(folder: Path, host: str, password: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return folder


def test_a_registry_that_wants_credentials_fails_the_plan_naming_it_and_the_fix(
        cli, guarded: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = workspace(tmp_path / "ws", f"{guarded.host}/ml")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-config"))
    anonymous = cli("plan", root)
    assert anonymous.code == 1, anonymous.output
    assert (f"Error: registry {guarded.host} refused HEAD /v2/ml/trainer/manifests/"
            in anonymous.err)
    assert "HTTP 401 (no credentials were given)" in anonymous.err
    assert f"log in with `docker login {guarded.host}`" in anonymous.err
    assert "Traceback" not in anonymous.output

    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "wrong", guarded.host,
                                                          "wrong-password")))
    wrong = cli("plan", root)
    assert wrong.code == 1, wrong.output
    assert "HTTP 401 (the credentials were refused)" in wrong.err
    assert "wrong-password" not in wrong.output
    assert "Traceback" not in wrong.output


def test_credentials_refused_between_plan_and_apply_fail_the_apply_naming_the_registry(
        cli, guarded: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = workspace(tmp_path / "ws", f"{guarded.host}/ml")
    good = docker_config(tmp_path / "good", guarded.host, PASSWORD)
    monkeypatch.setenv("DOCKER_CONFIG", str(good))
    saved = tmp_path / "plan.json"
    assert cli("plan", "--out", saved, root).code == 0
    # The credentials stop working between the plan and the apply: the apply's re-read of the
    # registry (is the saved plan still current?) is refused.
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "wrong", guarded.host,
                                                          "wrong-password")))
    failed = cli("apply", saved)
    assert failed.code == 1, failed.output
    assert (f"Error: registry {guarded.host} refused HEAD /v2/ml/trainer/manifests/"
            in failed.err)
    assert "HTTP 401 (the credentials were refused)" in failed.err
    assert f"docker login {guarded.host}" in failed.err
    assert "wrong-password" not in failed.output and "Traceback" not in failed.output
    assert not (root / ".substratus" / "state" / "inventory.json").exists()

    monkeypatch.setenv("DOCKER_CONFIG", str(good))
    assert cli("apply", "--auto-approve", root).code == 0  # with credentials back, it converges
    assert cli("plan", "--detailed-exitcode", root).code == 0


def test_a_push_denied_fails_the_step_naming_the_registry_and_the_fix(
        cli, registry: RegistryServer, tmp_path: Path) -> None:
    """Reads allowed, pushes refused with 403 (an account that may pull only): the proxy answers
    the upload's start with 403 DENIED, as a registry does."""
    with fault_proxy(registry, lambda method, path: 403 if method == "POST" and
                     "/blobs/uploads/" in path else None) as proxy:
        root = workspace(tmp_path / "ws", f"{proxy.host}/denied")
        failed = cli("apply", "--auto-approve", root)
        assert cli("plan", "--detailed-exitcode", root).code == 2  # nothing recorded as pushed
    assert failed.code == 6, failed.output
    assert f"registry {proxy.host} refused the push: pushing {proxy.host}/denied/trainer:" \
        in failed.output
    assert f"log in to {proxy.host} (`docker login {proxy.host}`" in failed.output
    assert "Traceback" not in failed.output


def test_a_503_in_the_middle_of_a_push_is_retried_and_the_apply_converges(
        cli, registry: RegistryServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with fault_proxy(registry, once(503, "PUT", "/blobs/uploads/")) as proxy:
        root = workspace(tmp_path / "ws", f"{proxy.host}/ml")
        applied = cli("apply", "--auto-approve", root)
        failed_uploads = [r for r in proxy.requests if r[2] == 503]
        assert failed_uploads and failed_uploads[0][0] == "PUT", proxy.requests
        # After the 503, the upload was made again and went through.
        after = proxy.requests[proxy.requests.index(failed_uploads[0]) + 1:]
        assert any(m == "PUT" and "/blobs/uploads/" in p and s == 201 for m, p, s in after), \
            proxy.requests
        # buildah's own --retry gives up on an unexpected 503; substratus pushes again.
        assert applied.code == 0, applied.output
        assert "trying again in 1 s (try 2 of 3)" in caplog.text
        assert cli("plan", "--detailed-exitcode", root).code == 0
    inventory = json.loads((root / ".substratus" / "state" / "inventory.json").read_text())
    (entry,) = inventory["resources"]
    found = RegistryClient(registry.host).head_manifest("ml/trainer", entry["status"]["tag"])
    assert found is not None and found.digest == entry["status"]["digest"]


def test_a_registry_failing_every_try_fails_the_step_and_the_next_apply_converges(
        cli, registry: RegistryServer, tmp_path: Path) -> None:
    failing = [True]
    with fault_proxy(registry, lambda method, path: 503 if failing[0] and method == "PUT" and
                     "/blobs/uploads/" in path else None) as proxy:
        root = workspace(tmp_path / "ws", f"{proxy.host}/elsewhere")
        failed = cli("apply", "--auto-approve", root)
        assert failed.code == 6, failed.output
        assert f"pushing {proxy.host}/elsewhere/trainer:" in failed.output
        assert "503 Service Unavailable" in failed.output
        assert "Traceback" not in failed.output
        assert sum(1 for r in proxy.requests if r[2] == 503) == 3  # three tries, then no more
        assert cli("plan", "--detailed-exitcode", root).code == 2  # nothing recorded

        failing[0] = False  # the registry is well again
        assert cli("apply", "--auto-approve", root).code == 0
        assert cli("plan", "--detailed-exitcode", root).code == 0
