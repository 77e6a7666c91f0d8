"""The process book: every process the local runtime starts for an object, written down before it
runs, so a crash never leaks a process nobody knows about (the next apply or destroy stops it)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from substratus_artifacts.leftovers import remove_stale, stale_temp_files
from substratus_cli.address import Address
from substratus_providers.local import processes
from substratus_providers.local.processes import ProcessRef


@dataclasses.dataclass(frozen=True)
class Entry:
    role: str  # "run" (a build or training), "router", "server", "notebook"
    ref: ProcessRef
    log: str
    port: int | None = None
    version: str = ""  # which server version (model digest and spec) the process serves

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "process": self.ref.to_dict(), "log": self.log,
                "port": self.port, "version": self.version}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Entry:
        return cls(d["role"], ProcessRef.from_dict(d["process"]), d["log"], d.get("port"),
                   d.get("version", ""))

    def alive(self) -> bool:
        return processes.alive(self.ref)


class ProcessBook:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, address: Address) -> Path:
        return self.root / address.kind / address.namespace / f"{address.name}.json"

    def entries(self, address: Address) -> list[Entry]:
        path = self._path(address)
        if not path.exists():
            return []
        return [Entry.from_dict(d) for d in json.loads(path.read_text())]

    def add(self, address: Address, entry: Entry) -> None:
        self._write(address, [*self.entries(address), entry])

    def forget(self, address: Address, gone: Iterable[Entry]) -> None:
        pids = {e.ref.pid for e in gone}
        self._write(address, [e for e in self.entries(address) if e.ref.pid not in pids])

    def stop(self, address: Address, entries: Iterable[Entry], grace: float = 10.0) -> None:
        entries = list(entries)
        for e in entries:
            processes.stop(e.ref, grace)
        self.forget(address, entries)

    def stop_all(self, address: Address) -> None:
        self.stop(address, self.entries(address))

    def _write(self, address: Address, entries: list[Entry]) -> None:
        path = self._path(address)
        if not entries:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path.parent, stale_temp_files(path))  # a killed writer's
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps([e.to_dict() for e in entries], indent=2))
        os.replace(tmp, path)
