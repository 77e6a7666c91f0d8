"""GPU requests on Kubernetes: the GPU a workload gets (declared, or sized from the model against
the node pools the cluster offers) and how a pod asks for it on GKE."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from substratus_cli.exitcodes import ProviderError
from substratus_cli.resource import Resource
from substratus_cli.sizing import (
    MAX_GPUS_PER_NODE,
    Accelerator,
    Estimate,
    ModelSize,
    human_bytes,
    pick,
    serving,
    training,
)

GPU_RESOURCE = "nvidia.com/gpu"
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
# GKE taints GPU nodes so that only pods asking for a GPU land on them.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def gpu_request(resource: Resource, size: ModelSize | None,
                accelerators: Sequence[Accelerator]) -> tuple[dict[str, Any] | None, str]:
    """The GPU `resource` runs on ({"type", "count"} or None for none) and the plan's note.

    spec.resources.gpu wins. Otherwise a training Model or a ModelServer of known size gets the
    offered accelerator that holds it in the fewest GPUs; ProviderError when none does."""
    declared = ((resource.spec.get("resources") or {}).get("gpu"))
    estimate = _estimate(resource, size)
    if declared:
        gpu = {"type": declared["type"], "count": int(declared.get("count", 1))}
        asked = f"spec.resources.gpu asks for {gpu['count']} x {gpu['type']}"
        return gpu, (f"sizing: {_needs(estimate)}; {asked}" if estimate else f"sizing: {asked}")
    if not _sized_kind(resource):
        return None, ""
    if estimate is None:
        return None, ("sizing: the model's size is known only after it is built or fetched "
                      "(or set spec.size on the Model); no GPU requested")
    if not accelerators:
        return None, f"sizing: {_needs(estimate)}; the cluster offers no GPU, so it runs on CPU"
    picked = pick(estimate, accelerators)
    if picked is None:
        raise _does_not_fit(resource, estimate, accelerators)
    accelerator, count = picked
    room = human_bytes(count * accelerator.memory_bytes)
    return ({"type": accelerator.name, "count": count},
            f"sizing: {_needs(estimate)}: {count} x {accelerator.label} ({room})")


def _sized_kind(resource: Resource) -> bool:
    return resource.kind == "ModelServer" or (
        resource.kind == "Model" and bool(resource.spec.get("training")))


def _estimate(resource: Resource, size: ModelSize | None) -> Estimate | None:
    if size is None or not _sized_kind(resource):
        return None
    if resource.kind == "ModelServer":
        return serving(size, (resource.spec.get("quantization") or {}).get("bits"))
    return training(size)


def _needs(estimate: Estimate) -> str:
    return f"{estimate.purpose} needs {estimate.arithmetic}"


def _does_not_fit(resource: Resource, estimate: Estimate,
                  accelerators: Sequence[Accelerator]) -> ProviderError:
    largest = max(accelerators, key=lambda a: (a.memory_bytes, a.name))
    room = human_bytes(MAX_GPUS_PER_NODE * largest.memory_bytes)
    return ProviderError(
        f"{resource.kind} {resource.name!r}: {_needs(estimate)}, which does not fit any node pool: "
        f"the largest is {MAX_GPUS_PER_NODE} x {largest.name} ({room})",
        hint="add a node pool with larger GPUs, quantize the model (spec.quantization.bits on a "
             "ModelServer), or set spec.resources.gpu")


def scheduling(gpu: Mapping[str, Any] | None) -> dict[str, Any]:
    """The pod spec fields that put a pod on a node with `gpu` (none without a GPU)."""
    if not gpu:
        return {}
    return {"nodeSelector": {GKE_ACCELERATOR_LABEL: gpu["type"]},
            "tolerations": [dict(GPU_TOLERATION)]}
