"""`python -m substratus_workloads.pod`, the container entrypoint, run as a real process: inputs
fetched from a file:// store or a real fake-gcs-server, the program run, its artifacts pushed, and
the digest or the reason it failed left in the termination log."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus_artifacts import snapshots
from substratus_artifacts.backend import FileBackend
from substratus_artifacts.files import hash_tree
from substratus_artifacts.layout import blob_key
from substratus_artifacts.snapshots import snapshot_tree
from substratus_artifacts.store import Store
from substratus_workloads import logfmt
from tests.support.gcs import fake_gcs_server
from tests.workloads.conftest import workload_env
from tests.workloads.store_trees import make_tree, read_tree

# A job: copies the dataset into its artifacts and lists the model's files beside it.
COPY_INPUTS = r"""
import os, pathlib, shutil
content = pathlib.Path(os.environ["SUBSTRATUS_CONTENT"])
shutil.copytree(content / "data", content / "artifacts" / "data")
names = sorted(p.name for p in (content / "model").iterdir())
(content / "artifacts" / "model-files.txt").write_text(" ".join(names))
"""
MODEL = {"config.json": b'{"n_layer": 2}', "model.safetensors": b"\x00" * 64}


def run_pod(args: list[str], env: dict[str, str],
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "substratus_workloads.pod", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def python(script: str) -> list[str]:
    return ["--", sys.executable, "-c", script]


def pod_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    log = {"SUBSTRATUS_TERMINATION_LOG": str(tmp_path / "termination-log")}
    return workload_env(tmp_path / "content", **{**log, **extra})


def termination_message(tmp_path: Path) -> str:
    return (tmp_path / "termination-log").read_text()


def assert_failed(result: subprocess.CompletedProcess[str], tmp_path: Path, code: int,
                  *words: str) -> str:
    """Exit `code`, one `error:` line on stderr that is also the termination message."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert termination_message(tmp_path) == errors[0]
    for word in words:
        assert word in errors[0]
    return errors[0]


def pushed_line(stdout: str) -> dict[str, str]:
    (line,) = [line for line in stdout.splitlines() if line.startswith("pushed ")]
    return logfmt.parse(line)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A file:// store holding a dataset (written by the CLI, named by a ref) and a model."""
    root = tmp_path / "store"
    make_tree(tmp_path / "dataset")
    cli_store = Store(FileBackend(root))
    cli_store.put_ref("datasets/colors", snapshot_tree(tmp_path / "dataset", cli_store).digest)
    make_tree(tmp_path / "model", MODEL)
    snapshots.push(tmp_path / "model", f"file://{root}/refs/models/base")
    return root


def model_manifest_url(root: str, tmp_path: Path) -> str:
    return f"{root}/manifests/sha256/{hash_tree(tmp_path / 'model')[0].digest[7:]}.json"


def test_pod_fetches_runs_and_pushes_on_a_file_store(store: Path, tmp_path: Path) -> None:
    root = f"file://{store}"
    env = pod_env(tmp_path, SUBSTRATUS_INPUT_DATA_URL=f"{root}/refs/datasets/colors",
                  SUBSTRATUS_INPUT_MODEL_URL=model_manifest_url(root, tmp_path),
                  SUBSTRATUS_ARTIFACTS_URL=f"{root}/refs/models/trained")
    result = run_pod(python(COPY_INPUTS), env)
    assert result.returncode == 0, result.stderr
    digest = Store(FileBackend(store)).get_ref("models/trained")
    assert termination_message(tmp_path) == digest
    out = tmp_path / "out"
    Store(FileBackend(store)).materialize(digest, out)
    expected = {f"data/{p}": b for p, b in read_tree(tmp_path / "dataset").items()}
    assert read_tree(out) == {**expected, "model-files.txt": b"config.json model.safetensors"}
    assert int(pushed_line(result.stdout)["blobs_uploaded"]) == 1  # only model-files.txt is new

    again = run_pod(python(COPY_INPUTS), {**env, "SUBSTRATUS_CONTENT": str(tmp_path / "c2")})
    assert again.returncode == 0, again.stderr
    line = pushed_line(again.stdout)
    assert (line["digest"], line["blobs_uploaded"], line["bytes_uploaded"]) == (digest, "0", "0")


@pytest.fixture(scope="module")
def gcs_server() -> Iterator[str]:
    with fake_gcs_server() as url:
        yield url


