"""Dataset sources of the local runtime (the loader workload, run as a process) against a real HTTP
server on 127.0.0.1 (and a Hub that cannot be reached)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from substratus_artifacts.backend import FileBackend
from substratus_artifacts.snapshots import SnapshotResult
from substratus_artifacts.statcache import StatCache
from substratus_artifacts.store import Store
from substratus_cli.action import UNKNOWN
from substratus_cli.address import Address
from substratus_cli.errors import ProviderError
from substratus_providers.local.process_book import ProcessBook
from substratus_providers.local.runs import Runtime
from substratus_providers.local.sources import fetch_snapshot, plan_digest

PAYLOAD = b"id,text\n" + b"".join(b"%d,row number %d\n" % (i, i) for i in range(200_000))
SECRET = "Bearer s3cr3t-t0ken-value"
SECRET_REF = "${{ secrets.hub.token }}"


@dataclass
class Server:
    base: str
    seen: list[dict[str, str]] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]]

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        path = self.path.split("?")[0]
        if path == "/data/train.csv":
            self._send(200, PAYLOAD)
        elif path == "/private.csv":
            if self.headers.get("Authorization") == SECRET:
                self._send(200, b"for your eyes only\n")
            else:
                self._send(403, b"forbidden")
        elif path == "/truncated.bin":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only a part")
        elif path == "/slow.bin":
            time.sleep(1.5)
            self._send(200, b"late")
        elif path == "/elsewhere":
            port = self.server.server_address[1]  # type: ignore[index]
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{port}/data/train.csv")
            self.end_headers()
        else:
            self._send(404, b"not here")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(base=f"http://127.0.0.1:{httpd.server_address[1]}", seen=seen)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(FileBackend(tmp_path / "artifacts"))


@pytest.fixture
def cache(tmp_path: Path) -> StatCache:
    return StatCache(tmp_path / "statcache.json")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def resolve_secret(name: str, key: str) -> str:
    assert (name, key) == ("hub", "token")
    return SECRET


def stored_files(store: Store) -> list[Path]:
    assert isinstance(store.backend, FileBackend)
    return sorted(p for p in store.backend.root.rglob("*") if p.is_file())


Fetch = Callable[[dict[str, Any]], SnapshotResult]


@pytest.fixture
def fetch(tmp_path: Path, store: Store, cache: StatCache) -> Fetch:
    runtime = Runtime(tmp_path / "runtime", tmp_path, store, ProcessBook(tmp_path / "processes"),
                      cache)
    address = Address("Dataset", "default", "colors")
    return lambda source: fetch_snapshot(address, source, tmp_path, store, cache, runtime, {},
                                         resolve_secret)


def test_url_snapshot_has_the_served_bytes_and_their_digest(
    server: Server, fetch: Fetch, tmp_path: Path, store: Store, cache: StatCache
) -> None:
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    source = {"url": f"{server.base}/data/train.csv?download=1", "sha256": sha}
    assert plan_digest(source, tmp_path, cache) is UNKNOWN
    result = fetch(source)
    assert [(e.path, e.size, e.sha256) for e in result.manifest.entries] == [
        ("train.csv", len(PAYLOAD), sha)
    ]
    assert result.digest == result.manifest.digest and store.has_snapshot(result.digest)
    assert result.bytes_copied == result.bytes_hashed == len(PAYLOAD)
    store.materialize(result.digest, tmp_path / "out")
    assert (tmp_path / "out" / "train.csv").read_bytes() == PAYLOAD
    again = fetch(source)
    assert (again.digest, again.bytes_copied) == (result.digest, 0)


def test_url_checksum_mismatch_fails_and_leaves_the_store_unchanged(
    server: Server, fetch: Fetch, store: Store
) -> None:
    fetch({"url": f"{server.base}/private.csv", "headers": {"Authorization": SECRET_REF}})
    before = stored_files(store)
    wrong = "0" * 64
    with pytest.raises(ProviderError) as info:
        fetch({"url": f"{server.base}/data/train.csv", "sha256": f"sha256:{wrong}"})
    message = info.value.message
    assert message.startswith(f"{server.base}/data/train.csv: checksum mismatch")
    assert wrong in message and hashlib.sha256(PAYLOAD).hexdigest() in message
    assert stored_files(store) == before


def test_url_404_names_the_status_and_a_url_without_credentials_or_query(
    server: Server, fetch: Fetch
) -> None:
    netloc = server.base.removeprefix("http://")
    with pytest.raises(ProviderError) as info:
        fetch({"url": f"http://user:pw@{netloc}/missing.csv?sig=abc"})
    assert info.value.message == f"GET {server.base}/missing.csv failed: HTTP 404 Not Found"
    assert server.seen[-1]["authorization"] == "Basic dXNlcjpwdw=="  # user:pw, as curl sends it


def test_resolved_secret_headers_reach_the_server_but_never_an_error(
    server: Server, fetch: Fetch
) -> None:
    ok = fetch({"url": f"{server.base}/private.csv", "headers": {"Authorization": SECRET_REF}})
    assert ok.manifest.entries[0].path == "private.csv"
    assert server.seen[-1]["authorization"] == SECRET
    with pytest.raises(ProviderError) as info:
        fetch({"url": f"{server.base}/nope.csv", "headers": {"Authorization": SECRET_REF}})
    assert server.seen[-1]["authorization"] == SECRET
    assert "HTTP 404" in info.value.message and "s3cr3t" not in str(info.value)
    with pytest.raises(ProviderError) as info:
        fetch({"url": f"{server.base}/x", "headers": {"Authorization": SECRET_REF + "\r\nX: y"}})
    assert "s3cr3t" not in str(info.value)


def test_secret_headers_are_not_forwarded_to_another_host_on_redirect(
    server: Server, fetch: Fetch
) -> None:
    result = fetch({"url": f"{server.base}/elsewhere", "headers": {"Authorization": SECRET_REF}})
    assert result.manifest.entries[0].path == "elsewhere"
    assert result.manifest.entries[0].sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    first, redirected = server.seen[-2], server.seen[-1]
    assert first["authorization"] == SECRET and redirected["host"].startswith("localhost:")
    assert "authorization" not in redirected


def test_connection_refused_is_a_provider_error(fetch: Fetch) -> None:
    port = closed_port()
    with pytest.raises(ProviderError) as info:
        fetch({"url": f"http://127.0.0.1:{port}/data.csv"})
    assert (
        info.value.message == f"cannot fetch http://127.0.0.1:{port}/data.csv: Connection refused"
    )


def test_a_truncated_body_is_a_provider_error_and_stores_nothing(
    server: Server, fetch: Fetch, store: Store
) -> None:
    # The loader's timeout is tested in tests/workloads/test_loader.py, in its own process.
    with pytest.raises(ProviderError, match=r"cannot fetch http://127\.0\.0\.1:\d+/truncated\.bin"):
        fetch({"url": f"{server.base}/truncated.bin"})
    assert [p for p in stored_files(store) if "blobs" in p.parts] == []
    assert [p for p in stored_files(store) if "tmp" in p.parts] == []


def test_path_source_digest_at_plan_equals_the_snapshot_at_apply(
    fetch: Fetch, tmp_path: Path, cache: StatCache
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"text": "hello"}\n')
    source = {"path": "data"}
    digest = plan_digest(source, tmp_path, cache)
    assert isinstance(digest, str) and digest.startswith("sha256:")
    assert fetch(source).digest == digest
    with pytest.raises(ProviderError, match=r"dataset source path 'nope/x\.csv' does not exist"):
        plan_digest({"path": "nope/x.csv"}, tmp_path, cache)


def test_unreachable_hugging_face_hub_is_a_clear_provider_error(
    tmp_path: Path, fetch: Fetch, cache: StatCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    source = {"huggingface": {"name": "substratus/tiny-corpus", "revision": "main"}}
    assert plan_digest(source, tmp_path, cache) is UNKNOWN
    with pytest.raises(ProviderError) as info:
        fetch(source)
    assert info.value.message == (
        "cannot reach the Hugging Face Hub to fetch dataset substratus/tiny-corpus: "
        "[Errno 111] Connection refused; this source needs network access "
        "(set HF_ENDPOINT for a mirror)"
    )
    assert list((tmp_path / "runtime" / "content").rglob("*.jsonl")) == []

