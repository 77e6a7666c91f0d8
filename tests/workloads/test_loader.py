"""`python -m substratus_workloads.loader` (which every runtime runs) against a real local HTTP
server: a URL is saved under its file name, archives are unpacked for Models only and refused whole
when a member would land outside, secrets come from the variables the CLI names."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from substratus_artifacts.files import hash_tree
from substratus_artifacts.manifest import Manifest, ManifestEntry
from substratus_cli import secrets as cli_secrets
from substratus_workloads import loader, secret_refs
from tests.support.http_server import Route, Served, serve
from tests.workloads.conftest import workload_env
from tests.workloads.store_trees import read_tree

LINES = b'{"text": "Alice likes indigo."}\n{"text": "Bob likes yellow."}\n'


@pytest.fixture(scope="module")
def http() -> Iterator[Served]:
    """One server for the module (stopping one takes half a second); tests add their routes."""
    with serve({}) as served:
        yield served


def run_loader(tmp_path: Path, source: dict[str, Any] | str, kind: str = "Dataset",
               **extra: str) -> subprocess.CompletedProcess[str]:
    env = workload_env(tmp_path / "content", SUBSTRATUS_KIND=kind, **extra)
    env["SUBSTRATUS_SOURCE"] = source if isinstance(source, str) else json.dumps(source)
    return subprocess.run([sys.executable, "-m", "substratus_workloads.loader"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def one_file(name: str, data: bytes = LINES) -> str:
    """The digest of a snapshot holding one file."""
    return Manifest((ManifestEntry(name, len(data), hashlib.sha256(data).hexdigest()),)).digest


def artifacts(tmp_path: Path) -> dict[str, bytes]:
    return read_tree(tmp_path / "content" / "artifacts")


def assert_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


def tar_gz(members: dict[str, bytes], links: dict[str, tuple[bytes, str]] | None = None) -> bytes:
    """A .tar.gz of files, plus links {name: (tarfile.SYMTYPE or LNKTYPE, target)}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return buffer.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


def test_a_url_is_saved_under_its_file_name_with_its_secret_header(http: Served,
                                                                   tmp_path: Path) -> None:
    source = {"url": "", "sha256": f"sha256:{hashlib.sha256(LINES).hexdigest()}",
              "headers": {"Authorization": "Bearer ${{ secrets.hub-creds.api.token }}"}}
    secret = {"SUBSTRATUS_SECRET_HUB_CREDS_API_TOKEN": "s3cret"}
    http.routes["/v1/colors.jsonl"] = Route(LINES, authorization="Bearer s3cret")
    source["url"] = f"{http.url}/v1/colors.jsonl"
    result = run_loader(tmp_path, source, **secret)
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert artifacts(tmp_path) == {"colors.jsonl": LINES}
    assert hash_tree(tmp_path / "content" / "artifacts")[0].digest == one_file("colors.jsonl")
    assert "s3cret" not in result.stdout + result.stderr


def test_a_dataset_archive_is_kept_as_one_file_as_on_the_local_runtime(http: Served,
                                                                      tmp_path: Path) -> None:
    archive = tar_gz({"data/colors.jsonl": LINES})
    http.routes["/colors.tar.gz"] = Route(archive)
    result = run_loader(tmp_path, {"url": f"{http.url}/colors.tar.gz"})
    assert result.returncode == 0, result.stderr
    assert artifacts(tmp_path) == {"colors.tar.gz": archive}


@pytest.mark.parametrize(("name", "body"), [
    ("gpt.tar.gz", tar_gz({"gpt/config.json": b"{}", "gpt/weights/w.bin": b"\x01\x02"})),
    ("gpt.zip", zip_of({"config.json": b"{}", "weights/w.bin": b"\x01\x02"})),
])
def test_a_model_archive_is_unpacked_without_its_top_folder(http: Served, tmp_path: Path,
                                                           name: str, body: bytes) -> None:
    http.routes[f"/{name}"] = Route(body)
    result = run_loader(tmp_path, {"url": f"{http.url}/{name}"}, kind="Model")
    assert result.returncode == 0, result.stderr
    assert artifacts(tmp_path) == {"config.json": b"{}", "weights/w.bin": b"\x01\x02"}
    assert not [p for p in (tmp_path / "content").iterdir() if p.name.startswith(".loader-")]


@pytest.mark.parametrize(("name", "body", "member"), [
    ("a.tar.gz", tar_gz({"model/config.json": b"{}", "../evil": b"x"}), "'../evil'"),
    ("a.tgz", tar_gz({"model/a/../../../evil": b"x"}), "'model/a/../../../evil'"),
    ("a.tar.gz", tar_gz({"/tmp/evil": b"x"}), "'/tmp/evil'"),
    ("a.tar.gz", tar_gz({}, {"model/link": (tarfile.SYMTYPE, "../../evil")}), "'model/link'"),
    ("a.tar.gz", tar_gz({}, {"model/abs": (tarfile.SYMTYPE, "/etc/passwd")}), "'model/abs'"),
    ("a.tar.gz", tar_gz({"x": b"1"}, {"hard": (tarfile.LNKTYPE, "../x")}), "'hard'"),
    ("a.zip", zip_of({"config.json": b"{}", "../evil": b"x"}), "'../evil'"),
])
def test_an_archive_member_outside_the_folder_refuses_the_archive(
        http: Served, tmp_path: Path, name: str, body: bytes, member: str) -> None:
    http.routes[f"/{name}"] = Route(body)
    result = run_loader(tmp_path, {"url": f"{http.url}/{name}"}, kind="Model")
    assert_error(result, 2, f"{name}: member {member}", "the archive is refused")
    assert artifacts(tmp_path) == {}
    assert not (tmp_path / "evil").exists() and not (tmp_path / "content" / "evil").exists()


