"""What a GKE node pool costs an hour, from providers/gcp/prices.yaml (the one file a price change
edits: these tests read their figures from it), and the GPU machine rules a plan checks."""

from __future__ import annotations

import pytest
import yaml

from substratus_cli.cost import HourlyCost, summarize
from substratus_providers.gcp import machines, prices

TABLE = yaml.safe_load(prices.PRICES_FILE.read_text())
T4 = TABLE["gpus"]["nvidia-tesla-t4"]
N1 = TABLE["machines"]["n1-standard-8"]
G2 = TABLE["machines"]["g2-standard-8"]
L4_POOL = {"machineType": "g2-standard-8", "accelerator": {"type": "nvidia-l4", "count": 1},
           "spot": True, "autoscaling": {"min": 0, "max": 2}, "zones": ["us-central1-a"]}


def test_the_table_is_dated_sourced_and_prices_every_sized_machine() -> None:
    assert TABLE["as_of"] and TABLE["region"] == "us-central1" and TABLE["currency"] == "USD"
    assert "https://cloud.google.com/compute/gpus-pricing" in prices.PRICES_FILE.read_text()
    for shapes in machines.MACHINES.values():
        for count, machine in shapes.items():
            assert machine in TABLE["machines"], machine
            price = TABLE["machines"][machine]
            assert 0 < price["spot"] < price["on_demand"], machine
            assert machines.bundled(machine) in (None, (next(
                g for g, s in machines.MACHINES.items() if machine in s.values()), count))


def test_a_t4_node_is_its_n1_machine_plus_its_gpus() -> None:
    price = prices.node_price(
        {"machineType": "n1-standard-8", "accelerator": {"type": "nvidia-tesla-t4", "count": 2}})
    assert price is not None
    on_demand, spot, how = price
    assert on_demand == pytest.approx(N1["on_demand"] + 2 * T4["on_demand"])
    assert spot == pytest.approx(N1["spot"] + 2 * T4["spot"])
    assert how == "n1-standard-8 + 2 x nvidia-tesla-t4"
    # G2 machines come with their L4: the machine's price is the node's.
    assert prices.node_price(L4_POOL) == (G2["on_demand"], G2["spot"],
                                          "g2-standard-8 (with 1 x nvidia-l4)")


def test_a_created_pool_costs_its_most_nodes_at_its_pricing() -> None:
    cost = prices.pool_cost(None, L4_POOL, "us-central1")
    assert (cost.before, cost.after) == (0.0, pytest.approx(2 * G2["spot"]))
    assert cost.lines == (
        f"price: g2-standard-8 (with 1 x nvidia-l4): ${G2['on_demand']:.2f}/h on demand, "
        f"${G2['spot']:.2f}/h spot, a node",
        f"price: at most 2 nodes (autoscaling max 2 a zone x 1 zone) at spot: "
        f"${2 * G2['spot']:.2f}/h")
    assert cost.basis == f"list prices of {TABLE['as_of']}, us-central1: providers/gcp/prices.yaml"
    # No zones declared on a regional cluster: GKE's three; on demand when not spot.
    regional = prices.pool_cost(None, {**L4_POOL, "zones": None, "spot": False}, "europe-west4")
    assert regional.after == pytest.approx(6 * G2["on_demand"])
    assert "europe-west4's differ" in regional.basis


def test_a_resize_and_a_delete_are_the_change_in_the_most_an_hour() -> None:
    bigger = prices.pool_cost(L4_POOL, {**L4_POOL, "autoscaling": {"min": 0, "max": 5}},
                              "us-central1")
    assert bigger.delta == pytest.approx(3 * G2["spot"])
    assert bigger.lines[-1] == (f"price: ${2 * G2['spot']:.2f}/h -> ${5 * G2['spot']:.2f}/h "
                                "at most")
    gone = prices.pool_cost(L4_POOL, None, "us-central1")
    assert gone.delta == pytest.approx(-2 * G2["spot"])


def test_a_machine_without_a_price_says_so_and_counts_as_unpriced() -> None:
    cost = prices.pool_cost(None, {"machineType": "c3-standard-4"}, "us-central1")
    assert not cost.priced and cost.lines == (
        "price: none for c3-standard-4 in providers/gcp/prices.yaml",)
    total = summarize([cost, prices.pool_cost(None, L4_POOL, "us-central1"), None])
    assert total is not None and total.unpriced == 1
    assert total.line() == (f"Cost: +${2 * G2['spot']:.2f} an hour at most "
                            f"({prices.basis('us-central1')}); 1 change(s) without a price")
    assert summarize([None]) is None
    assert HourlyCost.from_json(cost.to_json()) == cost


@pytest.mark.parametrize(("spec", "location", "problems"), [
    (L4_POOL, "us-central1", []),
    ({**L4_POOL, "accelerator": {"type": "nvidia-l4", "count": 2}}, "us-central1",
     [("spec.accelerator.count", "g2-standard-8 comes with 1 x nvidia-l4; GKE does not allow 2")]),
    ({"machineType": "g2-standard-24", "accelerator": {"type": "nvidia-l4", "count": 2}},
     "us-central1", []),
    ({"machineType": "a2-highgpu-2g", "accelerator": {"type": "nvidia-l4", "count": 2}},
     "us-central1",
     [("spec.accelerator.type", "a2-highgpu-2g comes with nvidia-tesla-a100 GPUs, not nvidia-l4")]),
    ({"machineType": "n1-standard-64", "accelerator": {"type": "nvidia-tesla-t4", "count": 1}},
     "us-central1",
     [("spec.machineType", "n1-standard-64 has 64 vCPUs; with 1 x nvidia-tesla-t4 an N1 machine "
                           "may have at most 48")]),
    ({"machineType": "n1-standard-8", "accelerator": {"type": "nvidia-l4", "count": 1}},
     "us-central1",
     [("spec.accelerator.type", "nvidia-l4 does not attach to N1 machines; use g2-standard-8 "
                                "(1), g2-standard-24 (2), g2-standard-48 (4), g2-standard-96 (8)")]),
    ({**L4_POOL, "zones": ["europe-west4-a"]}, "us-central1",
     [("spec.zones.0", "zone 'europe-west4-a' is not in the cluster's region 'us-central1'")]),
    ({"machineType": "a3-highgpu-1g", "accelerator": {"type": "nvidia-h100-80gb"}},
     "us-central1-f", [("spec.accelerator.type",
                        "GKE offers no nvidia-h100-80gb in zone us-central1-f as of "
                        f"{machines.gpu_zones()['as_of']} (providers/gcp/gpu_zones.yaml); it does "
                        "in us-central1-a, us-central1-b, us-central1-c")]),
    # A region the table does not cover, a machine family it does not know: not checked.
    ({**L4_POOL, "zones": None}, "africa-south1", []),
    ({"machineType": "a4-highgpu-8g", "accelerator": {"type": "nvidia-b200", "count": 8}},
     "us-central1", []),
])
def test_gpu_machine_rules(spec: dict, location: str, problems: list) -> None:
    assert machines.gpu_problems(spec, location) == problems
