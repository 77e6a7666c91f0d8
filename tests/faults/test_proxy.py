"""The fault proxy itself, against a real echo server on 127.0.0.1: it forwards both ways, resets
the connections it draws (at accept, or after forwarding the client's first bytes), delays
others, and draws the same fates from the same seed."""

from __future__ import annotations

import contextlib
import errno
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.faultproxy import FaultProxy, Faults


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        # The proxy closes a connection it resets while bytes are still unread: an RST here too.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            while data := self.request.recv(65536):
                self.server.received.append(data)  # type: ignore[attr-defined]
                self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[tuple[str, int, list[bytes]]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1], server.received  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def arrived(received: list[bytes], expected: bytes) -> bytes:
    """What the echo server got, once it got `expected` (its thread may still be reading)."""
    for _ in range(100):
        if b"".join(received) == expected:
            break
        time.sleep(0.05)
    return b"".join(received)


def exchange(port: int, data: bytes) -> bytes:
    """Sends `data`, half-closes, reads until the end; raises what the socket raises."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        return answer


def was_reset(port: int, data: bytes) -> bool:
    try:
        return exchange(port, data) != data
    except (ConnectionResetError, BrokenPipeError):
        return True
    except OSError as e:  # shutdown() of a socket already reset
        if e.errno == errno.ENOTCONN:
            return True
        raise


def test_without_faults_it_forwards_both_ways_and_counts(echo) -> None:
    host, port, _ = echo
    payload = bytes(range(256)) * 1000
    with FaultProxy(host, port) as proxy:
        assert exchange(proxy.port, payload) == payload
        assert exchange(proxy.port, b"again") == b"again"
        counts = proxy.snapshot()
    assert (counts.connections, counts.resets, counts.delayed) == (2, 0, 0)
    assert counts.bytes_up == counts.bytes_down == len(payload) + len(b"again")


def test_a_reset_at_accept_never_reaches_the_target(echo) -> None:
    host, port, received = echo
    with FaultProxy(host, port, Faults(reset=1.0, reset_at_accept=1.0)) as proxy:
        with pytest.raises(ConnectionResetError):
            exchange(proxy.port, b"hello")
        counts = proxy.snapshot()
    assert (counts.connections, counts.resets, counts.resets_at_accept) == (1, 1, 1)
    assert received == []


def test_a_reset_after_the_first_bytes_delivers_them_and_loses_the_answer(echo) -> None:
    host, port, received = echo
    faults = Faults(reset=1.0, reset_at_accept=0.0, reset_after_bytes=0)
    with FaultProxy(host, port, faults) as proxy:
        with pytest.raises(ConnectionResetError):
            exchange(proxy.port, b"GET / HTTP/1.1\r\n\r\n")
        counts = proxy.snapshot()
    assert (counts.resets, counts.resets_at_accept, counts.bytes_down) == (1, 0, 0)
    assert arrived(received, b"GET / HTTP/1.1\r\n\r\n") == b"GET / HTTP/1.1\r\n\r\n"


def test_a_delayed_connection_still_forwards_everything(echo) -> None:
    host, port, _ = echo
    with FaultProxy(host, port, Faults(delay=1.0, delay_seconds=0.01)) as proxy:
        assert exchange(proxy.port, b"slow" * 100) == b"slow" * 100
        counts = proxy.snapshot()
    assert (counts.connections, counts.delayed, counts.resets) == (1, 1, 0)


def fates(port: int, seed: int) -> list[bool]:
    with FaultProxy("127.0.0.1", port, Faults(reset=0.2, seed=seed)) as proxy:
        outcome = [was_reset(proxy.port, b"x" * 5000) for _ in range(100)]
        assert proxy.snapshot().resets == sum(outcome)
    return outcome


def test_the_same_seed_resets_the_same_connections_about_a_fifth_of_them(echo) -> None:
    _, port, _ = echo
    first, second = fates(port, seed=7), fates(port, seed=7)
    assert first == second
    assert 10 <= sum(first) <= 30
    assert fates(port, seed=8) != first


def test_it_stops_with_connections_open(echo) -> None:
    host, port, _ = echo
    with contextlib.ExitStack() as stack:
        proxy = stack.enter_context(FaultProxy(host, port))
        idle = stack.enter_context(socket.create_connection(("127.0.0.1", proxy.port)))
        idle.sendall(b"ping")
        assert idle.recv(4) == b"ping"
        proxy.close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()


def test_a_per_chunk_reset_cuts_a_kept_alive_connection_after_a_forwarded_chunk(echo) -> None:
    host, port, received = echo
    with FaultProxy(host, port, Faults(reset_per_chunk=0.5, seed=3)) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        sent = 0
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            for n in range(100):
                s.sendall(b"%03d" % n)
                sent += 1
                assert s.recv(3) == b"%03d" % n
        counts = proxy.snapshot()
    assert (counts.connections, counts.resets, counts.resets_at_accept) == (1, 1, 0)
    # The chunk that drew the reset reached the target; its echo never came back.
    chunks = b"".join(b"%03d" % n for n in range(sent))
    assert arrived(received, chunks) == chunks


def test_only_the_numbered_connections_meet_faults(echo) -> None:
    host, port, _ = echo
    faults = Faults(reset=1.0, reset_at_accept=1.0, only=frozenset({2, 4}))
    with FaultProxy(host, port, faults) as proxy:
        outcome = [was_reset(proxy.port, b"x") for _ in range(5)]
    assert outcome == [False, True, False, True, False]


def test_a_lost_answer_delivers_the_whole_request_and_no_byte_back(echo) -> None:
    host, port, received = echo
    request = b"PUT /x HTTP/1.1\r\n\r\n" + b"body" * 100  # one chunk: the echo follows it
    with FaultProxy(host, port, Faults(lose_answer=1.0)) as proxy:
        with pytest.raises(ConnectionResetError):
            exchange(proxy.port, request)
        counts = proxy.snapshot()
    assert (counts.resets, counts.bytes_up, counts.bytes_down) == (1, len(request), 0)
    assert arrived(received, request) == request


def test_with_match_only_the_connections_carrying_it_meet_faults(echo) -> None:
    host, port, received = echo
    faults = Faults(lose_answer=1.0, match=b"DELETE ", only=frozenset({2}))
    with FaultProxy(host, port, faults) as proxy:
        outcome = [was_reset(proxy.port, request) for request in
                   (b"GET /a", b"DELETE /a", b"GET /b", b"DELETE /b", b"DELETE /c")]
        counts = proxy.snapshot()
    assert outcome == [False, False, False, True, False]
    assert (counts.connections, counts.matched, counts.resets) == (5, 3, 1)
    assert b"DELETE /b" in arrived(received, b"GET /aDELETE /aGET /bDELETE /bDELETE /c")
