"""What a resource should be on the cluster: its version, where its inputs and its artifact live
in the store, its GPU, and the manifests that say so."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from substratus_artifacts.files import hash_tree
from substratus_artifacts.progress import SILENT, Progress
from substratus_artifacts.statcache import StatCache
from substratus_artifacts.store import Store
from substratus_cli.address import Address
from substratus_cli.config import source_paths
from substratus_cli.diff import spec_hash
from substratus_cli.errors import ProviderError
from substratus_cli.resource import Resource, references
from substratus_cli.sizing import Accelerator, ModelSize, PoolCapacity
from substratus_providers.kubernetes.gpus import UNSIZED, gpu_request, rollout_capacity
from substratus_providers.kubernetes.manifests import RenderContext, render, uploads


@dataclasses.dataclass(frozen=True)
class Cluster:
    """What rendering needs to know about the cluster and the workspace."""

    part_of: str
    registry: str
    image_tag: str
    accelerators: Sequence[Accelerator]
    per_node: Mapping[str, int]  # GPU type -> the most one node has (nodes and node pools)
    # GPU type -> the node pools that will offer it, where no node does yet (gpus.pools_to_come)
    to_come: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The GPU NodePools the workspace declares or sizes, at their autoscaling maximum: what a
    # ModelServer's rollout is checked against.
    pools: Sequence[PoolCapacity] = ()


@dataclasses.dataclass(frozen=True)
class Desired:
    planned: Planned
    version: str
    artifact: str | None  # the ref URL this resource's artifact is published at
    digest: str | None  # a path source's snapshot digest, known at plan time
    inputs: Mapping[str, str]  # role -> ref URL
    gpu: Mapping[str, Any] | None
    manifests: list[dict[str, Any]]
    notes: tuple[str, ...]  # GPU sizing and the rollout's GPUs
    details: tuple[str, ...] = ()  # notes that say nothing is done: only `plan --verbose`

    @property
    def planned_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
        if self.artifact:
            out["artifact"] = self.artifact
        if self.digest:
            out["digest"] = self.digest
        if self.inputs:
            out["inputs"] = dict(self.inputs)
        if self.gpu:
            out["gpu"] = dict(self.gpu)
        return out


def inputs_of(resource: Resource) -> dict[str, Address]:
    """role -> the address of the resource it reads."""
    return {field.role: Address(field.kind, resource.address.namespace, name)
            for field, name in references(resource.kind, resource.spec) if field.role}


def version_of(resource: Resource, inputs: Mapping[str, str], digest: str | None) -> str:
    payload = {"spec": spec_hash(resource.spec, resource.labels), "inputs": dict(inputs),
               "content": digest}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def ref_name(address: Address, version: str) -> str:
    return f"{address.namespace}/{address.kind.lower()}/{address.name}/{version}"


def path_digest(resource: Resource, workdir: Path, cache: StatCache | None,
                progress: Progress = SILENT) -> str:
    root, skip = source_root(resource, workdir)
    manifest, _ = hash_tree(root, cache, progress, skip)
    return manifest.digest


def source_root(resource: Resource, workdir: Path) -> tuple[Path, Callable[[str], bool]]:
    """What a path source uploads: the folder or file, and what of it is skipped."""
    try:
        root = source_paths.locate(workdir, resource.spec["source"])
    except source_paths.SourcePathError as e:  # validate says so first, with file:line
        raise ProviderError(f"{resource.kind} {resource.name!r}: {e.message}", hint=e.hint) \
            from None
    return root, source_paths.excluded(root, workdir / source_paths.DATA_DIR)


@dataclasses.dataclass(frozen=True)
class BuiltImage:
    """The Image a workload's spec.build made, as planned: pinned by digest when it is not
    rebuilt, else known by its tag until its apply pushes it."""

    address: Address
    tag: str  # the build's identity
    image: str  # host/repo@sha256:… when pinned, else host/repo:tag
    pinned: bool


def desired(resource: Resource, cluster: Cluster, store: Store,
            input_versions: Mapping[str, tuple[str, str]], size: ModelSize | None,
            digest: str | None, built: BuiltImage | None = None) -> Desired:
    """What to plan. `input_versions`: role -> (ref name, version) of each input, as planned."""
    versions = {r: v for r, (_, v) in input_versions.items()}
    if built is not None:
        versions["image"] = built.tag
    version = version_of(resource, versions, digest)
    writes = resource.kind in ("Dataset", "Model")
    artifact = store.ref_url(ref_name(resource.address, version)) if writes else None
    inputs = {role: store.ref_url(name) for role, (name, _) in input_versions.items()}
    gpu, note = gpu_request(resource, size, cluster.accelerators, cluster.per_node,
                            cluster.to_come)
    quiet = note == UNSIZED
    notes = tuple(filter(None, [None if quiet else note,
                                rollout_capacity(resource, gpu, cluster.pools)]))
    planned = Planned(version, artifact, inputs, digest, gpu,
                      built.image if built else None, str(built.address) if built else None,
                      built.pinned if built else False)
    return dataclasses.replace(build(resource, cluster, planned, notes),
                               details=(note,) if quiet else ())


@dataclasses.dataclass(frozen=True)
class Planned:
    """The outputs of planning that apply renders from again (the plan's private data)."""

    version: str
    artifact: str | None
    inputs: Mapping[str, str]
    digest: str | None
    gpu: Mapping[str, Any] | None  # {"type", "count"}: chosen at plan time, so apply keeps it
    # The image spec.build made (see BuiltImage); when not pinned, apply takes the digest the
    # Image `image_from` recorded when it was pushed.
    image: str | None = None
    image_from: str | None = None
    image_pinned: bool = False

    def to_private(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_private(cls, private: Mapping[str, Any]) -> Planned:
        return cls(str(private["version"]), private.get("artifact"),
                   dict(private.get("inputs") or {}), private.get("digest"), private.get("gpu"),
                   private.get("image"), private.get("image_from"),
                   bool(private.get("image_pinned")))


def build(resource: Resource, cluster: Cluster, planned: Planned,
          notes: tuple[str, ...] = ()) -> Desired:
    ctx = RenderContext(namespace=resource.address.namespace, part_of=cluster.part_of,
                        registry=cluster.registry, image_tag=cluster.image_tag,
                        inputs=planned.inputs, artifacts=planned.artifact, gpu=planned.gpu,
                        version=planned.version, digest=planned.digest,
                        built_image=planned.image)
    return Desired(planned, planned.version, planned.artifact,
                   planned.digest if uploads(resource) else None, planned.inputs, planned.gpu,
                   render(resource, ctx), notes)
