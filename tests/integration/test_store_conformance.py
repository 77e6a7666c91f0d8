"""The store contract (tests/support/store_conformance.py) run against every backend: a folder,
a real fake-gcs-server bucket and a real OCI registry (Debian's docker-registry)."""

from __future__ import annotations

import os
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus_artifacts.layout import blob_key
from substratus_artifacts.store import Store, open_store

# One fake-gcs-server per module and a client pointed at it, as the state backend's tests use.
from tests.integration.test_gcs_state import client, gcs_server  # noqa: F401
from tests.registry import RegistryServer, registry_server
from tests.support.store_conformance import StoreContract


class TestFileStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        return open_store(f"file://{tmp_path / 'store'}")

    def _path(self, store: Store, sha256_hex: str) -> Path:
        path = store.backend.local_path(blob_key(sha256_hex))
        assert path is not None
        return path

    def corrupt_blob(self, store: Store, sha256_hex: str, data: bytes) -> None:
        path = self._path(store, sha256_hex)
        os.chmod(path, 0o644)
        path.write_bytes(data)

    def remove_blob(self, store: Store, sha256_hex: str) -> None:
        self._path(store, sha256_hex).unlink()


class TestGCSStore(StoreContract):
    @pytest.fixture
    def store(self, client):  # noqa: F811, ANN001, ANN201 - a storage.Client; a Store
        bucket = client.create_bucket(f"artifacts-{uuid.uuid4().hex[:12]}")
        self.bucket = bucket
        return open_store(f"gs://{bucket.name}/artifacts/dev", client=client)

    def corrupt_blob(self, store: Store, sha256_hex: str, data: bytes) -> None:
        self.bucket.blob(f"artifacts/dev/{blob_key(sha256_hex)}").upload_from_string(data)

    def remove_blob(self, store: Store, sha256_hex: str) -> None:
        self.bucket.blob(f"artifacts/dev/{blob_key(sha256_hex)}").delete()


@pytest.fixture
def registry() -> Iterator[RegistryServer]:
    # One a test: a blob corrupted on disk is corrupt in every repository of that registry.
    with registry_server() as server:
        yield server


class TestOCIStore(StoreContract):
    @pytest.fixture
    def store(self, registry: RegistryServer) -> Store:
        self.registry = registry
        self.repository = f"ml/artifacts-{uuid.uuid4().hex[:8]}"
        return open_store(f"oci://{registry.host}/{self.repository}")

    def corrupt_blob(self, store: Store, sha256_hex: str, data: bytes) -> None:
        # What the registry serves a blob from: its content-addressed file on disk.
        path = (self.registry.root / "docker" / "registry" / "v2" / "blobs" / "sha256"
                / sha256_hex[:2] / sha256_hex / "data")
        path.write_bytes(data)

    def remove_blob(self, store: Store, sha256_hex: str) -> None:
        request = urllib.request.Request(
            f"{self.registry.url}/v2/{self.repository}/blobs/sha256:{sha256_hex}",
            method="DELETE")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 202
