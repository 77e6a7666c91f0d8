"""In-cluster image builds (`builder: cluster`) on the test control plane.

What is real: the kube-apiserver, controller-manager and scheduler (the kaniko Job is created,
scheduled and completed or failed by them and by kwok), fake-gcs-server (the build context's
tarball is uploaded there through google-cloud-storage, and read back here), the registry
(Debian's docker-registry; substratus reads the pushed image's digest back from it with a HEAD),
and the CLI end to end, the ModelServer's Deployment included.

What is simulated: kwok runs no containers, so no kaniko executor runs. While the kaniko Job is
held unscheduled (the nodes are cordoned), the test pushes the image kaniko would have pushed to
the destination the Job names (a FROM-scratch image made with the registry client), then lets
the Job run; kwok completes its pod. The failing build is kwok's chaos stage failing the pod
(the Image's label `pod-container-running-failed.stage.kwok.x-k8s.io` is carried onto the pod),
which writes "container failed" where the kubelet would put the end of kaniko's log."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from substratus_artifacts.registry import OCI_MANIFEST, RegistryClient
from tests.cluster.controlplane import FAILING_POD_LABEL, ApiError, ControlPlane
from tests.registry import RegistryServer, registry_server
from tests.support.cluster import set_schedulable, started_cluster
from tests.support.gcs import bucket_beside

pytestmark = pytest.mark.timeout(1800)  # the first test may build the control plane

NS = "kaniko"
FAILING = "kaniko-failing"
KANIKO = "gcr.io/kaniko-project/executor:v1.23.2"


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    yield from started_cluster(request)


@pytest.fixture(scope="module")
def bucket(cluster: ControlPlane) -> Iterator[str]:
    with bucket_beside(cluster.kubeconfig) as name:
        yield name


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    with registry_server() as server:
        yield server


def workspace(root: Path, bucket: str, registry: str, resources: str, namespace: str = NS) -> Path:
    root.mkdir(parents=True)
    (root / "environment.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Environment
metadata: {{name: cluster}}
spec:
  runtime: kubernetes
  kubernetes: {{context: substratus-test, namespace: {namespace}}}
  artifacts: gs://{bucket}/artifacts
  registry: {registry}/ml
""")
    (root / "resources.yaml").write_text(resources)
    (root / "weights").mkdir()
    (root / "weights" / "config.json").write_text("{}")
    (root / "server").mkdir()
    (root / "server" / "Dockerfile").write_text(
        "FROM scratch AS run\nARG GREETING\nCOPY serve.py /serve.py\n")
    (root / "server" / "serve.py").write_text("print('serving')\n")
    (root / "server" / "run.sh").write_text("#!/bin/sh\n")
    (root / "server" / "run.sh").chmod(0o755)
    (root / "server" / "notes.txt").write_text("not sent\n")
    (root / "server" / ".dockerignore").write_text("notes.txt\n")
    time.sleep(0.2)  # files written within the last instant are never trusted to the stat cache
    return root


SERVER = """\
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: base}
spec:
  source: {path: weights}
---
apiVersion: substratus.ai/v1
kind: ModelServer
metadata: {name: tiny}
spec:
  model: {name: base}
  build:
    context: server
    builder: cluster
    buildArgs: {GREETING: hi}
    target: run
"""


def wait_for(what: str, found: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := found():
                return value
        except ApiError as e:
            if e.status != 404:
                raise
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout:.0f} s")


def push_scratch_image(registry: RegistryServer, repository: str, tag: str) -> str:
    """What kaniko would push: a one-layer image; its manifest digest."""
    client = RegistryClient(registry.host)
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as tar:
        data = b"print('serving')\n"
        info = tarfile.TarInfo("serve.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = client.push_blob(repository, gzip.compress(layer_tar.getvalue(), mtime=0),
                             "application/vnd.oci.image.layer.v1.tar+gzip")
    diff_id = "sha256:" + hashlib.sha256(layer_tar.getvalue()).hexdigest()
    config = client.push_blob(repository, json.dumps({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode(),
        "application/vnd.oci.image.config.v1+json")
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}],
    }).encode()
    return client.put_manifest(repository, tag, OCI_MANIFEST, manifest).digest


