"""Resources as Kubernetes manifests (plain dicts): Dataset and Model as Jobs, a ModelServer as a
Deployment and a Service, a Notebook as a StatefulSet and a Service. Pure and deterministic."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from substratus_cli.diff import spec_hash
from substratus_cli.resource import Resource
from substratus_cli.sizing import Accelerator, ModelSize
from substratus_providers.kubernetes.gpus import gpu_request, scheduling
from substratus_providers.kubernetes.pods import (
    Env,
    container,
    content_volume,
    contract_env,
    param_env,
    plain_env,
    resource_requirements,
    source_env,
    user_env,
)

MANAGED_BY = "app.kubernetes.io/managed-by"
PART_OF = "substratus.ai/part-of"
KIND_LABEL = "substratus.ai/kind"
NAME_LABEL = "substratus.ai/name"
SPEC_HASH = "substratus.ai/spec-hash"
# The version of what an object runs: its spec, its inputs' versions and (for files uploaded from
# this machine) their content digest. An input's change shows as a new version downstream.
VERSION = "substratus.ai/version"
PREFIXES = {"Dataset": "dataset", "Model": "model", "ModelServer": "server", "Notebook": "notebook"}
# A StatefulSet's pods carry `controller-revision-hash: <name>-<hash>`, a label value of at most
# 63 characters, so its name must leave room for the hash (kubernetes/kubernetes#64023).
NAME_LIMITS = {"Notebook": 52}
SERVER_PORT = 8080
NOTEBOOK_PORT = 8888


@dataclasses.dataclass(frozen=True)
class RenderContext:
    """What a manifest needs beyond the resource itself."""

    namespace: str
    part_of: str  # the workspace's lineage id
    registry: str = "substratus"  # image registry prefix, e.g. "ghcr.io/substratusai"
    image_tag: str = "latest"
    # The artifact locations of what the resource reads, by role: {"model": "gs://…", …}.
    inputs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    artifacts: str | None = None  # where the resource writes (Datasets and Models)
    accelerators: Sequence[Accelerator] = ()  # the GPU types the cluster's node pools offer
    size: ModelSize | None = None  # the model's size when known, for GPU sizing
    built_image: str | None = None  # the image built from spec.build, once built
    version: str = ""  # see VERSION
    digest: str | None = None  # the snapshot a path source uploads (its record holds it)
    # The GPU chosen when the plan was made ({"type", "count"} or None for none); SIZE: choose
    # it now from `size` and `accelerators`.
    gpu: Any = "size"


def render(resource: Resource, ctx: RenderContext) -> list[dict[str, Any]]:
    """The objects that run `resource`, in the order to apply them. ValueError for what cannot run
    on Kubernetes as declared; ProviderError when no offered GPU holds the model."""
    if uploads(resource):
        return [_record(resource, ctx)]
    renderer = _RENDERERS.get(resource.kind)
    if renderer is None:
        raise ValueError(f"the kubernetes runtime does not run {resource.kind} resources")
    return renderer(resource, ctx)


def uploads(resource: Resource) -> bool:
    """A Dataset or Model whose files are on this machine: substratus uploads them to the
    artifact store itself, and a ConfigMap records the snapshot (no Job could read them)."""
    return resource.kind in ("Dataset", "Model") and bool(
        (resource.spec.get("source") or {}).get("path"))


def object_name(kind: str, name: str) -> str:
    """`<prefix>-<name>`, hash-suffixed when longer than the kind's objects may be named."""
    full = f"{PREFIXES[kind]}-{name}"
    limit = NAME_LIMITS.get(kind, 63)
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[:limit - len(digest) - 1].rstrip('-')}-{digest}"


def token_secret_name(name: str) -> str:
    """The Secret holding a Notebook's access token (the provider creates it)."""
    return f"{object_name('Notebook', name)}-token"


def selector_labels(resource: Resource) -> dict[str, str]:
    """What selectors match and every pod template carries."""
    return {KIND_LABEL: resource.kind, NAME_LABEL: resource.name}


def labels(resource: Resource, ctx: RenderContext) -> dict[str, str]:
    """The user's labels under ours: ownership must not be overridable from a resource file."""
    own = {MANAGED_BY: "substratus", PART_OF: ctx.part_of, **selector_labels(resource)}
    return {**resource.labels, **own}


def _metadata(resource: Resource, ctx: RenderContext) -> dict[str, Any]:
    annotations = {SPEC_HASH: spec_hash(resource.spec, resource.labels)}
    if ctx.version:
        annotations[VERSION] = ctx.version
    return {"name": object_name(resource.kind, resource.name), "namespace": ctx.namespace,
            "labels": labels(resource, ctx), "annotations": annotations}


def _image(resource: Resource, ctx: RenderContext, program: str) -> str:
    spec = resource.spec
    if spec.get("image"):
        return str(spec["image"])
    if spec.get("build"):
        if ctx.built_image is None:
            raise ValueError(f"{resource.kind} {resource.name!r}: spec.build has no image yet "
                             "(build it first and pass it as built_image)")
        return ctx.built_image
    return f"{ctx.registry}/substratus-{program}:{ctx.image_tag}"


# The entrypoint of substratus's images: it fetches the inputs, runs the program and publishes
# its artifacts (workloads/README.md, "the pod contract").
POD_ENTRYPOINT = ("python", "-m", "substratus_workloads.pod", "--")


def _command(resource: Resource) -> list[str] | None:
    """spec.command; in substratus's own image it runs under the pod entrypoint, so it still gets
    its inputs fetched and its artifacts published. A custom image honours the contract itself."""
    command = resource.spec.get("command")
    if not command or resource.spec.get("image") or resource.spec.get("build"):
        return command
    return [*POD_ENTRYPOINT, *command]


