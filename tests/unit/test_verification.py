"""What `verify` reaches from the state: a recorded digest, or the snapshot a Job's artifact ref
names (the kubernetes runtime's Models and Datasets)."""

from __future__ import annotations

from pathlib import Path

from substratus_artifacts.backend import FileBackend
from substratus_artifacts.snapshots import snapshot_tree
from substratus_artifacts.store import Store
from substratus_cli.address import Address
from substratus_cli.state import Inventory, InventoryEntry
from substratus_cli.verification import Damage, verify


def test_a_ref_is_followed_to_its_snapshot_and_a_missing_ref_is_damage(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"w" * 10)
    store = Store(FileBackend(tmp_path / "store"))
    digest = snapshot_tree(tmp_path / "model", store, None).digest
    store.put_ref("ml/model/tuned/v1", digest)
    tuned, lost = Address("Model", "ml", "tuned"), Address("Model", "ml", "lost")
    image = Address("Image", "ml", "server-x")  # a registry's digest: not the store's to check
    inventory = Inventory("l", 1, {
        tuned: InventoryEntry(tuned, "kubernetes", status={"artifact": store.ref_url(
            "ml/model/tuned/v1")}),
        lost: InventoryEntry(lost, "kubernetes", status={"artifact": store.ref_url(
            "ml/model/lost/v1")}),
        image: InventoryEntry(image, "images", status={"digest": "sha256:" + "0" * 64})})
    result = verify(inventory, store)
    assert (result.snapshots, result.bytes_read) == (1, 10)
    assert result.damage == (Damage(lost, store.ref_url("ml/model/lost/v1"),
                                    f"the ref {store.ref_url('ml/model/lost/v1')} is missing"),)
