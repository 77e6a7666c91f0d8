"""What every artifact store backend guarantees, whatever holds its objects: a test class each
backend's test module subclasses, giving a `store` fixture (an empty store) and the two ways of
damaging it a test needs (`corrupt_blob`, `remove_blob`), done through the backend's real
storage, never through the Store under test.

The guarantees: a snapshot round-trips byte for byte and read-only; an unchanged folder uploads
nothing and a changed file exactly its bytes; refs are read back and overwritten; a blob that does
not hold its digest's bytes is refused (materialize leaves no file, verify names it); a missing
blob makes the snapshot incomplete; a file that does not hash as claimed is not stored.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from substratus_artifacts.layout import StoreError
from substratus_artifacts.snapshots import snapshot_tree
from substratus_artifacts.store import Store

UNKNOWN = "sha256:" + "3" * 64


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def make_tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)
    (root / "sub" / "deeper" / "c.txt").write_bytes(b"")
    (root / "sub" / "same-as-a.txt").write_bytes(b"alpha\n")  # stored once
    (root / ".hidden").write_bytes(b"hidden files are data too")
    return root


class StoreContract:
    """Subclass with a `store` fixture and the damage hooks; pytest collects the tests."""

    def corrupt_blob(self, store: Store, sha256_hex: str, data: bytes) -> None:
        raise NotImplementedError

    def remove_blob(self, store: Store, sha256_hex: str) -> None:
        raise NotImplementedError

    @pytest.fixture
    def tree(self, tmp_path: Path) -> Path:
        return make_tree(tmp_path / "data")

    def test_a_snapshot_round_trips(self, store: Store, tree: Path, tmp_path: Path) -> None:
        result = snapshot_tree(tree, store, None)
        unique = {e.sha256: e.size for e in result.manifest.entries}
        assert result.bytes_copied == sum(unique.values()) == result.manifest.total_size - 6
        assert store.has_snapshot(result.digest)
        assert store.get_manifest(result.digest) == result.manifest
        dest = tmp_path / "out"
        store.materialize(result.digest, dest, verify=True)
        assert files_under(dest) == files_under(tree)
        assert not os.stat(dest / "a.txt").st_mode & 0o222  # read-only
        store.materialize(result.digest, dest, verify=True)  # again over itself: still fine
        assert files_under(dest) == files_under(tree)
        assert store.verify(result.digest) == ([], sum(unique.values()))

    def test_an_unchanged_folder_uploads_nothing(self, store: Store, tree: Path) -> None:
        first = snapshot_tree(tree, store, None)
        again = snapshot_tree(tree, store, None)
        assert (again.digest, again.bytes_copied) == (first.digest, 0)

    def test_changing_one_file_uploads_exactly_its_bytes(self, store: Store, tree: Path) -> None:
        first = snapshot_tree(tree, store, None)
        changed = b"new content of b, a different size"
        (tree / "sub" / "b.bin").write_bytes(changed)
        second = snapshot_tree(tree, store, None)
        assert second.digest != first.digest
        assert second.bytes_copied == len(changed)
        assert store.has_snapshot(first.digest) and store.has_snapshot(second.digest)

    def test_refs_are_put_read_and_overwritten(self, store: Store, tree: Path) -> None:
        name = "default/model/colors/3f2a"
        one = snapshot_tree(tree, store, None).digest
        (tree / "a.txt").write_bytes(b"beta\n")
        two = snapshot_tree(tree, store, None).digest
        assert store.get_ref(name) is None
        assert store.ref_url(name).endswith(f"/refs/{name}")
        store.put_ref(name, one)
        assert store.get_ref(name) == one
        store.put_ref(name, two.removeprefix("sha256:"))  # a bare hex is a digest too
        assert store.get_ref(name) == two
        store.put_ref("default/model/other/1", one)  # refs are independent of each other
        assert (store.get_ref(name), store.get_ref("default/model/other/1")) == (two, one)
        assert store.get_ref("default/model/colors") is None  # a folder of refs is no ref
        for bad in ("", "/abs", "a//b", "a/../b", "a/./b", "a/"):
            with pytest.raises(ValueError, match="ref name"):
                store.get_ref(bad)
            with pytest.raises(ValueError, match="ref name"):
                store.put_ref(bad, one)

    def test_a_corrupt_blob_is_refused_and_leaves_no_file(self, store: Store, tree: Path,
                                                          tmp_path: Path) -> None:
        result = snapshot_tree(tree, store, None)
        hex_ = sha(b"hidden files are data too")
        self.corrupt_blob(store, hex_, b"tampered")
        dest = tmp_path / "out"
        with pytest.raises(StoreError, match=f"checksum mismatch for .hidden: .* the manifest "
                                             f"says sha256:{hex_} "):
            store.materialize(result.digest, dest, verify=True)
        assert not (dest / ".hidden").exists()
        assert not [p for p in dest.rglob("*") if "substratus-" in p.name]
        problems, _ = store.verify(result.digest)
        assert len(problems) == 1 and f"blob sha256:{hex_} (.hidden) is corrupt" in problems[0]

    def test_a_missing_blob_makes_the_snapshot_incomplete(self, store: Store, tree: Path,
                                                          tmp_path: Path) -> None:
        result = snapshot_tree(tree, store, None)
        hex_ = sha(b"alpha\n")
        self.remove_blob(store, hex_)
        assert not store.has_snapshot(result.digest)
        assert store.missing_blobs(e.sha256 for e in result.manifest.entries) == {hex_}
        with pytest.raises(StoreError, match=f"incomplete in {store.url}: blob sha256:{hex_} for"):
            store.materialize(result.digest, tmp_path / "out", verify=True)
        assert not store.has_snapshot(UNKNOWN)
        assert store.get_manifest(UNKNOWN) is None

    def test_a_file_that_does_not_hash_as_claimed_is_not_stored(self, store: Store,
                                                                tmp_path: Path) -> None:
        source = tmp_path / "f.bin"
        source.write_bytes(b"changed")
        with pytest.raises(StoreError, match="changed while it was being snapshotted"):
            store.put_file(source, sha(b"original"))
        assert store.missing_blobs([sha(b"original"), sha(b"changed")]) == {
            sha(b"original"), sha(b"changed")}
        source.write_bytes(b"original")
        assert store.put_file(source, sha(b"original")) == len(b"original")
        assert store.put_file(source, sha(b"original")) == 0  # there already
        assert store.has_blob(sha(b"original"))