@pytest.mark.parametrize(("name", "key"), [
    ("hub", "token"), ("hub-creds", "api.token"), ("My_Secret", "key-1.v2"), ("a", "b_c")])
def test_secret_variable_names_agree_with_the_cli(name: str, key: str) -> None:
    assert secret_refs.env_var_name(name, key) == cli_secrets.env_var_name(name, key)
    text = f"Bearer ${{{{ secrets.{name}.{key} }}}} and ${{{{secrets.{name}.{key}}}}}"
    environ = {cli_secrets.env_var_name(name, key): "v"}
    assert secret_refs.Resolver(environ).text(text) == cli_secrets.substitute(
        text, lambda n, k: environ[cli_secrets.env_var_name(n, k)]) == "Bearer v and v"
    assert secret_refs.SECRET_REF.pattern == cli_secrets.SECRET_REF.pattern


def test_a_missing_secret_is_refused_naming_its_variable(tmp_path: Path) -> None:
    source = {"url": "http://127.0.0.1:9/x", "headers": {"X-Token": "${{ secrets.hub.token }}"}}
    assert_error(run_loader(tmp_path, source), 2,
                 "secret hub.token is not set", "SUBSTRATUS_SECRET_HUB_TOKEN")


def test_an_http_error_names_the_url_without_its_secrets(http: Served, tmp_path: Path) -> None:
    result = run_loader(tmp_path, {"url": f"http://u:pw@{http.url[7:]}/gone.txt?sig=abc"})
    line = assert_error(result, 1, f"GET {http.url}/gone.txt failed: HTTP 404 Not Found")
    assert "pw" not in line and "sig=abc" not in line
    assert artifacts(tmp_path) == {}


def test_a_checksum_mismatch_stores_nothing(http: Served, tmp_path: Path) -> None:
    http.routes["/mismatch.jsonl"] = Route(LINES)
    source = {"url": f"{http.url}/mismatch.jsonl", "sha256": "ab" * 32}
    result = run_loader(tmp_path, source)
    assert_error(result, 1, f"{source['url']}: checksum mismatch: expected sha256:{'ab' * 32}, "
                 f"got sha256:{hashlib.sha256(LINES).hexdigest()} ({len(LINES)} bytes)")
    assert artifacts(tmp_path) == {}


@pytest.mark.parametrize(("source", "kind", "words"), [
    ("{not json", "Dataset", "SUBSTRATUS_SOURCE is not JSON"),
    ("[]", "Dataset", "must be a JSON object"),
    ({"path": "./data"}, "Dataset", "a `path` source is a folder on the machine"),
    ({"url": "http://h/x", "huggingface": {"name": "gpt2"}}, "Model",
     "exactly one of `url` or `huggingface` (found url, huggingface)"),
    ({"url": "ftp://h/x"}, "Dataset", "source url ftp://h/x must be http:// or https://"),
    ({"url": "http://h/x", "sha256": "nope"}, "Dataset", "source sha256: not a sha256 digest"),
    ({"huggingface": {"revision": "main"}}, "Model", "source.huggingface needs a `name`"),
    ({"url": "http://h/x"}, "Notebook", "SUBSTRATUS_KIND must be Dataset or Model"),
])
def test_a_bad_source_is_refused(tmp_path: Path, source: Any, kind: str, words: str) -> None:
    assert_error(run_loader(tmp_path, source, kind=kind), 2, words)


def test_an_unreachable_hugging_face_hub_is_one_error_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
    result = run_loader(tmp_path, {"huggingface": {"name": "gpt2"}}, kind="Model", **env)
    assert_error(result, 1, "cannot reach the Hugging Face Hub to fetch model gpt2")


def test_the_pod_runs_the_loader_and_pushes_what_it_fetched(http: Served, tmp_path: Path) -> None:
    http.routes["/pod/colors.jsonl"] = Route(LINES)
    source = {"url": f"{http.url}/pod/colors.jsonl"}
    ref = tmp_path / "store" / "refs" / "datasets" / "colors"
    env = workload_env(tmp_path / "content", SUBSTRATUS_KIND="Dataset",
                       SUBSTRATUS_SOURCE=json.dumps(source),
                       SUBSTRATUS_ARTIFACTS_URL=f"file://{ref}",
                       SUBSTRATUS_TERMINATION_LOG=str(tmp_path / "termination-log"))
    result = subprocess.run([sys.executable, "-m", "substratus_workloads.pod", "loader"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert ref.read_text() == (tmp_path / "termination-log").read_text() == \
        one_file("colors.jsonl")


def test_a_server_that_never_answers_times_out_naming_the_url(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # In this process, so the timeout can be shortened; the server accepts and never answers.
    monkeypatch.setattr(loader, "HTTP_TIMEOUT_S", 0.3)
    (tmp_path / "out").mkdir()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/slow.bin?sig=s3cret"
        with pytest.raises(loader.FetchError, match=r"slow\.bin: timed out after 0\.3 s") as info:
            loader.fetch_url({"url": url}, "Dataset", tmp_path / "out", [])
    assert "s3cret" not in str(info.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_hugging_face_source_without_the_package_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(loader.FetchError, match=r"pip install huggingface_hub"):
        loader.fetch_huggingface({"name": "a/b"}, "Dataset", tmp_path)
