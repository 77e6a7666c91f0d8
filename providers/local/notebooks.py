"""Notebook on the local runtime: JupyterLab on a stable localhost port, its root holding the
model and dataset it names. The access token lives in a private file, never in state."""

from __future__ import annotations

import secrets
import shutil
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from substratus_cli.action import UNKNOWN, Action, FieldChange
from substratus_cli.address import Address
from substratus_cli.diff import field_changes
from substratus_cli.errors import ProviderError
from substratus_cli.provider import (
    ApplyFailed,
    ApplyRequest,
    Batch,
    LiveObject,
    PlanItem,
    PlannedChange,
    Readiness,
)
from substratus_cli.resource import Resource
from substratus_providers.local import processes, secret_env
from substratus_providers.local.machine import RecordedKind, planned_status, user_labels
from substratus_providers.local.runs import Workload, new_run_id, require_program

READY_SECONDS = 120.0
INPUTS = {"model": ("modelDigest", "Model"), "dataset": ("datasetDigest", "Dataset")}


class Notebooks(RecordedKind):
    def problem(self, live: LiveObject) -> str | None:
        if live.spec.get("suspend"):
            return None
        if not any(e.role == "notebook" and e.alive() for e in self.book.entries(live.address)):
            return "the notebook server is not running"
        return None

    def plan(self, item: PlanItem, batch: Batch) -> PlannedChange:
        a, desired, live = item.address, self.declared(item), item.live
        inputs = {key: planned_status(batch, Address(kind, a.namespace, desired.spec[field]["name"])
                                      ).get("digest", UNKNOWN)
                  for field, (key, kind) in INPUTS.items() if desired.spec.get(field)}
        if live is None:
            return PlannedChange(a, Action.CREATE, "not in live state",
                                 planned_status={"endpoint": UNKNOWN, **inputs})
        changes = list(field_changes(live.spec, desired.spec))
        changes += field_changes(user_labels(live.labels), desired.labels, prefix="metadata.labels")
        reasons = []
        for field, (key, kind) in INPUTS.items():
            if key not in inputs or inputs[key] == live.status.get(key):
                continue
            changes.append(FieldChange(f"status.{key}", live.status.get(key), inputs[key]))
            dep = Address(kind, a.namespace, desired.spec[field]["name"]).short()
            reasons.append(f"restart: {dep} will be replaced" if inputs[key] is UNKNOWN
                           else f"restart: {dep} changed")
        if live.status.get("problem"):
            reasons.append(f"restart: {live.status['problem']}")
        planned = {"endpoint": live.status.get("endpoint"), **inputs}
        if changes or reasons:
            return PlannedChange(a, Action.UPDATE, "; ".join(reasons) or "spec changed",
                                 tuple(changes), planned)
        return PlannedChange(a, Action.NOOP, "running", (), planned)

    def apply(self, request: ApplyRequest) -> LiveObject:
        """Start (or restart) JupyterLab; a failure raises ApplyFailed with the record as it is."""
        address, desired = request.address, self.desired_of(request)
        labels = self.machine.labels(desired)
        if not desired.spec.get("suspend"):  # before anything is stopped or recorded
            require_program("notebook", "the notebook", tuple(desired.spec.get("command") or ()))
        current = self.records.get(address)
        port = int(current.status["port"]) if current and current.status.get("port") else \
            processes.free_port()
        self.book.stop_all(address)
        status: dict[str, Any] = {"port": port, "endpoint": None}
        if current is None:  # written first: a crash leaks no untracked process
            current = self.records.put(address, spec=desired.spec, status=status, labels=labels,
                                       new_object=True)
        try:
            inputs = self._inputs_now(desired)
        except ProviderError as e:
            raise ApplyFailed(e.message, current) from None
        status.update(inputs)
        if not desired.spec.get("suspend"):
            error = self._start(address, desired, inputs, port)
            if error is not None:
                raise ApplyFailed(error, current)
            status["endpoint"] = f"http://127.0.0.1:{port}/lab"
        return self.records.put(address, spec=desired.spec, status=status, labels=labels,
                                new_object=False)

    def _inputs_now(self, desired: Resource) -> dict[str, str]:
        out = {}
        for field, (key, kind) in INPUTS.items():
            if not desired.spec.get(field):
                continue
            dep = Address(kind, desired.address.namespace, desired.spec[field]["name"])
            record = self.records.get(dep)
            if not record or not record.status.get("digest"):
                raise ProviderError(f"{dep.short()} has no artifact yet: apply it first")
            out[key] = str(record.status["digest"])
        return out

    def _start(self, address: Address, desired: Resource, inputs: Mapping[str, str],
               port: int) -> str | None:
        spec = desired.spec
        env = secret_env.env_of(spec, self.machine.resolve_secret)
        w = Workload(address, "notebook", "notebook", tuple(spec.get("command") or ()),
                     spec.get("params") or {}, env,
                     {"model" if k == "modelDigest" else "data": v for k, v in inputs.items()})
        # One workspace a notebook, kept across restarts: what the user writes there stays.
        workspace = self.machine.root / "content" / address.kind / address.namespace / \
            address.name / "workspace"
        for name in ("model", "data"):
            shutil.rmtree(workspace / name, ignore_errors=True)
        content = self.runtime.prepare(w, "workspace")
        token = self.token(address, create=True)
        entry = self.runtime.start(w, content, self.runtime.log_path(address, new_run_id(),
                                                                     "notebook"),
                                   port=port, extra_env={"JUPYTER_TOKEN": token})
        reason = processes.wait_healthy(f"http://127.0.0.1:{port}/api/status?token={token}",
                                        entry.ref, entry.log, READY_SECONDS)
        if reason is not None:
            self.book.stop(address, [entry])
            return f"the notebook server did not become ready: {reason.replace(token, '***')}"
        return None

    def token(self, address: Address, *, create: bool = False) -> str:
        path = self._token_path(address)
        if path.exists():
            return path.read_text().strip()
        if not create:
            raise ProviderError(f"{address.short()} has no access token: apply it first")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        value = secrets.token_urlsafe(24)
        path.touch(mode=0o600)
        path.write_text(value)
        return value

    def open_url(self, address: Address) -> str:
        live = self.records.get(address)
        if live is None:
            raise ProviderError(f"{address.short()} does not exist",
                                hint="run `substratus apply` first")
        if live.spec.get("suspend"):
            raise ProviderError(f"{live.address.short()} is suspended",
                                hint="set `suspend: false` and apply")
        if not live.status.get("endpoint") or self.problem(live):
            raise ProviderError(f"{live.address.short()} is not running",
                                hint="run `substratus apply` to start it")
        return f"{live.status['endpoint']}?token={self.token(live.address)}"

    def ready(self, live: LiveObject) -> Readiness:
        if live.spec.get("suspend"):
            return Readiness(True, message="suspended")
        problem = self.problem(live)
        if problem:
            return Readiness(False, failed=True, message=problem)
        url = f"http://127.0.0.1:{live.status['port']}/api/status?token={self.token(live.address)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - our own localhost
                return Readiness(r.status == 200, message=f"answering at {live.status['endpoint']}")
        except OSError as e:
            return Readiness(False, message=f"{live.status['endpoint']}: {e}")

    def delete(self, request: ApplyRequest) -> None:
        address = request.address
        self.book.stop_all(address)
        self._token_path(address).unlink(missing_ok=True)
        self.runtime.clear(address)
        self.records.delete(address)

    def _token_path(self, address: Address) -> Path:
        return self.machine.root / "tokens" / address.namespace / f"{address.name}.token"
