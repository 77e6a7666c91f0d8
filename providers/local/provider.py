"""The local provider: ML kinds on this machine. Live objects are records under
`.substratus/runtime/objects/`; workloads are processes whose liveness the reads check."""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Iterator
from typing import Any

from substratus_artifacts.layout import StoreError
from substratus_artifacts.statcache import StatCache
from substratus_cli.action import Action
from substratus_cli.address import ML_KINDS, Address
from substratus_cli.errors import ProviderError, SubstratusError
from substratus_cli.provider import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PART_OF_LABEL,
    ApplyRequest,
    ApplyResponse,
    CheckRequest,
    CheckResponse,
    LiveObject,
    PlannedChange,
    PlanRequest,
    PlanResponse,
    ProviderContext,
    ProviderDiagnostic,
    Readiness,
    ReadRequest,
    ReadResponse,
    ReadyRequest,
    in_dependency_order,
)
from substratus_providers.local import secret_env
from substratus_providers.local.dataset import DatasetPlanner
from substratus_providers.local.host import this_host
from substratus_providers.local.models import ModelPlanner
from substratus_providers.local.notebooks import NotebookPlanner
from substratus_providers.local.process_book import ProcessBook
from substratus_providers.local.records import RecordStore
from substratus_providers.local.runs import Runtime
from substratus_providers.local.servers import ServerPlanner

WORKLOAD_KINDS = ("Model", "ModelServer", "Notebook")


