"""The local runtime's object store: one JSON record per live object, as an API server would keep them.

Records live under `.substratus/runtime/objects/<Kind>/<namespace>/<name>.json`. Listing a kind is
one directory walk; every write bumps the record's version, which with its uid is the fingerprint.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from substratus_artifacts.leftovers import remove_stale, stale_temp_files
from substratus_cli.address import Address
from substratus_cli.errors import ProviderError
from substratus_cli.provider import LiveObject


class RecordStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, address: Address) -> Path:
        return self.root / address.kind / address.namespace / f"{address.name}.json"

    def list(self, kind: str) -> dict[Address, LiveObject]:
        out: dict[Address, LiveObject] = {}
        base = self.root / kind
        if not base.is_dir():
            return out
        for path in sorted(base.glob("*/*.json")):
            address = Address(kind, path.parent.name, path.stem)
            out[address] = self._load(address, path)
        return out

    def get(self, address: Address) -> LiveObject | None:
        path = self._path(address)
        return self._load(address, path) if path.exists() else None

    def put(self, address: Address, *, spec: Mapping[str, Any], status: Mapping[str, Any],
            labels: Mapping[str, str], new_object: bool) -> LiveObject:
        """Create (new uid) or update (same uid, next version) a record, atomically."""
        current = None if new_object else self.get(address)
        uid = current.fingerprint.split("/")[0] if current else str(uuid.uuid4())
        version = int(current.fingerprint.split("/")[1]) + 1 if current else 1
        record = {"uid": uid, "version": version, "labels": dict(labels), "spec": dict(spec),
                  "status": dict(status)}
        path = self._path(address)
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path.parent, stale_temp_files(path))  # a killed writer's
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return self._to_live(address, record)

    def delete(self, address: Address) -> None:
        self._path(address).unlink(missing_ok=True)

    def _load(self, address: Address, path: Path) -> LiveObject:
        try:
            record = json.loads(path.read_text())
            return self._to_live(address, record)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ProviderError(f"cannot read the local record of {address} at {path}: {e}") from None

    @staticmethod
    def _to_live(address: Address, record: Mapping[str, Any]) -> LiveObject:
        return LiveObject(address=address, spec=record["spec"], status=record.get("status", {}),
                          labels=record.get("labels", {}),
                          fingerprint=f"{record['uid']}/{record['version']}")
