"""What a GKE node pool costs an hour, from the list prices in prices.yaml: a node's on-demand and
spot price (machine, plus GPUs attached to an N1 machine), times the most nodes the pool can have
(its autoscaling maximum per zone, or one node per zone, times its zones)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from substratus_cli.cost import HourlyCost, money
from substratus_cli.sizing import pool_zones
from substratus_providers.gcp.machines import bundled, region_of

PRICES_FILE = Path(__file__).with_name("prices.yaml")


@functools.cache
def table() -> Mapping[str, Any]:
    loaded: Mapping[str, Any] = yaml.safe_load(PRICES_FILE.read_text())
    return loaded


def basis(location: str) -> str:
    t = table()
    where = t["region"] if region_of(location) == t["region"] else (
        f"{t['region']}; {region_of(location)}'s differ")
    return f"list prices of {t['as_of']}, {where}: providers/gcp/prices.yaml"


def node_price(spec: Mapping[str, Any]) -> tuple[float, float, str] | None:
    """(on demand, spot, how) an hour for one node of the pool; None when the table lacks it."""
    t, machine = table(), str(spec.get("machineType") or "")
    listed = t["machines"].get(machine)
    if listed is None:
        return None
    on_demand, spot = float(listed["on_demand"]), float(listed["spot"])
    how = machine
    accelerator = spec.get("accelerator") or {}
    if accelerator and bundled(machine) is not None:
        how += f" (with {int(accelerator.get('count') or 1)} x {accelerator['type']})"
    elif accelerator:
        gpu = t["gpus"].get(str(accelerator["type"]))
        if gpu is None:
            return None
        n = int(accelerator.get("count") or 1)
        on_demand += n * float(gpu["on_demand"])
        spot += n * float(gpu["spot"])
        how += f" + {n} x {accelerator['type']}"
    return on_demand, spot, how


def max_nodes(spec: Mapping[str, Any], location: str) -> tuple[int, str]:
    """The most nodes the pool can have, and the arithmetic."""
    scaling = spec.get("autoscaling")
    per_zone = int(scaling["max"]) if scaling else 1
    zones = pool_zones(spec, location)
    what = f"autoscaling max {per_zone}" if scaling else "1 node"
    return per_zone * zones, f"{what} a zone x {zones} zone{'s' if zones != 1 else ''}"


def hourly(spec: Mapping[str, Any] | None, location: str) -> tuple[float, list[str]] | None:
    """The pool's most an hour (spot prices for a spot pool) and the lines saying how; (0, [])
    for no pool; None when the table has no price for it."""
    if spec is None:
        return 0.0, []
    price = node_price(spec)
    if price is None:
        return None
    on_demand, spot, how = price
    nodes, arithmetic = max_nodes(spec, location)
    each = spot if spec.get("spot") else on_demand
    kind = "spot" if spec.get("spot") else "on demand"
    return nodes * each, [
        f"price: {how}: {money(on_demand)}/h on demand, {money(spot)}/h spot, a node",
        f"price: at most {nodes} node{'s' if nodes != 1 else ''} ({arithmetic}) at {kind}: "
        f"{money(nodes * each)}/h"]


def pool_cost(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
              location: str) -> HourlyCost:
    """The change from `before` (the live pool's spec, None: none) to `after` (the pool as
    declared, None: deleted); a spec's `zones` None: GKE's default zones."""
    old, new = hourly(before, location), hourly(after, location)
    if old is None or new is None:
        machine = (after or before or {}).get("machineType")
        return HourlyCost(0.0, 0.0, table()["currency"],
                          (f"price: none for {machine} in providers/gcp/prices.yaml",),
                          basis(location), priced=False)
    lines = list(new[1] or old[1])
    if before is not None and after is not None and old[0] != new[0]:
        lines.append(f"price: {money(old[0])}/h -> {money(new[0])}/h at most")
    elif after is None:
        lines = [f"price: {money(old[0])}/h at most saved"]
    return HourlyCost(old[0], new[0], table()["currency"], tuple(lines), basis(location))
