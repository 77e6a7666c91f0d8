"""Manifests, the file artifact store and its refs, the stat cache and snapshots of small trees."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from substratus_artifacts.backend import FileBackend
from substratus_artifacts.files import hash_tree
from substratus_artifacts.layout import StoreError, blob_key
from substratus_artifacts.manifest import Manifest, ManifestEntry
from substratus_artifacts.snapshots import snapshot_tree
from substratus_artifacts.statcache import StatCache
from substratus_artifacts.store import Store, open_store


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def age(path: Path, seconds: float = 10.0) -> None:
    """Make a file look written a while ago, so the stat cache does not treat it as racy."""
    past = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(past, past))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(FileBackend(tmp_path / "store"))


def root(store: Store) -> Path:
    assert isinstance(store.backend, FileBackend)
    return store.backend.root


def blob_path(store: Store, sha256_hex: str) -> Path:
    return root(store) / blob_key(sha256_hex)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 10)
    (root / "sub" / "deeper" / "c.txt").write_bytes(b"")
    (root / ".hidden").write_bytes(b"hidden files are data too")
    return root


# -- manifest ---------------------------------------------------------------------------------

ENTRIES = [
    ManifestEntry("b/two.txt", 3, sha(b"two")),
    ManifestEntry("a.txt", 3, sha(b"one")),
    ManifestEntry(".hidden", 0, sha(b"")),
]


def test_manifest_digest_is_pinned_so_snapshot_ids_never_drift() -> None:
    manifest = Manifest(tuple(ENTRIES))
    assert manifest.canonical_json() == (
        b'{"entries":['
        b'{"path":".hidden","sha256":"' + sha(b"").encode() + b'","size":0},'
        b'{"path":"a.txt","sha256":"' + sha(b"one").encode() + b'","size":3},'
        b'{"path":"b/two.txt","sha256":"' + sha(b"two").encode() + b'","size":3}'
        b'],"version":1}'
    )
    assert manifest.digest == "sha256:" + sha(manifest.canonical_json())
    assert manifest.digest == (
        "sha256:16149749528f1edb3e6d7b128c953bb7a4762527dc915bfc02a1f9119b780afc"
    )


@given(st.permutations(ENTRIES))
def test_manifest_digest_does_not_depend_on_entry_order(entries: list[ManifestEntry]) -> None:
    assert Manifest(tuple(entries)).digest == Manifest(tuple(ENTRIES)).digest
    assert Manifest(tuple(entries)) == Manifest(tuple(ENTRIES))


def test_manifest_round_trips_through_dict() -> None:
    manifest = Manifest(tuple(ENTRIES))
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    assert manifest.total_size == 6


@pytest.mark.parametrize("path", ["/etc/passwd", "../up", "a/../b", "a//b", "./a", "a\\b", ""])
def test_manifest_refuses_paths_that_escape_or_are_not_normalized(path: str) -> None:
    with pytest.raises(ValueError, match="manifest path"):
        ManifestEntry(path, 1, sha(b"x"))


def test_manifest_refuses_duplicate_paths() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Manifest((ENTRIES[0], ENTRIES[0]))


# -- store ------------------------------------------------------------------------------------


def test_put_file_dedups_a_blob_already_stored(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    source.write_bytes(b"x" * 5000)
    assert store.put_file(source, sha(b"x" * 5000)) == 5000
    assert store.put_file(source, sha(b"x" * 5000)) == 0
    blob = blob_path(store, sha(b"x" * 5000))
    assert blob == root(store) / "blobs" / "sha256" / blob.name[:2] / blob.name
    assert blob.read_bytes() == b"x" * 5000
    assert not blob.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_put_file_refuses_a_file_that_does_not_hash_as_claimed(
    store: Store, tmp_path: Path
) -> None:
    source = tmp_path / "f.bin"
    source.write_bytes(b"changed")
    with pytest.raises(StoreError, match="changed while it was being snapshotted"):
        store.put_file(source, sha(b"original"))
    assert not store.has_blob(sha(b"changed")) and not store.has_blob(sha(b"original"))



def test_manifest_put_is_idempotent_and_verified_on_read(store: Store) -> None:
    manifest = Manifest(tuple(ENTRIES))
    assert store.put_manifest(manifest) == store.put_manifest(manifest) == manifest.digest
    assert store.get_manifest(manifest.digest) == manifest
    assert store.get_manifest("sha256:" + "0" * 64) is None


def test_has_snapshot_is_false_when_a_blob_is_missing(store: Store, tree: Path) -> None:
    result = snapshot_tree(tree, store, None)
    assert store.has_snapshot(result.digest)
    victim = blob_path(store, sha(b"alpha\n"))
    victim.unlink()
    assert not store.has_snapshot(result.digest)
    assert not store.has_snapshot("sha256:" + "1" * 64)


def test_materialize_reproduces_the_files_as_hard_links(
    store: Store, tree: Path, tmp_path: Path
) -> None:
    result = snapshot_tree(tree, store, None)
    dest = tmp_path / "out"
    store.materialize(result.digest, dest)
    for entry in result.manifest.entries:
        copy = dest / entry.path
        assert copy.read_bytes() == (tree / entry.path).read_bytes()
        assert copy.stat().st_ino == blob_path(store, entry.sha256).stat().st_ino
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        ".hidden",
        "a.txt",
        "sub/b.bin",
        "sub/deeper/c.txt",
    ]
    store.materialize(result.digest, dest)  # again over itself: still fine


def test_materialize_copies_when_a_hard_link_cannot_cross_filesystems(
    store: Store, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = snapshot_tree(tree, store, None)

    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    store.materialize(result.digest, tmp_path / "out")
    copy = tmp_path / "out" / "sub" / "b.bin"
    assert copy.read_bytes() == (tree / "sub" / "b.bin").read_bytes()
    assert copy.stat().st_ino != blob_path(store, sha(copy.read_bytes())).stat().st_ino


def test_materialize_of_an_incomplete_snapshot_names_the_missing_blob(
    store: Store, tree: Path, tmp_path: Path
) -> None:
    result = snapshot_tree(tree, store, None)
    blob_path(store, sha(b"alpha\n")).unlink()
    with pytest.raises(StoreError, match="a.txt is missing"):
        store.materialize(result.digest, tmp_path / "out")


def test_open_store_resolves_relative_file_urls_against_base(tmp_path: Path) -> None:
    store = open_store("file://.substratus/artifacts", tmp_path)
    assert isinstance(store.backend, FileBackend)
    assert store.backend.root == tmp_path / ".substratus" / "artifacts"
    assert store.url == "file://.substratus/artifacts"
    absolute = open_store(f"file://{tmp_path}/abs", Path("/elsewhere"))
    assert isinstance(absolute.backend, FileBackend) and absolute.backend.root == tmp_path / "abs"


def test_open_store_refuses_urls_no_backend_takes(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unsupported artifact store URL"):
        open_store("ftp://host/x", tmp_path)
    with pytest.raises(StoreError, match="must be absolute here"):
        open_store("file://relative/x")


# -- refs -------------------------------------------------------------------------------------

DIGEST_ONE, DIGEST_TWO = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def test_refs_are_put_read_and_overwritten(store: Store) -> None:
    name = "default/model/colors/3f2a"
    assert store.get_ref(name) is None
    store.put_ref(name, DIGEST_ONE)
    assert store.get_ref(name) == DIGEST_ONE
    store.put_ref(name, "2" * 64)  # a bare hex is a digest too
    assert store.get_ref(name) == DIGEST_TWO
    # The layout and the bytes are a contract with the workloads: exactly the digest, no newline.
    assert (root(store) / "refs" / "default" / "model" / "colors" / "3f2a").read_bytes() == (
        DIGEST_TWO.encode("ascii")
    )
    assert list((root(store) / "tmp").iterdir()) == []
    assert store.get_ref("default/model/colors") is None  # a folder of refs is no ref
    assert store.get_ref("default/model/colors/3f2a/more") is None


def test_ref_url_is_absolute_for_workloads_that_run_elsewhere(tmp_path: Path) -> None:
    store = open_store("file://.substratus/artifacts/", tmp_path)
    assert store.ref_url("default/dataset/colors") == (
        f"file://{tmp_path}/.substratus/artifacts/refs/default/dataset/colors"
    )
    assert store.ref_url("x").startswith("file:///")


@pytest.mark.parametrize("name", ["", "/abs", "a//b", "a/../b", "..", "a/./b", "a/", "a\\b"])
def test_ref_names_must_be_relative_normalized_posix_paths(
    store: Store, name: str
) -> None:
    with pytest.raises(ValueError, match="ref name"):
        store.put_ref(name, DIGEST_ONE)
    with pytest.raises(ValueError, match="ref name"):
        store.get_ref(name)
    assert not (root(store) / "refs").exists()


@pytest.mark.parametrize(
    "content", [b"", b"latest", DIGEST_ONE.encode() + b"\n", DIGEST_ONE.upper().encode()]
)
def test_a_ref_that_holds_no_digest_is_refused(store: Store, content: bytes) -> None:
    path = root(store) / "refs" / "broken"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(StoreError, match=f"ref file://{path} does not hold a snapshot digest"):
        store.get_ref("broken")


def test_a_ref_may_be_moved_by_another_writer(store: Store) -> None:
    # Refs stay writable (blobs do not): a workload in a container may replace one in place.
    store.put_ref("shared", DIGEST_ONE)
    path = root(store) / "refs" / "shared"
    assert path.stat().st_mode & stat.S_IWUSR
    path.write_bytes(DIGEST_TWO.encode("ascii"))
    assert store.get_ref("shared") == DIGEST_TWO
    store.put_ref("shared", DIGEST_ONE)
    assert store.get_ref("shared") == DIGEST_ONE


# -- hash_tree and snapshot_tree ----------------------------------------------------------------


def test_hash_tree_of_a_file_is_one_entry_named_by_its_basename(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(b"a,b\n1,2\n")
    manifest, stats = hash_tree(path, None)
    assert manifest.entries == (ManifestEntry("train.csv", 8, sha(b"a,b\n1,2\n")),)
    assert (stats.files_hashed, stats.bytes_hashed, stats.files_cached) == (1, 8, 0)


def test_hash_tree_follows_symlinks_inside_root_and_refuses_those_outside(
    tree: Path, tmp_path: Path
) -> None:
    (tree / "link.txt").symlink_to("a.txt")
    (tree / "sublink").symlink_to("sub")
    paths = [e.path for e in hash_tree(tree, None)[0].entries]
    assert "link.txt" in paths and "sublink/b.bin" in paths
    outside = tmp_path / "secret.txt"
    outside.write_text("not part of the dataset")
    (tree / "escape.txt").symlink_to(outside)
    with pytest.raises(StoreError, match="outside"):
        hash_tree(tree, None)


def test_hash_tree_refuses_a_symlink_loop(tree: Path) -> None:
    (tree / "sub" / "loop").symlink_to("..")
    with pytest.raises(StoreError, match="loop"):
        hash_tree(tree, None)


def test_snapshot_of_an_unchanged_tree_copies_and_reads_nothing(
    store: Store, tree: Path, tmp_path: Path
) -> None:
    for path in tree.rglob("*"):
        age(path)
    cache = StatCache(tmp_path / "statcache.json")
    first = snapshot_tree(tree, store, cache)
    assert first.bytes_copied == first.bytes_hashed == first.manifest.total_size > 0
    again = snapshot_tree(tree, store, StatCache(tmp_path / "statcache.json"))
    assert (again.digest, again.bytes_copied, again.bytes_hashed) == (first.digest, 0, 0)


def test_snapshot_uploads_only_missing_blobs_and_each_content_once(
    store: Store, tree: Path
) -> None:
    (tree / "copy-of-a.txt").write_bytes(b"alpha\n")
    first = snapshot_tree(tree, store, None)
    assert first.bytes_copied == first.manifest.total_size - len(b"alpha\n")
    assert store.missing_blobs(e.sha256 for e in first.manifest.entries) == set()
    (tree / "sub" / "b.bin").write_bytes(b"changed")
    second = snapshot_tree(tree, store, None)
    assert second.bytes_copied == len(b"changed")
    assert store.missing_blobs(["sha256:" + sha(b"absent"), sha(b"changed")]) == {sha(b"absent")}


def test_put_files_writes_a_repeated_blob_once(store: Store, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_bytes(b"same")
    two.write_bytes(b"same")
    assert store.put_files([(one, sha(b"same")), (two, sha(b"same"))]) == len(b"same")
    assert store.put_files([]) == 0


def test_stat_cache_does_not_trust_a_file_written_just_now(tree: Path, tmp_path: Path) -> None:
    cache = StatCache(tmp_path / "statcache.json")
    hash_tree(tree, cache)  # files written microseconds ago: racily clean, not recorded
    _, stats = hash_tree(tree, cache)
    assert stats.files_cached == 0 and stats.files_hashed == 4


def test_stat_cache_misses_when_content_changes_at_the_same_size(
    tree: Path, tmp_path: Path
) -> None:
    age(tree / "a.txt", 20)
    cache = StatCache(tmp_path / "statcache.json")
    before = hash_tree(tree / "a.txt", cache)[0]
    (tree / "a.txt").write_bytes(b"ALPHA\n")
    age(tree / "a.txt", 5)
    after, stats = hash_tree(tree / "a.txt", cache)
    assert stats.files_hashed == 1 and after.digest != before.digest


def test_stat_cache_survives_a_corrupt_file_and_merges_concurrent_savers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "statcache.json"
    path.write_text("{not json")
    assert len(StatCache(path)) == 0
    one, two = tmp_path / "one", tmp_path / "two"
    for f in (one, two):
        f.write_text(f.name)
        age(f)
    first, second = StatCache(path), StatCache(path)
    assert first.record(one, one.stat(), sha(b"one"))
    assert second.record(two, two.stat(), sha(b"two"))
    first.save()
    second.save()
    merged = StatCache(path)
    assert merged.lookup(one, one.stat()) == sha(b"one")
    assert merged.lookup(two, two.stat()) == sha(b"two")


def test_copies_for_a_workload_are_checked_and_never_the_blob(store: Store, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_bytes(b"alpha")
    digest = snapshot_tree(tmp_path / "src", store, None).digest
    blob = blob_path(store, sha(b"alpha"))
    time.sleep(0.2)  # past the stat cache's racy window
    cache = StatCache(tmp_path / "stat.json")
    store.materialize(digest, tmp_path / "one", copies=cache)
    copy = tmp_path / "one" / "a.txt"
    assert copy.read_bytes() == b"alpha" and copy.stat().st_ino != blob.stat().st_ino
    assert cache.lookup(blob, blob.stat()) == sha(b"alpha")  # hashed once, remembered
    copy.chmod(0o644)
    copy.write_bytes(b"written by the workload")
    assert blob.read_bytes() == b"alpha"

    blob.chmod(0o644)
    blob.write_bytes(b"alphx")  # corrupt: the stat cache no longer vouches for it
    with pytest.raises(StoreError, match=r"checksum mismatch for a.txt: .* refused"):
        store.materialize(digest, tmp_path / "two", copies=cache)
    assert not (tmp_path / "two" / "a.txt").exists()
