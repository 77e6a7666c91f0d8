"""The GPU sizing arithmetic the plan prints, and the local runtime's reading of a model's size."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from substratus_cli.address import Address
from substratus_cli.errors import ProviderError
from substratus_cli.resource import Resource
from substratus_cli.sizing import (
    CATALOG,
    GIB,
    LOADER_GPUS,
    MIB,
    Accelerator,
    ModelSize,
    peak_pods,
    pick,
    pool_max_nodes,
    serving,
    training,
)
from substratus_providers.local.host import GPU, Host, check_fits

OPT_125M = ModelSize(125_000_000, 32, "spec.size")


def test_serving_is_weights_at_the_served_precision_plus_a_fifth():
    estimate = serving(OPT_125M)
    assert estimate.bytes == 600_000_000
    assert estimate.arithmetic == ("125.0M parameters x 32 bits / 8 = 476.8 MiB of weights, x 1.2 "
                                   "for the KV cache and activations = 572.2 MiB")
    assert serving(OPT_125M, quantization_bits=8).bytes == 150_000_000


def test_training_is_sixteen_bytes_a_parameter_plus_a_fifth():
    estimate = training(OPT_125M)
    assert estimate.bytes == 2_400_000_000
    assert "125.0M parameters x 16 bytes (weights, gradients and Adam state)" in estimate.arithmetic


def labelled(choice: tuple[Accelerator, int] | None) -> tuple[str, int] | None:
    return (choice[0].label, choice[1]) if choice is not None else None


# Each GPU type's usable memory (the device memory CUDA reports, docs/gpus.md) and the marketed
# size it falls short of.
USABLE = {"T4": (15102 * MIB, 16), "L4": (23034 * MIB, 24), "A100 40GB": (40536 * MIB, 40),
          "A100 80GB": (81116 * MIB, 80), "H100": (81082 * MIB, 80)}


def serving_bytes(n: int) -> ModelSize:
    """A model whose 32-bit serving estimate is about `n` bytes (n / 4.8 parameters)."""
    return ModelSize(n * 10 // 48, 32, "spec.size")


@pytest.mark.parametrize("accelerator", CATALOG, ids=lambda a: a.label)
def test_each_gpu_type_counts_its_usable_memory_not_its_marketed_size(accelerator: Accelerator):
    usable, marketed = USABLE[accelerator.label]
    assert (accelerator.memory_bytes, accelerator.marketed_gb) == (usable, marketed)
    assert accelerator.memory_bytes < marketed * GIB
    assert accelerator.shown == (f"{accelerator.label} ({usable / GIB:.1f} GiB usable of "
                                 f"{marketed} GB)")
    # What the usable memory holds fits; a little more, still under the marketed size, does not.
    fits = serving(serving_bytes(accelerator.memory_bytes))
    assert fits.bytes <= accelerator.memory_bytes
    assert pick(fits, [accelerator]) == (accelerator, 1)
    over = serving(serving_bytes(accelerator.memory_bytes + 64 * MIB))
    assert accelerator.memory_bytes < over.bytes < marketed * GIB
    assert pick(over, [accelerator]) is None


def test_pick_takes_the_smallest_gpu_that_holds_it_on_one_gpu() -> None:
    # 15.6 GiB: more than a T4's 14.7 GiB usable, though less than its marketed 16 GB.
    assert labelled(pick(serving(ModelSize(7_000_000_000, 16, "spec.size")))) == ("L4", 1)
    assert labelled(pick(serving(ModelSize(6_000_000_000, 16, "spec.size")))) == ("T4", 1)
    # 29.1 GiB: one A100 40GB, never two T4s (the loader puts the model on one GPU).
    assert labelled(pick(serving(ModelSize(13_000_000_000, 16, "spec.size")))) == (
        "A100 40GB", 1)
    # 156.5 GiB fits no single GPU: refused rather than spread over GPUs nothing uses.
    assert pick(serving(ModelSize(70_000_000_000, 16, "spec.size"))) is None
    assert LOADER_GPUS == 1


@given(st.integers(1, 10**12), st.sampled_from([4, 8, 16, 32]))
def test_a_picked_accelerator_always_holds_the_estimate_on_one_gpu(count: int, bits: int):
    estimate = serving(ModelSize(count, bits, "spec.size"))
    chosen = pick(estimate)
    if chosen is None:
        assert all(estimate.bytes > a.memory_bytes for a in CATALOG)
    else:
        accelerator, n = chosen
        assert n == 1 and accelerator.memory_bytes >= estimate.bytes
        assert all(a.memory_bytes >= accelerator.memory_bytes
                   for a in CATALOG if a.memory_bytes >= estimate.bytes)


def test_a_servers_peak_pods_count_its_rollouts_surge() -> None:
    server = Resource(Address("ModelServer", "ml", "s"), {"model": {"name": "m"}})
    assert peak_pods(server) == 2  # 1 replica + maxSurge 1 (the defaults)
    scaled = Resource(Address("ModelServer", "ml", "s"), {
        "model": {"name": "m"}, "replicas": 3, "rollout": {"maxSurge": 2}})
    assert peak_pods(scaled) == 5
    assert peak_pods(Resource(Address("Model", "ml", "m"), {"training": {}})) == 1
    assert peak_pods(Resource(Address("ModelServer", "ml", "s"), {"model": {"name": "m"},
                                                                    "replicas": 0})) == 0


def test_a_pools_most_nodes_are_its_maximum_per_zone_times_its_zones() -> None:
    assert pool_max_nodes({"autoscaling": {"min": 0, "max": 2}}, "us-central1") == 6
    assert pool_max_nodes({"autoscaling": {"min": 0, "max": 2}}, "us-central1-a") == 2
    assert pool_max_nodes({"autoscaling": {"min": 0, "max": 2},
                           "zones": ["us-central1-a", "us-central1-b"]}, "us-central1") == 4
    assert pool_max_nodes({}, "europe-west4") == 3


def test_the_local_fit_names_the_device_or_refuses_with_the_arithmetic():
    cpu_only = Host(16 * GIB, ())
    assert check_fits(serving(OPT_125M), cpu_only, "ModelServer 's'", None).endswith(
        "fits in this machine's memory (16.0 GiB, no GPU found)")
    with_gpu = Host(16 * GIB, (GPU("NVIDIA L4", 24 * GIB),))
    assert check_fits(training(OPT_125M), with_gpu, "Model 'm' training", None).endswith(
        "fits in NVIDIA L4 (24.0 GiB)")
    with pytest.raises(ProviderError, match=r"Model 'big' training does not fit: training needs "
                                            r"7\.0B parameters .* more than NVIDIA L4 \(24\.0 GiB\)"):
        check_fits(training(ModelSize(7_000_000_000, 16, "spec.size")), with_gpu,
                   "Model 'big' training", None)
    with pytest.raises(ProviderError, match=r"requests 2 GPU\(s\) \(nvidia-l4\) but this machine "
                                            r"has 1"):
        check_fits(serving(OPT_125M), with_gpu, "ModelServer 's'", {"type": "nvidia-l4", "count": 2})
