"""The kubernetes provider's handlers: `Workloads` for what every ML kind shares (read, plan, apply,
delete, ready), with `Artifacts` (a Dataset or Model from files on this machine: a snapshot
uploaded to the artifact store, recorded in a ConfigMap) and `Notebooks` (the token Secret)."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import Iterator, Mapping

from substratus_artifacts.snapshots import snapshot_tree
from substratus_cli.action import Action
from substratus_cli.address import Address
from substratus_cli.errors import ProviderError
from substratus_cli.provider import (
    ApplyRequest,
    Batch,
    LiveObject,
    PlanItem,
    PlannedChange,
    Readiness,
    ReadRequest,
    ReadResponse,
    StepProgress,
)
from substratus_cli.resource import Resource
from substratus_cli.sizing import declared_size
from substratus_providers.kubernetes import readiness
from substratus_providers.kubernetes.client import FIELD_MANAGER, Client
from substratus_providers.kubernetes.compare import planned_change
from substratus_providers.kubernetes.connection import Connection, PlanContext
from substratus_providers.kubernetes.desired import (
    BuiltImage,
    Planned,
    build,
    desired,
    inputs_of,
    path_digest,
    ref_name,
    source_root,
)
from substratus_providers.kubernetes.errors import KubernetesError
from substratus_providers.kubernetes.live import Obj, get_any, list_owned, live_object, objects_of
from substratus_providers.kubernetes.manifests import (
    KIND_LABEL,
    NAME_LABEL,
    RenderContext,
    labels,
    object_name,
    token_secret_name,
    uploads,
)


class Workloads:
    """The KindHandler of an ML kind run as Kubernetes objects (a ModelServer's Deployment and
    Service as they are; the other kinds through the subclasses below)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def read(self, request: ReadRequest) -> ReadResponse:
        if self.connection.connect() is None:
            return ReadResponse({}, requests=0)  # nothing can run on a cluster not made yet
        client = self.connection.client
        before = client.requests
        namespaces = sorted({a.namespace for a in request.addresses} |
                            {self.connection.namespace})
        found: dict[Address, dict[str, Obj]] = {}
        lists = self.connection.round_lists(request)
        for namespace in namespaces:
            found.update(list_owned(client, request.kind, namespace, request.part_of, lists))
        for a in request.addresses:
            if a not in found and (others := get_any(client, a)):
                found[a] = others
        objects = {a: live_object(a, objs) for a, objs in found.items()}
        return ReadResponse(objects, requests=client.requests - before)

    def plan(self, item: PlanItem, batch: Batch) -> PlannedChange:
        r = item.desired
        assert r is not None, f"{item.address}: deletes are planned by plan_batch"
        context = self.connection.planning(batch)
        versions = {}
        for role, dep in inputs_of(r).items():
            # What the batch planned for the input earlier (dependency order): its version.
            version = batch.planned[dep].private.get("version") if dep in batch.planned else None
            if version is None:
                raise ProviderError(f"{r.kind} {r.name!r} reads {dep.short()}, which is not "
                                    "planned with it", hint="plan without -target")
            versions[role] = (ref_name(dep, str(version)), str(version))
        digest = self._digest(r, context, batch.request.progress(item.address))
        with _as_provider_error(r):
            want = desired(r, context.cluster, self.connection.store, versions,
                           declared_size(r, context.models), digest, built_image(r, batch))
        # The client only when an object differs: a cluster not made yet has none to compare.
        return planned_change(self._dry_run, item, r, want)

    def _dry_run(self, manifest: Obj) -> Obj:
        return write(self.connection.client, manifest, dry_run=True)

    def _digest(self, r: Resource, context: PlanContext, progress: StepProgress) -> str | None:
        """The snapshot digest of the files the resource declares on this machine, if any
        (their hashing told to `progress`)."""
        return None

    def apply(self, request: ApplyRequest) -> LiveObject:
        a, r = request.address, request.desired
        assert r is not None, f"{request.action} of {a} without a resource"
        planned = pinned(Planned.from_private(request.private), request)
        with _as_provider_error(r):
            want = build(r, self.connection.cluster(), planned)
        self.connection.ensure_namespace(a.namespace)
        self._before_write(r, planned, request.progress)
        live = self.connection.owned(a)
        wanted = {m["kind"] for m in want.manifests}
        if request.action is Action.REPLACE:
            self._remove(a, live)
        else:  # only objects no longer wanted go; a notebook's token Secret stays
            self.connection.delete(a, {k: o for k, o in live.items() if k not in wanted})
        self._alongside(r)
        answers = {}
        for manifest in want.manifests:
            answer = write(self.connection.client, manifest)
            answers[manifest["kind"]] = {"apiVersion": manifest["apiVersion"],
                                         "kind": manifest["kind"], **answer}
        return live_object(a, answers)

    def _before_write(self, r: Resource, planned: Planned, progress: StepProgress) -> None:
        """What must be in place before any object is touched (an upload told to `progress`)."""

    def _alongside(self, r: Resource) -> None:
        """What the objects need that no manifest holds, made just before they are written."""

    def delete(self, request: ApplyRequest) -> None:
        self._remove(request.address, self.connection.owned(request.address))

    def _remove(self, a: Address, objects: Mapping[str, Obj]) -> None:
        self.connection.delete(a, {**objects, **self._companions(a)})

    def _companions(self, a: Address) -> dict[str, Obj]:
        """Objects of this workspace removed whenever the resource's objects are."""
        return {}

    def ready(self, live: LiveObject) -> Readiness:
        a = live.address
        primary = next(iter(objects_of(live).values()), None)
        if primary is None:
            return Readiness(False, failed=True, message=f"{a.short()} has no objects")
        kind, api_version = primary["kind"], primary["apiVersion"]
        name = object_name(a.kind, a.name)
        obj = self.connection.client.get(api_version, kind, a.namespace, name)
        if obj is None:
            return Readiness(False, failed=True, message=f"{kind} {a.namespace}/{name} is gone")
        return self._ready(a, kind, name, obj)

    def _ready(self, a: Address, kind: str, name: str, obj: Obj) -> Readiness:
        selector = (None if kind == "Job"
                    else f"{KIND_LABEL}={a.kind},{NAME_LABEL}={a.name}")
        return gated(self.connection.client, kind, a.namespace, name, obj, selector)


