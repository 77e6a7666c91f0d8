"""A real HTTP server on 127.0.0.1 for tests: routes of bytes, optional auth and slowness."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.server
import threading
import time
from collections.abc import Iterator


@dataclasses.dataclass
class Route:
    body: bytes
    authorization: str | None = None  # required Authorization header value, if any
    seconds: float = 0.0  # spread the body over this long (a slow download)
    # On a wrong Authorization, answer 401 quoting the token that was sent, base64-encoded (as
    # careless servers echo credentials).
    echo: bool = False


@dataclasses.dataclass
class Served:
    url: str
    routes: dict[str, Route]
    requests: list[dict[str, str]] = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def serve(routes: dict[str, Route]) -> Iterator[Served]:
    served = Served("", routes)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            served.requests.append({"path": self.path, **dict(self.headers.items())})
            route = served.routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if route.authorization and self.headers.get("Authorization") != route.authorization:
                if route.echo:
                    token = self.headers.get("Authorization", "").split(" ")[-1]
                    sent = base64.b64encode(token.encode()).decode()
                    self.send_error(401, f"invalid token {sent}", f"rejected: {sent}")
                    return
                self.send_error(403)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            pieces = 20 if route.seconds else 1
            step = max(1, len(route.body) // pieces)
            for i in range(0, len(route.body), step):
                self.wfile.write(route.body[i:i + step])
                self.wfile.flush()
                time.sleep(route.seconds / pieces)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()