def test_pod_fetches_runs_and_pushes_on_gcs(gcs_server: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    bucket = storage.Client(project="test", credentials=AnonymousCredentials()).create_bucket(
        f"pod-{uuid.uuid4().hex[:12]}")
    root = f"gs://{bucket.name}/envs/dev"
    data = make_tree(tmp_path / "dataset")
    snapshots.push(tmp_path / "dataset", f"{root}/refs/datasets/colors")
    make_tree(tmp_path / "model", MODEL)
    snapshots.push(tmp_path / "model", f"{root}/refs/models/base")
    env = pod_env(tmp_path, STORAGE_EMULATOR_HOST=gcs_server,
                  SUBSTRATUS_INPUT_DATA_URL=f"{root}/refs/datasets/colors",
                  SUBSTRATUS_INPUT_MODEL_URL=model_manifest_url(root, tmp_path),
                  SUBSTRATUS_ARTIFACTS_URL=f"{root}/refs/models/trained")
    result = run_pod(python(COPY_INPUTS), env)
    assert result.returncode == 0, result.stderr
    digest = bucket.blob("envs/dev/refs/models/trained").download_as_bytes().decode()
    assert termination_message(tmp_path) == digest
    assert int(pushed_line(result.stdout)["blobs_uploaded"]) == 1
    snapshots.fetch(f"{root}/refs/models/trained", tmp_path / "out")
    assert read_tree(tmp_path / "out") == {**{f"data/{p}": b for p, b in data.items()},
                                           "model-files.txt": b"config.json model.safetensors"}

    again = run_pod(python(COPY_INPUTS), {**env, "SUBSTRATUS_CONTENT": str(tmp_path / "c2")})
    assert again.returncode == 0, again.stderr
    assert pushed_line(again.stdout)["blobs_uploaded"] == "0"


def test_a_missing_input_ref_fails_naming_it_before_the_program_runs(store: Path,
                                                                    tmp_path: Path) -> None:
    url = f"file://{store}/refs/datasets/typo"
    env = pod_env(tmp_path, SUBSTRATUS_INPUT_DATA_URL=url,
                  SUBSTRATUS_ARTIFACTS_URL=f"file://{store}/refs/models/trained")
    result = run_pod(python("open('ran', 'w')"), env)
    assert_failed(result, tmp_path, 1, f"cannot fetch the data input: ref {url} does not exist")
    assert not (tmp_path / "ran").exists()
    assert not (store / "refs" / "models" / "trained").exists()


def test_an_input_blob_that_does_not_match_its_checksum_is_refused(store: Path,
                                                                  tmp_path: Path) -> None:
    blob = store / blob_key(hashlib.sha256(MODEL["config.json"]).hexdigest())
    os.chmod(blob, 0o644)
    blob.write_bytes(b'{"n_layer": 9}')
    env = pod_env(tmp_path, SUBSTRATUS_INPUT_MODEL_URL=f"file://{store}/refs/models/base")
    result = run_pod(python("open('ran', 'w')"), env)
    assert_failed(result, tmp_path, 1, "cannot fetch the model input: checksum mismatch for "
                  "config.json", "refused")
    assert not (tmp_path / "ran").exists()
    assert not (tmp_path / "content" / "model" / "config.json").exists()


def test_a_program_error_is_the_termination_message_and_nothing_is_pushed(
        store: Path, tmp_path: Path) -> None:
    env = pod_env(tmp_path, SUBSTRATUS_ARTIFACTS_URL=f"file://{store}/refs/models/trained")
    script = ("import sys, pathlib, os\n"
              "out = pathlib.Path(os.environ['SUBSTRATUS_CONTENT']) / 'artifacts'\n"
              "(out / 'x').write_text('x')\n"
              "print(\"error: param 'epochs' must be >= 1, got 0\", file=sys.stderr)\n"
              "sys.exit(2)")
    result = run_pod(python(script), env)
    assert_failed(result, tmp_path, 2, "error: param 'epochs' must be >= 1, got 0")
    assert not (store / "refs" / "models" / "trained").exists()


def test_a_crash_is_reported_with_its_exit_code_and_last_line(store: Path, tmp_path: Path) -> None:
    env = pod_env(tmp_path, SUBSTRATUS_ARTIFACTS_URL=f"file://{store}/refs/models/trained")
    result = run_pod(python("raise RuntimeError('CUDA out of memory')"), env)
    assert result.returncode == 1
    assert "Traceback" in result.stderr  # the program's own, passed through untouched
    message = termination_message(tmp_path)
    assert message.startswith("error: python") and message.endswith(
        "exited with code 1; its last words: RuntimeError: CUDA out of memory"), message


def test_an_empty_artifacts_folder_fails(store: Path, tmp_path: Path) -> None:
    url = f"file://{store}/refs/models/trained"
    result = run_pod(python("pass"), pod_env(tmp_path, SUBSTRATUS_ARTIFACTS_URL=url))
    assert_failed(result, tmp_path, 1, f"cannot push the artifacts to {url}: the artifacts "
                  f"folder {tmp_path / 'content' / 'artifacts'} is empty")


def test_sigterm_reaches_the_job_and_stops_the_push(store: Path, tmp_path: Path) -> None:
    script = ("import os, pathlib, signal, sys, time\n"
              "out = pathlib.Path(os.environ['SUBSTRATUS_CONTENT']) / 'artifacts'\n"
              "(out / 'partial').write_text('x')\n"
              "def stop(signum, frame):\n"
              "    pathlib.Path('got-signal').write_text(str(signum))\n"
              "    sys.exit(0)\n"
              "signal.signal(signal.SIGTERM, stop)\n"
              "print('ready', flush=True)\n"
              "time.sleep(30)\n")
    env = pod_env(tmp_path, SUBSTRATUS_ARTIFACTS_URL=f"file://{store}/refs/models/trained")
    pod = subprocess.Popen([sys.executable, "-m", "substratus_workloads.pod", *python(script)],
                           env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        assert pod.stdout is not None
        assert pod.stdout.readline().strip() == "ready"
        pod.send_signal(signal.SIGTERM)
        _, stderr = pod.communicate(timeout=10)
    finally:
        if pod.poll() is None:
            pod.kill()
            pod.wait()
    assert pod.returncode == 128 + signal.SIGTERM, stderr
    assert (tmp_path / "got-signal").read_text() == str(int(signal.SIGTERM))
    assert "stopped on SIGTERM before its artifacts were pushed" in termination_message(tmp_path)
    assert not (store / "refs" / "models" / "trained").exists()


def test_without_an_artifacts_url_the_pod_becomes_the_program(store: Path, tmp_path: Path) -> None:
    env = pod_env(tmp_path, SUBSTRATUS_INPUT_MODEL_URL=f"file://{store}/refs/models/base")
    script = ("import os, pathlib\n"
              "model = pathlib.Path(os.environ['SUBSTRATUS_CONTENT']) / 'model'\n"
              "print(os.getpid(), ' '.join(sorted(p.name for p in model.iterdir())))")
    pod = subprocess.Popen([sys.executable, "-m", "substratus_workloads.pod", *python(script)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = pod.communicate(timeout=30)
    assert pod.returncode == 0, stderr
    # Exec'd, not a child: the program has the pod's PID, so a SIGTERM reaches it directly.
    assert stdout.splitlines()[-1] == f"{pod.pid} config.json model.safetensors"
    assert not (tmp_path / "termination-log").exists()


@pytest.mark.parametrize(("args", "words"), [
    ([], "usage: python -m substratus_workloads.pod PROGRAM"),
    (["train"], "unknown program 'train'; usage:"),
    (["--"], "no command after `--`"),
])
def test_a_bad_command_line_is_refused(tmp_path: Path, args: list[str], words: str) -> None:
    assert_failed(run_pod(args, pod_env(tmp_path)), tmp_path, 2, words)


def test_the_artifacts_url_must_name_a_ref(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store/manifests/sha256/{'ab' * 32}.json"
    result = run_pod(python("open('ran', 'w')"), pod_env(tmp_path, SUBSTRATUS_ARTIFACTS_URL=url))
    assert_failed(result, tmp_path, 2, "SUBSTRATUS_ARTIFACTS_URL must name a ref")
    assert not (tmp_path / "ran").exists()


def test_no_termination_log_is_written_where_its_folder_is_missing(store: Path,
                                                                  tmp_path: Path) -> None:
    env = pod_env(tmp_path, SUBSTRATUS_ARTIFACTS_URL=f"file://{store}/refs/x",
                  SUBSTRATUS_TERMINATION_LOG=str(tmp_path / "no-such-dir" / "log"))
    script = "import os; open(os.environ['SUBSTRATUS_CONTENT'] + '/artifacts/f', 'w').write('1')"
    result = run_pod(python(script), env)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "no-such-dir").exists()