def gated(client: Client, kind: str, namespace: str, name: str, obj: Obj,
          selector: str | None = None) -> Readiness:
    """The readiness of a Job, Deployment or StatefulSet; its pods (a Job's by its job-name, others
    by `selector`) are listed only when it is not ready, to say why."""
    gate = {"Job": readiness.job, "Deployment": readiness.deployment,
            "StatefulSet": readiness.statefulset}[kind]
    answer = gate(obj, [])
    if answer.ready:
        return answer
    return gate(obj, pods_of(client, kind, namespace, name, selector))


def pods_of(client: Client, kind: str, namespace: str, name: str,
            selector: str | None = None) -> list[Obj]:
    if kind == "Job":
        selector = f"batch.kubernetes.io/job-name={name}"
    pods, _ = client.list("v1", "Pod", namespace, label_selector=selector)
    return pods


class Artifacts(Workloads):
    """Dataset and Model: a Job that publishes the artifact, or, for files on this machine, a
    snapshot substratus uploads itself and a ConfigMap that records its digest."""

    def _digest(self, r: Resource, context: PlanContext, progress: StepProgress) -> str | None:
        return path_digest(r, self.connection.context.workdir, context.cache, progress) \
            if uploads(r) else None

    def _before_write(self, r: Resource, planned: Planned, progress: StepProgress) -> None:
        if not uploads(r):
            return
        store = self.connection.store
        root, skip = source_root(r, self.connection.context.workdir)
        result = snapshot_tree(root, store, self.connection.stat_cache(), progress, skip)
        if planned.digest and result.digest != planned.digest:
            raise ProviderError(f"the files of {r.kind} {r.name!r} changed since the plan "
                                f"(planned {planned.digest}, now {result.digest})",
                                hint="plan again")
        store.put_ref(ref_name(r.address, planned.version), result.digest)

    def _ready(self, a: Address, kind: str, name: str, obj: Obj) -> Readiness:
        if kind != "ConfigMap":
            return super()._ready(a, kind, name, obj)
        store = self.connection.store
        digest = (obj.get("data") or {}).get("digest", "")
        if digest and store.has_snapshot(digest):
            return Readiness(True, message=f"artifact {digest}")
        return Readiness(False, failed=True,
                         message=f"artifact {digest or '?'} is not in {store.url}")