def read_object(bucket: str, url: str) -> bytes:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    assert url.startswith(f"gs://{bucket}/"), url
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    return bytes(client.bucket(bucket).blob(url.removeprefix(f"gs://{bucket}/")).download_as_bytes())


@contextlib.contextmanager
def kaniko_stand_in(cluster: ControlPlane, bucket: str, registry: RegistryServer, namespace: str,
                    job: str, repository: str, tag: str) -> Iterator[dict[str, Any]]:
    """While the block runs (an apply): holds the kaniko Job unscheduled (the nodes cordoned),
    waits for it, records it and its uploaded context, pushes the image kaniko would have pushed
    to `repository:tag`, and lets the Job run, which kwok then completes."""
    seen: dict[str, Any] = {}

    def stand_in() -> None:
        try:
            seen["job"] = wait_for("kaniko Job", lambda: cluster.request(
                "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{job}"))
            args = seen["job"]["spec"]["template"]["spec"]["containers"][0]["args"]
            context = args[0].removeprefix("--context=")
            seen["context"] = (context, read_object(bucket, context))
            seen["digest"] = push_scratch_image(registry, repository, tag)
        finally:
            set_schedulable(cluster, True)

    set_schedulable(cluster, False)
    helper = threading.Thread(target=stand_in)
    helper.start()
    try:
        yield seen
    finally:
        helper.join()


def test_an_in_cluster_build_uploads_its_context_runs_kaniko_and_pins_the_registry_digest(
        cli, cluster: ControlPlane, bucket: str, registry: RegistryServer,
        tmp_path: Path) -> None:
    root = workspace(tmp_path / "ws", bucket, registry.host, SERVER)
    planned = cli("plan", root)
    assert planned.code == 0, planned.output
    assert "+ Image/kaniko/server-tiny" in planned.out
    assert (f"# built by a kaniko Job in namespace {NS} ({KANIKO}), its context uploaded to "
            f"gs://{bucket}/artifacts") in planned.out
    tag = planned.out.split(f'{registry.host}/ml/kaniko-server-tiny:', 1)[1][:20]

    with kaniko_stand_in(cluster, bucket, registry, NS, "image-server-tiny",
                         "ml/kaniko-server-tiny", tag) as seen:
        applied = cli("apply", "--auto-approve", root)
    assert applied.code == 0, applied.output

    # The Job: kaniko, as the namespace's ServiceAccount, with the build's arguments.
    job = seen["job"]
    assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "substratus"
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 3600
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == KANIKO
    assert pod["serviceAccountName"] == "default"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    context_url, tarball = seen["context"]
    sha = hashlib.sha256(tarball).hexdigest()
    assert context_url == f"gs://{bucket}/artifacts/image-contexts/sha256/{sha}.tar.gz"
    assert container["args"] == [
        f"--context={context_url}", "--dockerfile=Dockerfile",
        f"--destination={registry.host}/ml/kaniko-server-tiny:{tag}",
        "--build-arg=GREETING=hi", "--target=run", "--insecure"]

    # The uploaded context: what the .dockerignore leaves in, deterministic entries.
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [".dockerignore", "Dockerfile", "run.sh", "serve.py"]
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
        assert {m.name: oct(m.mode) for m in members}["run.sh"] == "0o755"
        assert tar.extractfile("serve.py").read() == b"print('serving')\n"  # type: ignore[union-attr]

    # The server runs the digest the registry serves (read back, not taken from a log).
    deployment = cluster.request("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/server-tiny")
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    assert server["image"] == f"{registry.host}/ml/kaniko-server-tiny@{seen['digest']}"
    assert cli("plan", "--detailed-exitcode", root).code == 0


