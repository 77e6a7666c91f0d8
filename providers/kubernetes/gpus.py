"""GPU requests on Kubernetes: the GPU a workload gets (declared, or sized from the model against
the node pools the cluster offers) and how a pod asks for it on GKE."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from substratus_cli.errors import ProviderError
from substratus_cli.resource import Resource
from substratus_cli.sizing import (
    CATALOG,
    LOADER_GPUS,
    LOADER_REASON,
    Accelerator,
    Estimate,
    ModelSize,
    PoolCapacity,
    estimate_for,
    needs_gpu,
    peak_pods,
    pick,
)

GPU_RESOURCE = "nvidia.com/gpu"
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
# GKE taints GPU nodes so that only pods asking for a GPU land on them.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
# The note of a server sized for no GPU because its model's size is not known: it says nothing
# is done, so a plan shows it only when asked (`plan --verbose`).
UNSIZED = ("sizing: the model's size is known only after it is built or fetched (or set "
           "spec.size on the Model); no GPU requested")


def offered(nodes: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """GKE accelerator type -> the most GPUs one node of that type has, from the cluster's Nodes."""
    out: dict[str, int] = {}
    for node in nodes:
        kind = ((node.get("metadata") or {}).get("labels") or {}).get(GKE_ACCELERATOR_LABEL)
        capacity = ((node.get("status") or {}).get("capacity") or {}).get(GPU_RESOURCE)
        try:
            count = int(str(capacity))
        except ValueError:
            continue
        if kind and count > 0:
            out[kind] = max(out.get(kind, 0), count)
    return out


def catalogued(per_node: Mapping[str, int]) -> tuple[list[Accelerator], list[str]]:
    """The offered types substratus can size against, and the names of those it does not know."""
    known = {a.name: a for a in CATALOG}
    return ([known[k] for k in sorted(per_node) if k in known],
            sorted(k for k in per_node if k not in known))


def pools_to_come(resources: Sequence[Resource], on_nodes: Mapping[str, int]) -> dict[str, str]:
    """GPU type -> the declared (or derived) NodePools that offer more of it than any node does
    now, in words: where a workload's GPUs come from once its pod asks for them."""
    out: dict[str, list[str]] = {}
    for pool in resources:
        accelerator = pool.spec.get("accelerator") if pool.kind == "NodePool" else None
        if not accelerator or on_nodes.get(str(accelerator["type"]), 0) >= \
                int(accelerator.get("count", 1)):
            continue
        scaling = pool.spec.get("autoscaling")
        how = (f"autoscaling {scaling['min']}-{scaling['max']} nodes" if scaling
               else "when it is created")
        out.setdefault(str(accelerator["type"]), []).append(f"NodePool {pool.name} ({how})")
    return {kind: ", ".join(pools) for kind, pools in out.items()}


def gpu_request(resource: Resource, size: ModelSize | None,
                accelerators: Sequence[Accelerator],
                per_node: Mapping[str, int] | None = None,
                to_come: Mapping[str, str] | None = None) -> tuple[dict[str, Any] | None, str]:
    """The GPU `resource` runs on ({"type", "count"} or None for none) and the plan's note.

    spec.resources.gpu wins; with `per_node` (what the cluster's nodes and node pools offer, see
    `offered`), a type or count no node offers is refused, and `to_come` (`pools_to_come`) names
    the pool that will. Otherwise a training Model or a ModelServer of known size gets the
    smallest offered GPU that holds it, one GPU (the loader's); ProviderError when none does."""
    declared = ((resource.spec.get("resources") or {}).get("gpu"))
    estimate = _estimate(resource, size)
    if declared:
        gpu = {"type": declared["type"], "count": int(declared.get("count", 1))}
        asked = f"spec.resources.gpu asks for {gpu['count']} x {gpu['type']}"
        if per_node is not None:
            _check_offered(resource, asked, gpu, per_node)
        if gpu["count"] > LOADER_GPUS and not _own_program(resource):
            asked += f" ({LOADER_REASON}: {gpu['count'] - LOADER_GPUS} of them stay idle)"
        if to_come and gpu["type"] in to_come:
            asked += f"; no node has them yet: {to_come[gpu['type']]} adds one when the pod asks"
        return gpu, (f"sizing: {_needs(estimate)}; {asked}" if estimate else f"sizing: {asked}")
    if not needs_gpu(resource):
        return None, ""
    if estimate is None:
        return None, UNSIZED
    if not accelerators:
        return None, f"sizing: {_needs(estimate)}; the cluster offers no GPU, so it runs on CPU"
    picked = pick(estimate, accelerators)
    if picked is None:
        raise _does_not_fit(resource, estimate, accelerators)
    accelerator, count = picked
    coming = (f"; no node has them yet: {to_come[accelerator.name]} adds one when the pod asks"
              if to_come and accelerator.name in to_come else "")
    return ({"type": accelerator.name, "count": count},
            f"sizing: {_needs(estimate)}, which fits {count} x {accelerator.shown} "
            f"({LOADER_REASON}){coming}")


