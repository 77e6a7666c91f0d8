"""GPU node pools sized for workloads on a GKE Cluster the workspace makes: which shape, when
one is added, and the edges that order it before its workload."""

from __future__ import annotations

from typing import Any

from substratus_cli.address import Address
from substratus_cli.config.schema import EnvironmentSpec
from substratus_cli.resource import Resource
from substratus_providers.gcp.expand import expand as with_gpu_pools

ENV = EnvironmentSpec.model_validate({
    "runtime": "kubernetes", "kubernetes": {"cluster": {"name": "gke"}, "namespace": "ml"}})
CLUSTER = Resource(Address("Cluster", "ml", "gke"), {"project": "p", "location": "us-central1"})


def r(kind: str, name: str, spec: dict[str, Any], refs: tuple[Address, ...] = ()) -> Resource:
    return Resource(Address(kind, "ml", name), spec, file=f"{name}.yaml", line=3, refs=refs)


def served(params: int, bits: int = 16, **server: Any) -> list[Resource]:
    model = r("Model", "m", {"source": {"path": "w"},
                             "size": {"parameterCount": params, "parameterBits": bits}})
    return [CLUSTER, model, r("ModelServer", "s", {"model": {"name": "m"}, **server},
                              refs=(model.address,))]


def pools(resources: list[Resource]) -> dict[str, dict[str, Any]]:
    return {x.name: dict(x.spec) for x in resources if x.kind == "NodePool"}


def test_the_machine_with_the_least_gpu_memory_that_holds_the_model_is_added() -> None:
    out = with_gpu_pools(served(13_000_000_000), ENV)  # 29.1 GiB to serve
    assert pools(out) == {"gpu-t4-x2": {
        "cluster": {"name": "gke"}, "machineType": "n1-standard-16",
        "accelerator": {"type": "nvidia-tesla-t4", "count": 2},
        "autoscaling": {"min": 0, "max": 1}}}
    server = next(x for x in out if x.kind == "ModelServer")
    assert server.refs == (Address("Model", "ml", "m"), Address("Cluster", "ml", "gke"),
                           Address("NodePool", "ml", "gpu-t4-x2"))
    pool = next(x for x in out if x.kind == "NodePool")
    assert (pool.file, pool.line, pool.refs) == ("s.yaml", 3, (CLUSTER.address,))


def test_larger_models_get_larger_shapes_and_counts_round_up_to_one_gke_offers() -> None:
    # 156.5 GiB: 2 A100 80GB (160 GiB) beat 4 A100 40GB (160 GiB, more GPUs) and 8 L4s
    # (192 GiB); 2 H100s hold as much, and sort after by name.
    assert pools(with_gpu_pools(served(70_000_000_000), ENV))["gpu-a100-80gb-x2"][
        "machineType"] == "a2-ultragpu-2g"
    # 67 GiB (60B at 8 bits): one A100 80GB (80 GiB) is less GPU memory than the L4s that hold
    # it (3, which G2 machines offer only as 4: 96 GiB).
    assert list(pools(with_gpu_pools(served(60_000_000_000, bits=8), ENV))) == [
        "gpu-a100-80gb-x1"]


def test_no_pool_when_a_declared_pool_holds_it_or_a_gpu_is_declared_or_no_cluster() -> None:
    l4s = r("NodePool", "l4", {"cluster": {"name": "gke"}, "machineType": "g2-standard-24",
                               "accelerator": {"type": "nvidia-l4", "count": 2}})
    assert pools(with_gpu_pools([*served(13_000_000_000), l4s], ENV)) == {"l4": dict(l4s.spec)}
    declared = served(13_000_000_000, resources={"gpu": {"type": "nvidia-l4", "count": 2}})
    assert pools(with_gpu_pools(declared, ENV)) == {}
    local = EnvironmentSpec(runtime="local")
    assert pools(with_gpu_pools(served(13_000_000_000), local)) == {}
    assert pools(with_gpu_pools(served(1_000_000), ENV)) == {"gpu-t4-x1": {
        "cluster": {"name": "gke"}, "machineType": "n1-standard-8",
        "accelerator": {"type": "nvidia-tesla-t4", "count": 1},
        "autoscaling": {"min": 0, "max": 1}}}


def test_workloads_that_need_the_same_shape_share_one_pool() -> None:
    out = with_gpu_pools([*served(13_000_000_000),
                          r("ModelServer", "s2", {"model": {"name": "m"}})], ENV)
    assert list(pools(out)) == ["gpu-t4-x2"]
    assert all(Address("NodePool", "ml", "gpu-t4-x2") in x.refs
               for x in out if x.kind == "ModelServer")
