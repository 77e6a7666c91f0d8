"""GKE's GPU machines: which GPU type and count each machine type takes, where each GPU type is
offered (gpu_zones.yaml), and the problems a NodePool's machine, GPU and zones have, found at plan
time rather than by GKE halfway through an apply."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ZONES_FILE = Path(__file__).with_name("gpu_zones.yaml")
_ZONE = re.compile(r"(?P<region>[a-z]+-[a-z]+[0-9]+)-(?P<letter>[a-z])")

# GKE's machine types by accelerator and GPUs per node (the accelerator-optimized families; T4s
# attach to N1 machines): the shapes a sized workload's node pool is made of.
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
# G2 machines come with a fixed number of L4s (Compute Engine's G2 machine table).
_G2_GPUS = {4: 1, 8: 1, 12: 1, 16: 1, 32: 1, 24: 2, 48: 4, 96: 8}
# GPUs an N1 machine takes, per GPU type: counts, and the most vCPUs the machine may have for
# each count (Compute Engine's GPU machine types table).
_N1_GPUS: Mapping[str, Mapping[int, int]] = {
    "nvidia-tesla-t4": {1: 48, 2: 48, 4: 96},
    "nvidia-tesla-v100": {1: 12, 2: 24, 4: 48, 8: 96},
    "nvidia-tesla-p100": {1: 16, 2: 32, 4: 96},
    "nvidia-tesla-p4": {1: 24, 2: 48, 4: 96},
}
_BUNDLED = re.compile(r"(?P<family>a2-highgpu|a2-ultragpu|a2-megagpu|a3-highgpu)-(?P<n>[0-9]+)g")
_FAMILY_GPU = {"a2-highgpu": "nvidia-tesla-a100", "a2-megagpu": "nvidia-tesla-a100",
               "a2-ultragpu": "nvidia-a100-80gb", "a3-highgpu": "nvidia-h100-80gb"}
_N1 = re.compile(r"n1-(standard|highmem|highcpu)-(?P<cpus>[0-9]+)")


def bundled(machine: str) -> tuple[str, int] | None:
    """The GPU type and count an accelerator-optimized machine type comes with (A2, A3, G2)."""
    if (m := _BUNDLED.fullmatch(machine)) is not None:
        return _FAMILY_GPU[m["family"]], int(m["n"])
    if machine.startswith("g2-standard-"):
        cpus = machine.removeprefix("g2-standard-")
        if cpus.isdigit() and int(cpus) in _G2_GPUS:
            return "nvidia-l4", _G2_GPUS[int(cpus)]
    return None


def is_zone(location: str) -> bool:
    return _ZONE.fullmatch(location) is not None


def region_of(location: str) -> str:
    m = _ZONE.fullmatch(location)
    return m["region"] if m else location


@functools.cache
def gpu_zones() -> Mapping[str, Any]:
    loaded: Mapping[str, Any] = yaml.safe_load(ZONES_FILE.read_text())
    return loaded


def offered_zones(gpu: str, location: str) -> list[str] | None:
    """The zones of `location`'s region where GKE offers `gpu` (empty: none), or None when the
    table does not cover the region (or the GPU type), so nothing can be said."""
    table, region = gpu_zones(), region_of(location)
    if region not in table["regions"] or gpu not in table["gpus"]:
        return None
    return [f"{region}-{z}" for z in table["gpus"][gpu].get(region) or []]


def gpu_problems(spec: Mapping[str, Any], location: str) -> list[tuple[str, str]]:
    """(field path, what is wrong) for a NodePool spec on a cluster at `location`: a GPU the
    machine type cannot take, a count GKE does not allow, a GPU type or zone GKE does not offer."""
    machine = str(spec.get("machineType") or "")
    accelerator = spec.get("accelerator") or {}
    zones = [str(z) for z in spec.get("zones") or []]
    out = [(f"spec.zones.{n}", f"zone {z!r} is not in the cluster's region "
            f"{region_of(location)!r}") for n, z in enumerate(zones)
           if region_of(z) != region_of(location)]
    if not accelerator:
        return out
    gpu, count = str(accelerator.get("type") or ""), int(accelerator.get("count") or 1)
    out += _machine_problems(machine, gpu, count)
    offered = offered_zones(gpu, location)
    if offered is None:
        return out
    where = f"as of {gpu_zones()['as_of']} (providers/gcp/gpu_zones.yaml)"
    if not offered:
        out.append(("spec.accelerator.type", f"GKE offers no {gpu} in {region_of(location)} "
                    f"{where}; it does in {_regions_with(gpu)}"))
        return out
    wanted = zones or ([location] if is_zone(location) else [])
    for n, zone in enumerate(wanted):
        if zone not in offered and region_of(zone) == region_of(location):
            path = f"spec.zones.{n}" if zones else "spec.accelerator.type"
            out.append((path, f"GKE offers no {gpu} in zone {zone} {where}; it does in "
                        f"{', '.join(offered)}"))
    return out


def _machine_problems(machine: str, gpu: str, count: int) -> list[tuple[str, str]]:
    comes_with = bundled(machine)
    if comes_with is not None:
        kind, n = comes_with
        if gpu != kind:
            return [("spec.accelerator.type", f"{machine} comes with {kind} GPUs, not {gpu}")]
        if count != n:
            return [("spec.accelerator.count", f"{machine} comes with {n} x {kind}; GKE does not "
                     f"allow {count}")]
        return []
    n1 = _N1.fullmatch(machine)
    if n1 is None:
        known = machine.split("-")[0] in ("e2", "n2", "n2d", "n4", "c2", "c2d", "c3", "c3d",
                                          "c4", "t2d", "t2a", "m1", "m2", "m3")
        if known:
            return [("spec.accelerator", f"{machine} takes no GPU: GPUs attach to N1 machines "
                     "or come with A2, A3 and G2 machines")]
        return []  # a family this table does not know: GKE answers
    counts = _N1_GPUS.get(gpu)
    if counts is None:
        return [("spec.accelerator.type", f"{gpu} does not attach to N1 machines; "
                 f"{_machine_for(gpu)}")] if gpu in MACHINES else []
    if count not in counts:
        return [("spec.accelerator.count", f"GKE attaches {', '.join(map(str, counts))} x {gpu} "
                 f"to an N1 machine, not {count}")]
    cpus = int(n1["cpus"])
    if cpus > counts[count]:
        return [("spec.machineType", f"{machine} has {cpus} vCPUs; with {count} x {gpu} an N1 "
                 f"machine may have at most {counts[count]}")]
    return []


def _machine_for(gpu: str) -> str:
    shapes = MACHINES.get(gpu) or {}
    return "use " + ", ".join(f"{m} ({n})" for n, m in sorted(shapes.items()))


def _regions_with(gpu: str) -> str:
    regions = sorted(gpu_zones()["gpus"].get(gpu) or {})
    return ", ".join(regions) or "no region of the table"
