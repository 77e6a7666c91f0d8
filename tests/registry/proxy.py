"""A real HTTP proxy on 127.0.0.1 in front of a test registry that answers chosen requests with
an error status of its own instead of relaying them (a 503 in the middle of a push, a 403), and
relays the rest, the Host header included, so the registry's upload Locations point back at the
proxy. Every request is recorded as (method, path, status answered)."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import http.server
import threading
from collections.abc import Callable, Iterator

from tests.registry import RegistryServer

# (method, path) -> an HTTP status to answer with instead of relaying, or None to relay.
Fault = Callable[[str, str], int | None]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "content-length"}


@dataclasses.dataclass
class Proxy:
    host: str  # 127.0.0.1:PORT, what an image reference names
    requests: list[tuple[str, str, int]] = dataclasses.field(default_factory=list)


def once(status: int, method: str, path_part: str) -> Fault:
    """Answers the first `method` request whose path contains `path_part` with `status`."""
    left = [1]

    def fault(m: str, path: str) -> int | None:
        if left[0] and m == method and path_part in path:
            left[0] -= 1
            return status
        return None

    return fault


@contextlib.contextmanager
def fault_proxy(registry: RegistryServer, fault: Fault,
                redirect: Callable[[str, str], str | None] | None = None) -> Iterator[Proxy]:
    """`redirect`: (method, path) -> a URL to answer 307 with instead of relaying (a registry
    that sends blob downloads to its storage), or None."""
    proxy = Proxy("")
    lock = threading.Lock()

    class Relay(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def relay(self) -> None:
            body = self._body()
            elsewhere = redirect(self.command, self.path) if redirect else None
            if elsewhere is not None:
                with lock:
                    proxy.requests.append((self.command, self.path, 307))
                self.send_response(307)
                self.send_header("Location", elsewhere)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = fault(self.command, self.path)
            if status is not None:
                with lock:
                    proxy.requests.append((self.command, self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                code = {401: "UNAUTHORIZED", 403: "DENIED"}.get(status, "UNAVAILABLE")
                payload = (f'{{"errors":[{{"code":"{code}","message":"injected by the test '
                           f'proxy"}}]}}').encode()
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            upstream = http.client.HTTPConnection(registry.host, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            with lock:
                proxy.requests.append((self.command, self.path, answer.status))
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() not in ("date", "server"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            upstream.close()

        def _body(self) -> bytes | None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else None

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = relay

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    proxy.host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