def _pod_template(resource: Resource, ctx: RenderContext, program: str, env: Env,
                  **extra: Any) -> dict[str, Any]:
    gpu = (gpu_request(resource, ctx.size, ctx.accelerators)[0]
           if ctx.gpu == "size" else ctx.gpu)
    resources = resource.spec.get("resources") or {}
    # The user's env comes last and wins, as on the local runtime.
    merged = {**env, **user_env(resource.spec.get("env") or {})}
    main = container(program, _image(resource, ctx, program), list(merged.values()),
                     resource_requirements(resources, gpu), _command(resource), **extra)
    spec: dict[str, Any] = {"containers": [main], "volumes": [content_volume(resources)],
                            **scheduling(gpu)}
    return {"metadata": {"labels": selector_labels(resource)}, "spec": spec}


# Dataset and Model: a Job that writes an artifact, or the record of files uploaded from here


def _record(resource: Resource, ctx: RenderContext) -> dict[str, Any]:
    data = {"digest": ctx.digest or "", "artifact": ctx.artifacts or ""}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(resource, ctx),
            "data": {k: v for k, v in data.items() if v}}


def _program(resource: Resource) -> tuple[str, dict[str, Any], Mapping[str, Any] | None]:
    """The workload that makes the artifact, its params and the source it loads (if a loader)."""
    spec = resource.spec
    params = dict(spec.get("params") or {})
    source = spec.get("source")
    if spec.get("training"):
        return "trainer", {**(spec["training"].get("params") or {}), **params}, None
    if source and source.get("scratch") is not None:
        return "scratch", {**(source["scratch"].get("config") or {}), **params}, None
    return "loader", params, source


def _job(resource: Resource, ctx: RenderContext) -> list[dict[str, Any]]:
    program, params, source = _program(resource)
    env = {**contract_env(ctx.inputs, ctx.artifacts), **source_env(source), **param_env(params)}
    if program == "loader":  # a Model's archive is unpacked, a Dataset's kept whole
        env.update(plain_env({"SUBSTRATUS_KIND": resource.kind}))
    template = _pod_template(resource, ctx, program, env)
    template["spec"]["restartPolicy"] = "Never"
    # A failed run is reported, not retried: the next apply decides whether to run it again.
    return [{"apiVersion": "batch/v1", "kind": "Job", "metadata": _metadata(resource, ctx),
             "spec": {"backoffLimit": 0, "template": template}}]


# ModelServer: a Deployment that rolls out without losing the ready version, and its Service


def _model_server(resource: Resource, ctx: RenderContext) -> list[dict[str, Any]]:
    spec = resource.spec
    rollout = spec.get("rollout") or {}
    env = {**contract_env(ctx.inputs, None),
           **plain_env({"SUBSTRATUS_MODEL_NAME": spec["model"]["name"]})}
    if spec.get("quantization"):
        env.update(plain_env({"SUBSTRATUS_QUANTIZATION_BITS": str(spec["quantization"]["bits"])}))
    env.update(param_env(spec.get("params") or {}))
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    template = _pod_template(resource, ctx, "server", env, port=SERVER_PORT, probe=probe)
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(resource, ctx),
        "spec": {
            "replicas": int(spec.get("replicas", 1)),
            "selector": {"matchLabels": selector_labels(resource)},
            # maxUnavailable 0: an old pod goes only once a new one is ready.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                "maxSurge": int(rollout.get("maxSurge", 1)), "maxUnavailable": 0}},
            "progressDeadlineSeconds": int(rollout.get("readinessTimeoutSeconds", 300)),
            "template": template,
        },
    }
    return [deployment, _service(resource, ctx, SERVER_PORT)]


def _service(resource: Resource, ctx: RenderContext, port: int) -> dict[str, Any]:
    # Routes to whatever version is ready: the version is its workload's, not its own.
    metadata = _metadata(resource, dataclasses.replace(ctx, version=""))
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata,
            "spec": {"type": "ClusterIP", "selector": selector_labels(resource),
                     "ports": [{"name": "http", "port": port, "targetPort": "http"}]}}


# Notebook: a StatefulSet of one (none while suspended) and its Service


def _notebook(resource: Resource, ctx: RenderContext) -> list[dict[str, Any]]:
    spec = resource.spec
    token = {"name": "JUPYTER_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": token_secret_name(resource.name), "key": "token"}}}
    env = {**contract_env(ctx.inputs, None), **plain_env({"PORT": str(NOTEBOOK_PORT)}),
           "JUPYTER_TOKEN": token, **param_env(spec.get("params") or {})}
    probe = {"tcpSocket": {"port": "http"}}
    template = _pod_template(resource, ctx, "notebook", env, port=NOTEBOOK_PORT, probe=probe)
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _metadata(resource, ctx),
        "spec": {
            "replicas": 0 if spec.get("suspend") else 1,
            "serviceName": object_name(resource.kind, resource.name),
            "selector": {"matchLabels": selector_labels(resource)},
            # No volumeClaimTemplates: /content is an emptyDir, so a cluster needs no storage
            # provisioner (and a changed template never blocks an update).
            "template": template,
        },
    }
    return [statefulset, _service(resource, ctx, NOTEBOOK_PORT)]


_RENDERERS: dict[str, Callable[[Resource, RenderContext], list[dict[str, Any]]]] = {
    "Dataset": _job,
    "Model": _job,
    "ModelServer": _model_server,
    "Notebook": _notebook,
}