class LocalProvider:
    name = "local"
    kinds = frozenset(ML_KINDS)

    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        runtime_dir = context.data_dir / "runtime"
        self.records = RecordStore(runtime_dir / "objects")
        self.book = ProcessBook(runtime_dir / "processes")
        self._runtime_dir = runtime_dir
        self._parts: dict[str, Any] = {}

    # Built on first use: a plan of datasets only never opens what models need.
    def _part(self, name: str) -> Any:
        if name not in self._parts:
            c = self.context
            store = c.artifact_store()
            cache = StatCache(c.data_dir / "cache" / "stat.json")
            runtime = Runtime(self._runtime_dir, c.workdir, store, self.book)
            self._parts = {
                "datasets": DatasetPlanner(c.workdir, store, cache, runtime, c.resolve_secret),
                "models": ModelPlanner(c.workdir, store, cache, runtime, self.records, this_host,
                                       c.resolve_secret),
                "servers": ServerPlanner(runtime, self.records, self.book, this_host,
                                         c.resolve_secret),
                "notebooks": NotebookPlanner(runtime, self.records, self.book, c.resolve_secret),
                "runtime": runtime,
            }
        return self._parts[name]

    @property
    def datasets(self) -> DatasetPlanner:
        return self._part("datasets")

    def check(self, request: CheckRequest) -> CheckResponse:
        resources = request.resources
        out = []
        for r in resources:
            if r.kind == "Dataset" and "source" not in r.spec:
                out.append(ProviderDiagnostic(
                    f"Dataset {r.name!r}: loader images cannot run on the local runtime",
                    "give a `source` (path, url or huggingface) instead of an image or build, or "
                    "use the kubernetes runtime", r.address, "spec.source"))
            for field in ("image", "build"):
                if r.kind in WORKLOAD_KINDS and field in r.spec:
                    out.append(ProviderDiagnostic(
                        f"{r.kind} {r.name!r}: the local runtime runs workloads as processes, "
                        f"not container images (spec.{field})",
                        "remove it to use substratus's own workload, give `command` to run your "
                        "own program, or use the kubernetes runtime", r.address, f"spec.{field}"))
        workloads = [r for r in resources if r.kind in WORKLOAD_KINDS
                     and not r.spec.get("command")]
        if workloads and not _workloads_installed():
            r = workloads[0]
            out.append(ProviderDiagnostic(
                f"{r.kind} {r.name!r} needs the workloads extra (torch, transformers, jupyterlab)",
                "install it: pip install 'substratus[workloads]'", r.address, "kind"))
        return CheckResponse(tuple(out))

    def read(self, request: ReadRequest) -> ReadResponse:
        listed = self.records.list(request.kind)
        wanted = set(request.addresses)
        objects = {a: self._with_problems(o) for a, o in listed.items()
                   if a in wanted or (request.part_of and o.owner == request.part_of)}
        return ReadResponse(objects, requests=1)

    def _with_problems(self, live: LiveObject) -> LiveObject:
        """Live is the truth: a record whose processes died is not a running server."""
        planner = {"ModelServer": "servers", "Notebook": "notebooks"}.get(live.address.kind)
        problem = self._part(planner).problem(live) if planner else None
        if problem is None:
            return live
        return dataclasses.replace(live, status={**live.status, "problem": problem},
                                   fingerprint=f"{live.fingerprint}/down")

    def plan(self, request: PlanRequest) -> PlanResponse:
        outputs: dict[Address, dict[str, Any]] = {}
        out: list[PlannedChange] = []
        for item in in_dependency_order(request.items, ML_KINDS):
            kind = item.address.kind
            if item.desired is None:
                change = PlannedChange(item.address, Action.DELETE, "not in the resource files")
                out.append(change)
                continue
            # A referenced secret that is not set fails the plan, not the apply.
            secret_env.check(item.desired.spec, self.context.resolve_secret)
            if kind == "Dataset":
                change = self.datasets.plan(item)
            else:
                planner = {"Model": "models", "ModelServer": "servers",
                           "Notebook": "notebooks"}[kind]
                change = self._part(planner).plan(item, outputs)
            outputs[item.address] = dict(change.planned_status)
            out.append(change)
        return PlanResponse(tuple(out))

    def apply(self, request: ApplyRequest) -> ApplyResponse:
        a = request.address
        kind = a.kind
        if request.action is Action.DELETE:
            self._delete(a)
            return ApplyResponse(None)
        desired = request.desired
        assert desired is not None, f"{request.action} of {a} without a desired resource"
        labels = {**desired.labels, MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                  PART_OF_LABEL: self.context.part_of}
        if kind in ("ModelServer", "Notebook"):
            if kind == "ModelServer":
                live, error = self._part("servers").apply(a, desired, labels, request.live)
            else:
                live, error = self._part("notebooks").apply(a, desired, labels)
            return ApplyResponse(live, (ProviderDiagnostic(error, address=a),) if error else ())
        try:
            if request.action is Action.UPDATE and request.live is not None:
                status = {k: v for k, v in request.live.status.items() if k != "problem"}
            elif kind == "Dataset":
                status = self.datasets.snapshot(a, desired.spec,
                                                request.planned_status.get("digest"))
            else:
                self.book.stop_all(a)  # a build or training left running by a crashed apply
                # Recorded before the run: a crash or failure leaves an object the next plan
                # sees (and rebuilds), and destroy finds the processes behind it.
                request = dataclasses.replace(request, live=self.records.put(
                    a, spec=desired.spec, status={"phase": "Building"}, labels=labels,
                    new_object=True))
                status = self._part("models").build(desired, request.planned_status.get("digest"))
        except (SubstratusError, StoreError) as e:
            return ApplyResponse.failed(request.live, e)
        live = self.records.put(a, spec=desired.spec, status=status, labels=labels,
                                new_object=request.action is not Action.UPDATE and kind != "Model")
        return ApplyResponse(live)

    def _delete(self, a: Address) -> None:
        if a.kind == "ModelServer":
            self._part("servers").delete(a)
        elif a.kind == "Notebook":
            self._part("notebooks").delete(a)
        else:
            self.book.stop_all(a)
            if a.kind == "Model":
                self._part("runtime").clear(a)
            self.records.delete(a)

    def ready(self, request: ReadyRequest) -> Readiness:
        live = request.live
        if live.address.kind == "ModelServer":
            return self._part("servers").ready(live)
        if live.address.kind == "Notebook":
            return self._part("notebooks").ready(live)
        digest = live.status.get("digest")
        if digest and self.datasets.store.has_snapshot(str(digest)):
            return Readiness(True, message=f"artifact {digest}")
        return Readiness(False, failed=True, message=f"artifact {digest} is not in the store")

    # -- optional capabilities ----------------------------------------------------------------

    def logs(self, address: Address, *, follow: bool) -> Iterator[str]:
        runtime: Runtime = self._part("runtime")
        paths = runtime.latest_logs(address)
        if not paths:
            raise ProviderError(f"{address.short()} has no logs on the local runtime",
                                hint="logs are kept for model builds and training, servers and "
                                     "notebooks, from their most recent run")
        logs = {str(p) for p in paths}

        def running() -> bool:
            return follow and any(e.log in logs and e.alive()
                                  for e in self.book.entries(address))

        return runtime.follow(paths, running)

    def open_url(self, address: Address) -> str:
        if address.kind != "Notebook":
            live = self.records.get(address)
            if live is not None and live.status.get("endpoint"):
                return str(live.status["endpoint"])
            raise ProviderError(f"{address.short()} has no URL to open")
        live = self.records.get(address)
        if live is None:
            raise ProviderError(f"{address.short()} does not exist",
                                hint="run `substratus apply` first")
        return self._part("notebooks").open_url(self._with_problems(live))



def _workloads_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None
               for m in ("torch", "transformers", "substratus_workloads"))
