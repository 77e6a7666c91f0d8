"""Imported models on the local runtime, through the CLI: a url archive served by a real HTTP
server, a local path (parameter count read from the weights' headers), and an unreachable Hub."""

from __future__ import annotations

import io
import json
import re
import socket
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from substratus_cli.errors import ExitCode
from tests.support.http_server import Route, serve


def safetensors(shape: tuple[int, ...]) -> bytes:
    """A real safetensors file: one F32 tensor of this shape, zeros."""
    count = 1
    for n in shape:
        count *= n
    header = json.dumps({"w": {"dtype": "F32", "shape": list(shape),
                               "data_offsets": [0, 4 * count]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(4 * count)


FILES = {"config.json": b'{"model_type": "gpt2"}', "model.safetensors": safetensors((3, 4))}


def tar_gz() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as t:
        for name, data in FILES.items():
            info = tarfile.TarInfo(f"tiny-model/{name}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zipped() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in FILES.items():
            z.writestr(name, data)
    return buffer.getvalue()


def model(name: str, source: str) -> str:
    return (f"apiVersion: substratus.ai/v1\nkind: Model\nmetadata: {{name: {name}}}\n"
            f"spec: {{source: {source}}}\n---\n")


def record(workdir: Path, name: str) -> dict:
    return json.loads((workdir / f".substratus/runtime/objects/Model/default/{name}.json")
                      .read_text())


def test_url_archives_and_paths_import_the_same_model(cli, tmp_path: Path):
    weights = tmp_path / "weights"
    weights.mkdir()
    for name, data in FILES.items():
        (weights / name).write_bytes(data)
    with serve({"/tiny.tar.gz": Route(tar_gz()), "/tiny.zip": Route(zipped())}) as server:
        (tmp_path / "models.yaml").write_text(
            model("from-tar", f"{{url: '{server.url}/tiny.tar.gz'}}")
            + model("from-zip", f"{{url: '{server.url}/tiny.zip'}}")
            + model("from-path", "{path: weights}"))
        plan = cli("plan", tmp_path)
        assert re.search(r"\+ status\.digest +\= \(known after apply\)", plan.out)
        # The path's weights are read at plan: their size, from the safetensors header.
        assert re.search(r"\+ status\.parameterCount += 12\n", plan.out), plan.out
        applied = cli("apply", "--auto-approve", tmp_path)
        assert applied.code == 0, applied.output

    digests = {n: record(tmp_path, n)["status"]["digest"]
               for n in ("from-tar", "from-zip", "from-path")}
    assert len(set(digests.values())) == 1, "the same files make the same artifact"
    status = record(tmp_path, "from-tar")["status"]
    assert (status["files"], status["parameterCount"], status["parameterBits"]) == (2, 12, 32)
    assert cli("plan", "--detailed-exitcode", tmp_path).code == 0


def test_an_archive_that_is_not_one_fails_the_apply_naming_it(cli, tmp_path: Path):
    with serve({"/broken.tar.gz": Route(b"not a tarball")}) as server:
        (tmp_path / "m.yaml").write_text(model("broken", f"{{url: '{server.url}/broken.tar.gz'}}"))
        applied = cli("apply", "--auto-approve", tmp_path)
    assert applied.code == ExitCode.PARTIAL_APPLY
    assert "Error: Model/default/broken: cannot unpack the model archive broken.tar.gz:" in applied.err


def test_an_unreachable_hub_is_a_clear_error_and_nothing_downstream_runs(
        cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    (tmp_path / "m.yaml").write_text(
        model("opt", "{huggingface: {name: facebook/opt-125m}}")
        + "apiVersion: substratus.ai/v1\nkind: ModelServer\nmetadata: {name: s}\n"
          "spec: {model: {name: opt}}\n")
    applied = cli("apply", "--auto-approve", tmp_path)
    assert applied.code == ExitCode.PARTIAL_APPLY
    assert ("Error: Model/default/opt: cannot reach the Hugging Face Hub to fetch model "
            "facebook/opt-125m: [Errno 111] Connection refused; this source needs network access "
            "(set HF_ENDPOINT for a mirror)") in applied.err
    assert "ModelServer/default/s: Skipped (Model/default/opt did not complete)" in applied.out
