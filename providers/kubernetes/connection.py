"""The kubernetes provider's connection, shared by its handlers: the cluster's client (made on
first use), the artifact store, what the cluster offers a plan, and ownership and deletion of the
objects at a resource's names."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence

from substratus_artifacts.statcache import StatCache
from substratus_artifacts.store import Store
from substratus_cli import __version__
from substratus_cli.address import Address
from substratus_cli.errors import ProviderError
from substratus_cli.provider import Batch, ProviderContext, ReadRequest
from substratus_cli.resource import Resource
from substratus_cli.sizing import declared_gpus, gpu_pool_capacity
from substratus_providers.kubernetes.client import Client
from substratus_providers.kubernetes.desired import Cluster
from substratus_providers.kubernetes.gpus import catalogued, offered, pools_to_come
from substratus_providers.kubernetes.live import Lists, Obj, get_any, key
from substratus_providers.kubernetes.manifests import MANAGED_BY, PART_OF

DELETE_WAIT_SECONDS = 120.0


@dataclasses.dataclass(frozen=True)
class PlanContext:
    """What every item of one plan batch is planned against, made once per batch."""

    cluster: Cluster  # with the GPUs the nodes and the declared node pools offer
    models: Mapping[Address, Resource]  # the batch's Models, which size their servers
    cache: StatCache  # the stat cache the digests of files on this machine are taken with


class Connection:
    """One cluster and one artifact store for all of the provider's kinds. Thread safe."""

    def __init__(self, context: ProviderContext, client: Client | None = None) -> None:
        self.context = context
        settings = dict(context.settings.get("kubernetes") or {})
        self.kube_context: str | None = settings.get("context")
        self.namespace: str = settings.get("namespace") or "default"
        self._client = client
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._namespaces: set[str] = set()
        # The batch planned last and its context: one LIST of Nodes per batch, not per item.
        self._planning: tuple[Batch, PlanContext] | None = None
        # The LIST answers of the reads of one round (see round_lists).
        self._round: tuple[Mapping[Address, Resource], Lists] | None = None

    @property
    def client(self) -> Client:
        client = self.connect()
        if client is None:
            raise ProviderError("the cluster the Environment names does not exist yet",
                                hint="apply its Cluster first (one apply does both, in order)")
        return client

    def connect(self) -> Client | None:
        """The kubeconfig context's cluster, or the one the Environment names through a Cluster
        resource: None while that one does not exist (asked again next time)."""
        with self._lock:
            if self._client is None:
                access = self.context.cluster_access
                if access is None:
                    self._client = Client.from_kubeconfig(context=self.kube_context)
                elif (found := access()) is not None:
                    self._client = Client.from_access(found.name, found.server, found.ca_pem,
                                                      found.token)
            return self._client

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = self.context.artifact_store()
            return self._store

    def stat_cache(self) -> StatCache:
        return StatCache(self.context.data_dir / "cache" / "stat.json")

    def cluster(self, resources: Sequence[Resource] = ()) -> Cluster:
        """The workspace, and the GPU types the cluster's nodes offer (one LIST of Nodes) and the
        NodePools among `resources` will; with no resources (apply), the workspace only."""
        per_node: dict[str, int] = {}
        to_come: dict[str, str] = {}
        if resources:
            client = self.connect()
            # A cluster still to be created offers no GPU yet.
            nodes = client.list("v1", "Node")[0] if client is not None else []
            # What the nodes offer, and what declared node pools will (scaled to zero, or not
            # created yet): a workload sized for such a pool is scheduled when a node comes.
            per_node = declared_gpus(resources)
            on_nodes = offered(nodes)
            for kind, count in on_nodes.items():
                per_node[kind] = max(count, per_node.get(kind, 0))
            to_come = pools_to_come(resources, on_nodes)
        accelerators, _ = catalogued(per_node)
        return Cluster(part_of=self.context.part_of,
                       registry=str(self.context.settings.get("registry") or "substratus"),
                       image_tag=__version__, accelerators=accelerators, per_node=per_node,
                       to_come=to_come, pools=gpu_pool_capacity(resources))

    def planning(self, batch: Batch) -> PlanContext:
        """The context `batch` is planned in (plans run one at a time)."""
        if self._planning is None or self._planning[0] is not batch:
            items = batch.request.items
            models = {i.address: i.desired for i in items
                      if i.desired is not None and i.address.kind == "Model"}
            self._planning = (batch, PlanContext(self.cluster(batch.request.resources), models,
                                                 self.stat_cache()))
        return self._planning[1]

    def round_lists(self, request: ReadRequest) -> Lists:
        """The LIST answers shared by the reads of one round: the engine reads kind after kind
        handing each read the same `resources` mapping, so a Job list made for Datasets serves
        the Models read next. A read with other `resources` (the next plan) lists afresh."""
        with self._lock:
            if self._round is None or self._round[0] is not request.resources:
                self._round = (request.resources, {})
            return self._round[1]

    def endpoint(self) -> str:
        client = self.connect()
        if client is None:
            return "a cluster not created yet"
        server, uid = client.identity()
        return f"{server} (kube-system {uid})"

    # -- objects at a resource's names ---------------------------------------------------------

    def owned(self, a: Address) -> dict[str, Obj]:
        """The objects at the resource's names that this workspace owns; others are left alone."""
        return {k: o for k, o in get_any(self.client, a).items() if self.ours(o)}

    def ours(self, obj: Obj) -> bool:
        meta_labels = (obj.get("metadata") or {}).get("labels") or {}
        return (meta_labels.get(MANAGED_BY) == "substratus"
                and meta_labels.get(PART_OF) == self.context.part_of)

    def delete(self, a: Address, objects: Mapping[str, Obj]) -> None:
        """Deletes `objects` and waits until they are gone."""
        for obj in objects.values():
            self.client.delete(obj["apiVersion"], obj["kind"], a.namespace,
                               obj["metadata"]["name"])
        deadline = time.monotonic() + DELETE_WAIT_SECONDS
        for obj in objects.values():
            while self.client.get(obj["apiVersion"], obj["kind"], a.namespace,
                                  obj["metadata"]["name"]) is not None:
                if time.monotonic() > deadline:
                    raise ProviderError(f"{key(obj)} in {a.namespace} is still being deleted "
                                        f"after {DELETE_WAIT_SECONDS:.0f} s")
                time.sleep(0.2)

    def ensure_namespace(self, namespace: str) -> None:
        if namespace in self._namespaces:
            return
        self.client.create_namespace_if_missing(
            namespace, {MANAGED_BY: "substratus", PART_OF: self.context.part_of})
        self._namespaces.add(namespace)
