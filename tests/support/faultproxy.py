"""A TCP fault proxy for the fault tests: listens on 127.0.0.1, forwards each connection to a
target and, by a seeded random draw per connection, resets it or delays it. TLS passes through
unchanged (the proxy never looks into the bytes), so a client verifies the target's certificate.

A reset connection is closed with SO_LINGER 0 (an RST, as a crashed load balancer or a dropped
NAT entry sends) either at once, before any byte passes, or once the client has sent more than a
drawn number of bytes: the chunk that crosses it is forwarded first, so the server may act on a
request whose answer the client never sees."""

from __future__ import annotations

import contextlib
import dataclasses
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator

CHUNK = 65536


@dataclasses.dataclass(frozen=True)
class Faults:
    """What happens to each new connection: reset with probability `reset`, else delayed with
    probability `delay`. A reset one is cut at accept with probability `reset_at_accept`, else after
    the client sent more than a byte count drawn from 0..`reset_after_bytes`. A delayed one waits
    `delay_seconds` before each chunk it forwards, either way.

    A client keeps its connections open for many requests, so a fault drawn only per connection
    meets few of them: `reset_per_chunk` is the probability that any chunk the client sends, on
    any connection, is the last one forwarded before a reset."""

    reset: float = 0.0
    reset_per_chunk: float = 0.0
    delay: float = 0.0
    delay_seconds: float = 0.05
    reset_at_accept: float = 0.5
    reset_after_bytes: int = 4096
    seed: int = 0


@dataclasses.dataclass
class Counts:
    connections: int = 0
    resets: int = 0  # connections cut with an RST, at accept or mid-stream
    resets_at_accept: int = 0
    delayed: int = 0
    bytes_up: int = 0  # client -> target
    bytes_down: int = 0  # target -> client


class FaultProxy:
    """`with FaultProxy(host, port, Faults(...)) as proxy:` serves on `proxy.port` until the block
    ends; `proxy.counts` says what it did. Thread per connection: the tests' clients open tens of
    connections, not thousands. `faults` may be replaced while it runs (e.g. to heal it)."""

    def __init__(self, target_host: str, target_port: int, faults: Faults = Faults()) -> None:
        self.target = (target_host, target_port)
        self.faults = faults
        self.counts = Counts()
        self._random = random.Random(faults.seed)
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, name="faultproxy-accept",
                                          daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        # shutdown() wakes the accept() blocked on it; close() alone does not on Linux.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepter.join(5)
        for thread in list(self._threads):
            thread.join(5)

    def snapshot(self) -> Counts:
        with self._lock:
            return dataclasses.replace(self.counts)

    # -- connections

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            fate = self._draw()
            thread = threading.Thread(target=self._serve, args=(client, *fate),
                                      name="faultproxy-conn", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _draw(self) -> tuple[int | None, float]:
        """(reset after this many client bytes, None: never; -1: at accept), delay per chunk."""
        f = self.faults
        with self._lock:
            self.counts.connections += 1
            roll = self._random.random()
            if roll < f.reset:
                if self._random.random() < f.reset_at_accept:
                    return -1, 0.0
                return self._random.randint(0, f.reset_after_bytes), 0.0
            if roll < f.reset + f.delay:
                self.counts.delayed += 1
                return None, f.delay_seconds
            return None, 0.0

    def _serve(self, client: socket.socket, reset_after: int | None, delay: float) -> None:
        upstream: socket.socket | None = None
        try:
            if reset_after == -1:
                self._reset(client, at_accept=True)
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                self._reset(client, at_accept=True)
                return
            upstream.settimeout(None)
            self._pump(client, upstream, reset_after, delay)
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()

    def _pump(self, client: socket.socket, upstream: socket.socket, reset_after: int | None,
              delay: float) -> None:
        sent_up = 0
        peer = {client: upstream, upstream: client}
        open_ends = {client, upstream}
        while open_ends and not self._stopping.is_set():
            ready, _, _ = select.select(list(open_ends), [], [], 0.5)
            for sock in ready:
                try:
                    data = sock.recv(CHUNK)
                except OSError:
                    data = b""
                if not data:  # that side is done sending: pass the half-close on
                    open_ends.discard(sock)
                    with contextlib.suppress(OSError):
                        peer[sock].shutdown(socket.SHUT_WR)
                    if sock is upstream:
                        return  # the target closed: an HTTP server's answer is complete
                    continue
                if delay:
                    time.sleep(delay)
                try:
                    peer[sock].sendall(data)
                except OSError:
                    return
                with self._lock:
                    if sock is client:
                        self.counts.bytes_up += len(data)
                    else:
                        self.counts.bytes_down += len(data)
                if sock is client:
                    sent_up += len(data)
                    if (reset_after is not None and sent_up > reset_after) or self._chunk_reset():
                        self._reset(client, at_accept=False)
                        return

    def _chunk_reset(self) -> bool:
        if not self.faults.reset_per_chunk:
            return False
        with self._lock:
            return self._random.random() < self.faults.reset_per_chunk

    def _reset(self, sock: socket.socket, *, at_accept: bool) -> None:
        with self._lock:
            self.counts.resets += 1
            self.counts.resets_at_accept += at_accept
        # Linger on with a zero timeout: close() sends an RST instead of a FIN.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            sock.close()


@contextlib.contextmanager
def fault_proxy(target: str, faults: Faults) -> Iterator[FaultProxy]:
    """A proxy in front of `target` ("host:port" or a URL such as http://127.0.0.1:4443)."""
    hostport = target.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    with FaultProxy(host, int(port), faults) as proxy:
        yield proxy