def test_a_failing_kaniko_job_reports_its_last_lines_and_records_nothing(
        cli, cluster: ControlPlane, bucket: str, registry: RegistryServer,
        tmp_path: Path) -> None:
    # The label goes from the ModelServer to the Image its build makes, and onto the Job's pod.
    resources = f"""\
apiVersion: substratus.ai/v1
kind: Model
metadata: {{name: base}}
spec:
  source: {{path: weights}}
---
apiVersion: substratus.ai/v1
kind: ModelServer
metadata:
  name: broken
  labels: {{{FAILING_POD_LABEL}: "true"}}
spec:
  model: {{name: base}}
  build: {{context: server, builder: cluster}}
"""
    root = workspace(tmp_path / "ws", bucket, registry.host, resources, FAILING)
    failed = cli("apply", "--auto-approve", root)
    assert failed.code == 6, failed.output
    assert f"building {registry.host}/ml/kaniko-failing-server-broken:" in failed.output
    assert (f"in the cluster failed (kaniko Job {FAILING}/image-server-broken: Job failed: pod "
            "image-server-broken-") in failed.output
    assert ("container kaniko exited with code 1 (containerFailed)); its last lines:\n"
            "  | container failed (kubectl logs") in failed.output
    assert f"kubectl logs -n {FAILING} job/image-server-broken" in failed.output
    assert "ModelServer/kaniko-failing/broken" in failed.output
    assert "Image/kaniko-failing/server-broken did not complete" in failed.output
    assert "Traceback" not in failed.output
    inventory = json.loads((root / ".substratus" / "state" / "inventory.json").read_text())
    recorded = {e["address"]: e for e in inventory["resources"]}
    assert "Model/kaniko-failing/base" in recorded
    # The Image has its write-ahead mark and no status: no digest was recorded for it.
    assert not recorded.get("Image/kaniko-failing/server-broken", {}).get("status")
    assert "ModelServer/kaniko-failing/broken" not in recorded
    again = cli("plan", "--detailed-exitcode", root)
    assert again.code == 2
    assert "+ Image/kaniko-failing/server-broken" in again.out


def test_a_git_sourced_build_uploads_the_commits_tree(
        cli, cluster: ControlPlane, bucket: str, registry: RegistryServer,
        tmp_path: Path) -> None:
    from tests.e2e.test_images import commit, git

    bare, work = tmp_path / "repo.git", tmp_path / "work"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    git("clone", "-q", str(bare), str(work), cwd=tmp_path)
    commit(work, {"app/Dockerfile": "FROM scratch\nCOPY main.py /main.py\n",
                  "app/main.py": "print(1)\n", "README": "elsewhere\n"}, "one")
    image = f"""\
apiVersion: substratus.ai/v1
kind: Image
metadata: {{name: app}}
spec:
  git: {{url: 'file://{bare}', branch: main, path: app}}
  builder: cluster
"""
    root = workspace(tmp_path / "ws", bucket, registry.host, image, "kaniko-git")
    planned = cli("plan", root)
    assert planned.code == 0, planned.output
    tag = planned.out.split(f"{registry.host}/ml/kaniko-git-app:", 1)[1][:20]
    with kaniko_stand_in(cluster, bucket, registry, "kaniko-git", "image-app",
                         "ml/kaniko-git-app", tag) as seen:
        applied = cli("apply", "--auto-approve", root)
    assert applied.code == 0, applied.output
    _, tarball = seen["context"]
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        # The commit's folder `app`, not the workspace's files.
        assert [m.name for m in tar.getmembers()] == ["Dockerfile", "main.py"]
        assert tar.extractfile("main.py").read() == b"print(1)\n"  # type: ignore[union-attr]
    inventory = json.loads((root / ".substratus" / "state" / "inventory.json").read_text())
    (entry,) = inventory["resources"]
    assert entry["status"]["digest"] == seen["digest"]
    assert cli("plan", "--detailed-exitcode", root).code == 0
