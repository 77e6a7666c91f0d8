"""The GKE fake's HTTP face: the v1 REST paths the real ClusterManagerClient(transport="rest")
sends, on a free 127.0.0.1 port, in a background thread. Errors come back in Google's JSON error
shape, so google-api-core raises the same exceptions it raises for GKE.

    with FakeGKE() as gke:
        client = ClusterManagerClient(transport="rest", credentials=AnonymousCredentials(),
                                      client_options=gke.client_options)
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import re
import threading
import urllib.parse
from typing import Any

from tests.gke.resources import ApiError, Json, encode_enums, invalid
from tests.gke.state import GKEState, Settings

_LOCATION = r"projects/[^/]+/locations/[^/]+"
_CLUSTER = _LOCATION + r"/clusters/[^/:]+"
_POOL = _CLUSTER + r"/nodePools/[^/:]+"
# (method, path under /v1/) -> (GKEState method, the answer's kind for its `status` enum)
_ROUTES: list[tuple[str, re.Pattern[str], str, str]] = [
    (m, re.compile(p), f, k) for m, p, f, k in (
        ("GET", rf"({_LOCATION})/clusters", "list_clusters", ""),
        ("POST", rf"({_LOCATION})/clusters", "create_cluster", "operation"),
        ("GET", rf"({_CLUSTER})", "get_cluster", "cluster"),
        ("PUT", rf"({_CLUSTER})", "update_cluster", "operation"),
        ("DELETE", rf"({_CLUSTER})", "delete_cluster", "operation"),
        ("GET", rf"({_CLUSTER})/nodePools", "list_node_pools", ""),
        ("POST", rf"({_CLUSTER})/nodePools", "create_node_pool", "operation"),
        ("GET", rf"({_POOL})", "get_node_pool", "nodePool"),
        ("PUT", rf"({_POOL})", "change_node_pool:update", "operation"),
        ("POST", rf"({_POOL}):setSize", "change_node_pool:setSize", "operation"),
        ("POST", rf"({_POOL}):setAutoscaling", "change_node_pool:setAutoscaling", "operation"),
        ("DELETE", rf"({_POOL})", "delete_node_pool", "operation"),
        ("GET", rf"({_LOCATION})/operations", "list_operations", ""),
        ("GET", rf"({_LOCATION}/operations/[^/]+)", "get_operation", "operation"),
    )]
_WITH_BODY = {"create_cluster", "update_cluster", "create_node_pool"}


def error_body(error: ApiError) -> Json:
    return {"error": {"code": error.http_status, "message": error.message,
                      "status": error.status,
                      "details": [{"@type": "type.googleapis.com/google.rpc.RequestInfo",
                                   "requestId": "0xfa4e0000"}]}}


class FakeGKE:
    """The server and its state. `settings`, `fail_next_operation`, `fail_requests` and
    `requests` are the knobs and the record tests use; `python -m tests.gke` runs it by hand."""

    def __init__(self, settings: Settings | None = None, port: int = 0) -> None:
        self.state = GKEState(settings)
        self._port = port
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    @property
    def settings(self) -> Settings:
        return self.state.settings

    @property
    def requests(self) -> list[tuple[str, str]]:
        return self.state.requests

    @property
    def client_options(self) -> dict[str, str]:
        return {"api_endpoint": self.url}

    def fail_next_operation(self, message: str = "", code: int = 8, match: str = "") -> None:
        self.state.fail_next_operation(message, code, match)

    def fail_requests(self, http_status: int, status: str, message: str, *, times: int = 1,
                      match: str = "") -> None:
        self.state.fail_requests(http_status, status, message, times=times, match=match)

    def start(self) -> FakeGKE:
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self._port),
                                                      _handler(self.state))
        self._httpd.daemon_threads = True
        # A short poll interval: shutdown() waits for the next poll.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name="gke-fake", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeGKE:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(state: GKEState) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's session expects
        disable_nagle_algorithm = True  # headers and body go out as separate writes

        def _serve(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            path = urllib.parse.unquote(url.path)
            as_int = "enum-encoding=int" in urllib.parse.unquote(url.query)
            if path == "/token":
                self._token()
                return
            try:
                body = self._body()
                if path.startswith("/_fake/"):
                    answer, kind = _control(state, self.command, path, body), ""
                else:
                    failure = state.take_request_failure(self.command, path)
                    if failure is not None:
                        raise failure
                    answer, kind = _route(state, self.command, path, body)
                self._send(200, encode_enums(answer, as_int, kind))
            except ApiError as e:
                self._send(e.http_status, error_body(e), e.headers)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve  # noqa: N815

        def _token(self) -> None:
            """Google's OAuth token endpoint, as google-auth refreshes service account
            credentials against their key file's `token_uri` (a form-encoded JWT-bearer grant;
            a refresh_token grant is answered the same way)."""
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode() if length else "")
            token = state.settings.access_token
            grants = ("refresh_token", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            if token is None or (form.get("grant_type") or [""])[0] not in grants:
                self._send(400, {"error": "invalid_grant",
                                 "error_description": "the GKE fake has no access token set"})
                return
            self._send(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer",
                             "scope": "https://www.googleapis.com/auth/cloud-platform"})

        def _body(self) -> Json:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError as e:
                raise invalid(f"Invalid JSON payload received. {e}") from None
            if not isinstance(body, dict):
                raise invalid("Invalid JSON payload received. Expected an object.")
            return body

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload, indent=2).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


def _route(state: GKEState, method: str, path: str, body: Json) -> tuple[Json, str]:
    resource = path.removeprefix("/v1/")
    for route_method, pattern, function, kind in _ROUTES:
        match = pattern.fullmatch(resource)
        if route_method != method or match is None:
            continue
        name, _, verb = function.partition(":")
        if verb:
            return getattr(state, name)(match[1], verb, body), kind
        if name in _WITH_BODY:
            return getattr(state, name)(match[1], body), kind
        return getattr(state, name)(match[1]), kind
    raise ApiError(501, "UNIMPLEMENTED", f"The GKE fake does not serve {method} {path} "
                   "(it serves the projects/*/locations/* form of clusters, node pools and "
                   "operations).")


def _control(state: GKEState, method: str, path: str, body: Json) -> Json:
    """Knobs for a fake run as a separate process: POST /_fake/settings {"operation_polls": 0},
    POST /_fake/fail-next-operation {"message", "code", "match"}, GET /_fake/requests."""
    if method == "GET" and path == "/_fake/requests":
        return {"requests": [{"method": m, "path": p} for m, p in state.requests]}
    if method == "POST" and path == "/_fake/settings":
        fields = {f.name for f in dataclasses.fields(Settings)}
        unknown = set(body) - fields
        if unknown:
            raise invalid(f"unknown settings {sorted(unknown)}; known: {sorted(fields)}")
        for key, value in body.items():
            setattr(state.settings, key, value)
        return {k: v for k, v in dataclasses.asdict(state.settings).items() if not callable(v)}
    if method == "POST" and path == "/_fake/fail-next-operation":
        state.fail_next_operation(body.get("message", ""), int(body.get("code", 8)),
                                  body.get("match", ""))
        return {}
    raise ApiError(501, "UNIMPLEMENTED", f"no fake control {method} {path}")
