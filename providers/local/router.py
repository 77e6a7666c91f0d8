"""The local runtime's stable-port router: one localhost port whose new connections go to the ready
model-server version, switched without dropping a connection. Runs as its own process:
`python -m substratus_providers.local.router --port P --state-file F`; RouterClient drives it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import hmac
import http.client
import json
import os
import secrets
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from substratus_providers.local.processes import ProcessRef, alive

HOST = "127.0.0.1"
CHUNK = 64 * 1024
_CONNECT_TIMEOUT_S = 10.0
_CONTROL_READ_TIMEOUT_S = 10.0
_MAX_CONTROL_BODY = 1 << 20
_DISCARD_S = 2.0
_POLL_S = 0.05
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 503: "Service Unavailable"}


class RouterError(Exception):
    """The router is not running, not reachable, or refused a request; the message says which."""


class Router:
    """The routing table and its bookkeeping; the asyncio servers call into it."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.backends: tuple[int, ...] = ()
        self.version: str | None = None
        self.active: Counter[int] = Counter()
        self.connections = 0
        self._next = 0
        self._handlers: set[asyncio.Task[None]] = set()
        self._open: set[asyncio.StreamWriter] = set()

    def switch(self, ports: Sequence[int], version: str | None) -> None:
        # One assignment on the event loop's thread: a connection sees the old set or the new.
        self.backends, self.version, self._next = tuple(ports), version, 0
        print(f"router: backends {list(self.backends)} (version {version})", flush=True)

    def status(self) -> dict[str, Any]:
        return {"backends": list(self.backends), "version": self.version,
                "active": {str(p): n for p, n in sorted(self.active.items()) if n > 0},
                "connections": self.connections}

    def _candidates(self) -> list[int]:
        """Round robin: each connection starts one further along, then tries the rest in order."""
        ports = self.backends
        if not ports:
            return []
        start = self._next % len(ports)
        self._next += 1
        return list(ports[start:] + ports[:start])

    async def serve_client(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._track(writer)
        try:
            for port in self._candidates():
                # Counted from the connect attempt on, so a drain cannot end while it is pending.
                self.active[port] += 1
                try:
                    if await self._forward(port, reader, writer):
                        return
                finally:
                    self.active[port] -= 1
            await _unavailable(reader, writer)
        finally:
            self._open.discard(writer)
            await _close(writer)

    def _track(self, writer: asyncio.StreamWriter) -> None:
        """Remember the running handler and its client socket, for close_connections."""
        handler = asyncio.current_task()
        assert handler is not None, "handlers run as tasks"
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)
        self._open.add(writer)

    async def _forward(self, port: int, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> bool:
        """Splice the client to backend `port`; False when the backend refuses."""
        upstream = await _connect(port)
        if upstream is None:
            return False
        self._open.add(upstream[1])
        try:
            await _splice(reader, writer, *upstream)
        finally:
            self._open.discard(upstream[1])
        return True

    async def close_connections(self, timeout: float = 2.0) -> None:
        """End every open connection. Aborting the sockets lets each handler finish on its own;
        cancelling them instead makes Python 3.11's streams log a traceback per connection."""
        for writer in list(self._open):
            writer.transport.abort()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=timeout)

    async def serve_control(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        self._track(writer)
        try:
            method, path, headers, body = await _read_request(reader)
            status, answer = self._control(method, path, headers, body)
        except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError) as e:
            status, answer = 400, {"error": f"bad request: {e}"}
        with contextlib.suppress(OSError):
            writer.write(_response(status, answer))
            await writer.drain()
        self._open.discard(writer)
        await _close(writer)

    def _control(self, method: str, path: str, headers: dict[str, str],
                 body: bytes) -> tuple[int, dict[str, Any]]:
        given = headers.get("authorization", "").encode("latin-1", "replace")
        if not hmac.compare_digest(given, f"Bearer {self.token}".encode()):
            return 401, {"error": "missing or wrong bearer token"}
        if path == "/status":
            if method != "GET":
                return 405, {"error": "use GET /status"}
            return 200, self.status()
        if path == "/backends":
            if method != "PUT":
                return 405, {"error": "use PUT /backends"}
            ports, version = _parse_backends(body)
            self.switch(ports, version)
            return 200, self.status()
        return 404, {"error": f"no such path: {path}"}


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    try:
        return await asyncio.wait_for(asyncio.open_connection(HOST, port), _CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError):
        return None


