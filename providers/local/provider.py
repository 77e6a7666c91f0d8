"""The local provider: ML kinds on this machine, live objects as records under `.substratus/runtime/`."""

from __future__ import annotations

from collections.abc import Sequence

from substratus_cli.action import Action
from substratus_cli.artifacts import StatCache, open_store
from substratus_cli.diagnostics import Diagnostic, Subject
from substratus_cli.exitcodes import SubstratusError
from substratus_cli.provider import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PART_OF_LABEL,
    ApplyRequest,
    ApplyResponse,
    LiveObject,
    PlanItem,
    PlannedChange,
    ProviderContext,
    Readiness,
    ReadRequest,
    ReadResponse,
)
from substratus_cli.resource import Resource
from substratus_providers.local.dataset import DatasetPlanner
from substratus_providers.local.records import RecordStore

NOT_YET = ("Model", "ModelServer", "Notebook")


class LocalProvider:
    name = "local"
    kinds = frozenset({"Dataset", *NOT_YET})

    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        self.records = RecordStore(context.data_dir / "runtime" / "objects")
        self._datasets: DatasetPlanner | None = None

    @property
    def datasets(self) -> DatasetPlanner:
        if self._datasets is None:
            store = open_store(self.context.artifacts_url, self.context.workdir)
            cache = StatCache(self.context.data_dir / "cache" / "stat.json")
            self._datasets = DatasetPlanner(self.context.workdir, store, cache,
                                            self.context.resolve_secret)
        return self._datasets

    def check(self, resources: Sequence[Resource]) -> Sequence[Diagnostic]:
        out = []
        for r in resources:
            if r.kind in NOT_YET:
                out.append(Diagnostic(
                    f"{r.kind} {r.name!r}: the local runtime cannot run {r.kind} resources yet",
                    "this version of substratus snapshots Datasets on the local runtime; models, "
                    "training, servers and notebooks are not built yet",
                    Subject(r.file, r.line, "kind")))
            elif r.kind == "Dataset" and "source" not in r.spec:
                out.append(Diagnostic(
                    f"Dataset {r.name!r}: loader images cannot run on the local runtime yet",
                    "give a `source` (path, url or huggingface) instead of an image or build",
                    Subject(r.file, r.line_of("spec"), "spec.source")))
        return out

    def read(self, request: ReadRequest) -> ReadResponse:
        listed = self.records.list(request.kind)
        wanted = set(request.addresses)
        objects = {a: o for a, o in listed.items()
                   if a in wanted or (request.part_of and o.owner == request.part_of)}
        return ReadResponse(objects, requests=1)

    def plan(self, items: Sequence[PlanItem]) -> Sequence[PlannedChange]:
        return [self.datasets.plan(item) for item in items if item.address.kind == "Dataset"]

    def apply(self, request: ApplyRequest) -> ApplyResponse:
        a = request.address
        if request.action is Action.DELETE:
            self.records.delete(a)
            return ApplyResponse(None)
        desired = request.desired
        assert desired is not None, f"{request.action} of {a} without a desired resource"
        labels = {**desired.labels, MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                  PART_OF_LABEL: self.context.part_of}
        try:
            if request.action is Action.UPDATE and request.live is not None:
                status = dict(request.live.status)
            else:
                status = self.datasets.snapshot(desired.spec, request.planned_status.get("digest"))
        except SubstratusError as e:
            hint = f" ({e.hint})" if e.hint else ""
            return ApplyResponse(request.live, error=e.message + hint)
        live = self.records.put(a, spec=desired.spec, status=status, labels=labels,
                                new_object=request.action is not Action.UPDATE)
        return ApplyResponse(live)

    def ready(self, live: LiveObject) -> Readiness:
        digest = live.status.get("digest")
        if digest and self.datasets.store.has_snapshot(str(digest)):
            return Readiness(True, message=f"snapshot {digest}")
        return Readiness(False, failed=True, message=f"snapshot {digest} is not in the store")
