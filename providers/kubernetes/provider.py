"""The kubernetes provider: Dataset and Model as Jobs (or, for files on this machine, a snapshot
uploaded to the artifact store and recorded in a ConfigMap), ModelServer as a Deployment and a
Service, Notebook as a StatefulSet and a Service. Server-side apply as field manager `substratus`.

Requests: a read is one LIST per (object kind, namespace), plus one GET per object kind for a
resource that is not found (to refuse an object of the same name that we do not own). A plan
sends a dry-run apply only for an object whose normalized live form differs from its manifest,
so a plan with no changes sends no write at all."""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from substratus_artifacts.layout import StoreError
from substratus_artifacts.snapshots import snapshot_tree
from substratus_artifacts.statcache import StatCache
from substratus_artifacts.store import Store
from substratus_cli import __version__
from substratus_cli.action import Action, FieldChange
from substratus_cli.address import ML_KINDS, Address
from substratus_cli.diff import field_changes, spec_hash
from substratus_cli.errors import ProviderError, SubstratusError
from substratus_cli.provider import (
    ApplyRequest,
    ApplyResponse,
    CheckRequest,
    CheckResponse,
    LiveObject,
    PlanItem,
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
from substratus_cli.resource import Resource
from substratus_cli.sizing import declared_gpus, declared_size
from substratus_providers.kubernetes import readiness
from substratus_providers.kubernetes.client import Client
from substratus_providers.kubernetes.desired import (
    Cluster,
    Desired,
    Planned,
    build,
    desired,
    inputs_of,
    path_digest,
    ref_name,
)
from substratus_providers.kubernetes.gpus import catalogued, offered
from substratus_providers.kubernetes.live import (
    Obj,
    get_any,
    key,
    list_owned,
    live_object,
    objects_of,
)
from substratus_providers.kubernetes.manifests import (
    KIND_LABEL,
    MANAGED_BY,
    NAME_LABEL,
    PART_OF,
    SPEC_HASH,
    RenderContext,
    labels,
    object_name,
    token_secret_name,
    uploads,
)
from substratus_providers.kubernetes.normalize import normalize
from substratus_providers.kubernetes.pods import user_env

DELETE_WAIT_SECONDS = 120.0
# Annotations that say which spec and version an object was written for: they change with
# every change, and the change itself is what a plan shows.
QUIET_PATHS = (f"metadata.annotations.{SPEC_HASH}",)


class KubernetesProvider:
    name = "kubernetes"
    kinds = frozenset(ML_KINDS)

    def __init__(self, context: ProviderContext, client: Client | None = None) -> None:
        self.context = context
        settings = dict(context.settings.get("kubernetes") or {})
        self.kube_context: str | None = settings.get("context")
        self.namespace: str = settings.get("namespace") or "default"
        self._client = client
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._namespaces: set[str] = set()

    # -- connections, made on first use ------------------------------------------------------

    @property
    def client(self) -> Client:
        client = self._connect()
        if client is None:
            raise ProviderError("the cluster the Environment names does not exist yet",
                                hint="apply its Cluster first (one apply does both, in order)")
        return client

    def _connect(self) -> Client | None:
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

    def cluster(self, resources: Sequence[Resource] = ()) -> Cluster:
        """The workspace, and the GPU types the cluster's nodes offer (one LIST of Nodes) and the
        NodePools among `resources` will; with no resources (apply), the workspace only."""
        per_node: dict[str, int] = {}
        if resources:
            client = self._connect()
            # A cluster still to be created offers no GPU yet.
            nodes = client.list("v1", "Node")[0] if client is not None else []
            # What the nodes offer, and what declared node pools will (scaled to zero, or not
            # created yet): a workload sized for such a pool is scheduled when a node comes.
            per_node = declared_gpus(resources)
            for kind, count in offered(nodes).items():
                per_node[kind] = max(count, per_node.get(kind, 0))
        accelerators, _ = catalogued(per_node)
        return Cluster(part_of=self.context.part_of,
                       registry=str(self.context.settings.get("registry") or "substratus"),
                       image_tag=__version__, accelerators=accelerators, per_node=per_node)

    def endpoint(self) -> str:
        client = self._connect()
        if client is None:
            return "a cluster not created yet"
        server, uid = client.identity()
        return f"{server} (kube-system {uid})"

    # -- check ---------------------------------------------------------------------------------

    def check(self, request: CheckRequest) -> CheckResponse:
        out = []
        for r in request.resources:
            if r.spec.get("build"):
                out.append(ProviderDiagnostic(
                    f"{r.kind} {r.name!r}: image builds are not built yet on the kubernetes runtime",
                    "build and push the image yourself and give it as spec.image",
                    r.address, "spec.build"))
            try:
                user_env(r.spec.get("env") or {})
            except ValueError as e:
                out.append(ProviderDiagnostic(f"{r.kind} {r.name!r}: {e}", "", r.address,
                                              "spec.env"))
        return CheckResponse(tuple(out))

    # -- read ----------------------------------------------------------------------------------

    def read(self, request: ReadRequest) -> ReadResponse:
        if self._connect() is None:
            return ReadResponse({}, requests=0)  # nothing can run on a cluster not made yet
        before = self.client.requests
        namespaces = sorted({a.namespace for a in request.addresses} | {self.namespace})
        found: dict[Address, dict[str, Obj]] = {}
        for namespace in namespaces:
            found.update(list_owned(self.client, request.kind, namespace, request.part_of))
        for a in request.addresses:
            if a not in found and (others := get_any(self.client, a)):
                found[a] = others
        objects = {a: live_object(a, objs) for a, objs in found.items()}
        return ReadResponse(objects, requests=self.client.requests - before)

    # -- plan ----------------------------------------------------------------------------------

    def plan(self, request: PlanRequest) -> PlanResponse:
        items = request.items
        models = {i.desired.address: i.desired for i in items
                  if i.desired is not None and i.address.kind == "Model"}
        cluster = self.cluster(request.resources)
        cache = StatCache(self.context.data_dir / "cache" / "stat.json")
        planned: dict[Address, tuple[str, str]] = {}  # address -> (ref name, version)
        out = []
        for item in in_dependency_order(items, ML_KINDS):
            r = item.desired
            if r is None:
                out.append(PlannedChange(item.address, Action.DELETE, "not in the resource files"))
                continue
            versions = {}
            for role, dep in inputs_of(r).items():
                if dep not in planned:
                    raise ProviderError(f"{r.kind} {r.name!r} reads {dep.short()}, which is not "
                                        "planned with it", hint="plan without -target")
                versions[role] = planned[dep]
            digest = path_digest(r, self.context.workdir, cache) if uploads(r) else None
            with _as_provider_error(r):
                want = desired(r, cluster, self.store, versions, declared_size(r, models),
                               digest)
            planned[r.address] = (ref_name(r.address, want.version), want.version)
            out.append(self._compare(item, r, want))
        return PlanResponse(tuple(out))

    def _compare(self, item: PlanItem, r: Resource, want: Desired) -> PlannedChange:
        notes = (want.note,) if want.note else ()
        status, private = want.planned_status, want.planned.to_private()
        live = objects_of(item.live)
        if not live:
            return PlannedChange(item.address, Action.CREATE, "", (), status, notes, private)
        changes: list[FieldChange] = []
        replace = False
        wanted = {m["kind"]: m for m in want.manifests}
        for kind, manifest in wanted.items():
            obj = live.get(kind)
            if obj is None:
                changes.append(FieldChange(key(manifest), None, "(new object)"))
                replace = replace or kind == "Job"
                continue
            diff = self._object_diff(manifest, obj)
            changes.extend(diff)
            replace = replace or (kind == "Job" and bool(diff))
        for kind, obj in live.items():
            if kind not in wanted:
                changes.append(FieldChange(key(obj), "(object)", None, forces_replacement=True))
                replace = True
        if not changes:
            return PlannedChange(item.address, Action.NOOP, "", (), status, notes, private)
        action = Action.REPLACE if replace else Action.UPDATE
        return PlannedChange(item.address, action, _reason(r, live, want, replace),
                             tuple(changes), status, notes, private)

    def _object_diff(self, manifest: Obj, obj: Obj) -> tuple[FieldChange, ...]:
        """The fields of `obj` that applying `manifest` would change, as the server sees it."""
        have = normalize(obj, manifest)
        if normalize(manifest) == have:
            return ()
        kind = manifest["kind"]
        if kind == "Job":
            # Its template is immutable: the server refuses even a dry run of a change, and
            # any change means a new Job.
            after = normalize(manifest)
        else:
            answer = self.client.apply(manifest, dry_run=True, force=True)
            after = normalize({"apiVersion": manifest["apiVersion"], "kind": kind, **answer},
                              manifest)
            if after == have:
                return ()
        changes = field_changes(_by_name(have), _by_name(after), prefix=kind,
                                forces_replacement=lambda p: kind == "Job")
        return tuple(c for c in changes
                     if not any(c.path == f"{kind}.{q}" for q in QUIET_PATHS))

    # -- apply ---------------------------------------------------------------------------------

    def apply(self, request: ApplyRequest) -> ApplyResponse:
        a = request.address
        try:
            if request.action is Action.DELETE:
                self._delete(a, self._owned(a))
                return ApplyResponse(None)
            assert request.desired is not None, f"{request.action} of {a} without a resource"
            return ApplyResponse(self._write(request, request.desired))
        except (SubstratusError, StoreError) as e:
            return ApplyResponse.failed(request.live, e)

    def _write(self, request: ApplyRequest, r: Resource) -> LiveObject:
        a = request.address
        planned = Planned.from_private(request.private)
        with _as_provider_error(r):
            want = build(r, self.cluster(), planned)
        self._ensure_namespace(a.namespace)
        if uploads(r):
            self._upload(r, planned)
        live = self._owned(a)
        wanted = {m["kind"] for m in want.manifests}
        if request.action is Action.REPLACE:
            self._delete(a, live)
        else:
            self._delete(a, {k: o for k, o in live.items() if k not in wanted})
        if r.kind == "Notebook":
            self._ensure_token(r)
        answers = {}
        for manifest in want.manifests:
            answer = self.client.apply(manifest, force=True)
            answers[manifest["kind"]] = {"apiVersion": manifest["apiVersion"],
                                         "kind": manifest["kind"], **answer}
        return live_object(a, answers)

    def _upload(self, r: Resource, planned: Planned) -> None:
        cache = StatCache(self.context.data_dir / "cache" / "stat.json")
        result = snapshot_tree(self.context.workdir / str(r.spec["source"]["path"]), self.store,
                               cache)
        if planned.digest and result.digest != planned.digest:
            raise ProviderError(f"the files of {r.kind} {r.name!r} changed since the plan "
                                f"(planned {planned.digest}, now {result.digest})",
                                hint="plan again")
        self.store.put_ref(ref_name(r.address, planned.version), result.digest)

    def _owned(self, a: Address) -> dict[str, Obj]:
        """The objects at the resource's names that this workspace owns; others are left alone."""
        return {k: o for k, o in get_any(self.client, a).items() if self._ours(o)}

    def _ours(self, obj: Obj) -> bool:
        meta_labels = (obj.get("metadata") or {}).get("labels") or {}
        return (meta_labels.get(MANAGED_BY) == "substratus"
                and meta_labels.get(PART_OF) == self.context.part_of)

    def _delete(self, a: Address, objects: Mapping[str, Obj]) -> None:
        if a.kind == "Notebook":
            secret = self.client.get("v1", "Secret", a.namespace, token_secret_name(a.name))
            if secret is not None and self._ours(secret):
                objects = {**objects, "Secret": {"apiVersion": "v1", "kind": "Secret", **secret}}
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

    def _ensure_namespace(self, namespace: str) -> None:
        if namespace in self._namespaces:
            return
        self.client.create_namespace_if_missing(
            namespace, {MANAGED_BY: "substratus", PART_OF: self.context.part_of})
        self._namespaces.add(namespace)

    def _ensure_token(self, r: Resource) -> None:
        """The Notebook's access token, made once and kept in a Secret (never in state)."""
        name = token_secret_name(r.name)
        if self.client.get("v1", "Secret", r.address.namespace, name) is not None:
            return
        meta = {"name": name, "namespace": r.address.namespace,
                "labels": labels(r, RenderContext(r.address.namespace, self.context.part_of))}
        self.client.apply({"apiVersion": "v1", "kind": "Secret", "metadata": meta,
                           "type": "Opaque", "stringData": {"token": secrets.token_urlsafe(24)}})

    # -- ready ---------------------------------------------------------------------------------

    def ready(self, request: ReadyRequest) -> Readiness:
        live = request.live
        a = live.address
        primary = next(iter(objects_of(live).values()), None)
        if primary is None:
            return Readiness(False, failed=True, message=f"{a.short()} has no objects")
        kind, api_version = primary["kind"], primary["apiVersion"]
        name = object_name(a.kind, a.name)
        obj = self.client.get(api_version, kind, a.namespace, name)
        if obj is None:
            return Readiness(False, failed=True, message=f"{kind} {a.namespace}/{name} is gone")
        if kind == "ConfigMap":
            digest = (obj.get("data") or {}).get("digest", "")
            if digest and self.store.has_snapshot(digest):
                return Readiness(True, message=f"artifact {digest}")
            return Readiness(False, failed=True,
                             message=f"artifact {digest or '?'} is not in {self.store.url}")
        gate = {"Job": readiness.job, "Deployment": readiness.deployment,
                "StatefulSet": readiness.statefulset}[kind]
        answer = gate(obj, [])
        if answer.ready:
            return answer
        return gate(obj, self._pods(a, kind, name))

    def _pods(self, a: Address, kind: str, name: str) -> list[Obj]:
        selector = (f"batch.kubernetes.io/job-name={name}" if kind == "Job"
                    else f"{KIND_LABEL}={a.kind},{NAME_LABEL}={a.name}")
        pods, _ = self.client.list("v1", "Pod", a.namespace, label_selector=selector)
        return pods


@contextlib.contextmanager
def _as_provider_error(r: Resource) -> Iterator[None]:
    """What cannot run on Kubernetes as declared (ValueError from rendering), named in the files."""
    try:
        yield
    except ValueError as e:
        raise ProviderError(f"{r.file}:{r.line}: {r.kind} {r.name!r}: {e}") from None


def _reason(r: Resource, live: Mapping[str, Obj], want: Desired, replace: bool) -> str:
    primary = next(iter(live.values()))
    annotations = (primary.get("metadata") or {}).get("annotations") or {}
    same_spec = annotations.get(SPEC_HASH) == spec_hash(r.spec, r.labels)
    why = ""
    if same_spec and uploads(r):
        why = f"the files at {r.spec['source']['path']} changed"
    elif same_spec:
        live_inputs = _input_urls(primary)
        changed = sorted(role for role, url in want.inputs.items() if live_inputs.get(role) != url)
        if changed:
            why = "a new version of its " + " and ".join(changed) + " input"
    if replace and primary.get("kind") == "Job":
        runs = "a Job cannot be changed, so it runs again"
        return f"{why}; {runs}" if why else runs
    wanted = [m["kind"] for m in want.manifests]
    if replace and primary.get("kind") not in wanted:
        # A path source is a ConfigMap, any other a Job: the one goes, the other comes.
        made = f"it is now made of a {' and a '.join(wanted)}, not a {primary.get('kind')}"
        return f"{why}; {made}" if why else made
    return why


def _input_urls(obj: Obj) -> dict[str, str]:
    out = {}
    template = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    for c in template.get("containers") or []:
        for e in c.get("env") or []:
            name = str(e.get("name", ""))
            if name.startswith("SUBSTRATUS_INPUT_") and name.endswith("_URL"):
                out[name.removeprefix("SUBSTRATUS_INPUT_").removesuffix("_URL").lower()] = \
                    str(e.get("value", ""))
    return out


def _by_name(value: Any) -> Any:
    """Lists of named items (containers, env, ports, volumes) as maps by name, so a plan says
    `containers.server.env.PARAM_X.value`, not `containers.0.env.3.value`."""
    if isinstance(value, dict):
        return {k: _by_name(v) for k, v in value.items()}
    if isinstance(value, list):
        names = [v.get("name") for v in value if isinstance(v, dict)]
        if value and len(names) == len(value) and all(names) and len(set(names)) == len(names):
            return {v["name"]: _by_name({k: x for k, x in v.items() if k != "name"})
                    for v in value}
        return [_by_name(v) for v in value]
    return value