async def _splice(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                  backend_reader: asyncio.StreamReader,
                  backend_writer: asyncio.StreamWriter) -> None:
    """Copy bytes both ways until both sides have closed; each EOF is passed on as a half-close,
    so a client that shuts its sending side still gets the whole answer."""
    try:
        await asyncio.gather(
            _pipe(client_reader, client_writer, backend_writer),
            _pipe(backend_reader, backend_writer, client_writer))
    finally:
        await _close(backend_writer)


async def _pipe(source: asyncio.StreamReader, source_writer: asyncio.StreamWriter,
                sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(CHUNK):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except OSError:
        # One side broke: the exchange cannot complete, so end the other direction too.
        source_writer.transport.abort()
        sink.transport.abort()


async def _unavailable(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, TimeoutError):
        writer.write(_response(503, {"error": "no server version is ready"},
                               extra="Retry-After: 1\r\n"))
        await writer.drain()
        writer.write_eof()
        # Closing with the request still unread would send a reset, which can destroy the
        # answer before the client reads it: read until the client closes, briefly.
        async with asyncio.timeout(_DISCARD_S):
            while await reader.read(CHUNK):
                pass


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    async with asyncio.timeout(_CONTROL_READ_TIMEOUT_S):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *lines = head.rstrip("\r\n").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if not 0 <= length <= _MAX_CONTROL_BODY:
            raise ValueError(f"body of {length} bytes")
        body = await reader.readexactly(length)
    return method, path.split("?", 1)[0], headers, body


def _parse_backends(body: bytes) -> tuple[list[int], str | None]:
    """The body of PUT /backends: {"ports": [int, ...], "version": str | null}."""
    data = json.loads(body or b"null")
    if not isinstance(data, dict) or not isinstance(data.get("ports"), list):
        raise ValueError('expected {"ports": [...], "version": "..."}')
    ports = data["ports"]
    if not all(isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports):
        raise ValueError(f"ports must be TCP port numbers, got {ports!r}")
    version = data.get("version")
    if version is not None and not isinstance(version, str):
        raise ValueError(f"version must be a string, got {version!r}")
    return ports, version


def _response(status: int, body: dict[str, Any], extra: str = "") -> bytes:
    payload = json.dumps(body).encode() + b"\n"
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            f"Connection: close\r\n{extra}\r\n")
    return head.encode() + payload


# --- the router process -------------------------------------------------------------------


class _StartError(Exception):
    pass


async def _listen(router: Router, port: int) -> asyncio.Server:
    try:
        return await asyncio.start_server(router.serve_client, HOST, port)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise _StartError(f"port {port} is already in use") from None
        raise _StartError(f"cannot listen on {HOST}:{port}: {e.strerror}") from None


async def _run(port: int, state_file: Path) -> int:
    router = Router(secrets.token_urlsafe(32))
    proxy = await _listen(router, port)
    control = await asyncio.start_server(router.serve_control, HOST, 0)
    state = {"pid": os.getpid(), "port": proxy.sockets[0].getsockname()[1],
             "control_port": control.sockets[0].getsockname()[1], "token": router.token}
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    _write_state(state_file, state)
    print(f"router: listening on {HOST}:{state['port']}, control on {HOST}:"
          f"{state['control_port']}", flush=True)
    await stopping.wait()
    proxy.close()
    control.close()
    await router.close_connections()
    _remove_state(state_file)
    print("router: stopped", flush=True)
    return 0


