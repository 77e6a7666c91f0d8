"""The stable-port router (providers/local/router.py) as its own process in front of real HTTP
backends: round robin, a rollout that loses no request, 503 with nothing ready, its control API."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
import time
import urllib.error
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from substratus_providers.local import processes
from substratus_providers.local.processes import ProcessRef
from substratus_providers.local.router import RouterClient, RouterError, router_command
from tests.support.backends import Processes, get


@dataclass
class RunningRouter:
    port: int
    ref: ProcessRef
    log: Path
    state_file: Path
    client: RouterClient

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def router(procs: Processes, tmp_path: Path) -> Iterator[RunningRouter]:
    port = processes.free_port()
    state_file = tmp_path / "router" / "state.json"
    ref, log = procs.spawn(router_command(port, state_file), "router")
    client = RouterClient(state_file)
    client.wait_ready(15, process=ref)
    yield RunningRouter(port, ref, log, state_file, client)
    processes.stop(ref, grace=5)  # before the backends, while connections may still be open
    assert "Traceback" not in log.read_text() and "Warning" not in log.read_text()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_without_backends_the_router_answers_503(router: RunningRouter) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        get(router.url + "/v1/completions")
    assert caught.value.code == 503
    assert caught.value.headers["Content-Type"] == "application/json"
    assert json.loads(caught.value.read()) == {"error": "no server version is ready"}


def test_backends_that_refuse_are_skipped_and_503_when_all_refuse(
        router: RunningRouter, procs: Processes) -> None:
    v1 = procs.backend("v1")
    router.client.set_backends([processes.free_port(), v1.port], "v1")
    assert [get(router.url) for _ in range(6)] == ["v1"] * 6

    router.client.set_backends([processes.free_port(), processes.free_port()], "v0")
    with pytest.raises(urllib.error.HTTPError) as caught:
        get(router.url)
    assert caught.value.code == 503


def test_new_connections_alternate_between_backends(
        router: RunningRouter, procs: Processes) -> None:
    a, b = procs.backend("a"), procs.backend("b")
    status = router.client.set_backends([a.port, b.port], "ab")
    assert status["backends"] == [a.port, b.port] and status["version"] == "ab"
    assert [get(router.url) for _ in range(4)] == ["a", "b", "a", "b"]


def test_rollout_from_v1_to_v2_loses_no_request(router: RunningRouter, procs: Processes) -> None:
    v1, v2 = procs.backend("v1"), procs.backend("v2")
    router.client.set_backends([v1.port], "v1")
    answers: list[str] = []
    failures: list[str] = []
    done = threading.Event()

    def keep_asking() -> None:
        while not done.is_set():
            try:
                answers.append(get(router.url, timeout=5))
            except Exception as e:  # noqa: BLE001 - every failure counts
                failures.append(repr(e))

    slow: dict[str, str] = {}
    asker = threading.Thread(target=keep_asking, daemon=True)
    in_flight = threading.Thread(target=lambda: slow.update(answer=get(router.url + "/slow")),
                                 daemon=True)
    asker.start()
    try:
        wait_for(lambda: answers.count("v1") >= 5)
        in_flight.start()
        wait_for(lambda: router.client.status()["active"].get(str(v1.port), 0) >= 1)
        time.sleep(0.2)  # the slow request is now surely with v1

        router.client.set_backends([v2.port], "v2")
        assert router.client.drain(v1.port, timeout=10)
        in_flight.join(timeout=5)
        processes.stop(v1.ref)
        after_stop = len(answers)
        wait_for(lambda: answers[after_stop:].count("v2") >= 5)
    finally:
        done.set()
        asker.join(timeout=10)

    assert failures == []
    assert slow == {"answer": "v1-slow"}
    switched = answers.index("v2")
    assert set(answers[:switched]) == {"v1"} and set(answers[switched:]) == {"v2"}
    status = router.client.status()
    assert status["backends"] == [v2.port] and status["version"] == "v2"
    assert str(v1.port) not in status["active"]
    assert status["connections"] >= len(answers) + 1


def test_keep_alive_connection_stays_with_its_backend_and_half_close_gets_the_answer(
        router: RunningRouter, procs: Processes) -> None:
    v1, v2 = procs.backend("v1"), procs.backend("v2")
    router.client.set_backends([v1.port], "v1")
    conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
    try:
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"v1"
        router.client.set_backends([v2.port], "v2")
        for _ in range(3):
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"v1"  # an open connection is not moved
        assert router.client.status()["active"] == {str(v1.port): 1}
        assert not router.client.drain(v1.port, timeout=0.2)
    finally:
        conn.close()
    assert router.client.drain(v1.port, timeout=5)

    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        raw.shutdown(socket.SHUT_WR)
        received = b"".join(iter(lambda: raw.recv(4096), b""))
    assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"\r\n\r\nv2")


def test_control_api_refuses_a_wrong_token_and_a_bad_body(
        router: RunningRouter, tmp_path: Path) -> None:
    assert router.state_file.stat().st_mode & 0o777 == 0o600
    state = json.loads(router.state_file.read_text())
    assert set(state) == {"pid", "port", "control_port", "token"}
    assert state["pid"] == router.ref.pid and state["port"] == router.port

    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**state, "token": "guessed"}))
    with pytest.raises(RouterError, match="HTTP 401: missing or wrong bearer token"):
        RouterClient(forged).set_backends([1234], "evil")
    with pytest.raises(RouterError, match="HTTP 400: bad request: ports must be TCP port"):
        router.client.set_backends([0], "v0")
    assert router.client.status()["backends"] == []
    with pytest.raises(RouterError, match="the router is not running: .* does not exist"):
        RouterClient(tmp_path / "nothing.json").status()


def test_port_in_use_exits_1_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        state_file = tmp_path / "state.json"
        result = subprocess.run(router_command(port, state_file), capture_output=True,
                                text=True, timeout=30, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: port {port} is already in use"
    assert not state_file.exists()


def test_sigterm_stops_the_router_with_exit_0_and_closes_open_connections(
        router: RunningRouter, procs: Processes) -> None:
    router.client.set_backends([procs.backend("v1").port], "v1")
    conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"v1"
    processes.stop(router.ref, grace=5)
    assert processes.exit_code(router.ref) == 0
    assert conn.sock.recv(1) == b""  # closed by the router, not left hanging
    conn.close()
    assert not router.state_file.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", router.port), timeout=5).close()
