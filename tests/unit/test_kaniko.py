"""The in-cluster build's context tarball (deterministic, checked against the plan's identity)
and the kaniko Job's manifest."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from substratus_cli.errors import ProviderError
from substratus_providers.images.context import BuildInputs, identity
from substratus_providers.images.kaniko import context_tarball, job_manifest, job_name


def context(root: Path, body: str = "print('hi')\n") -> BuildInputs:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text("FROM scratch\nCOPY app.py /app.py\n")
    (root / "app.py").write_text(body)
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "run.sh").write_text("#!/bin/sh\n")
    (root / "sub" / "run.sh").chmod(0o755)
    (root / "secret.env").write_text("TOKEN=x\n")
    (root / ".dockerignore").write_text("secret.env\nDockerfile\n")
    return BuildInputs(root)


def tarball(inputs: BuildInputs, out: Path) -> tuple[str, bytes]:
    sha = context_tarball(inputs, identity(inputs, None), out)
    return sha, out.read_bytes()


def test_the_same_files_make_the_same_bytes_whatever_their_times(tmp_path: Path) -> None:
    one = context(tmp_path / "one")
    two = context(tmp_path / "two")
    for path in (two.context / "app.py", two.context / "sub" / "run.sh"):
        os.utime(path, (1_000_000, 1_000_000))
    sha_one, bytes_one = tarball(one, tmp_path / "one.tar.gz")
    sha_two, bytes_two = tarball(two, tmp_path / "two.tar.gz")
    assert sha_one == sha_two == hashlib.sha256(bytes_one).hexdigest()
    assert bytes_one == bytes_two

    with tarfile.open(fileobj=io.BytesIO(bytes_one), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    # Sorted; the .dockerignore'd secret left out, the Dockerfile sent all the same.
    assert list(members) == [".dockerignore", "Dockerfile", "app.py", "sub/run.sh"]
    assert oct(members["sub/run.sh"].mode) == "0o755" and oct(members["app.py"].mode) == "0o644"
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {
        (0, 0, 0, "", "")}

    three = context(tmp_path / "three", body="print('changed')\n")
    assert tarball(three, tmp_path / "three.tar.gz")[0] != sha_one


def test_a_file_changed_since_the_identity_is_refused(tmp_path: Path) -> None:
    inputs = context(tmp_path / "ctx")
    planned = identity(inputs, None)
    (inputs.context / "app.py").write_text("print('after the plan')\n")
    with pytest.raises(ProviderError, match="app.py of the build context changed since the plan"):
        context_tarball(inputs, planned, tmp_path / "out.tar.gz")


def test_the_job_runs_kaniko_once_as_the_namespace_service_account() -> None:
    inputs = BuildInputs(Path("/ctx"), "docker/Dockerfile", {"B": "2", "A": "1"}, "run")
    job = job_manifest(name="trainer", namespace="ml", part_of="ws1", labels={"team": "a"},
                       image="kaniko:v1", context_url="gs://b/c.tar.gz", inputs=inputs,
                       destinations=["r.example/ml/trainer:abc", "r.example/ml/trainer:v1"],
                       insecure=False)
    assert job["metadata"]["name"] == "image-trainer"
    assert job["metadata"]["labels"]["substratus.ai/part-of"] == "ws1"
    assert job["metadata"]["labels"]["team"] == "a"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "default" and pod["restartPolicy"] == "Never"
    assert spec["template"]["metadata"]["labels"]["team"] == "a"
    assert pod["containers"][0]["args"] == [
        "--context=gs://b/c.tar.gz", "--dockerfile=docker/Dockerfile",
        "--destination=r.example/ml/trainer:abc", "--destination=r.example/ml/trainer:v1",
        "--build-arg=A=1", "--build-arg=B=2", "--target=run"]


def test_a_long_name_is_cut_to_a_label_value_with_a_hash() -> None:
    long = "a" * 70
    name = job_name(long)
    assert len(name) <= 63 and name.startswith("image-aaa")
    assert name != job_name("a" * 71)


def test_an_in_cluster_build_waits_for_the_cluster_it_runs_on() -> None:
    from substratus_cli.address import Address
    from substratus_cli.resource import Resource
    from substratus_providers.gcp.expand import with_infrastructure_edges
    from substratus_providers.images.provider import with_built_images

    cluster = Resource(Address("Cluster", "default", "gke"), {})
    pool = Resource(Address("NodePool", "default", "cpu"), {"cluster": {"name": "gke"}})
    declared = Resource(Address("Image", "ml", "app"), {"context": "app", "builder": "cluster"})
    here = Resource(Address("Image", "ml", "tool"), {"context": "tool"})
    server = Resource(Address("ModelServer", "ml", "s"),
                      {"model": {"name": "m"}, "build": {"context": "s", "builder": "cluster"}})
    local = Resource(Address("ModelServer", "ml", "t"),
                     {"model": {"name": "m"}, "build": {"context": "t"}})
    expanded = {r.address: r for r in with_built_images(with_infrastructure_edges(
        [cluster, pool, declared, here, server, local], "gke", None))}
    under = (cluster.address, pool.address)
    assert expanded[declared.address].refs == under
    assert expanded[here.address].refs == ()  # buildah on this machine needs no cluster
    assert expanded[Address("Image", "ml", "server-s")].refs == under
    assert expanded[Address("Image", "ml", "server-t")].refs == ()
