"""GPU sizing arithmetic: memory a model needs to serve or train, and the
accelerators that hold it. Pure arithmetic; every estimate carries the sum it came from, for the plan."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

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
    memory_bytes: int


GIB = 1024**3
# The GKE GPU shapes substratus sizes against (per accelerator).
CATALOG: tuple[Accelerator, ...] = (
    Accelerator("nvidia-tesla-t4", "T4", 16 * GIB),
    Accelerator("nvidia-l4", "L4", 24 * GIB),
    Accelerator("nvidia-tesla-a100", "A100 40GB", 40 * GIB),
    Accelerator("nvidia-a100-80gb", "A100 80GB", 80 * GIB),
    Accelerator("nvidia-h100-80gb", "H100", 80 * GIB),
)
MAX_GPUS_PER_NODE = 8


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
         max_count: int = MAX_GPUS_PER_NODE) -> tuple[Accelerator, int] | None:
    """The offered accelerator that holds the estimate in the fewest GPUs, smallest first."""
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
