"""GPU sizing arithmetic: memory a model needs to serve or train, and the
accelerators that hold it. Pure arithmetic; every estimate carries the sum it came from, for the plan."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from substratus_cli.address import Address
from substratus_cli.resource import Resource

# Serving: weights at the served precision, plus 20% for the KV cache, activations and runtime.
SERVING_OVERHEAD = 1.2
# Full fine-tuning with Adam: weights + gradients + two fp32 optimizer moments (+ an fp32 master
# copy under mixed precision) come to 16 bytes a parameter either way; 20% more for activations.
TRAINING_BYTES_PER_PARAMETER = 16
TRAINING_OVERHEAD = 1.2


@dataclasses.dataclass(frozen=True)
class ModelSize:
    parameter_count: int
    parameter_bits: int
    source: str  # where the numbers came from: "spec.size", "the scratch config", "weights"


@dataclasses.dataclass(frozen=True)
class Estimate:
    purpose: str  # "serving" | "training"
    bytes: int
    arithmetic: str


@dataclasses.dataclass(frozen=True)
class Accelerator:
    name: str  # as GKE names it: nvidia-l4
    label: str  # as people say it: L4
    memory_bytes: int  # usable: what the driver lets a process allocate (see CATALOG)
    marketed_gb: int = 0  # what the name says (16 for a T4), shown beside the usable figure

    @property
    def shown(self) -> str:
        """`T4 (15.0 GiB usable of 16 GB)`: the arithmetic's unit."""
        return f"{self.label} ({human_bytes(self.memory_bytes)} usable of {self.marketed_gb} GB)"


GIB = 1024**3
MIB = 1024**2
# The GKE GPU shapes substratus sizes against, each with its usable memory: the device memory
# CUDA reports (totalGlobalMem, which torch.cuda.get_device_properties(0).total_memory shows), the
# most a process can allocate; the driver and ECC keep the rest of the marketed size. The CUDA
# context a process opens comes out of it too: the estimates' 20% overhead covers that. Figures
# for the parts GCE attaches (A2 machines carry SXM4 A100s); docs/gpus.md gives their sources.
CATALOG: tuple[Accelerator, ...] = (
    Accelerator("nvidia-tesla-t4", "T4", 15102 * MIB, 16),
    Accelerator("nvidia-l4", "L4", 23034 * MIB, 24),
    Accelerator("nvidia-tesla-a100", "A100 40GB", 40536 * MIB, 40),
    Accelerator("nvidia-a100-80gb", "A100 80GB", 81116 * MIB, 80),
    Accelerator("nvidia-h100-80gb", "H100", 81082 * MIB, 80),
)
_ZONAL = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]")  # a GKE location that is a zone
# The GPUs substratus's own trainer and server use: they load the model onto one device
# (`.to("cuda")`, workloads/trainer and workloads/server), so sizing never gives them more; a
# program that spreads a model over several GPUs declares spec.resources.gpu.
LOADER_GPUS = 1
LOADER_REASON = ("substratus's trainer and server load a model onto one GPU, so one GPU must "
                 "hold it")


def serving(size: ModelSize, quantization_bits: int | None = None) -> Estimate:
    bits = quantization_bits or size.parameter_bits
    weights = size.parameter_count * bits / 8
    total = math.ceil(weights * SERVING_OVERHEAD)
    at = f"{bits} bits" + (" (quantized)" if quantization_bits else "")
    return Estimate("serving", total,
                    f"{count(size.parameter_count)} parameters x {at} / 8 = "
                    f"{human_bytes(weights)} of weights, x {SERVING_OVERHEAD} for the KV cache "
                    f"and activations = {human_bytes(total)}")


def training(size: ModelSize) -> Estimate:
    per = TRAINING_BYTES_PER_PARAMETER
    base = size.parameter_count * per
    total = math.ceil(base * TRAINING_OVERHEAD)
    return Estimate("training", total,
                    f"{count(size.parameter_count)} parameters x {per} bytes (weights, gradients "
                    f"and Adam state) = {human_bytes(base)}, x {TRAINING_OVERHEAD} for "
                    f"activations = {human_bytes(total)}")


def gpus_needed(estimate: Estimate, accelerator: Accelerator) -> int:
    return max(1, math.ceil(estimate.bytes / accelerator.memory_bytes))


def pick(estimate: Estimate, offered: Sequence[Accelerator] = CATALOG,
         max_count: int = LOADER_GPUS) -> tuple[Accelerator, int] | None:
    """The offered accelerator that holds the estimate in the fewest GPUs (at most `max_count`;
    by default the GPUs substratus's loader uses), smallest first."""
    options = [(gpus_needed(estimate, a), a.memory_bytes, a) for a in offered]
    fitting = sorted((n, mem, a.name, a) for n, mem, a in options if n <= max_count)
    if not fitting:
        return None
    n, _, _, accelerator = fitting[0]
    return accelerator, n


