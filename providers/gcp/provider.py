"""The gcp provider: Cluster and NodePool on GKE (`clusters.py`, `nodepools.py`, through `gke.py`)
and Bucket on Cloud Storage (`buckets.py`), under every runtime. The Google client libraries are
imported on first use, so a workspace without these kinds never loads them.

Credentials: Application Default Credentials; $SUBSTRATUS_GKE_ENDPOINT points the GKE client at
another API (the tests' fake) with anonymous credentials, $STORAGE_EMULATOR_HOST the storage
client. $SUBSTRATUS_GKE_POLL_SECONDS sets how often a running GKE operation is polled (5 s)."""

from __future__ import annotations

import base64
import dataclasses
import importlib.util
import os
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from substratus_cli.action import Action
from substratus_cli.address import INFRA_KINDS
from substratus_cli.config.schema import EnvironmentSpec
from substratus_cli.errors import ProviderError, UsageError
from substratus_cli.extras import install_command
from substratus_cli.provider import (
    CheckRequest,
    CheckResponse,
    ClusterAccess,
    HandlerTable,
    KindHandler,
    PlanRequest,
    PlanResponse,
    ProviderContext,
    ProviderDiagnostic,
)
from substratus_cli.resource import Resource
from substratus_providers.gcp.ownership import label_problems
from substratus_providers.gcp.places import declared_place

if TYPE_CHECKING:
    import google.cloud.storage as storage

    from substratus_providers.gcp.gke import GKE

POLL_ENV = "SUBSTRATUS_GKE_POLL_SECONDS"
DEFAULT_POLL_SECONDS = 5.0
_LIBRARIES = {"Cluster": ("google.cloud.container_v1", "google-cloud-container"),
              "NodePool": ("google.cloud.container_v1", "google-cloud-container"),
              "Bucket": ("google.cloud.storage", "google-cloud-storage")}
_GKE_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?")


class GCPProvider(HandlerTable):
    name = "gcp"
    kinds = frozenset(INFRA_KINDS)
    kind_order = INFRA_KINDS
    # Placed at the resource's file:line: GKE's answers name only the cluster or pool.
    failure_path = ""

    def __init__(self, context: ProviderContext, *, gke: GKE | None = None,
                 storage_client: storage.Client | None = None) -> None:
        self.context = context
        self._gke, self._storage = gke, storage_client
        self._lock = threading.Lock()  # apply steps share the clients across threads
        self.handlers = Handlers({"Cluster": self._clusters, "NodePool": self._node_pools,
                                  "Bucket": self._buckets})

    # -- clients, made on first use ------------------------------------------------------------

    def gke(self) -> GKE:
        with self._lock:
            if self._gke is None:
                from substratus_providers.gcp.gke import GKE

                self._gke = GKE.connect(poll_interval=poll_seconds())
            return self._gke

    def storage(self) -> storage.Client:
        with self._lock:
            if self._storage is None:
                import google.cloud.storage as storage

                from substratus_providers.gcp.gcs import gcs_errors

                where = os.environ.get("STORAGE_EMULATOR_HOST") or "storage.googleapis.com"
                with gcs_errors("connect to Cloud Storage", where):
                    self._storage = storage.Client()
            return self._storage

    # The handlers' makers: each imports its module, and with it the Google library, when first
    # asked for.

    def _clusters(self) -> KindHandler:
        from substratus_providers.gcp.clusters import Clusters

        return Clusters(self.gke, self.context.part_of)

    def _node_pools(self) -> KindHandler:
        from substratus_providers.gcp.nodepools import NodePools

        return NodePools(self.gke, self.context.part_of)

    def _buckets(self) -> KindHandler:
        from substratus_providers.gcp.buckets import Buckets

        return Buckets(self.storage, self.context.part_of)

    # -- what the kubernetes runtime needs of a Cluster --------------------------------------

    def cluster_access(self, cluster: Resource) -> ClusterAccess | None:
        """How to reach the cluster `cluster` declares: its endpoint and CA from GKE, and a bearer
        token from Application Default Credentials. None while it does not exist or is not
        RUNNING yet (a plan then plans creates; the apply runs after the Cluster's step)."""
        from substratus_providers.gcp.gke import ClusterRef

        place = declared_place(cluster)
        ref = ClusterRef(place.project, place.location, place.name)
        live = self.gke().get_cluster(ref)
        if live is None or live.status.name != "RUNNING" or not live.endpoint:
            return None
        ca = base64.b64decode(live.master_auth.cluster_ca_certificate).decode()
        return ClusterAccess(name=str(ref), server=f"https://{live.endpoint}", ca_pem=ca,
                             token=_adc_token_source(str(ref)))

    # -- the contract --------------------------------------------------------------------------

    def plan(self, request: PlanRequest) -> PlanResponse:
        """The handlers' plan, and what each node pool deleted stops costing."""
        response = super().plan(request)
        if not any(c.action is Action.DELETE and c.address.kind == "NodePool"
                   for c in response.changes):
            return response
        from substratus_providers.gcp.nodepools import with_delete_cost

        live = {i.address: i.live for i in request.items}
        return dataclasses.replace(response, changes=tuple(
            with_delete_cost(c, live.get(c.address)) for c in response.changes))

    def expand(self, resources: Sequence[Resource],
               environment: EnvironmentSpec) -> list[Resource]:
        from substratus_providers.gcp.expand import expand

        return expand(resources, environment)

    def check(self, request: CheckRequest) -> CheckResponse:
        resources = request.resources
        out = [*_missing_libraries(resources), *_duplicates(resources)]
        for r in resources:
            name, labels = "metadata.name", "metadata.labels"
            if r.kind in ("Cluster", "NodePool") and not _GKE_NAME.fullmatch(r.name):
                out.append(ProviderDiagnostic(
                    f"{r.kind} {r.name!r}: GKE names are at most 40 lowercase letters, digits "
                    "and '-', starting with a letter", "", r.address, name))
            if r.kind in ("Cluster", "NodePool") and r.labels:
                out.append(ProviderDiagnostic(
                    f"{r.kind} {r.name!r}: labels on GKE clusters and node pools are not built "
                    "yet", "remove metadata.labels (GKE resources carry only substratus's "
                    "ownership labels for now)", r.address, labels))
            if r.kind == "NodePool":
                out += _pool_problems(r, resources)
            if r.kind == "Bucket":
                if r.name.startswith("goog") or "google" in r.name or len(r.name) < 3:
                    out.append(ProviderDiagnostic(
                        f"Bucket {r.name!r}: not a Cloud Storage bucket name",
                        "bucket names have 3 to 63 characters and neither start with \"goog\" "
                        "nor contain \"google\"", r.address, name))
                out += [ProviderDiagnostic(f"Bucket {r.name!r}: {p}", "", r.address, labels)
                        for p in label_problems(r.labels)]
        return CheckResponse(tuple(out))



