"""The loader's url downloads against a real HTTP server on 127.0.0.1: a redirect to a link-local
or metadata address is refused before anything connects there (every connect of the test process
is watched: one off loopback fails the test), a slow drip is cut at the download deadline, and
the first Ctrl-C of a real `substratus apply` ends an in-flight download and frees the lock."""

from __future__ import annotations

import http.server
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from substratus_cli.errors import ExitCode
from substratus_workloads import http_guard, loader

BODY = b"id,text\n1,hello\n"
DEADLINE_VAR = loader.DEADLINE_VAR


@dataclass
class Server:
    url: str
    port: int
    requests: list[str] = field(default_factory=list)
    dripping: threading.Event = field(default_factory=threading.Event)
    fast: threading.Event = field(default_factory=threading.Event)  # /drip answers at once


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server("", 0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            state.requests.append(self.path)
            targets = {
                "/to-metadata": "http://169.254.169.254/latest/meta-data/",
                "/to-ec2-v6": "http://[fd00:ec2::254]/latest/meta-data/",
                "/to-mapped": "http://[::ffff:169.254.169.254]/latest/meta-data/",
                "/to-unspecified": f"http://0.0.0.0:{state.port}/data.csv",
                "/to-ftp": f"ftp://127.0.0.1:{state.port}/data.csv",
                "/to-loopback": f"http://localhost:{state.port}/data.csv",
            }
            if self.path in targets:
                self.send_response(302)
                self.send_header("Location", targets[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/data.csv" or (self.path == "/drip" and state.fast.is_set()):
                self._send(BODY)
            elif self.path == "/drip":  # a byte every half second, for an hour and more
                self.send_response(200)
                self.send_header("Content-Length", "10000")
                self.end_headers()
                state.dripping.set()
                try:
                    for _ in range(10000):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.5)
                except OSError:  # the client went away
                    pass
            else:
                self.send_error(404)

        def _send(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.port = int(httpd.server_address[1])
    state.url = f"http://127.0.0.1:{state.port}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def only_loopback(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address this process connects a socket to; one off loopback fails the test there."""
    seen: list[Any] = []
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        seen.append(address)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0]).split("%", 1)[0]
            assert ipaddress.ip_address(host).is_loopback, f"a connection to {address}"
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", lambda sock, address: pytest.fail(
        f"connect_ex to {address}"))
    return seen


def fetch(url: str, tmp_path: Path) -> list[str]:
    out = tmp_path / "artifacts"
    out.mkdir(exist_ok=True)
    loader.fetch_url({"url": url}, "Dataset", out, [])
    return sorted(p.name for p in out.iterdir())


@pytest.mark.parametrize(("route", "address", "location"), [
    ("/to-metadata", "169.254.169.254", "http://169.254.169.254/latest/meta-data/"),
    ("/to-ec2-v6", "fd00:ec2::254", "http://[fd00:ec2::254]/latest/meta-data/"),
    ("/to-mapped", "::ffff:169.254.169.254", "http://[::ffff:169.254.169.254]/latest/meta-data/"),
    ("/to-unspecified", "0.0.0.0", "http://0.0.0.0:PORT/data.csv"),
])
def test_a_redirect_to_a_metadata_address_is_refused_before_connecting(
        server: Server, tmp_path: Path, only_loopback: list[Any], route: str, address: str,
        location: str) -> None:
    with pytest.raises(loader.FetchError) as refused:
        fetch(server.url + route, tmp_path)
    assert str(refused.value) == (
        f"cannot fetch {server.url}{route}: redirect refused before connecting: {address} is a "
        "link-local, metadata, multicast or unspecified address (where cloud metadata services "
        f"answer); Location: {location.replace('PORT', str(server.port))}")
    assert only_loopback and all(a[1] == server.port for a in only_loopback)
    assert server.requests == [route]
    assert list((tmp_path / "artifacts").iterdir()) == []


def test_a_redirect_to_another_scheme_is_refused(server: Server, tmp_path: Path,
                                                 only_loopback: list[Any]) -> None:
    with pytest.raises(loader.FetchError) as refused:
        fetch(server.url + "/to-ftp", tmp_path)
    assert str(refused.value) == (
        f"cannot fetch {server.url}/to-ftp: redirect refused: ftp scheme (only http:// and "
        f"https://); Location: ftp://127.0.0.1:{server.port}/data.csv")


