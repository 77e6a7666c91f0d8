"""The provider contract: five batch-shaped verbs over frozen request/response values.

A provider owns some kinds on one runtime. The engine never imports a provider's internals; it
calls these verbs through `wiring.py`. A read that cannot tell whether an object exists raises
ProviderError; it never answers "absent".
"""

from __future__ import annotations

import dataclasses
import graphlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from substratus_artifacts.store import Store
from substratus_cli.action import Action, FieldChange
from substratus_cli.address import Address
from substratus_cli.diagnostics import Diagnostic
from substratus_cli.exitcodes import ProviderError
from substratus_cli.resource import Resource

# Labels every object substratus creates carries (ApplySet style): never adopt or delete without them.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "substratus"
PART_OF_LABEL = "substratus.ai/part-of"


@dataclasses.dataclass(frozen=True)
class LiveObject:
    """What exists now, as the provider reads it."""

    address: Address
    spec: Mapping[str, Any]
    # Outputs that are not part of the spec: snapshot digest, endpoint, pid, port.
    status: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Changes whenever anyone writes the object (uid + version, resourceVersion, generation).
    fingerprint: str = ""

    @property
    def owner(self) -> str | None:
        """The part-of id of the substratus workspace that manages it, or None if unmanaged."""
        if self.labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
            return None
        return self.labels.get(PART_OF_LABEL)


@dataclasses.dataclass(frozen=True)
class ClusterAccess:
    """How to reach a Kubernetes cluster that another provider made (a GKE Cluster resource)."""

    name: str  # what to call it in messages: "GKE cluster gke (proj/us-central1)"
    server: str  # https://host[:port]
    ca_pem: str  # the cluster's CA certificate (public)
    token: Callable[[], str]  # a bearer token, refreshed as it expires; never stored


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

    def artifact_store(self) -> Store:
        if self.open_artifacts is None:
            raise ProviderError(f"no artifact store is wired for {self.artifacts_url}")
        return self.open_artifacts()


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


@dataclasses.dataclass(frozen=True)
class PlanItem:
    address: Address
    desired: Resource | None  # None: the object should not exist
    live: LiveObject | None


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


@dataclasses.dataclass(frozen=True)
class PlannedChange:
    address: Address
    action: Action
    reason: str = ""
    field_changes: tuple[FieldChange, ...] = ()
    # Outputs the provider can compute ahead of apply (a path snapshot's digest) or UNKNOWN.
    planned_status: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Lines printed under the change, e.g. the GPU sizing arithmetic.
    notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ApplyRequest:
    address: Address
    action: Action
    desired: Resource | None
    live: LiveObject | None
    planned_status: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ApplyResponse:
    # The object after the change (None after a delete). A failed apply still returns the most
    # recent live object it knows of, so the inventory and the next plan converge.
    live: LiveObject | None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class Readiness:
    ready: bool
    failed: bool = False
    message: str = ""


@runtime_checkable
class Provider(Protocol):
    name: str
    kinds: frozenset[str]

    def check(self, resources: Sequence[Resource]) -> Sequence[Diagnostic]:
        """Refuse what this provider cannot run (kind on this runtime, unsupported source)."""
        ...

    def read(self, request: ReadRequest) -> ReadResponse: ...

    def plan(self, items: Sequence[PlanItem]) -> Sequence[PlannedChange]: ...

    def apply(self, request: ApplyRequest) -> ApplyResponse: ...

    def ready(self, live: LiveObject) -> Readiness: ...


# Optional capabilities: a provider has them when it implements the method (checked with isinstance).


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
