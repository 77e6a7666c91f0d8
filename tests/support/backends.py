"""Real processes for the local runtime's tests: model-server stand-ins that answer their version,
started detached through processes.spawn and always stopped by the fixture that made them."""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from substratus_providers.local import processes
from substratus_providers.local.processes import ProcessRef

# An HTTP/1.1 server (keep-alive works) answering GET / with its version, GET /slow after one
# second, GET /health with 200. argv: port, version.
BACKEND_SCRIPT = r"""
import http.server, sys, time
port, version = int(sys.argv[1]), sys.argv[2]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/slow":
            time.sleep(1.0)
            body = (version + "-slow").encode()
        elif self.path in ("/", "/health"):
            body = version.encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
print(f"serving {version} on {port}", flush=True)
server.serve_forever()
"""

# Local requests must not go through a proxy set in the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, timeout: float = 10.0) -> str:
    """The body of GET url (a fresh connection each time); raises on anything but 2xx."""
    with _opener.open(url, timeout=timeout) as response:
        return response.read().decode()


@dataclass
class Backend:
    version: str
    port: int
    ref: ProcessRef
    log: Path


@dataclass
class Processes:
    """Every process a test starts, so its fixture can stop them all, whatever happened."""

    root: Path
    refs: list[ProcessRef] = field(default_factory=list)

    def spawn(self, argv: Sequence[str], name: str) -> tuple[ProcessRef, Path]:
        log = self.root / "logs" / f"{name}.log"
        ref = processes.spawn(argv, env=dict(os.environ), cwd=self.root, log_path=log)
        self.refs.append(ref)
        return ref, log

    def backend(self, version: str, timeout: float = 10.0) -> Backend:
        port = processes.free_port()
        ref, log = self.spawn([sys.executable, "-c", BACKEND_SCRIPT, str(port), version],
                              f"backend-{version}")
        problem = processes.wait_healthy(f"http://127.0.0.1:{port}/health", ref, log, timeout)
        assert problem is None, f"backend {version} did not start: {problem}"
        return Backend(version, port, ref, log)

    def stop_all(self) -> None:
        for ref in reversed(self.refs):
            processes.stop(ref, grace=2.0)
