"""The HTTP server: routes, JSON in and out, one access-log line per request, graceful stop.

Plain http.server keeps the image small; one thread per request, while generation itself is
serialized by the Generator's lock.
"""

from __future__ import annotations

import http.server
import json
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any

from substratus_workloads import logfmt
from substratus_workloads.server import protocol
from substratus_workloads.server.generation import Generator, PromptTooLong
from substratus_workloads.server.protocol import RequestError

MAX_BODY = 1 << 20


class Server(http.server.ThreadingHTTPServer):
    # Non-daemon threads joined on close: a SIGTERM lets in-flight requests finish.
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], generator: Generator, model_name: str,
                 defaults: Mapping[str, Any]) -> None:
        super().__init__(address, Handler)
        self.generator = generator
        self.model_name = model_name
        self.defaults = defaults

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is routine; say so in one line, not a traceback.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            logfmt.log("warning", message=f"client went away: {error}", client=client_address[0],
                       stream=sys.stderr)
        else:
            super().handle_error(request, client_address)


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server
    # A client that stops sending must not hold a graceful shutdown forever.
    timeout = 60
    started = 0.0

    def parse_request(self) -> bool:
        self.started = time.monotonic()
        return super().parse_request()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._send(200, {"status": "ok", "model": self.server.model_name})
        elif path == "/v1/models":
            self._send(200, {"object": "list", "data": [
                {"id": self.server.model_name, "object": "model", "owned_by": "substratus"}]})
        else:
            self._not_found_or_wrong_method(path)

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path not in ("/v1/completions", "/generate"):
            self._not_found_or_wrong_method(path)
            return
        try:
            body = self._json_body()
            if path == "/generate":
                request = protocol.parse_generate(body, self.server.defaults)
                result = {"generated_text": self._complete(request)[0].text}
            else:
                request = protocol.parse_completions(body, self.server.defaults)
                result = protocol.completions_response(self.server.model_name,
                                                       self._complete(request))
        except RequestError as e:
            self._send(e.status, protocol.error_body(str(e), param=e.param))
            return
        except Exception as e:  # the server keeps serving; the operator gets the traceback
            traceback.print_exc(file=sys.stderr)
            self._send(500, protocol.error_body(f"internal error: {e}", "server_error"))
            return
        self._send(200, result)

    def _complete(self, request: protocol.CompletionRequest) -> list[Any]:
        try:
            return [self.server.generator.complete(p, request.max_tokens, request.temperature,
                                                   request.top_p, request.stop, request.seed)
                    for p in request.prompts]
        except PromptTooLong as e:
            raise RequestError(str(e), "prompt") from None

    def _json_body(self) -> Any:
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit():
            raise RequestError("Content-Length must be a number")
        if int(length) > MAX_BODY:
            raise RequestError(f"the request body is over {MAX_BODY} bytes", status=413)
        try:
            return json.loads(self.rfile.read(int(length)) or b"null")
        except ValueError as e:
            raise RequestError(f"the request body is not valid JSON: {e}") from None

    def _not_found_or_wrong_method(self, path: str) -> None:
        # Read what the client sent first: closing on unread data can reset the connection
        # before the client has read the answer.
        length = self.headers.get("Content-Length", "0")
        if length.isdigit() and int(length) <= MAX_BODY:
            self.rfile.read(int(length))
        allowed = {"/health": "GET", "/v1/models": "GET", "/v1/completions": "POST",
                   "/generate": "POST"}.get(path)
        if allowed:
            self._send(405, protocol.error_body(f"{self.command} {path} is not allowed; use "
                                                f"{allowed}"), {"Allow": allowed})
        else:
            self._send(404, protocol.error_body(f"no such endpoint: {self.command} {path}",
                                                "not_found_error"))

    def do_PUT(self) -> None:  # noqa: N802
        self._not_found_or_wrong_method(self.path.split("?", 1)[0])

    do_DELETE = do_PATCH = do_PUT

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        # http.server's own refusals (a malformed request line, an unknown method) answer in
        # the API's JSON shape too, instead of an HTML page.
        self.close_connection = True
        text = message or http.HTTPStatus(code).phrase
        self._send(code, protocol.error_body(text))

    def _send(self, status: int, body: Mapping[str, Any],
              headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        took_ms = (time.monotonic() - self.started) * 1000 if self.started else 0.0
        # A request line that does not parse leaves no command or path behind.
        method, path = getattr(self, "command", None), getattr(self, "path", None)
        logfmt.log(method=method or "-", path=(path or "-").split("?", 1)[0],
                   status=int(code) if str(code).isdigit() else code,
                   ms=round(took_ms, 1), client=self.client_address[0], stream=sys.stderr)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's naming
        # Only errors reach here (log_request is overridden): malformed requests and timeouts.
        logfmt.log("warning", message=format % args, client=self.client_address[0],
                   stream=sys.stderr)
