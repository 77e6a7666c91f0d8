"""The provider contract (v2): five batch-shaped verbs, one frozen request and response per verb.

A provider owns some kinds on one runtime. The engine never imports a provider's internals; it
calls these verbs through a `Registry` that `wiring.py` composes once per run. A read that cannot
tell whether an object exists raises ProviderError; it never answers "absent". What a provider
carries from read to plan to apply travels in `private` values the engine never looks into.
"""

from __future__ import annotations

import dataclasses
import graphlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from substratus_artifacts.layout import StoreError
from substratus_artifacts.progress import Progress
from substratus_artifacts.store import Store
from substratus_cli.action import Action, FieldChange
from substratus_cli.address import Address
from substratus_cli.config.schema import EnvironmentSpec
from substratus_cli.cost import HourlyCost
from substratus_cli.diagnostics import Severity
from substratus_cli.errors import ProviderError, SubstratusError
from substratus_cli.resource import Resource

# Labels every object substratus creates carries (ApplySet style): never adopt or delete without them.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "substratus"
PART_OF_LABEL = "substratus.ai/part-of"

# What a provider hands itself from one verb to the next: JSON values only (a saved plan keeps a
# PlannedChange's), opaque to the engine.
Private = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class LiveObject:
    """What exists now, as the provider reads it."""

    address: Address
    spec: Mapping[str, Any]
    # Outputs that are not part of the spec: snapshot digest, endpoint, pid, port.
    status: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Changes whenever anyone writes the object (uid + version, resourceVersion, generation):
    # what tells a saved plan it is stale.
    fingerprint: str = ""
    # A digest of what substratus manages in the object (its fields, not another tool's
    # annotations): what tells drift. Empty: any write is drift (the fingerprint stands for it).
    content: str = ""
    # The provider's own view of the object (the raw API objects), for its plan and apply.
    private: Private = dataclasses.field(default_factory=dict)

    @property
    def owner(self) -> str | None:
        """The part-of id of the substratus workspace that manages it, or None if unmanaged."""
        if self.labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
            return None
        return self.labels.get(PART_OF_LABEL)


@dataclasses.dataclass(frozen=True)
class ProviderDiagnostic:
    """A problem a provider found. It names the address and the field path; the engine, which
    holds the files, places it at file:line. `path` None: not about a place in the files."""

    summary: str
    detail: str = ""
    address: Address | None = None
    path: str | None = None
    severity: Severity = Severity.ERROR

    @classmethod
    def of(cls, error: SubstratusError | StoreError, address: Address | None = None,
           path: str | None = None) -> ProviderDiagnostic:
        return cls(error.message, error.hint or "", address, path)


@dataclasses.dataclass(frozen=True)
class ClusterAccess:
    """How to reach a Kubernetes cluster that another provider made (a GKE Cluster resource)."""

    name: str  # what to call it in messages: "GKE cluster gke (proj/us-central1)"
    server: str  # https://host[:port]
    ca_pem: str  # the cluster's CA certificate (public)
    token: Callable[[], str]  # a bearer token, refreshed as it expires; never stored


@dataclasses.dataclass(frozen=True)
class JobRun:
    """How a Job run to its end by `ClusterJobs.run` ended."""

    succeeded: bool
    message: str  # "Job complete", or why it failed (the readiness gate's words)
    last_lines: tuple[str, ...] = ()  # of its failed container (its termination message)


class ClusterJobs(Protocol):
    """Runs a Job to its end on the runtime's cluster: what the kubernetes runtime lends another
    provider (the images provider's kaniko builds), so that it neither talks to the cluster
    itself nor waits on Jobs its own way."""

    def run(self, manifest: Mapping[str, Any], timeout: float) -> JobRun:
        """Replaces the Job of that name (if this workspace owns it), creates `manifest` and waits
        for it, through the runtime's own readiness gate, for `timeout` seconds at most."""
        ...