def _check_offered(resource: Resource, asked: str, gpu: Mapping[str, Any],
                   per_node: Mapping[str, int]) -> None:
    where = f"{resource.file}:{resource.line_of('spec.resources.gpu')}: " if resource.file else ""
    what = f"{where}{resource.kind} {resource.name!r}: {asked}"
    kind, count = str(gpu["type"]), int(gpu["count"])
    if kind not in per_node:
        offers = ", ".join(f"{n} x {k} per node" for k, n in sorted(per_node.items()))
        raise ProviderError(
            f"{what}, which no node or node pool of the cluster offers "
            f"({f'it offers: {offers}' if offers else 'it offers no GPU'})",
            hint="ask for a type it offers, or declare a NodePool with that accelerator "
                 "(autoscaling from min: 0 adds nodes only when a workload needs them)")
    if count > per_node[kind]:
        raise ProviderError(
            f"{what}, but no node of the cluster has more than {per_node[kind]} x {kind}",
            hint=f"ask for at most {per_node[kind]}, or declare a NodePool whose nodes have "
                 f"{count} (accelerator count)")


def _own_program(resource: Resource) -> bool:
    """Does the workload run a program of its own (which may spread a model over GPUs)?"""
    return any(resource.spec.get(k) for k in ("command", "image", "build"))


def _estimate(resource: Resource, size: ModelSize | None) -> Estimate | None:
    if size is None or not needs_gpu(resource):
        return None
    return estimate_for(resource, size)


def _needs(estimate: Estimate) -> str:
    return f"{estimate.purpose} needs {estimate.arithmetic}"


def _does_not_fit(resource: Resource, estimate: Estimate,
                  accelerators: Sequence[Accelerator]) -> ProviderError:
    largest = max(accelerators, key=lambda a: (a.memory_bytes, a.name))
    return ProviderError(
        f"{resource.kind} {resource.name!r}: {_needs(estimate)}, which no GPU the node pools "
        f"offer holds: the largest is {largest.shown}, and {LOADER_REASON}",
        hint="add a node pool with larger GPUs, quantize the model (spec.quantization.bits on a "
             "ModelServer), or set spec.resources.gpu with an image that spreads the model over "
             "several GPUs")


def rollout_capacity(resource: Resource, gpu: Mapping[str, Any] | None,
                     pools: Sequence[PoolCapacity]) -> str:
    """A ModelServer on GPUs: the GPUs its rollout needs at its peak (replicas plus maxSurge new
    pods, maxUnavailable being 0) and the room the NodePools of that GPU have at their autoscaling
    maximum; ProviderError when they cannot hold it, so the rollout is not left pending."""
    if resource.kind != "ModelServer" or not gpu:
        return ""
    pods, per_pod = peak_pods(resource), int(gpu["count"])
    replicas = int(resource.spec.get("replicas", 1))
    need = (f"rollout: {replicas} replica(s) + {pods - replicas} surge = {pods} pods x {per_pod} "
            f"x {gpu['type']} = {pods * per_pod} GPUs")
    matching = [p for p in pools if p.gpu_type == gpu["type"]]
    if not matching or not pods:
        return need
    room = sum(p.max_nodes * (p.gpus_per_node // per_pod) for p in matching)
    held = ", ".join(f"NodePool {p.name}: at most {p.max_nodes} node(s) x "
                     f"{p.gpus_per_node // per_pod} pod(s)" for p in matching)
    if room < pods:
        where = f"{resource.file}:{resource.line_of('spec.rollout.maxSurge')}: "
        raise ProviderError(
            f"{where}ModelServer {resource.name!r}: its {need}, but {held}: room for {room}",
            hint="raise the node pool's autoscaling.max, or lower replicas or rollout.maxSurge")
    return f"{need}; {held}: room for {room}"


def scheduling(gpu: Mapping[str, Any] | None) -> dict[str, Any]:
    """The pod spec fields that put a pod on a node with `gpu` (none without a GPU)."""
    if not gpu:
        return {}
    return {"nodeSelector": {GKE_ACCELERATOR_LABEL: gpu["type"]},
            "tolerations": [dict(GPU_TOLERATION)]}