def test_a_redirect_from_loopback_to_loopback_is_followed(server: Server, tmp_path: Path,
                                                          only_loopback: list[Any]) -> None:
    assert fetch(server.url + "/to-loopback", tmp_path) == ["to-loopback"]  # the URL's name
    assert (tmp_path / "artifacts" / "to-loopback").read_bytes() == BODY
    assert server.requests == ["/to-loopback", "/data.csv"]


@pytest.mark.parametrize(("address", "kind"), [
    ("169.254.169.254", "forbidden"), ("fe80::1", "forbidden"), ("fd00:ec2::254", "forbidden"),
    ("100.100.100.200", "forbidden"), ("0.0.0.0", "forbidden"), ("::", "forbidden"),
    ("224.0.0.1", "forbidden"), ("::ffff:169.254.169.254", "forbidden"),
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("10.1.2.3", "private"), ("192.168.1.1", "private"), ("172.16.0.1", "private"),
    ("fd12:3456::1", "private"), ("100.64.0.1", "private"),
    ("8.8.8.8", "global"), ("2001:4860:4860::8888", "global"),
])
def test_addresses_are_classified_by_how_far_inward_they_are(address: str, kind: str) -> None:
    assert http_guard.classify(address) == kind


@pytest.mark.parametrize(("origin", "target", "allowed"), [
    ("global", "global", True), ("global", "private", False), ("global", "loopback", False),
    ("private", "global", True), ("private", "private", True), ("private", "loopback", False),
    ("loopback", "private", True), ("loopback", "loopback", True),
])
def test_a_redirect_never_leads_further_inward(origin: str, target: str, allowed: bool) -> None:
    addresses = {"global": "8.8.8.8", "private": "10.0.0.1", "loopback": "127.0.0.1"}
    download = http_guard.Download(60)
    download._origin = http_guard.RANK[origin]
    try:
        download.check_redirect("http://x/", f"http://{addresses[target]}/")
        refused = False
    except http_guard.Refused:
        refused = True
    assert refused is not allowed


def test_a_slow_drip_is_cut_at_the_download_deadline(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEADLINE_VAR, "2")
    with pytest.raises(loader.FetchError) as cut:
        fetch(server.url + "/drip", tmp_path)
    assert str(cut.value) == (f"cannot fetch {server.url}/drip: the download did not finish "
                              f"within 2 s ({DEADLINE_VAR} sets the limit)")
    assert server.dripping.is_set()
    assert list((tmp_path / "artifacts").iterdir()) == []


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf", "nan"])
def test_a_deadline_that_is_not_a_positive_number_is_a_usage_error(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(DEADLINE_VAR, value)
    with pytest.raises(SystemExit) as stopped:
        fetch(server.url + "/data.csv", tmp_path)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (f"error: {DEADLINE_VAR} must be a number of "
                                       f"seconds above 0, got {value!r}\n")


def test_first_ctrl_c_cancels_an_inflight_download_and_frees_the_lock(
        server: Server, tmp_path: Path) -> None:
    workdir = tmp_path / "ws"
    workdir.mkdir()
    (workdir / "slow.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {{name: slow}}
spec:
  source: {{url: "{server.url}/drip"}}
""")
    env = {**os.environ, "NO_COLOR": "1"}
    apply = [sys.executable, "-m", "substratus_cli", "apply", str(workdir), "--auto-approve"]
    first = subprocess.Popen(apply, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    try:
        assert server.dripping.wait(60), "the download never started"
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=60)  # the drip would take 83 minutes
    finally:
        first.kill()
    assert first.returncode == ExitCode.INTERRUPTED, out + err
    assert "fetching the dataset source was cancelled (interrupted)" in out + err
    assert "Traceback" not in out + err
    # Nothing holds the lock, and the next apply fetches the dataset.
    server.fast.set()
    second = subprocess.run([*apply, "--lock-timeout", "0s"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert second.returncode == ExitCode.OK, second.stdout + second.stderr
    assert "Apply complete! Resources: 1 added" in second.stdout


def test_the_deadline_is_set_in_the_resource_env(cli, server: Server, tmp_path: Path) -> None:
    (tmp_path / "slow.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {{name: slow}}
spec:
  env: {{{DEADLINE_VAR}: "2"}}
  source: {{url: "{server.url}/drip"}}
""")
    result = cli("apply", tmp_path, "--auto-approve")
    assert result.code == ExitCode.PARTIAL_APPLY, result.output
    assert (f"Dataset/default/slow: cannot fetch {server.url}/drip: the download did not finish "
            f"within 2 s ({DEADLINE_VAR} sets the limit)") in result.output
