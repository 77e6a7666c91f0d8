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
    """What happens to each new connection: reset with probability `reset`, else cut when the
    target's first answer arrives with probability `lose_answer` (the request landed, the client
    never hears of it), else delayed with probability `delay`. A reset one is cut at accept with probability `reset_at_accept`, else after
    the client sent more than a byte count drawn from 0..`reset_after_bytes`. A delayed one waits
    `delay_seconds` before each chunk it forwards, either way.

    A client keeps its connections open for many requests, so a fault drawn only per connection
    meets few of them: `reset_per_chunk` is the probability that any chunk the client sends, on
    any connection, is the last one forwarded before a reset.

    `only`: the numbers of the connections (from 1, in accept order) that meet faults at all;
    None: every one. With `match`, only connections whose first chunk from the client holds those
    bytes meet faults (a reset "at accept" then drops that chunk), and `only` numbers those. A
    test can thus lose the answer to exactly the request it means (e.g. `match=b"DELETE "`)."""

    reset: float = 0.0
    lose_answer: float = 0.0
    reset_per_chunk: float = 0.0
    delay: float = 0.0
    delay_seconds: float = 0.05
    reset_at_accept: float = 0.5
    reset_after_bytes: int = 4096
    seed: int = 0
    only: frozenset[int] | None = None
    match: bytes | None = None


@dataclasses.dataclass(frozen=True)
class _Fate:
    """One connection's draw: reset after this many client bytes (None: never; -1: at accept),
    cut at the first answer bytes, delay per chunk, probability of a reset after each chunk."""

    reset_after: int | None = None
    lose_answer: bool = False
    delay: float = 0.0
    per_chunk: float = 0.0


@dataclasses.dataclass
class Counts:
    connections: int = 0
    resets: int = 0  # connections cut with an RST: at accept, mid-stream or at the answer
    resets_at_accept: int = 0
    delayed: int = 0
    matched: int = 0  # connections whose first chunk held `Faults.match`
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
            fate = None if self.faults.match is not None else self._draw()
            thread = threading.Thread(target=self._serve, args=(client, fate),
                                      name="faultproxy-conn", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _draw(self, first: bytes | None = None) -> _Fate:
        """The fate of a new connection; with `Faults.match`, drawn at its first chunk."""
        f = self.faults
        with self._lock:
            if f.match is None:
                self.counts.connections += 1
                number = self.counts.connections
            elif first is not None and f.match in first:
                self.counts.matched += 1
                number = self.counts.matched
            else:
                return _Fate()
            if f.only is not None and number not in f.only:
                return _Fate()
            roll = self._random.random()
            if roll < f.reset:
                if self._random.random() < f.reset_at_accept:
                    return _Fate(reset_after=-1)
                return _Fate(self._random.randint(0, f.reset_after_bytes),
                             per_chunk=f.reset_per_chunk)
            if roll < f.reset + f.lose_answer:
                return _Fate(lose_answer=True, per_chunk=f.reset_per_chunk)
            if roll < f.reset + f.lose_answer + f.delay:
                self.counts.delayed += 1
                return _Fate(delay=f.delay_seconds, per_chunk=f.reset_per_chunk)
            return _Fate(per_chunk=f.reset_per_chunk)

    def _serve(self, client: socket.socket, fate: _Fate | None) -> None:
        upstream: socket.socket | None = None
        first = b""
        try:
            if fate is None:  # drawn once the first chunk shows what the connection carries
                with self._lock:
                    self.counts.connections += 1
                try:
                    first = client.recv(CHUNK)
                except OSError:
                    return
                fate = self._draw(first)
            if fate.reset_after == -1:
                self._reset(client, at_accept=True)
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                self._reset(client, at_accept=True)
                return
            upstream.settimeout(None)
            self._pump(client, upstream, fate, first)
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()

    def _pump(self, client: socket.socket, upstream: socket.socket, fate: _Fate,
              first: bytes) -> None:
        """Forwards both ways; `first`, the client's chunk read before, goes first."""
        sent_up = 0
        peer = {client: upstream, upstream: client}
        open_ends = {client, upstream}
        while open_ends and not self._stopping.is_set():
            ready = [client] if first else select.select(list(open_ends), [], [], 0.5)[0]
            for sock in ready:
                try:
                    data, first = (first, b"") if first else (sock.recv(CHUNK), b"")
                except OSError:
                    data = b""
                if not data:  # that side is done sending: pass the half-close on
                    open_ends.discard(sock)
                    with contextlib.suppress(OSError):
                        peer[sock].shutdown(socket.SHUT_WR)
                    if sock is upstream:
                        return  # the target closed: an HTTP server's answer is complete
                    continue
                if sock is upstream and fate.lose_answer:
                    self._reset(client, at_accept=False)
                    return
                if fate.delay:
                    time.sleep(fate.delay)
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
                    if (fate.reset_after is not None and sent_up > fate.reset_after) or \
                            self._chunk_reset(fate.per_chunk):
                        self._reset(client, at_accept=False)
                        return

    def _chunk_reset(self, probability: float) -> bool:
        if not probability:
            return False
        with self._lock:
            return self._random.random() < probability

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
