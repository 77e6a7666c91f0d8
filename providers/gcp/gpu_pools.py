"""GPU node pools sized for the workloads: a Model trained, or a ModelServer
served, on the GKE Cluster the Environment names, whose size (spec.size) no declared NodePool's
GPUs hold, gets a NodePool of the smallest GKE GPU shape that does. The plan shows it as any
other NodePool to create; the workload's sizing note shows the arithmetic."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from substratus_cli.address import Address
from substratus_cli.resource import Resource
from substratus_cli.sizing import (
    CATALOG,
    Accelerator,
    Estimate,
    declared_gpus,
    declared_size,
    estimate_for,
    needs_gpu,
    pick,
)

# GKE's machine types by accelerator and GPUs per node (the accelerator-optimized families; T4s
# attach to N1 machines).
MACHINES: Mapping[str, Mapping[int, str]] = {
    "nvidia-tesla-t4": {1: "n1-standard-8", 2: "n1-standard-16", 4: "n1-standard-32"},
    "nvidia-l4": {1: "g2-standard-8", 2: "g2-standard-24", 4: "g2-standard-48",
                  8: "g2-standard-96"},
    "nvidia-tesla-a100": {1: "a2-highgpu-1g", 2: "a2-highgpu-2g", 4: "a2-highgpu-4g",
                          8: "a2-highgpu-8g"},
    "nvidia-a100-80gb": {1: "a2-ultragpu-1g", 2: "a2-ultragpu-2g", 4: "a2-ultragpu-4g",
                         8: "a2-ultragpu-8g"},
    "nvidia-h100-80gb": {1: "a3-highgpu-1g", 2: "a3-highgpu-2g", 4: "a3-highgpu-4g",
                         8: "a3-highgpu-8g"},
}
SHORT = {"nvidia-tesla-t4": "t4", "nvidia-l4": "l4", "nvidia-tesla-a100": "a100",
         "nvidia-a100-80gb": "a100-80gb", "nvidia-h100-80gb": "h100"}


def with_gpu_pools(resources: Sequence[Resource], cluster_name: str) -> list[Resource]:
    """`resources`, plus the NodePools the workloads on `cluster_name` need and the edges to them."""
    cluster = next((r for r in resources if r.kind == "Cluster" and r.name == cluster_name), None)
    if cluster is None:
        return list(resources)
    pools = [r for r in resources
             if r.kind == "NodePool" and (r.spec.get("cluster") or {}).get("name") == cluster.name]
    offered = _offered(pools)
    models = {r.address: r for r in resources if r.kind == "Model"}
    added: dict[Address, Resource] = {}
    edges: dict[Address, Address] = {}
    for r in resources:
        size = declared_size(r, models) if needs_gpu(r) else None
        if size is None or (r.spec.get("resources") or {}).get("gpu"):
            continue
        estimate = estimate_for(r, size)
        if any(pick(estimate, [a], count) for a, count in offered):
            continue
        shape = _shape(estimate)
        if shape is None:
            continue  # nothing GKE offers holds it: the kubernetes provider refuses it, sized
        accelerator, count = shape
        pool = _pool(cluster, accelerator, count, r)
        added.setdefault(pool.address, pool)
        edges[r.address] = pool.address
    out = [dataclasses.replace(r, refs=(*r.refs, edges[r.address])) if r.address in edges else r
           for r in resources]
    return [*out, *added.values()]


def _offered(pools: Sequence[Resource]) -> list[tuple[Accelerator, int]]:
    known = {a.name: a for a in CATALOG}
    return [(known[kind], count) for kind, count in declared_gpus(pools).items() if kind in known]


def _shape(estimate: Estimate) -> tuple[str, int] | None:
    """The GKE GPU machine with the least GPU memory that holds the estimate (the cheapest, to
    a first approximation): (accelerator, GPUs per node)."""
    options = []
    for accelerator in CATALOG:
        counts = sorted(MACHINES.get(accelerator.name, {}))
        picked = pick(estimate, [accelerator], max(counts)) if counts else None
        if picked is not None:
            count = next(c for c in counts if c >= picked[1])
            options.append((count * accelerator.memory_bytes, count, accelerator.name))
    if not options:
        return None
    _, count, name = min(options)
    return name, count


def _pool(cluster: Resource, accelerator: str, count: int, workload: Resource) -> Resource:
    name = f"gpu-{SHORT.get(accelerator, accelerator)}-x{count}"
    spec = {"cluster": {"name": cluster.name}, "machineType": MACHINES[accelerator][count],
            "accelerator": {"type": accelerator, "count": count},
            # Scales from zero: a node is added when a pod asks for these GPUs.
            "autoscaling": {"min": 0, "max": 1}}
    # Errors about it point at the workload it was sized for.
    return Resource(Address("NodePool", cluster.address.namespace, name), spec,
                    file=workload.file, line=workload.line, refs=(cluster.address,))