def wait_until_ready(check: Callable[[], Readiness], timeout: float,
                     waiting: Callable[[str], None] | None = None,
                     stop: threading.Event | None = None) -> str | None:
    """Asks `check` with a growing pause (0.1 s, doubling, 5 s at most) until it answers ready
    (None), failed, or `timeout` seconds pass (why not, as a message). `waiting` is told each
    message of a not-ready answer (a rollout's state, for the heartbeat). Once `stop` is set
    (the first Ctrl-C), it waits no more: the object is applied, only not ready yet."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        readiness = check()
        if readiness.ready:
            return None
        if readiness.failed:
            return f"not ready: {readiness.message}"
        if waiting is not None and readiness.message:
            waiting(readiness.message)
        if time.monotonic() + delay > deadline:
            return f"not ready after {timeout:.0f}s: {readiness.message}"
        if stop is not None and stop.wait(delay):
            return (f"interrupted before it was ready ({readiness.message}); it was applied, and "
                    "the next plan shows where it stands")
        if stop is None:
            time.sleep(delay)
        delay = min(delay * 2, 5.0)


@dataclasses.dataclass(frozen=True)
class ProviderContext:
    """What a provider is handed when it is built: where it runs and for whom."""

    workdir: Path  # the directory of resource files; relative paths resolve against it
    data_dir: Path  # the workspace's `.substratus/` folder
    part_of: str  # the workspace's ownership id, stamped on every object created
    artifacts_url: str
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # Environment.spec
    resolve_secret: Callable[[str, str], str] | None = None  # (name, key) -> value, apply only
    # Opens the store `artifacts_url` names (file:// or gs://, by the store package).
    open_artifacts: Callable[[], Store] | None = None
    # The cluster the Environment names (`kubernetes.cluster`), None while it does not exist;
    # unset when the Environment gives a kubeconfig context instead.
    cluster_access: Callable[[], ClusterAccess | None] | None = None
    # The kubernetes runtime's Jobs (None on the local runtime): in-cluster image builds.
    cluster_jobs: ClusterJobs | None = None

    def artifact_store(self) -> Store:
        if self.open_artifacts is None:
            raise ProviderError(f"no artifact store is wired for {self.artifacts_url}")
        return self.open_artifacts()


# -- progress: what a working step tells the person watching ---------------------------------

@runtime_checkable
class StepProgress(Progress, Protocol):
    """Handed to a provider with each plan item and apply step. `meter` (the store package's
    Progress) draws a bar for bytes hashed, copied, uploaded or downloaded; `status` replaces the
    step's status line, which apply's heartbeat shows every 10 s beside the time elapsed (the
    latest training metric "step=120 loss=0.41", a rollout's "1 of 2 new replicas available").
    Both may be called from any thread, as often as the work goes; they never raise."""

    def status(self, text: str) -> None: ...


class _Quiet:
    def status(self, text: str) -> None:
        pass

    def meter(self, operation: str, total: int) -> _Quiet:
        return self

    def advance(self, nbytes: int, /) -> None:
        pass

    def close(self) -> None:
        pass


QUIET: StepProgress = _Quiet()  # nobody watching (tests, benchmarks, the default)


def unwatched(address: Address) -> StepProgress:
    """PlanRequest's default: no progress for any address."""
    return QUIET


# -- check ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CheckRequest:
    resources: tuple[Resource, ...]  # this provider's kinds only


@dataclasses.dataclass(frozen=True)
class CheckResponse:
    """What cannot run here (a kind on this runtime, an unsupported source), each with its field."""

    diagnostics: tuple[ProviderDiagnostic, ...] = ()


# -- read -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ReadRequest:
    kind: str
    addresses: tuple[Address, ...]
    # Also return every object of this kind labelled part-of this id, even if not asked for.
    part_of: str
    # The workspace's resources (every kind) and, per address, the status recorded at its last
    # apply: where a provider whose API names objects by more than an address (a GKE cluster's
    # project and location) finds them, also once they have left the files.
    resources: Mapping[Address, Resource] = dataclasses.field(default_factory=dict)
    recorded: Mapping[Address, Mapping[str, Any]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ReadResponse:
    objects: Mapping[Address, LiveObject]  # an address missing here does not exist
    requests: int = 1  # API requests spent (benchmarks report it)


# -- plan -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PlanItem:
    address: Address
    desired: Resource | None  # None: the object should not exist
    live: LiveObject | None


@dataclasses.dataclass(frozen=True)
class PlanRequest:
    items: tuple[PlanItem, ...]  # this provider's addresses, desired or live
    # Every resource of the workspace (any kind): what a plan may size against (declared pools).
    resources: tuple[Resource, ...] = ()
    # What the providers planned before this one (the registry's order: infrastructure and
    # images first): the changes of other kinds an item may read, an image's digest.
    upstream: Mapping[Address, PlannedChange] = dataclasses.field(default_factory=dict)
    # Where planning an item tells how it goes (the files of a path source being hashed).
    progress: Callable[[Address], StepProgress] = unwatched


@dataclasses.dataclass(frozen=True)
class PlannedChange:
    address: Address
    action: Action
    reason: str = ""
    field_changes: tuple[FieldChange, ...] = ()
    # Outputs shown to the user ahead of apply (a path snapshot's digest), or UNKNOWN.
    planned_status: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Lines printed under the change, e.g. the GPU sizing arithmetic.
    notes: tuple[str, ...] = ()
    # What apply must render again exactly as planned (versions, chosen GPU); saved with a plan.
    private: Private = dataclasses.field(default_factory=dict)
    # Lines printed under it only when asked (`plan --verbose`): notes that say nothing is done.
    details: tuple[str, ...] = ()
    # What the object costs an hour before and after the change, when the provider prices it
    # (a GKE node pool); the plan's summary adds them up.
    cost: HourlyCost | None = None


@dataclasses.dataclass(frozen=True)
class PlanResponse:
    changes: tuple[PlannedChange, ...]  # exactly one per item
    # An error here fails the plan, placed at the resource's file:line.
    diagnostics: tuple[ProviderDiagnostic, ...] = ()


def in_dependency_order(items: Sequence[PlanItem], kind_order: Sequence[str]) -> list[PlanItem]:
    """`items` by kind (in `kind_order`), then by the references among them (a model trained
    from another model after it): the order a provider plans a batch in, so each item can be
    handed what the items it reads will be."""
    by_address = {i.address: i for i in items}
    sorter: graphlib.TopologicalSorter[Address] = graphlib.TopologicalSorter()
    for i in items:
        refs = i.desired.refs if i.desired else ()
        sorter.add(i.address, *[r for r in refs if r in by_address])
    position = {a: n for n, a in enumerate(sorter.static_order())}
    rank = {k: n for n, k in enumerate(kind_order)}
    return sorted(items, key=lambda i: (rank.get(i.address.kind, len(rank)), position[i.address]))


# -- apply ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ApplyRequest:
    address: Address
    action: Action
    desired: Resource | None
    live: LiveObject | None  # as read for the plan (or, for a saved plan, just before apply)
    planned_status: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    private: Private = dataclasses.field(default_factory=dict)  # the PlannedChange's
    # The status of each address this one depends on, as recorded after its own apply in this
    # run (or an earlier one): what was "known after apply" at plan time, an image's digest.
    upstream: Mapping[Address, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    # Where the step tells how it goes: bytes copied or uploaded, the latest training metric.
    progress: StepProgress = QUIET
    # Set at the first Ctrl-C (SIGINT/SIGTERM): a step that can stop without leaving anything
    # behind (a download) stops and fails at once, so the run ends and releases its lock; others
    # finish.
    interrupted: threading.Event = dataclasses.field(default_factory=threading.Event)


@dataclasses.dataclass(frozen=True)
class ApplyResponse:
    # The object after the change (None after a delete). A failed apply still returns the most
    # recent live object it knows of, so the inventory and the next plan converge.
    live: LiveObject | None
    diagnostics: tuple[ProviderDiagnostic, ...] = ()  # an error: the step failed

    @classmethod
    def failed(cls, live: LiveObject | None, error: SubstratusError | StoreError,
               path: str | None = None) -> ApplyResponse:
        return cls(live, (ProviderDiagnostic.of(error, live.address if live else None, path),))

    @property
    def errors(self) -> list[ProviderDiagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]


# -- ready ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ReadyRequest:
    live: LiveObject  # as apply returned it, private included


@dataclasses.dataclass(frozen=True)
class Readiness:
    """The answer to a ReadyRequest: ready, still coming (asked again), or failed for good."""

    ready: bool
    failed: bool = False
    message: str = ""


@runtime_checkable
class Provider(Protocol):
    name: str
    kinds: frozenset[str]

    def check(self, request: CheckRequest) -> CheckResponse: ...

    def read(self, request: ReadRequest) -> ReadResponse: ...

    def plan(self, request: PlanRequest) -> PlanResponse: ...

    def apply(self, request: ApplyRequest) -> ApplyResponse: ...

    def ready(self, request: ReadyRequest) -> Readiness: ...


# -- one handler per kind: the shape a provider's verbs delegate to --------------------------

@dataclasses.dataclass
class Batch:
    """One PlanRequest as a provider's handlers see it, item by item in dependency order: what was
    planned so far in this batch (a dataset's digest, a version, a cluster's place)."""

    request: PlanRequest
    planned: dict[Address, PlannedChange] = dataclasses.field(default_factory=dict)

    def desired(self, address: Address) -> Resource | None:
        """The resource declared at `address`, from this batch or the workspace's other kinds."""
        for item in self.request.items:
            if item.address == address:
                return item.desired
        return next((r for r in self.request.resources if r.address == address), None)


class ApplyFailed(ProviderError):
    """A handler's apply that failed after changing something: `live` is the object as it stands
    (a server still on its old version), so the inventory and the next plan converge."""

    def __init__(self, message: str, live: LiveObject | None, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.live = live


@runtime_checkable
class KindHandler(Protocol):
    """One kind's half of a provider. The provider is a {kind: handler} table; its verbs call these
    (`plan_batch` and `apply_with` below do it the same way for every provider)."""

    def read(self, request: ReadRequest) -> ReadResponse: ...

    def plan(self, item: PlanItem, batch: Batch) -> PlannedChange:
        """The change for a declared resource (`item.desired` is set; deletes are planned by
        `plan_batch`). Raises ProviderError for what cannot be planned."""
        ...

    def apply(self, request: ApplyRequest) -> LiveObject:
        """Create, update or replace; the object as it is after. Raises SubstratusError or
        StoreError (ApplyFailed to say what stands after a partial change)."""
        ...

    def delete(self, request: ApplyRequest) -> None: ...

    def ready(self, live: LiveObject) -> Readiness: ...


def plan_batch(handlers: Mapping[str, KindHandler], request: PlanRequest,
               kind_order: Sequence[str]) -> PlanResponse:
    """Each item planned by its kind's handler, in dependency order; an undeclared one deleted."""
    batch = Batch(request)
    for item in in_dependency_order(request.items, kind_order):
        if item.desired is None:
            change = PlannedChange(item.address, Action.DELETE, "not in the resource files")
        else:
            change = handlers[item.address.kind].plan(item, batch)
        batch.planned[item.address] = change
    return PlanResponse(tuple(batch.planned[i.address] for i in request.items))


def apply_with(handler: KindHandler, request: ApplyRequest,
               path: str | None = None) -> ApplyResponse:
    """The handler's apply or delete as an ApplyResponse: a failure keeps the most recent live
    object, and its diagnostic names `path` (placed at file:line) when given."""
    try:
        if request.action is Action.DELETE:
            handler.delete(request)
            return ApplyResponse(None)
        return ApplyResponse(handler.apply(request))
    except ApplyFailed as e:
        return ApplyResponse(e.live, (ProviderDiagnostic.of(e, request.address, path),))
    except (SubstratusError, StoreError) as e:
        return ApplyResponse(request.live, (ProviderDiagnostic.of(e, request.address, path),))


class HandlerTable:
    """The verbs of a provider that is a {kind: handler} table: read, plan, apply and ready go to
    the handler of the kind (check stays the provider's own). A handler's ready that raises
    answers a failed readiness with the error's message."""

    handlers: Mapping[str, KindHandler]
    kind_order: Sequence[str] = ()  # the order a plan batch is planned in (see plan_batch)
    failure_path: str | None = None  # where an apply failure is placed (see apply_with)

    def read(self, request: ReadRequest) -> ReadResponse:
        return self.handlers[request.kind].read(request)

    def plan(self, request: PlanRequest) -> PlanResponse:
        return plan_batch(self.handlers, request, self.kind_order)

    def apply(self, request: ApplyRequest) -> ApplyResponse:
        return apply_with(self.handlers[request.address.kind], request, self.failure_path)

    def ready(self, request: ReadyRequest) -> Readiness:
        live = request.live
        try:
            return self.handlers[live.address.kind].ready(live)
        except (SubstratusError, StoreError) as e:
            return Readiness(False, failed=True, message=e.message)


class Registry:
    """kind -> provider, for one run of one workspace (built once by wiring)."""

    def __init__(self, providers: Sequence[Provider]) -> None:
        self.providers = list(providers)
        self._by_kind = {k: p for p in providers for k in p.kinds}

    def for_kind(self, kind: str) -> Provider | None:
        return self._by_kind.get(kind)

    def __getitem__(self, kind: str) -> Provider:
        provider = self._by_kind.get(kind)
        if provider is None:
            raise ProviderError(f"no provider can run {kind} objects in this environment")
        return provider


# -- optional capabilities: a provider has one when it implements the method (isinstance) -----

@runtime_checkable
class LogSource(Protocol):
    def logs(self, address: Address, *, follow: bool) -> Iterator[str]:
        """The output of the object's most recent workload run, line by line. With `follow`,
        keep yielding lines until the workload exits. Raises ProviderError when there are none."""
        ...


@runtime_checkable
class Opener(Protocol):
    def open_url(self, address: Address) -> str:
        """A URL a person can open in a browser, access token included (never stored in state)."""
        ...


@runtime_checkable
class Targeted(Protocol):
    def endpoint(self) -> str:
        """What this provider runs against (API server URL and cluster id): a saved plan made
        against another endpoint is refused. Reaching it may fail with ProviderError."""
        ...


@runtime_checkable
class Expander(Protocol):
    def expand(self, resources: Sequence[Resource],
               environment: EnvironmentSpec) -> Sequence[Resource]:
        """The resources the files declare plus those they imply (a GPU node pool for a sized
        workload), with the reference edges to them. Called once when a workspace is opened."""
        ...
