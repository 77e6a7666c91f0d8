"""The OCI distribution client against a real registry (Debian's docker-registry on 127.0.0.1):
what it pushes, skopeo reads back; a HEAD costs one request; auth from a Docker config.json."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus_artifacts.registry import (
    OCI_MANIFEST,
    Reference,
    RegistryClient,
    RegistryError,
    docker_credentials,
)
from substratus_cli.retry import RetryPolicy
from tests.registry import RegistryServer, registry_server

EMPTY_CONFIG = b"{}"
USER, PASSWORD = "ci", "s3cret-password"


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    with registry_server() as server:
        yield server


@pytest.fixture(scope="module")
def guarded() -> Iterator[RegistryServer]:
    with registry_server((USER, PASSWORD)) as server:
        yield server


def push_artifact(client: RegistryClient, repository: str, tag: str, content: bytes) -> str:
    """A one-layer OCI artifact; returns its manifest digest."""
    config = client.push_blob(repository, EMPTY_CONFIG, "application/vnd.oci.empty.v1+json")
    layer = client.push_blob(repository, content, "application/octet-stream")
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}],
    }, separators=(",", ":")).encode()
    return client.put_manifest(repository, tag, OCI_MANIFEST, manifest).digest


def skopeo_digest(server: RegistryServer, image: str, *creds: str) -> str:
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is missing: apt-get install skopeo (.ci/run installs it)"
    command = [skopeo, "inspect", "--tls-verify=false", "--raw", f"docker://{server.host}/{image}"]
    if creds:
        command[2:2] = ["--creds", ":".join(creds)]
    raw = subprocess.run(command, check=True, capture_output=True).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def test_a_pushed_manifest_is_what_the_registry_serves_and_head_costs_one_request(
        registry: RegistryServer) -> None:
    client = RegistryClient(registry.host)
    digest = push_artifact(client, "team/model", "v1", b"weights")
    assert skopeo_digest(registry, "team/model:v1") == digest
    before = client.requests
    found = client.head_manifest("team/model", "v1")
    assert found is not None and (found.digest, found.media_type) == (digest, OCI_MANIFEST)
    assert client.requests - before == 1
    assert client.head_manifest("team/model", "v2") is None
    assert client.requests - before == 2
    got = client.get_manifest("team/model", digest)
    assert got is not None and got[0].digest == digest


def test_a_blob_the_registry_has_is_not_uploaded_again(registry: RegistryServer) -> None:
    client = RegistryClient(registry.host)
    client.push_blob("team/data", b"rows")
    before = client.requests
    client.push_blob("team/data", b"rows")
    assert client.requests - before == 1  # the HEAD that found it


def test_a_guarded_registry_refuses_anonymous_pushes_with_a_hint(guarded: RegistryServer) -> None:
    client = RegistryClient(guarded.host)
    with pytest.raises(RegistryError) as refused:
        client.head_manifest("team/model", "v1")
    assert refused.value.message == (f"registry {guarded.host} refused HEAD /v2/team/model/"
                                     "manifests/v1: HTTP 401 (no credentials were given)")
    assert f"docker login {guarded.host}" in (refused.value.hint or "")


def test_credentials_come_from_a_docker_config(guarded: RegistryServer, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {guarded.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    credentials = docker_credentials(guarded.host)
    assert credentials == (USER, PASSWORD)
    client = RegistryClient(guarded.host, credentials=credentials)
    digest = push_artifact(client, "team/model", "v1", b"guarded weights")
    assert skopeo_digest(guarded, "team/model:v1", USER, PASSWORD) == digest
    wrong = RegistryClient(guarded.host, credentials=(USER, "wrong"))
    with pytest.raises(RegistryError, match=r"HTTP 401 \(the credentials were refused\)") as e:
        wrong.head_manifest("team/model", "v1")
    assert PASSWORD not in str(e.value) and "wrong" not in str(e.value)


def test_credentials_come_from_a_credential_helper(guarded: RegistryServer, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Docker's credential helper protocol, as docker-credential-gcloud speaks it: a program.
    helper = tmp_path / "bin" / "docker-credential-vault"
    helper.parent.mkdir()
    helper.write_text(f"""#!/bin/sh
