"""Snapshot URLs as pods use them: fetched and pushed on file:// (read and written through the
store the CLI uses too) and on a real fake-gcs-server, blobs checked against their sha256."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus_artifacts import snapshots
from substratus_artifacts.backend import FileBackend
from substratus_artifacts.files import hash_tree
from substratus_artifacts.layout import StoreError, blob_key, parse_url
from substratus_artifacts.snapshots import snapshot_tree
from substratus_artifacts.store import Store
from tests.support.gcs import fake_gcs_server
from tests.workloads.store_trees import make_tree, read_tree

HEX = "ab" * 32


def file_url(path: Path) -> str:
    return f"file://{path}"


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "tree"
    return root, make_tree(root)



def test_a_snapshot_the_cli_wrote_is_fetched_by_manifest_url_and_by_ref(
        tree: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    root, expected = tree
    store = tmp_path / "store"
    cli_store = Store(FileBackend(store))
    result = snapshot_tree(root, cli_store)
    cli_store.put_ref("datasets/colors", result.digest)
    by_manifest = snapshots.fetch(
        file_url(store / "manifests" / "sha256" / f"{result.digest[7:]}.json"), tmp_path / "m")
    by_ref = snapshots.fetch(cli_store.ref_url("datasets/colors"), tmp_path / "r")
    assert by_manifest.digest == by_ref.digest == result.digest
    assert (len(by_ref.manifest), by_ref.blobs) == (len(expected), len(expected) - 2)  # dup, link
    assert read_tree(tmp_path / "m") == read_tree(tmp_path / "r") == expected


def test_a_pushed_snapshot_is_read_back_by_the_cli(tree: tuple[Path, dict[str, bytes]],
                                                   tmp_path: Path) -> None:
    root, expected = tree
    store = tmp_path / "store"
    pushed = snapshots.push(root, file_url(store / "refs" / "models" / "colors"))
    cli_store = Store(FileBackend(store))
    assert cli_store.get_manifest(pushed.digest) == hash_tree(root)[0]
    assert cli_store.has_snapshot(pushed.digest)
    cli_store.materialize(pushed.digest, tmp_path / "out")
    assert read_tree(tmp_path / "out") == expected
    assert cli_store.get_ref("models/colors") == pushed.digest
    assert not list((store / "tmp").iterdir())  # no temp file left behind


def test_pushing_the_same_content_again_uploads_no_blob(tree: tuple[Path, dict[str, bytes]],
                                                       tmp_path: Path) -> None:
    root, expected = tree
    url = file_url(tmp_path / "store" / "refs" / "x")
    first = snapshots.push(root, url)
    assert first.blobs_copied == len(expected) - 2  # the duplicate and the link share blobs
    blobs = sorted((tmp_path / "store" / "blobs").rglob("*"))
    stamps = [p.stat().st_mtime_ns for p in blobs]
    again = snapshots.push(root, url)
    assert (again.digest, again.blobs_copied, again.bytes_copied) == (first.digest, 0, 0)
    assert [p.stat().st_mtime_ns for p in blobs] == stamps
    (root / "a.txt").write_bytes(b"changed")
    changed = snapshots.push(root, url)
    assert (changed.blobs_copied, changed.bytes_copied) == (1, len(b"changed"))
    assert (tmp_path / "store" / "refs" / "x").read_text() == changed.digest


def test_a_blob_that_does_not_match_its_manifest_is_refused(
        tree: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    root, _ = tree
    store = tmp_path / "store"
    snapshots.push(root, file_url(store / "refs" / "x"))
    blob = store / blob_key(hashlib.sha256(b"alpha\n").hexdigest())
    os.chmod(blob, 0o644)
    blob.write_bytes(b"alphA\n")
    tampered, original = (hashlib.sha256(b).hexdigest() for b in (b"alphA\n", b"alpha\n"))
    with pytest.raises(StoreError, match=rf"checksum mismatch for a\.txt: .* holds sha256:"
                                         rf"{tampered} \(6 bytes\), the manifest says "
                                         rf"sha256:{original} \(6 bytes\); refused"):
        snapshots.fetch(file_url(store / "refs" / "x"), tmp_path / "out")
    fetched = read_tree(tmp_path / "out")
    assert "a.txt" not in fetched and "link.txt" not in fetched
    assert not [p for p in fetched if p.endswith(".substratus-part")]


def test_a_manifest_that_does_not_hash_to_its_digest_is_refused(
        tree: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    root, _ = tree
    store = tmp_path / "store"
    pushed = snapshots.push(root, file_url(store / "refs" / "x"))
    path = store / "manifests" / "sha256" / f"{pushed.digest[7:]}.json"
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes().replace(b'"size":6', b'"size":7'))
    with pytest.raises(StoreError, match=rf"manifest .* is corrupt: its content hashes to "
                                         rf"sha256:\w+, not {pushed.digest}"):
        snapshots.fetch(file_url(store / "refs" / "x"), tmp_path / "out")


@pytest.mark.parametrize("path", ["../escaped", "/etc/escaped", "a/../../escaped", "./a"])
def test_a_manifest_path_outside_the_folder_is_refused(tmp_path: Path, path: str) -> None:
    store = tmp_path / "store"
    raw = json.dumps({"version": 1, "entries": [{"path": path, "size": 1, "sha256": HEX}]},
                     sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(raw).hexdigest()
    (store / "manifests" / "sha256").mkdir(parents=True)
    (store / "manifests" / "sha256" / f"{digest}.json").write_bytes(raw)
    url = file_url(store / "manifests" / "sha256" / f"{digest}.json")
    with pytest.raises(StoreError, match="must be relative, POSIX and normalized"):
        snapshots.fetch(url, tmp_path / "deep" / "out")
    assert not (tmp_path / "deep" / "escaped").exists() and not (tmp_path / "escaped").exists()


def test_a_missing_ref_and_a_missing_blob_are_named(tree: tuple[Path, dict[str, bytes]],
                                                   tmp_path: Path) -> None:
    root, _ = tree
    store = tmp_path / "store"
    with pytest.raises(StoreError, match=r"does not exist \(no folder"):
        snapshots.fetch(file_url(store / "refs" / "x"), tmp_path / "out")
    pushed = snapshots.push(root, file_url(store / "refs" / "x"))
    with pytest.raises(StoreError, match=rf"ref file://{store}/refs/nope does not exist"):
        snapshots.fetch(file_url(store / "refs" / "nope"), tmp_path / "out")
    (store / blob_key(hashlib.sha256(b"").hexdigest())).unlink()
    with pytest.raises(StoreError, match=rf"snapshot {pushed.digest} is incomplete in .*: blob "
                                         r"sha256:e3b0\w+ for .hidden/c is missing"):
        snapshots.fetch(file_url(store / "refs" / "x"), tmp_path / "out")


def test_an_empty_or_missing_artifacts_folder_is_not_pushed(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    url = file_url(tmp_path / "store" / "refs" / "x")
    with pytest.raises(StoreError, match="is empty: the program wrote nothing"):
        snapshots.push(tmp_path / "empty", url)
    with pytest.raises(StoreError, match="does not exist: nothing to push"):
        snapshots.push(tmp_path / "missing", url)
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(("url", "root", "ref", "digest"), [
    ("gs://b/envs/dev/refs/datasets/colors", "gs://b/envs/dev", "datasets/colors", None),
    ("gs://b/refs/x", "gs://b", "x", None),
    (f"gs://b/p/manifests/sha256/{HEX}.json", "gs://b/p", None, f"sha256:{HEX}"),
    ("file:///srv/store/refs/x", "file:///srv/store", "x", None),
    (f"file:///srv/refs/manifests/sha256/{HEX}.json", "file:///srv/refs", None, f"sha256:{HEX}"),
])
def test_snapshot_urls_name_a_root_and_a_ref_or_manifest(url: str, root: str, ref: str | None,
                                                         digest: str | None) -> None:
    location = parse_url(url)
    assert (location.root, location.ref, location.digest) == (root, ref, digest)


@pytest.mark.parametrize("url", ["s3://b/refs/x", "file://relative/refs/x", "gs://b/p/x",
                                 "gs:///refs/x", "gs://b/refs/../x", "gs://b/refs/",
                                 "gs://b/refs/a\\b", "gs://b/refs/a//b",
                                 f"gs://b/manifests/sha256/{HEX[:10]}.json"])
def test_bad_snapshot_urls_are_refused(url: str) -> None:
    with pytest.raises(StoreError):
        parse_url(url)


# -- gs:// on a real fake-gcs-server -----------------------------------------------------------


@pytest.fixture(scope="module")
def gcs_server() -> Iterator[str]:
    with fake_gcs_server() as url:
        yield url


@pytest.fixture
def bucket(gcs_server: str, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - a storage.Bucket
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test", credentials=AnonymousCredentials())
    return client.create_bucket(f"artifacts-{uuid.uuid4().hex[:12]}")


def test_push_and_fetch_on_gcs_in_the_shared_layout(bucket, tree: tuple[Path, dict[str, bytes]],
                                                    tmp_path: Path) -> None:
    root, expected = tree
    url = f"gs://{bucket.name}/envs/dev/refs/datasets/colors"
    pushed = snapshots.push(root, url)
    cli_manifest = hash_tree(root)[0]
    names = {b.name for b in bucket.list_blobs(prefix="envs/dev/")}
    blob_names = {f"envs/dev/blobs/sha256/{e.sha256[:2]}/{e.sha256}" for e in cli_manifest.entries}
    assert names == blob_names | {
        f"envs/dev/manifests/sha256/{cli_manifest.digest[7:]}.json",
        "envs/dev/refs/datasets/colors"}
    manifest_blob = bucket.blob(f"envs/dev/manifests/sha256/{cli_manifest.digest[7:]}.json")
    assert manifest_blob.download_as_bytes() == cli_manifest.canonical_json()
    assert bucket.blob("envs/dev/refs/datasets/colors").download_as_bytes() == \
        pushed.digest.encode()
    fetched = snapshots.fetch(url, tmp_path / "out")
    assert fetched.digest == pushed.digest == cli_manifest.digest
    assert read_tree(tmp_path / "out") == expected


def test_pushing_the_same_content_to_gcs_again_uploads_no_blob(
        bucket, tree: tuple[Path, dict[str, bytes]]) -> None:
    root, _ = tree
    url = f"gs://{bucket.name}/refs/x"
    first = snapshots.push(root, url)
    generations = {b.name: b.generation for b in bucket.list_blobs(prefix="blobs/")}
    again = snapshots.push(root, url)
    assert (again.digest, again.blobs_copied, again.bytes_copied) == (first.digest, 0, 0)
    assert {b.name: b.generation for b in bucket.list_blobs(prefix="blobs/")} == generations


def test_a_gcs_blob_that_does_not_match_its_manifest_is_refused(
        bucket, tree: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    root, _ = tree
    url = f"gs://{bucket.name}/refs/x"
    snapshots.push(root, url)
    sha = hashlib.sha256(bytes(range(256)) * 40).hexdigest()
    bucket.blob(f"blobs/sha256/{sha[:2]}/{sha}").upload_from_string(b"tampered")
    with pytest.raises(StoreError, match=r"checksum mismatch for sub/deeper/b.bin: "
                                         rf"gs://{bucket.name}/blobs/sha256/.* \(8 bytes\)"):
        snapshots.fetch(url, tmp_path / "out")
    assert not (tmp_path / "out" / "sub" / "deeper" / "b.bin").exists()


def test_a_missing_gcs_ref_is_named(bucket, tmp_path: Path) -> None:
    url = f"gs://{bucket.name}/envs/dev/refs/nothing-here"
    with pytest.raises(StoreError, match=f"ref {url} does not exist"):
        snapshots.fetch(url, tmp_path / "out")


def test_pushing_to_a_missing_gcs_bucket_names_it(bucket,
                                                  tree: tuple[Path, dict[str, bytes]]) -> None:
    root, _ = tree
    missing = f"{bucket.name}-missing"
    with pytest.raises(StoreError,
                       match=rf"the artifact bucket gs://{missing} does not exist"):
        snapshots.push(root, f"gs://{missing}/p/refs/x")


def test_a_ref_that_holds_no_digest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "store" / "refs").mkdir(parents=True)
    (tmp_path / "store" / "refs" / "x").write_text("latest\n")
    with pytest.raises(StoreError, match=r"ref file://.*/refs/x does not hold a snapshot digest: "
                                         r".* found 'latest\\n'"):
        snapshots.fetch(file_url(tmp_path / "store" / "refs" / "x"), tmp_path / "out")
