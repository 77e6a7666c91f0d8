"""A real OCI registry for the tests: Debian's docker-registry (distribution 2.8) as a plain
process on a free loopback port, with its own config and storage folder, and optionally htpasswd
(basic) auth. `python -m tests.registry` starts one by hand and prints how to reach it."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.support.servers import stop

INSTALL_HINT = ("docker-registry is missing: apt-get install docker-registry apache2-utils "
                "(Debian's distribution 2.8 and htpasswd; .ci/run installs them)")


@dataclasses.dataclass(frozen=True)
class RegistryServer:
    host: str  # 127.0.0.1:PORT, as image references name it
    root: Path  # its storage folder
    log: Path
    credentials: tuple[str, str] | None  # (user, password) when it requires basic auth

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(root: Path, port: int, htpasswd: Path | None) -> str:
    auth = (f"auth:\n  htpasswd:\n    realm: substratus-test\n    path: {htpasswd}\n"
            if htpasswd else "")
    return (f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n{auth}")


def _wait_ready(server: RegistryServer, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {proc.returncode}: "
                               f"{server.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/v2/", timeout=1):
                return
        except urllib.error.HTTPError as e:
            if e.code == 401:  # up, and asking for credentials
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"docker-registry did not answer on {server.host} within 15 s")


@contextlib.contextmanager
def registry_server(credentials: tuple[str, str] | None = None,
                    port: int | None = None) -> Iterator[RegistryServer]:
    """A registry until the block ends, storing under a temporary folder it removes after."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError(INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="substratus-registry-") as tmp:
        root = Path(tmp)
        htpasswd = None
        if credentials is not None:
            tool = shutil.which("htpasswd")
            if tool is None:
                raise RuntimeError(INSTALL_HINT)
            htpasswd = root / "htpasswd"
            user, password = credentials
            subprocess.run([tool, "-Bbc", str(htpasswd), user, password], check=True,
                           capture_output=True)
        port = port or _free_port()
        (root / "config.yml").write_text(_config(root, port, htpasswd))
        server = RegistryServer(f"127.0.0.1:{port}", root / "data", root / "registry.log",
                                credentials)
        with server.log.open("wb") as log:
            proc = subprocess.Popen([binary, "serve", str(root / "config.yml")],
                                    stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(server, proc)
            yield server
        finally:
            stop(proc)