def _write_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically, readable by the owner only: the file holds the control API's token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)  # whatever the umask
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove_state(path: Path) -> None:
    """Remove the state file unless a newer router has written its own there."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m substratus_providers.local.router",
                                     description="Forward a localhost port to model servers.")
    parser.add_argument("--port", type=int, required=True, help="the stable port to listen on")
    parser.add_argument("--state-file", type=Path, required=True,
                        help="where to write pid, ports and the control token (mode 0600)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_run(args.port, args.state_file))
    except _StartError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def router_command(port: int, state_file: str | os.PathLike[str]) -> list[str]:
    """The argv that starts a router, for processes.spawn. Equivalent to `python -m
    substratus_providers.local.router`, minus runpy's warning about a module that its own
    package has already imported."""
    return [sys.executable, "-c", _ENTRY, "--port", str(port),
            "--state-file", os.fspath(state_file)]


_ENTRY = "import sys; from substratus_providers.local.router import main; sys.exit(main())"


# --- the client ---------------------------------------------------------------------------


class RouterClient:
    """Talks to a running router through its control API, found from its state file."""

    def __init__(self, state_file: str | os.PathLike[str], *, request_timeout: float = 5.0
                 ) -> None:
        self.state_file = Path(state_file)
        self.request_timeout = request_timeout

    def state(self) -> dict[str, Any]:
        """The state file's {"pid", "port", "control_port", "token"}."""
        try:
            state = json.loads(self.state_file.read_text())
            return {k: state[k] for k in ("pid", "port", "control_port", "token")}
        except FileNotFoundError:
            raise RouterError(f"the router is not running: {self.state_file} does not exist"
                              ) from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RouterError(f"cannot read the router's state file {self.state_file}: {e}"
                              ) from None

    def wait_ready(self, timeout: float = 10.0, *, process: ProcessRef | None = None) -> None:
        """Wait until the state file exists and /status answers. With `process`, only a state
        file written by that process counts, and its exit ends the wait at once."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if process is not None and self.state()["pid"] != process.pid:
                    raise RouterError(f"{self.state_file} belongs to another router")
                self.status()
                return
            except RouterError as e:
                if process is not None and not alive(process):
                    raise RouterError("the router exited before it was ready") from None
                if time.monotonic() >= deadline:
                    raise RouterError(f"the router was not ready after {timeout:g}s: {e}"
                                      ) from None
            time.sleep(_POLL_S)

    def status(self) -> dict[str, Any]:
        """{"backends": [port, ...], "version": str | None, "active": {"<port>": open
        connections}, "connections": connections accepted since the router started}."""
        return self._request("GET", "/status")

    def set_backends(self, ports: Sequence[int], version: str | None) -> dict[str, Any]:
        """Send new connections to `ports` from now on; open connections stay where they are.
        Returns the status after the switch."""
        return self._request("PUT", "/backends", {"ports": list(ports), "version": version})

    def drain(self, port: int, timeout: float = 30.0) -> bool:
        """Wait until no connection to backend `port` remains open; False after `timeout`.
        Meant for a port that set_backends has switched out: one still in the set is only
        seen idle for a moment (not an error, since a new version may reuse a freed port)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.status()["active"].get(str(port), 0) == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)

    def _request(self, method: str, path: str, payload: Any = None) -> dict[str, Any]:
        state = self.state()
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Authorization": f"Bearer {state['token']}", "Content-Type": "application/json"}
        conn = http.client.HTTPConnection(HOST, state["control_port"],
                                          timeout=self.request_timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            status, raw = response.status, response.read()
        except (OSError, http.client.HTTPException) as e:
            raise RouterError(f"cannot reach the router's control API at "
                              f"{HOST}:{state['control_port']}: {e}") from None
        finally:
            conn.close()
        return _answer(method, path, status, raw)


def _answer(method: str, path: str, status: int, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        data = raw.decode("utf-8", "replace").strip()
    if not isinstance(data, dict):
        data = {"error": data}
    if status != 200:
        raise RouterError(f"the router refused {method} {path}: HTTP {status}: "
                          f"{data.get('error', data)}")
    return dict(data)


if __name__ == "__main__":
    sys.exit(main())