class Notebooks(Workloads):
    """Notebook: a StatefulSet and a Service, and its access token, made once and kept in a
    Secret (never in state)."""

    def _alongside(self, r: Resource) -> None:
        name = token_secret_name(r.name)
        client = self.connection.client
        if client.get("v1", "Secret", r.address.namespace, name) is not None:
            return
        context = RenderContext(r.address.namespace, self.connection.context.part_of)
        meta = {"name": name, "namespace": r.address.namespace, "labels": labels(r, context)}
        client.apply({"apiVersion": "v1", "kind": "Secret", "metadata": meta,
                      "type": "Opaque", "stringData": {"token": secrets.token_urlsafe(24)}})

    def _companions(self, a: Address) -> dict[str, Obj]:
        secret = self.connection.client.get("v1", "Secret", a.namespace,
                                            token_secret_name(a.name))
        if secret is None or not self.connection.ours(secret):
            return {}
        return {"Secret": {"apiVersion": "v1", "kind": "Secret", **secret}}


def write(client: Client, manifest: Obj, *, dry_run: bool = False) -> Obj:
    """Server-side apply of `manifest`, taking its fields back from any other field manager.

    Where another manager changed the key of an item in a list substratus sets (a `kubectl edit`
    of a Service's port or a containerPort), apply would keep that manager's item beside ours and
    the server refuses the result (`Duplicate value`). Then the lists are taken back whole: a JSON
    merge patch of the manifest (which replaces lists), the apply again, and the claim that patch
    gave substratus as an update dropped (else a field the files stop setting would stay, owned
    by it). A dry run answers what the merge patch would make; a refusal of that too is the
    apply's."""
    try:
        return client.apply(manifest, dry_run=dry_run, force=True)
    except KubernetesError as e:
        if e.status != 422:
            raise
        refused = e
    try:
        patched = client.merge_patch(manifest, dry_run=dry_run)
    except KubernetesError:
        raise refused from None
    if dry_run:
        return patched
    answer = client.apply(manifest, force=True)
    managers = (answer.get("metadata") or {}).get("managedFields") or []
    kept = [m for m in managers
            if (m.get("manager"), m.get("operation")) != (FIELD_MANAGER, "Update")]
    return client.merge_patch(manifest, {"metadata": {"managedFields": kept}})


def built_image(r: Resource, batch: Batch) -> BuiltImage | None:
    """The Image the resource's spec.build makes, as this plan planned it."""
    address = next((a for a in r.refs if a.kind == "Image"), None)
    if address is None or not r.spec.get("build"):
        return None
    change = batch.request.upstream.get(address)
    if change is None:
        raise ProviderError(f"{r.kind} {r.name!r} runs {address.short()}, which is not planned "
                            "with it", hint="plan without -target")
    status = change.planned_status
    if change.action is Action.NOOP:
        return BuiltImage(address, str(status["tag"]), str(status["ref"]), pinned=True)
    return BuiltImage(address, str(status["tag"]), str(status["image"]), pinned=False)


def pinned(planned: Planned, request: ApplyRequest) -> Planned:
    """The plan's image pinned to the digest its Image recorded when this apply pushed it."""
    if planned.image_from is None or planned.image_pinned:
        return planned
    recorded = request.upstream.get(Address.parse(planned.image_from), {})
    if not recorded.get("ref") or recorded.get("tag") != (planned.image or "").rpartition(":")[2]:
        raise ProviderError(f"{planned.image_from} has not pushed {planned.image} yet",
                            hint="apply again: it is built before what runs it")
    return dataclasses.replace(planned, image=str(recorded["ref"]), image_pinned=True)


@contextlib.contextmanager
def _as_provider_error(r: Resource) -> Iterator[None]:
    """What cannot run on Kubernetes as declared (ValueError from rendering), named in the files."""
    try:
        yield
    except ValueError as e:
        raise ProviderError(f"{r.file}:{r.line}: {r.kind} {r.name!r}: {e}") from None
