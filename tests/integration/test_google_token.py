"""Registry credentials for Google's registries from Application Default Credentials, with no
network: google-auth reads a real service account key file (GOOGLE_APPLICATION_CREDENTIALS)
whose token_uri is a local HTTP server answering the token request (google-auth signs a JWT with
the key and trades it there, as with Google's; an `authorized_user` file would not do, as
google-auth always sends those to Google's endpoint); the registry is a local HTTP server speaking the
distribution API's Basic challenge, reached through the client's `endpoint` (the one test hook:
it stands 127.0.0.1 in for the Google host). The token goes only to hosts of Google's registries,
and never into a log."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from substratus_artifacts.registry import RegistryClient, RegistryError
from substratus_providers.images.google_token import TOKEN_USER, registry_credentials

TOKEN = "ya29.local-test-access-token"
DIGEST = "sha256:" + "c" * 64


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def token_service() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An OAuth token endpoint: answers a JWT-bearer grant with TOKEN; the forms it got."""
    asked: list[dict[str, str]] = []

    class Token(Quiet):
        def do_POST(self) -> None:
            import urllib.parse

            length = int(self.headers.get("Content-Length") or 0)
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            asked.append(form)
            body = json.dumps({"access_token": TOKEN, "expires_in": 3600,
                               "token_type": "Bearer"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Token) as url:
        yield f"{url}/token", asked


@pytest.fixture
def registry_api() -> Iterator[tuple[str, list[str | None]]]:
    """A registry that wants Basic auth as oauth2accesstoken:TOKEN; the Authorization headers
    it got, in order."""
    seen: list[str | None] = []
    good = "Basic " + base64.b64encode(f"{TOKEN_USER}:{TOKEN}".encode()).decode()

    class Registry(Quiet):
        def do_HEAD(self) -> None:
            seen.append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != good:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="local"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Docker-Content-Digest", DIGEST)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serving(Registry) as url:
        yield url, seen


@pytest.fixture
def adc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        token_service: tuple[str, list[dict[str, str]]]) -> list[dict[str, str]]:
    """Application Default Credentials from a key file, no Docker config."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    token_uri, asked = token_service
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path / "adc.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "my-project", "private_key_id": "test",
        "private_key": pem, "client_email": "builder@my-project.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": token_uri}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    return asked


@pytest.mark.parametrize("host", ["us-docker.pkg.dev", "europe-west4-docker.pkg.dev", "gcr.io",
                                  "eu.gcr.io"])
def test_a_google_registry_gets_an_adc_token_as_basic_auth(
        host: str, adc: list[dict[str, str]], registry_api: tuple[str, list[str | None]],
        caplog: pytest.LogCaptureFixture) -> None:
    url, seen = registry_api
    caplog.set_level(logging.DEBUG)
    client = RegistryClient(host, credentials=registry_credentials(host), endpoint=url)
    found = client.head_manifest("proj/repo/trainer", "v1")
    assert found is not None and found.digest == DIGEST
    assert [form["grant_type"] for form in adc] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    # Asked once without credentials, answered the challenge with the token.
    assert seen == [None, "Basic " + base64.b64encode(f"{TOKEN_USER}:{TOKEN}".encode()).decode()]
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("host", ["registry.example.com", "docker.pkg.dev.example.com",
                                  "notgcr.io", "127.0.0.1:5000"])
def test_other_registries_never_get_the_token(
        host: str, adc: list[dict[str, str]], registry_api: tuple[str, list[str | None]]) -> None:
    url, seen = registry_api
    assert registry_credentials(host) is None
    assert adc == []  # not even asked for
    client = RegistryClient(host, credentials=registry_credentials(host), endpoint=url)
    with pytest.raises(RegistryError, match=r"HTTP 401 \(no credentials were given\)"):
        client.head_manifest("proj/repo/trainer", "v1")
    assert seen == [None, None]


def test_docker_config_credentials_come_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, adc: list[dict[str, str]]) -> None:
    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(b"_json_key:key-material").decode()
    (config / "config.json").write_text(json.dumps({"auths": {"us-docker.pkg.dev":
                                                              {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    assert registry_credentials("us-docker.pkg.dev") == ("_json_key", "key-material")
    assert adc == []


def test_no_application_default_credentials_is_anonymous_and_the_refusal_says_how_to_log_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        registry_api: tuple[str, list[str | None]]) -> None:
    url, _ = registry_api
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud's well-known ADC file
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # no metadata server either
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    assert registry_credentials("us-docker.pkg.dev") is None
    client = RegistryClient("us-docker.pkg.dev", endpoint=url)
    with pytest.raises(RegistryError) as refused:
        client.head_manifest("proj/repo/trainer", "v1")
    assert "gcloud auth application-default login" in (refused.value.hint or "")


def test_buildah_gets_the_token_in_a_private_file_for_the_push_alone(
        tmp_path: Path, adc: list[dict[str, str]]) -> None:
    from substratus_cli.provider import ProviderContext
    from substratus_providers.images.provider import Images

    images = Images(ProviderContext(workdir=tmp_path, data_dir=tmp_path / ".substratus",
                                    part_of="ws", artifacts_url="file://artifacts",
                                    settings={"registry": "us-docker.pkg.dev/proj/repo"}))
    assert images.client.credentials == (TOKEN_USER, TOKEN)
    with images._push_auth() as authfile:
        assert authfile is not None
        assert authfile.stat().st_mode & 0o777 == 0o600
        assert authfile.parent.stat().st_mode & 0o777 == 0o700
        auth = json.loads(authfile.read_text())["auths"]["us-docker.pkg.dev"]["auth"]
        assert base64.b64decode(auth).decode() == f"{TOKEN_USER}:{TOKEN}"
    assert not authfile.exists()
    assert TOKEN not in "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*")
                                if p.is_file())