read host
[ "$1" = get ] && [ "$host" = "{guarded.host}" ] || {{ echo "credentials not found"; exit 1; }}
echo '{{"ServerURL": "{guarded.host}", "Username": "{USER}", "Secret": "{PASSWORD}"}}'
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:{os.environ['PATH']}")
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {guarded.host: "vault"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert docker_credentials(guarded.host) == (USER, PASSWORD)
    assert docker_credentials("127.0.0.1:1") is None  # no helper, no auths entry for it
    client = RegistryClient(guarded.host, credentials=docker_credentials(guarded.host))
    assert push_artifact(client, "team/helped", "v1", b"weights").startswith("sha256:")
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "missing"}))
    with pytest.raises(RegistryError, match="docker-credential-missing is not on PATH"):
        docker_credentials(guarded.host)


@contextlib.contextmanager
def flaky_front(registry: RegistryServer, failures: int) -> Iterator[str]:
    """A real HTTP server before the registry that answers its first `failures` requests with
    503 and relays the rest."""
    left = [failures]

    class Relay(http.server.BaseHTTPRequestHandler):
        def relay(self) -> None:
            if left[0] > 0:
                left[0] -= 1
                self.send_response(503)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            request = urllib.request.Request(f"{registry.url}{self.path}", method=self.command,
                                             headers={k: v for k, v in self.headers.items()
                                                      if k.lower() != "host"})
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    status, headers, body = answer.status, answer.headers, answer.read()
            except urllib.error.HTTPError as e:
                status, headers, body = e.code, e.headers, e.read()
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in ("content-length", "connection", "date", "server"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = relay

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_temporary_answers_are_retried_under_the_policy(registry: RegistryServer) -> None:
    digest = push_artifact(RegistryClient(registry.host), "team/flaky", "v1", b"weights")
    with flaky_front(registry, failures=2) as host:
        client = RegistryClient(host, retry=RetryPolicy(first_delay=0.01, max_delay=0.01,
                                                        tries=5))
        found = client.head_manifest("team/flaky", "v1")
        assert found is not None and found.digest == digest
        assert client.requests == 3
    with flaky_front(registry, failures=1) as host, pytest.raises(
            RegistryError, match=r"answered HEAD /v2/team/flaky/manifests/v1 with HTTP 503"):
        RegistryClient(host).head_manifest("team/flaky", "v1")  # no policy: no retry
    with flaky_front(registry, failures=10) as host:
        gives_up = RegistryClient(host, retry=RetryPolicy(first_delay=0.01, tries=3))
        with pytest.raises(RegistryError, match="HTTP 503"):
            gives_up.head_manifest("team/flaky", "v1")
        assert gives_up.requests == 3


def test_an_unreachable_registry_is_named() -> None:
    client = RegistryClient("127.0.0.1:9", timeout=2)
    with pytest.raises(RegistryError, match=r"^cannot reach registry 127\.0\.0\.1:9: "):
        client.head_manifest("team/model", "v1")


def test_image_references_parse_and_print_back() -> None:
    ref = Reference.parse("us-docker.pkg.dev/proj/repo/trainer:3f2a@sha256:" + "a" * 64)
    assert (ref.host, ref.repository, ref.tag, ref.digest) == (
        "us-docker.pkg.dev", "proj/repo/trainer", "3f2a", "sha256:" + "a" * 64)
    assert ref.reference == "sha256:" + "a" * 64
    assert str(ref) == "us-docker.pkg.dev/proj/repo/trainer:3f2a@sha256:" + "a" * 64
    assert Reference.parse("127.0.0.1:5000/m").reference == "latest"
    with pytest.raises(RegistryError, match="not an image reference with a registry host"):
        Reference.parse("trainer:latest")