class Handlers(Mapping[str, KindHandler]):
    """The {kind: handler} table, each handler made on first use (thread safe: apply steps run
    in threads)."""

    def __init__(self, makers: Mapping[str, Callable[[], KindHandler]]) -> None:
        self._makers = makers
        self._made: dict[str, KindHandler] = {}
        self._lock = threading.Lock()

    def __getitem__(self, kind: str) -> KindHandler:
        with self._lock:
            if kind not in self._made:
                try:
                    self._made[kind] = self._makers[kind]()
                except ImportError as e:  # a kind the state holds, though the files no longer do
                    raise ProviderError(
                        f"{kind} objects need the gcp extra ({e.name} is not installed): the "
                        "state holds some", hint=install_command("gcp")) from None
            return self._made[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)


def poll_seconds() -> float:
    raw = os.environ.get(POLL_ENV, "").strip()
    if not raw:
        return DEFAULT_POLL_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise UsageError(f"{POLL_ENV}={raw!r}: expected a number of seconds greater than 0")
    return value


def _missing_libraries(resources: Sequence[Resource]) -> list[ProviderDiagnostic]:
    out = []
    for r in resources:
        module, package = _LIBRARIES[r.kind]
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            out.append(ProviderDiagnostic(
                f"{r.kind} {r.name!r} needs {package}, which is not installed",
                install_command("gcp"), r.address, "kind"))
    return out


def _pool_problems(pool: Resource, resources: Sequence[Resource]) -> list[ProviderDiagnostic]:
    """A GPU the machine cannot take, a count GKE does not allow, a GPU type or zone GKE does not
    offer where the pool's cluster is: refused now, not by GKE halfway through an apply."""
    from substratus_providers.gcp.machines import gpu_problems

    name = str((pool.spec.get("cluster") or {}).get("name"))
    cluster = next((r for r in resources if r.kind == "Cluster" and r.name == name
                    and r.address.namespace == pool.address.namespace), None)
    if cluster is None:
        return []  # the loader refuses a reference to a cluster that is not declared
    return [ProviderDiagnostic(f"NodePool {pool.name!r}: {message}", "", pool.address, path)
            for path, message in gpu_problems(pool.spec, str(cluster.spec["location"]))]


def _duplicates(resources: Sequence[Resource]) -> list[ProviderDiagnostic]:
    """Two resources that would be one GKE cluster (namespaces do not separate them) or one
    bucket (bucket names are global)."""
    seen: dict[Any, list[Resource]] = defaultdict(list)
    for r in resources:
        if r.kind == "Cluster" and r.spec.get("project") and r.spec.get("location"):
            seen[("Cluster", declared_place(r))].append(r)
        elif r.kind == "Bucket":
            seen[("Bucket", r.name)].append(r)
    out = []
    for (kind, what), rs in seen.items():
        first = rs[0]
        for other in rs[1:]:
            out.append(ProviderDiagnostic(
                f"{kind} {other.address} is the same {'GKE cluster' if kind == 'Cluster' else 'bucket'} "
                f"({what}) as {first.address} at {first.file}:{first.line}",
                "rename one of them", other.address, "metadata.name"))
    return out


def _adc_token_source(what: str) -> Callable[[], str]:
    """Bearer tokens for a GKE cluster from Application Default Credentials, refreshed when they
    expire (the same credentials `gcloud container clusters get-credentials` makes kubectl use)."""
    import google.auth
    import google.auth.transport.requests
    from google.auth import exceptions as auth_exc

    from substratus_artifacts.gcs import CREDENTIALS_HINT

    lock = threading.Lock()
    state: dict[str, Any] = {}

    def token() -> str:
        with lock:
            try:
                if "credentials" not in state:
                    state["credentials"], _ = google.auth.default(
                        scopes=["https://www.googleapis.com/auth/cloud-platform"])
                credentials = state["credentials"]
                if not credentials.valid:
                    credentials.refresh(google.auth.transport.requests.Request())
            except auth_exc.GoogleAuthError as e:
                raise ProviderError(f"cannot get a token for {what}: {e}",
                                    hint=CREDENTIALS_HINT) from None
            return str(credentials.token)

    return token
