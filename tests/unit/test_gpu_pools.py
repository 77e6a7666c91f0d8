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
CLUSTER = Resource(Address("Cluster", "ml", "gke"), {"project": "my-project", "location": "us-central1"})


def cluster_at(location: str) -> Resource:
    return Resource(Address("Cluster", "ml", "gke"), {"project": "my-project", "location": location})


def r(kind: str, name: str, spec: dict[str, Any], refs: tuple[Address, ...] = ()) -> Resource:
    return Resource(Address(kind, "ml", name), spec, file=f"{name}.yaml", line=3, refs=refs)


def served(params: int, bits: int = 16, cluster: Resource = CLUSTER,
           **server: Any) -> list[Resource]:
    model = r("Model", "m", {"source": {"path": "w"},
                             "size": {"parameterCount": params, "parameterBits": bits}})
    return [cluster, model, r("ModelServer", "s", {"model": {"name": "m"}, **server},
                              refs=(model.address,))]


def pools(resources: list[Resource]) -> dict[str, dict[str, Any]]:
    return {x.name: dict(x.spec) for x in resources if x.kind == "NodePool"}


def test_the_gpu_with_the_least_memory_that_holds_the_model_on_one_gpu_is_added() -> None:
    out = with_gpu_pools(served(13_000_000_000), ENV)  # 29.1 GiB to serve: one A100 40GB
    assert pools(out) == {"gpu-a100-x1": {
        "cluster": {"name": "gke"}, "machineType": "a2-highgpu-1g",
        "accelerator": {"type": "nvidia-tesla-a100", "count": 1, "gpuDriverVersion": "LATEST"},
        # The zones of us-central1 that offer it (gpu_zones.yaml); the server's 2 pods (1 replica
        # and 1 of surge) fit in 1 node a zone.
        "zones": ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"],
        "autoscaling": {"min": 0, "max": 1}}}
    server = next(x for x in out if x.kind == "ModelServer")
    assert server.refs == (Address("Model", "ml", "m"), Address("Cluster", "ml", "gke"),
                           Address("NodePool", "ml", "gpu-a100-x1"))
    pool = next(x for x in out if x.kind == "NodePool")
    assert (pool.file, pool.line, pool.refs) == ("s.yaml", 3, (CLUSTER.address,))


def test_larger_models_get_larger_gpus_and_none_is_added_for_what_one_gpu_cannot_hold() -> None:
    # 67 GiB (60B at 8 bits): one A100 80GB, in the two us-central1 zones that offer it.
    assert pools(with_gpu_pools(served(60_000_000_000, bits=8), ENV)) == {"gpu-a100-80gb-x1": {
        "cluster": {"name": "gke"}, "machineType": "a2-ultragpu-1g",
        "accelerator": {"type": "nvidia-a100-80gb", "count": 1, "gpuDriverVersion": "LATEST"},
        "zones": ["us-central1-a", "us-central1-c"], "autoscaling": {"min": 0, "max": 1}}}
    # 156.5 GiB: no single GPU holds it, and the loader uses one: no pool (the kubernetes
    # provider refuses the server, with the arithmetic).
    assert pools(with_gpu_pools(served(70_000_000_000), ENV)) == {}


def test_only_gpus_offered_in_the_clusters_location_are_picked() -> None:
    # europe-west1 offers no A100 (gpu_zones.yaml): 29.1 GiB goes on an H100 there.
    out = pools(with_gpu_pools(served(13_000_000_000, cluster=cluster_at("europe-west1")), ENV))
    assert list(out) == ["gpu-h100-x1"]
    assert out["gpu-h100-x1"]["zones"] == ["europe-west1-b", "europe-west1-c"]
    # A zonal cluster: its zone must offer it (us-central1-b has no A100 80GB), and the pool is
    # in that zone, holding the server's 2 pods there.
    out = pools(with_gpu_pools(served(60_000_000_000, bits=8,
                                      cluster=cluster_at("us-central1-b")), ENV))
    assert out == {"gpu-h100-x1": {
        "cluster": {"name": "gke"}, "machineType": "a3-highgpu-1g",
        "accelerator": {"type": "nvidia-h100-80gb", "count": 1, "gpuDriverVersion": "LATEST"},
        "autoscaling": {"min": 0, "max": 2}}}
    # A region the table does not cover: the whole catalogue, GKE's default zones.
    out = pools(with_gpu_pools(served(13_000_000_000, cluster=cluster_at("africa-south1")), ENV))
    assert out["gpu-a100-x1"]["autoscaling"] == {"min": 0, "max": 1}
    assert "zones" not in out["gpu-a100-x1"]


def test_no_pool_when_a_declared_pool_holds_it_or_a_gpu_is_declared_or_no_cluster() -> None:
    a100s = r("NodePool", "a100", {"cluster": {"name": "gke"}, "machineType": "a2-highgpu-1g",
                                   "accelerator": {"type": "nvidia-tesla-a100", "count": 1}})
    assert pools(with_gpu_pools([*served(13_000_000_000), a100s], ENV)) == {
        "a100": dict(a100s.spec)}
    declared = served(13_000_000_000, resources={"gpu": {"type": "nvidia-l4", "count": 2}})
    assert pools(with_gpu_pools(declared, ENV)) == {}
    local = EnvironmentSpec(runtime="local")
    assert pools(with_gpu_pools(served(13_000_000_000), local)) == {}
    assert list(pools(with_gpu_pools(served(1_000_000), ENV))) == ["gpu-t4-x1"]


def test_workloads_that_need_the_same_gpu_share_one_pool_sized_for_all_their_pods() -> None:
    zonal = cluster_at("us-central1-a")
    out = with_gpu_pools([*served(13_000_000_000, cluster=zonal),
                          r("ModelServer", "s2", {"model": {"name": "m"}, "replicas": 2,
                                                  "rollout": {"maxSurge": 2}})], ENV)
    assert list(pools(out)) == ["gpu-a100-x1"]
    # 1 + 1 pods of the first server, 2 + 2 of the second, in the cluster's one zone.
    assert pools(out)["gpu-a100-x1"]["autoscaling"] == {"min": 0, "max": 6}
    assert all(Address("NodePool", "ml", "gpu-a100-x1") in x.refs
               for x in out if x.kind == "ModelServer")