def count(n: int) -> str:
    for scale, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(n)


def human_bytes(n: float) -> str:
    for scale, suffix in ((GIB, "GiB"), (1024**2, "MiB"), (1024, "KiB")):
        if n >= scale:
            return f"{n / scale:.1f} {suffix}"
    return f"{int(n)} B"


def declared_size(resource: Resource, models: Mapping[Address, Resource]) -> ModelSize | None:
    """spec.size of the Model a resource is (or a server serves), else of the base model it is
    trained from; None when none of them declares one. `models`: the workspace's Models."""
    model: Resource | None = resource
    if resource.kind != "Model":
        name = (resource.spec.get("model") or {}).get("name")
        model = models.get(Address("Model", resource.address.namespace, str(name)))
    seen = set()
    while model is not None and model.address not in seen:
        seen.add(model.address)
        size = model.spec.get("size")
        if size:
            return ModelSize(int(size["parameterCount"]), int(size["parameterBits"]), "spec.size")
        base = ((model.spec.get("training") or {}).get("baseModel") or {}).get("name")
        model = models.get(Address("Model", model.address.namespace, str(base))) if base else None
    return None


def needs_gpu(resource: Resource) -> bool:
    """A workload sized for a GPU: a ModelServer, or a Model that is trained."""
    return resource.kind == "ModelServer" or (
        resource.kind == "Model" and bool(resource.spec.get("training")))


def estimate_for(resource: Resource, size: ModelSize) -> Estimate:
    if resource.kind == "ModelServer":
        return serving(size, (resource.spec.get("quantization") or {}).get("bits"))
    return training(size)


def declared_gpus(node_pools: Iterable[Resource]) -> dict[str, int]:
    """GPU type -> the most GPUs one node has, over NodePool resources (created or not yet)."""
    out: dict[str, int] = {}
    for pool in node_pools:
        accelerator = pool.spec.get("accelerator") if pool.kind == "NodePool" else None
        if accelerator:
            kind, count = str(accelerator["type"]), int(accelerator.get("count", 1))
            out[kind] = max(count, out.get(kind, 0))
    return out


def peak_pods(workload: Resource) -> int:
    """The most pods a workload runs at once: a ModelServer's replicas plus its rollout's surge
    (maxUnavailable is 0, so the new pods come up before the old ones go), one for a training."""
    if workload.kind != "ModelServer":
        return 1
    replicas = int(workload.spec.get("replicas", 1))
    rollout = workload.spec.get("rollout") or {}
    return replicas + int(rollout.get("maxSurge", 1)) if replicas else 0


@dataclasses.dataclass(frozen=True)
class PoolCapacity:
    """What a GPU NodePool resource can hold at most: its GPU type, GPUs a node, nodes."""

    name: str
    gpu_type: str
    gpus_per_node: int
    max_nodes: int


def gpu_pool_capacity(resources: Iterable[Resource]) -> tuple[PoolCapacity, ...]:
    """The GPU NodePools among `resources` (declared or sized), each at its autoscaling maximum."""
    resources = list(resources)
    clusters = {r.address: r for r in resources if r.kind == "Cluster"}
    out = []
    for pool in resources:
        accelerator = pool.spec.get("accelerator") if pool.kind == "NodePool" else None
        if not accelerator:
            continue
        cluster = clusters.get(Address("Cluster", pool.address.namespace,
                                       str((pool.spec.get("cluster") or {}).get("name"))))
        location = str((cluster.spec.get("location") if cluster else "") or "")
        out.append(PoolCapacity(pool.name, str(accelerator["type"]),
                                int(accelerator.get("count", 1)),
                                pool_max_nodes(pool.spec, location)))
    return tuple(out)


def pool_zones(spec: Mapping[str, Any], location: str) -> int:
    """The zones a NodePool spec's nodes are in: the declared ones, else its cluster's zone, or
    the three zones GKE puts a regional cluster's node pools in by default."""
    zones = spec.get("zones")
    if zones:
        return len(zones)
    return 1 if _ZONAL.fullmatch(location) else 3


def pool_max_nodes(spec: Mapping[str, Any], location: str) -> int:
    """The most nodes a NodePool spec can have: its autoscaling maximum (one node without
    autoscaling) per zone, as GKE counts it, times its zones."""
    scaling = spec.get("autoscaling")
    return (int(scaling["max"]) if scaling else 1) * pool_zones(spec, location)
