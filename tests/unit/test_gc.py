"""`substratus gc` below the CLI: the sweep of a file:// store (what it keeps, what it removes,
in which order, what it refuses) and what the state references."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from substratus_artifacts.backend import FileBackend
from substratus_artifacts.gc import check_keepable, sweep
from substratus_artifacts.layout import StoreError, blob_key, manifest_key
from substratus_artifacts.snapshots import snapshot_tree
from substratus_artifacts.store import Store
from substratus_cli.address import Address
from substratus_cli.state import Inventory, InventoryEntry, Pending
from substratus_cli.verification import referenced


def snapshot(tmp_path: Path, store: Store, name: str, files: dict[str, bytes]) -> str:
    folder = tmp_path / "src" / name
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return snapshot_tree(folder, store, None).digest


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(FileBackend(tmp_path / "store"))


def path_of(store: Store, key: str) -> Path:
    assert isinstance(store.backend, FileBackend)
    return store.backend.local_path(key)


def on_disk(store: Store, key: str) -> bool:
    return path_of(store, key).is_file()


def test_what_nothing_keeps_goes_and_shared_blobs_stay(tmp_path: Path, store: Store) -> None:
    kept = snapshot(tmp_path, store, "kept", {"a.txt": b"shared", "b.txt": b"kept only"})
    old = snapshot(tmp_path, store, "old", {"a.txt": b"shared", "c.txt": b"old only!!"})
    stray = path_of(store, "blobs/sha256/zz/not-a-blob")
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"left alone")

    dry = sweep(store, [kept], dry_run=True)
    old_manifest_size = len(store.backend.read(manifest_key(old)) or b"")
    assert dry.manifests == (old,) and dry.blobs == 1
    assert dry.bytes == old_manifest_size + len(b"old only!!")
    assert store.has_snapshot(old), "a dry run removes nothing"

    swept = sweep(store, [kept])
    assert swept == dry
    assert store.has_snapshot(kept) and store.verify(kept) == ([], len(b"shared") + 9)
    assert not on_disk(store, manifest_key(old))
    assert not on_disk(store, blob_key(_sha(b"old only!!")))
    assert stray.read_bytes() == b"left alone"
    assert sweep(store, [kept]).manifests == ()


def test_a_ref_keeps_its_snapshot_and_nothing_kept_empties_the_store(tmp_path: Path,
                                                                    store: Store) -> None:
    referenced_by_ref = snapshot(tmp_path, store, "r", {"x": b"by a ref"})
    loose = snapshot(tmp_path, store, "l", {"y": b"loose"})
    store.put_ref("ml/model/m/v1", referenced_by_ref)
    assert sweep(store, []).manifests == (loose,)
    assert store.has_snapshot(referenced_by_ref)
    path_of(store, "refs/ml/model/m/v1").unlink()
    assert sweep(store, []).manifests == (referenced_by_ref,)
    assert not any((tmp_path / "store" / "blobs" / "sha256").iterdir()), "empty fan-outs go"


def test_bytes_still_linked_elsewhere_are_told_apart(tmp_path: Path, store: Store) -> None:
    old = snapshot(tmp_path, store, "old", {"w.bin": b"w" * 100})
    blob = path_of(store, blob_key(_sha(b"w" * 100)))
    os.link(blob, tmp_path / "a-workload-copy")
    swept = sweep(store, [])
    assert swept.manifests == (old,) and swept.linked_bytes == 100
    assert (tmp_path / "a-workload-copy").read_bytes() == b"w" * 100


def test_a_kept_snapshot_that_cannot_be_read_stops_the_sweep(tmp_path: Path, store: Store) -> None:
    kept = snapshot(tmp_path, store, "kept", {"a": b"a"})
    loose = snapshot(tmp_path, store, "loose", {"b": b"b"})
    manifest = path_of(store, manifest_key(kept))
    manifest.chmod(0o644)
    manifest.write_bytes(b"{}")
    with pytest.raises(StoreError, match="is corrupt"):
        sweep(store, [kept])
    assert store.has_snapshot(loose), "nothing was removed"
    manifest.unlink()
    with pytest.raises(StoreError, match=f"the manifest of {kept} is missing") as missing:
        check_keepable(store, [kept])
    assert "gc removes nothing" in (missing.value.hint or "")


def test_only_a_file_store_is_swept() -> None:
    class Remote:
        url = "gs://bucket/prefix"

    with pytest.raises(StoreError, match=r"gc is not built yet for gs:// artifact stores"):
        sweep(Store(Remote()), [])  # type: ignore[arg-type]


def test_the_state_references_recorded_digests_refs_and_inputs(tmp_path: Path,
                                                               store: Store) -> None:
    dataset = snapshot(tmp_path, store, "d", {"rows": b"1"})
    tuned = snapshot(tmp_path, store, "t", {"w": b"2"})
    base = "sha256:" + "b" * 64
    store.put_ref("default/model/tuned/v1", tuned)
    d, m = Address("Dataset", "default", "d"), Address("Model", "default", "tuned")
    inventory = Inventory("l", 1, {
        d: InventoryEntry(d, "local", status={"digest": dataset}),
        m: InventoryEntry(m, "local", status={
            "artifact": store.ref_url("default/model/tuned/v1"),
            "inputs": [{"baseModelDigest": base}]})})
    refs = referenced(inventory, store)
    assert refs.required == {dataset, tuned}
    assert refs.named == {dataset, tuned, base}

    pending = Inventory("l", 2, {**inventory.entries, d: InventoryEntry(
        d, "local", status={"digest": dataset}, pending=Pending("replace", 0.0, 1, "h"))})
    with pytest.raises(StoreError, match=r"did not finish: Dataset/d \(replace\)"):
        referenced(pending, store)
    path_of(store, "refs/default/model/tuned/v1").unlink()
    with pytest.raises(StoreError, match="is missing"):
        referenced(inventory, store)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
