"""A tiny Language Server Protocol client over a server's stdio (JSON-RPC 2.0 with Content-Length
framing): initialize, didOpen, hover and the diagnostics the server publishes, enough to drive
yaml-language-server the way an editor does. It answers the server's own requests
(`workspace/configuration` from the settings it is given, null to the rest)."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

# How long a test waits for one answer of the server before failing with what it got.
WAIT_SECONDS = 60.0


class LanguageServer:
    """A language server process and its messages. Use as a context manager: it is shut down
    (shutdown, exit, then killed if it lingers) on leaving."""

    def __init__(self, command: Sequence[str], settings: Mapping[str, Any], cwd: Path) -> None:
        self.settings = dict(settings)
        self.process = subprocess.Popen(list(command), cwd=cwd, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._next_id = 0
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.notifications: list[dict[str, Any]] = []
        self._stderr: list[bytes] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.process.stderr,), daemon=True).start()

    def __enter__(self) -> LanguageServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The protocol

    def initialize(self, root: Path) -> dict[str, Any]:
        result = self.request("initialize", {
            "processId": None,
            "rootUri": root.as_uri(),
            "capabilities": {
                "workspace": {"configuration": True},
                "textDocument": {
                    "hover": {"contentFormat": ["markdown", "plaintext"]},
                    "publishDiagnostics": {"relatedInformation": False},
                },
            },
        })
        self.notify("initialized", {})
        return result

    def open(self, path: Path, text: str, version: int = 1) -> str:
        uri = path.as_uri()
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "yaml", "version": version, "text": text}})
        return uri

    def hover(self, uri: str, line: int, character: int) -> dict[str, Any] | None:
        """Hover at a zero-based line and character, as LSP counts them."""
        result: dict[str, Any] | None = self.request("textDocument/hover", {
            "textDocument": {"uri": uri}, "position": {"line": line, "character": character}})
        return result

    def diagnostics(self, uri: str,
                    until: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        """The diagnostics of the first textDocument/publishDiagnostics for `uri` that `until`
        accepts (the server publishes again as it learns more, e.g. once a schema is read)."""
        def wanted(message: dict[str, Any]) -> bool:
            params = message.get("params") or {}
            return (message.get("method") == "textDocument/publishDiagnostics"
                    and params.get("uri") == uri and until(params.get("diagnostics", [])))
        found = [m for m in self.notifications if wanted(m)]
        message = found[0] if found else self._wait(wanted, "diagnostics for " + uri)
        diagnostics: list[dict[str, Any]] = message["params"]["diagnostics"]
        return diagnostics

    # JSON-RPC

    def request(self, method: str, params: Any) -> Any:
        self._next_id += 1
        ident = self._next_id
        self._send({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
        answer = self._wait(lambda m: m.get("id") == ident and "method" not in m, method)
        if "error" in answer:
            raise AssertionError(f"{method} failed: {answer['error']}")
        return answer.get("result")

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def _wait(self, match: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        while True:
            try:
                message = self._messages.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                raise AssertionError(f"no {what} from the language server within "
                                     f"{WAIT_SECONDS:.0f} s; it said: {self.stderr()}") from None
            if message is None:
                raise AssertionError(f"the language server exited (code {self.process.poll()}) "
                                     f"before sending {what}; it said: {self.stderr()}")
            if "method" in message and "id" in message:
                self._answer(message)
            elif "method" in message:
                self.notifications.append(message)
            if match(message):
                return message

    def _answer(self, request: dict[str, Any]) -> None:
        result: Any = None
        if request["method"] == "workspace/configuration":
            result = [self.settings.get(item.get("section", ""))
                      for item in request["params"]["items"]]
        self._send({"jsonrpc": "2.0", "id": request["id"], "result": result})

    def _read(self, stream: IO[bytes]) -> None:
        try:
            while True:
                length = None
                while (line := stream.readline()) not in (b"\r\n", b"\n"):
                    if not line:
                        return
                    name, _, value = line.decode("ascii").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length is None:
                    raise ValueError("a message without Content-Length")
                self._messages.put(json.loads(stream.read(length)))
        finally:
            self._messages.put(None)

    def _drain(self, stream: IO[bytes]) -> None:
        for line in stream:
            self._stderr.append(line)

    def stderr(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")[-4000:] or "(nothing on stderr)"

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.request("shutdown", None)
                self.notify("exit", None)
                self.process.wait(timeout=10)
            except (AssertionError, OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
