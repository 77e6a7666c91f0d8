"""ModelServer on the local runtime: a router on a stable port in front of one server process per
replica of the current version. A rollout starts the new version, waits for /health, switches the
router, drains and stops the old one; a version that never gets ready leaves the old one serving."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from substratus_cli import failpoints
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
    StepProgress,
)
from substratus_cli.resource import Resource
from substratus_cli.sizing import ModelSize, serving
from substratus_providers.local import processes, secret_env
from substratus_providers.local.host import check_fits
from substratus_providers.local.machine import RecordedKind, planned_status, user_labels
from substratus_providers.local.process_book import Entry
from substratus_providers.local.router import RouterClient, RouterError, router_command
from substratus_providers.local.runs import Workload, new_run_id, require_program

DRAIN_SECONDS = 30.0
# Fields that change how requests are answered; the rest (rollout policy) change no process.
_NOT_SERVING = ("rollout",)


def version_of(spec: Mapping[str, Any], model_digest: str) -> str:
    serving_spec = {k: v for k, v in spec.items() if k not in _NOT_SERVING}
    blob = json.dumps({"model": model_digest, "spec": serving_spec}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


class Servers(RecordedKind):
    # -- read ---------------------------------------------------------------------------------

    def problem(self, live: LiveObject) -> str | None:
        """What is wrong with the processes behind a server right now, or None."""
        entries = self.book.entries(live.address)
        routers = [e for e in entries if e.role == "router" and e.alive()]
        if not routers:
            return "its router is not running"
        version = live.status.get("version")
        current = [e for e in entries if e.role == "server" and e.version == version]
        replicas = int(live.spec.get("replicas", 1))
        if sum(e.alive() for e in current) < replicas or len(current) < replicas:
            return "its server process is not running" if version else "no version is serving"
        if any(e.role == "server" and e.version != version for e in entries):
            return "processes of an interrupted rollout are still running"
        return None

    # -- plan ---------------------------------------------------------------------------------

    def plan(self, item: PlanItem, batch: Batch) -> PlannedChange:
        a, desired, live = item.address, self.declared(item), item.live
        model = Address("Model", a.namespace, desired.spec["model"]["name"])
        model_out = planned_status(batch, model)
        digest = model_out.get("digest", UNKNOWN)
        notes = self._sizing(desired, model_out)
        if live is None:
            return PlannedChange(a, Action.CREATE, "not in live state", planned_status={
                "endpoint": UNKNOWN, "modelDigest": digest}, notes=notes)
        changes = list(field_changes(live.spec, desired.spec))
        changes += field_changes(user_labels(live.labels), desired.labels, prefix="metadata.labels")
        reasons = []
        if digest != live.status.get("modelDigest"):
            changes.append(FieldChange("status.modelDigest", live.status.get("modelDigest"), digest))
            reasons.append(f"roll out: {model.short()} will be replaced" if digest is UNKNOWN
                           else f"roll out: {model.short()} changed")
        serving_changes = [c.path for c in changes if c.path.startswith("spec.")
                           and not c.path.startswith(tuple(f"spec.{f}" for f in _NOT_SERVING))]
        if serving_changes:
            reasons.append(f"roll out: {', '.join(serving_changes)} changed")
        problem = live.status.get("problem")
        if problem:
            reasons.append(f"restart: {problem}")
        planned = {"endpoint": live.status.get("endpoint"), "modelDigest": digest}
        if reasons or changes:
            return PlannedChange(a, Action.UPDATE, "; ".join(reasons) or "spec changed",
                                 tuple(changes), planned, notes)
        return PlannedChange(a, Action.NOOP, "serving the current model", (), planned)

    def _sizing(self, desired: Resource, model_out: Mapping[str, Any]) -> tuple[str, ...]:
        count, bits = model_out.get("parameterCount"), model_out.get("parameterBits")
        if not isinstance(count, int) or not isinstance(bits, int):
            return ("sizing: the model's size is known only after it is built or fetched",)
        quant = (desired.spec.get("quantization") or {}).get("bits")
        estimate = serving(ModelSize(count, bits, "the model"), quant)
        gpu = (desired.spec.get("resources") or {}).get("gpu")
        replicas = int(desired.spec.get("replicas", 1))
        note = check_fits(estimate, self.machine.host(), f"ModelServer {desired.name!r}", gpu)
        return (note + (f" (each of {replicas} replicas)" if replicas > 1 else ""),)

    # -- apply --------------------------------------------------------------------------------

    def apply(self, request: ApplyRequest) -> LiveObject:
        """Create or roll out; a failure raises ApplyFailed with the record as it stands."""
        address, desired = request.address, self.desired_of(request)
        labels = self.machine.labels(desired)
        current = self.records.get(address)
        model = Address("Model", address.namespace, desired.spec["model"]["name"])
        model_record = self.records.get(model)
        digest = model_record.status.get("digest") if model_record else None
        if not digest:
            raise ApplyFailed(f"{model.short()} has no artifact yet: apply it first", current)
        version = version_of(desired.spec, str(digest))
        old = [e for e in self.book.entries(address) if e.role == "server"]
        serving = [e for e in old if e.version == version and e.alive()]
        replicas = int(desired.spec.get("replicas", 1))
        if len(serving) != replicas:  # before the router starts: a refusal changes nothing
            require_program("server", "serving", tuple(desired.spec.get("command") or ()))
        try:
            client, port = self._router(address, current)
        except ProviderError as e:
            raise ApplyFailed(e.message, current) from None
        status = {"endpoint": f"http://127.0.0.1:{port}", "port": port,
                  "version": current.status.get("version") if current else None,
                  "modelDigest": current.status.get("modelDigest") if current else None}
        if current is None:  # written before any server starts: a crash leaks nothing untracked
            current = self.records.put(address, spec=desired.spec, status=status, labels=labels,
                                       new_object=True)
        if len(serving) != replicas:  # else only strays of an interrupted rollout go, below
            serving, error = self._start_version(address, desired, str(digest), version, replicas,
                                                 request.progress)
            if error is not None:
                was = status["version"]
                where = (f"; version {was} is still serving at {status['endpoint']}" if was
                         and self.problem(current) is None else "")
                raise ApplyFailed(error + where, current)
        retired = [e for e in old if e not in serving]
        try:
            client.set_backends([e.port for e in serving if e.port is not None], version)
            for r in retired:
                if r.port is not None:
                    client.drain(r.port, DRAIN_SECONDS)
        except RouterError as e:
            self.book.stop(address, [s for s in serving if s not in old])
            raise ApplyFailed(f"could not switch the router to version {version}: {e}",
                              current) from None
        self.book.stop(address, retired)
        for stale in {e.version for e in retired} - {version}:
            shutil.rmtree(self.machine.root / "content" / address.kind / address.namespace
                          / address.name / stale, ignore_errors=True)
        status.update(version=version, modelDigest=str(digest))
        return self.records.put(address, spec=desired.spec, status=status, labels=labels,
                                new_object=False)

    def _router(self, address: Address, current: LiveObject | None) -> tuple[RouterClient, int]:
        entries = self.book.entries(address)
        state_file = self._dir(address) / "router.json"
        for e in entries:
            if e.role == "router" and e.alive() and e.port is not None:
                return RouterClient(state_file), e.port
        self.book.stop(address, [e for e in entries if e.role == "router"])
        port = int(current.status["port"]) if current and current.status.get("port") else \
            processes.free_port()
        state_file.unlink(missing_ok=True)
        log = self.runtime.log_path(address, new_run_id(), "router")
        ref = processes.spawn(router_command(port, state_file), env=None,
                              cwd=self.runtime.workdir, log_path=log)
        self.book.add(address, Entry("router", ref, str(log), port))
        client = RouterClient(state_file)
        try:
            client.wait_ready(15.0, process=ref)
        except RouterError as e:
            raise ProviderError(f"the router for port {port} did not start: "
                                f"{processes.log_tail(log)} ({e})") from None
        return client, port

    def _start_version(self, address: Address, desired: Resource, digest: str, version: str,
                       replicas: int, progress: StepProgress) -> tuple[list[Entry], str | None]:
        spec = desired.spec
        # What runs of this version is short of replicas (an interrupted rollout, a replica that
        # died): it starts over.
        self.book.stop(address, [e for e in self.book.entries(address)
                                 if e.role == "server" and e.version == version])
        env = secret_env.env_of(spec, self.machine.resolve_secret)
        env["SUBSTRATUS_MODEL_NAME"] = spec["model"]["name"]
        quant = (spec.get("quantization") or {}).get("bits")
        if quant:
            env["SUBSTRATUS_QUANTIZATION_BITS"] = str(quant)
        w = Workload(address, "server", "server", tuple(spec.get("command") or ()),
                     spec.get("params") or {}, env, {"model": digest})
        content = self.runtime.prepare(w, version, progress)
        run_id = new_run_id()
        timeout = float((spec.get("rollout") or {}).get("readinessTimeoutSeconds", 300))
        started = []
        for i in range(replicas):
            port = processes.free_port()
            log = self.runtime.log_path(address, run_id, f"replica{i}")
            started.append(self.runtime.start(w, content, log, port=port, version=version))
        for e in started:
            reason = processes.wait_healthy(f"http://127.0.0.1:{e.port}/health", e.ref,
                                            e.log, timeout)
            if reason is not None:
                self.book.stop(address, started)
                return [], f"new version {version} did not become ready: {reason}"
        failpoints.hit("local.server.new-version-ready")
        return started, None

    def delete(self, request: ApplyRequest) -> None:
        address = request.address
        self.book.stop_all(address)
        shutil.rmtree(self._dir(address), ignore_errors=True)
        self.runtime.clear(address)
        self.records.delete(address)

    def ready(self, live: LiveObject) -> Readiness:
        problem = self.problem(live)
        if problem is not None:
            return Readiness(False, failed=True, message=problem)
        if int(live.spec.get("replicas", 1)) == 0:
            return Readiness(True, message="scaled to zero: the router answers 503")
        url = f"{live.status['endpoint']}/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - our own localhost
                if r.status == 200:
                    return Readiness(True, message=f"serving at {live.status['endpoint']}")
        except OSError as e:
            return Readiness(False, message=f"{url}: {e}")
        return Readiness(False, message=f"{url} is not answering 200 yet")

    def _dir(self, address: Address) -> Path:
        return self.machine.root / "servers" / address.namespace / address.name
