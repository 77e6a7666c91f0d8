"""`python -m substratus_workloads.notebook`: JupyterLab behind the token, offline."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.workloads.conftest import assert_refused, run_workload, started, workload_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(port: int, token: str | None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/status")
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            json.loads(response.read())
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_notebook_answers_with_the_token_and_refuses_without(tmp_path: Path) -> None:
    port = free_port()
    jupyter = tmp_path / "jupyter"
    env = workload_env(tmp_path, PORT=str(port), JUPYTER_TOKEN="s3cret",
                       JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
                       JUPYTER_CONFIG_DIR=str(jupyter / "config"))
    with started("notebook", env, tmp_path / "notebook.err") as notebook:
        deadline = time.monotonic() + 45
        code = None
        while time.monotonic() < deadline and notebook.popen.poll() is None:
            try:
                code = status(port, "s3cret")
                break
            except OSError:
                time.sleep(0.2)
        assert code == 200, notebook.stderr()
        assert status(port, None) == 403
        assert status(port, "wrong") == 403
        assert "s3cret" not in notebook.stderr()


def test_notebook_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    assert_refused(run_workload("notebook", workload_env(tmp_path)), "JUPYTER_TOKEN")
