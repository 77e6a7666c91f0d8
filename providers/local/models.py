"""Model on the local runtime: imported (path, url, huggingface), built from scratch, or trained
from a base model and a dataset. The output is an immutable, content-addressed model artifact."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from substratus_artifacts.layout import StoreError
from substratus_artifacts.snapshots import SnapshotResult
from substratus_cli.action import UNKNOWN, Action, FieldChange
from substratus_cli.address import Address
from substratus_cli.diff import field_changes, matches_prefix
from substratus_cli.errors import ProviderError, SubstratusError
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
from substratus_cli.sizing import ModelSize, training
from substratus_providers.local import secret_env
from substratus_providers.local.host import check_fits, scratch_size, weights_size
from substratus_providers.local.machine import (
    RecordedKind,
    artifact_readiness,
    damage_reason,
    discard_damaged,
    planned_status,
    user_labels,
)
from substratus_providers.local.runs import Workload, require_program
from substratus_providers.local.sources import fetch_snapshot, plan_digest

# What goes into the artifact: changing any of it makes a new one. size and resources do not.
REPLACE_FIELDS = ("spec.source", "spec.training", "spec.image", "spec.build", "spec.command",
                  "spec.params", "spec.env")
INPUTS = {"baseModel": ("baseModelDigest", "Model"), "dataset": ("datasetDigest", "Dataset")}


class Models(RecordedKind):
    # -- plan ---------------------------------------------------------------------------------

    def plan(self, item: PlanItem, batch: Batch) -> PlannedChange:
        a, desired, live = item.address, self.declared(item), item.live
        inputs = self._planned_inputs(desired, batch)
        size = self._planned_size(desired, batch)
        notes = self._sizing_notes(desired, size)
        source = desired.spec.get("source") or {}
        content = (plan_digest(source, self.machine.workdir, self.machine.cache, "model",
                               batch.request.progress(a))
                   if source.get("path") is not None else UNKNOWN)
        planned: dict[str, Any] = {"digest": content, **inputs}
        if size is not None:
            planned.update(parameterCount=size.parameter_count, parameterBits=size.parameter_bits)
        if live is None:
            return PlannedChange(a, Action.CREATE, "not in live state", planned_status=planned,
                                 notes=notes)
        changes = list(field_changes(live.spec, desired.spec,
                                     forces_replacement=lambda p: matches_prefix(p, REPLACE_FIELDS)))
        changes += field_changes(user_labels(live.labels), desired.labels, prefix="metadata.labels")
        reasons = [f"{', '.join(c.path for c in changes if c.forces_replacement)} changed: "
                   "a model artifact is immutable, so it is built again"] if any(
            c.forces_replacement for c in changes) else []
        building = live.status.get("phase") == "Building"
        for field, (key, kind) in INPUTS.items():
            if building or key not in inputs or inputs[key] == live.status.get(key):
                continue
            changes.append(FieldChange(f"status.{key}", live.status.get(key), inputs[key], True))
            dep = Address(kind, a.namespace, desired.spec["training"][field]["name"]).short()
            reasons.append(f"{dep} will be replaced, so the model is trained again"
                           if inputs[key] is UNKNOWN else
                           f"{dep} changed, so the model is trained again")
        live_digest = live.status.get("digest")
        if building:
            changes.append(FieldChange("status.digest", None, content, True))
            reasons.append("its last build or training did not finish")
        elif content is not UNKNOWN and content != live_digest:
            changes.append(FieldChange("status.digest", live_digest, content, True))
            reasons.append("source content changed")
        if not reasons and live_digest and not self.machine.store.has_snapshot(str(live_digest)):
            changes.append(FieldChange("status.digest", live_digest, UNKNOWN, True))
            reasons.append(f"artifact {live_digest} is missing from the artifact store")
        damaged = not reasons and live_digest and \
            self.machine.store.damaged(str(live_digest), self.machine.cache)
        if damaged:
            changes.append(FieldChange("status.digest", live_digest, UNKNOWN, True))
            reasons.append(damage_reason(str(live_digest), damaged))
        if reasons:
            return PlannedChange(a, Action.REPLACE, "; ".join(reasons), tuple(changes), planned,
                                 notes)
        kept = {k: v for k, v in live.status.items() if k in ("digest", "parameterCount",
                                                                "parameterBits")}
        if changes:
            return PlannedChange(a, Action.UPDATE, "spec changed", tuple(changes), kept, notes)
        return PlannedChange(a, Action.NOOP, "digest unchanged", (), kept)

    def _planned_inputs(self, desired: Resource, batch: Batch) -> dict[str, Any]:
        training_spec = desired.spec.get("training")
        if not training_spec:
            return {}
        out = {}
        for field, (key, kind) in INPUTS.items():
            dep = Address(kind, desired.address.namespace, training_spec[field]["name"])
            out[key] = planned_status(batch, dep).get("digest", UNKNOWN)
        return out

    def _planned_size(self, desired: Resource, batch: Batch) -> ModelSize | None:
        spec = desired.spec
        if spec.get("size"):
            return ModelSize(spec["size"]["parameterCount"], spec["size"]["parameterBits"],
                             "spec.size")
        source = spec.get("source") or {}
        if source.get("scratch") is not None:
            return scratch_size(source["scratch"].get("config") or {})
        if source.get("path") is not None:
            return weights_size(self.machine.workdir / str(source["path"]))
        if spec.get("training"):
            base = Address("Model", desired.address.namespace,
                           spec["training"]["baseModel"]["name"])
            return _size_of(planned_status(batch, base))
        return None

    def _sizing_notes(self, desired: Resource, size: ModelSize | None) -> tuple[str, ...]:
        if not desired.spec.get("training"):
            return ()
        if size is None:
            return ("sizing: the base model's size is known only after it is fetched; set "
                    "spec.size to check it at plan time",)
        gpu = (desired.spec.get("resources") or {}).get("gpu")
        return (check_fits(training(size), self.machine.host(), f"Model {desired.name!r} training",
                           gpu),)

    # -- apply --------------------------------------------------------------------------------

    def apply(self, request: ApplyRequest) -> LiveObject:
        a, desired, m = request.address, self.desired_of(request), self.machine
        labels = m.labels(desired)
        if request.action is Action.UPDATE and request.live is not None:
            return m.records.put(a, spec=desired.spec, status=request.live.status, labels=labels,
                                 new_object=False)  # no input changed: the artifact stays
        program = _program(desired.spec)
        if program is not None:  # before anything is stopped or recorded: a refusal changes nothing
            require_program(*program, tuple(desired.spec.get("command") or ()))
        m.book.stop_all(a)  # a build or training left running by a crashed apply
        discard_damaged(m.store, request.live, m.cache)
        # Recorded before the run: a crash or failure leaves an object the next plan sees (and
        # rebuilds), and destroy finds the processes behind it.
        building = m.records.put(a, spec=desired.spec, status={"phase": "Building"},
                                 labels=labels, new_object=True)
        try:
            status = self._build(desired, request.planned_status.get("digest"), request.progress,
                                 request.interrupted)
        except (SubstratusError, StoreError) as e:
            raise ApplyFailed(e.message, building, hint=e.hint) from e
        return m.records.put(a, spec=desired.spec, status=status, labels=labels, new_object=False)

    def _build(self, desired: Resource, planned_digest: Any,
               progress: StepProgress, interrupted: threading.Event) -> dict[str, Any]:
        """Make the model artifact; returns the status to record."""
        spec, m = desired.spec, self.machine
        env = secret_env.env_of(spec, m.resolve_secret)
        status: dict[str, Any] = {}
        if spec.get("training"):
            status.update(self._inputs_now(desired))
            result = m.runtime.run_to_completion(Workload(
                desired.address, "run", "trainer", tuple(spec.get("command") or ()),
                {**(spec["training"].get("params") or {}), **(spec.get("params") or {})}, env,
                {"model": status["baseModelDigest"], "data": status["datasetDigest"]},
            ), "training", progress=progress)
        elif (spec.get("source") or {}).get("scratch") is not None:
            result = m.runtime.run_to_completion(Workload(
                desired.address, "run", "scratch", tuple(spec.get("command") or ()),
                spec["source"]["scratch"].get("config") or {}, env), "the scratch model build",
                progress=progress)
        else:
            result = fetch_snapshot(desired.address, spec["source"], m.workdir, m.store, m.cache,
                                    m.runtime, env, m.resolve_secret, progress, interrupted)
            if isinstance(planned_digest, str) and planned_digest != result.digest:
                raise ProviderError(
                    f"the source changed after the plan was made: planned {planned_digest}, "
                    f"found {result.digest}", hint="run plan again")
        return {**status, **self._artifact_status(result)}

    def _inputs_now(self, desired: Resource) -> dict[str, str]:
        out = {}
        for field, (key, kind) in INPUTS.items():
            dep = Address(kind, desired.address.namespace, desired.spec["training"][field]["name"])
            record = self.records.get(dep)
            digest = record.status.get("digest") if record else None
            if not digest:
                raise ProviderError(f"{dep.short()} has no artifact yet: apply it first")
            out[key] = str(digest)
        return out

    def _artifact_status(self, result: SnapshotResult) -> dict[str, Any]:
        status: dict[str, Any] = {"digest": result.digest, "files": len(result.manifest.entries),
                                  "bytes": result.manifest.total_size}
        # Count the parameters from the weights' headers, read from the store's copy (hard
        # links), in a directory of this step's own: parallel steps may make the same artifact.
        m = self.machine
        (m.root / "tmp").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=m.root / "tmp") as scratch:
            m.store.materialize(result.digest, Path(scratch))
            size = weights_size(Path(scratch))
        if size is not None:
            status.update(parameterCount=size.parameter_count, parameterBits=size.parameter_bits)
        return status

    # -- delete, ready ------------------------------------------------------------------------

    def delete(self, request: ApplyRequest) -> None:
        self.book.stop_all(request.address)
        self.runtime.clear(request.address)
        self.records.delete(request.address)

    def ready(self, live: LiveObject) -> Readiness:
        return artifact_readiness(self.machine.store, live)


def _program(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    """The workload program a model's apply runs and what to call it; None when the store alone
    (or the loader, which needs no extra) makes the artifact."""
    if spec.get("training"):
        return "trainer", "training"
    if (spec.get("source") or {}).get("scratch") is not None:
        return "scratch", "the scratch model build"
    return None


def _size_of(status: Mapping[str, Any]) -> ModelSize | None:
    count, bits = status.get("parameterCount"), status.get("parameterBits")
    if isinstance(count, int) and isinstance(bits, int):
        return ModelSize(count, bits, "the base model's weights")
    return None
