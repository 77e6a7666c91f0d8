"""GPU node pools sized for the workloads: a Model trained, or a ModelServer served, on the GKE
Cluster the Environment names, whose size (spec.size) no declared NodePool's GPUs hold, gets a
NodePool of the cheapest GKE GPU machine that holds it on one GPU (the loader's, see
sizing.LOADER_GPUS) and that GKE offers in the cluster's location, in the zones that offer it,
scaling from zero to the pods its workloads run at once (a rollout's surge included). The plan
shows it as any other NodePool to create; the workload's sizing note shows the arithmetic."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

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
    peak_pods,
    pick,
    pool_zones,
)
from substratus_providers.gcp.machines import MACHINES, SHORT, is_zone, offered_zones
from substratus_providers.gcp.prices import node_price

DRIVER = "LATEST"  # the GPU driver GKE installs on a sized pool's nodes


def with_gpu_pools(resources: Sequence[Resource], cluster_name: str) -> list[Resource]:
    """`resources`, plus the NodePools the workloads on `cluster_name` need and the edges to them."""
    cluster = next((r for r in resources if r.kind == "Cluster" and r.name == cluster_name), None)
    if cluster is None:
        return list(resources)
    location = str(cluster.spec.get("location") or "")
    pools = [r for r in resources
             if r.kind == "NodePool" and (r.spec.get("cluster") or {}).get("name") == cluster.name]
    offered = _offered(pools)
    models = {r.address: r for r in resources if r.kind == "Model"}
    added: dict[Address, tuple[str, list[Resource]]] = {}
    edges: dict[Address, Address] = {}
    for r in resources:
        size = declared_size(r, models) if needs_gpu(r) else None
        if size is None or (r.spec.get("resources") or {}).get("gpu"):
            continue
        estimate = estimate_for(r, size)
        if any(pick(estimate, [a]) for a in offered):
            continue
        accelerator = _shape(estimate, location)
        if accelerator is None:
            continue  # nothing GKE offers there holds it: the kubernetes provider refuses it, sized
        address = Address("NodePool", cluster.address.namespace, _name(accelerator))
        added.setdefault(address, (accelerator, []))[1].append(r)
        edges[r.address] = address
    out = [dataclasses.replace(r, refs=(*r.refs, edges[r.address])) if r.address in edges else r
           for r in resources]
    return [*out, *(_pool(cluster, a, gpu, workloads) for a, (gpu, workloads) in added.items())]


def _offered(pools: Sequence[Resource]) -> list[Accelerator]:
    known = {a.name: a for a in CATALOG}
    return [known[kind] for kind in declared_gpus(pools) if kind in known]


def _shape(estimate: Estimate, location: str) -> str | None:
    """The GPU whose one-GPU machine costs least on demand (prices.yaml; then the least usable
    memory) of those that hold the estimate and that GKE offers at `location` (all of the
    catalogue's where the zone table does not cover it)."""
    holding = [a for a in CATALOG if a.name in MACHINES and _there(a, location)
               and pick(estimate, [a]) is not None]
    if not holding:
        return None
    return min(holding, key=lambda a: (_price(a), a.memory_bytes, a.name)).name


def _price(accelerator: Accelerator) -> float:
    price = node_price({"machineType": MACHINES[accelerator.name][1],
                        "accelerator": {"type": accelerator.name, "count": 1}})
    return price[0] if price is not None else math.inf


def _there(accelerator: Accelerator, location: str) -> bool:
    zones = offered_zones(accelerator.name, location)
    if zones is None:
        return True
    return location in zones if is_zone(location) else bool(zones)


def _name(accelerator: str) -> str:
    return f"gpu-{SHORT.get(accelerator, accelerator)}-x1"


def _pool(cluster: Resource, address: Address, accelerator: str,
          workloads: Sequence[Resource]) -> Resource:
    location = str(cluster.spec.get("location") or "")
    zones = [] if is_zone(location) else (offered_zones(accelerator, location) or [])
    pods = sum(peak_pods(w) for w in workloads)
    spec: dict[str, Any] = {
        "cluster": {"name": cluster.name}, "machineType": MACHINES[accelerator][1],
        "accelerator": {"type": accelerator, "count": 1, "gpuDriverVersion": DRIVER}}
    if zones:
        spec["zones"] = zones
    # Scales from zero: a node is added when a pod asks for these GPUs; the maximum (per zone,
    # as GKE counts it) holds every pod of its workloads at once.
    spec["autoscaling"] = {"min": 0,
                           "max": max(1, math.ceil(pods / pool_zones(spec, location)))}
    # Errors about it point at the first workload it was sized for.
    first = workloads[0]
    return Resource(address, spec, file=first.file, line=first.line, refs=(cluster.address,))
