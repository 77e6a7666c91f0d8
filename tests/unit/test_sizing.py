"""The GPU sizing arithmetic the plan prints, and the local runtime's reading of a model's size."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from substratus_cli.errors import ProviderError
from substratus_cli.sizing import CATALOG, GIB, Accelerator, ModelSize, pick, serving, training
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


def test_pick_takes_the_fewest_gpus_then_the_smallest() -> None:
    assert labelled(pick(serving(ModelSize(7_000_000_000, 16, "spec.size")))) == ("T4", 1)  # 15.6 GiB
    eight_b = serving(ModelSize(8_000_000_000, 16, "spec.size"))  # 17.9 GiB: more than a T4
    assert labelled(pick(eight_b)) == ("L4", 1)
    seventy_b = serving(ModelSize(70_000_000_000, 16, "spec.size"))  # 156.5 GiB
    assert labelled(pick(seventy_b)) == ("A100 80GB", 2)
    assert pick(training(ModelSize(700_000_000_000, 16, "spec.size"))) is None


@given(st.integers(1, 10**12), st.sampled_from([4, 8, 16, 32]))
def test_a_picked_accelerator_always_holds_the_estimate(count: int, bits: int):
    estimate = serving(ModelSize(count, bits, "spec.size"))
    chosen = pick(estimate)
    if chosen is None:
        assert all(estimate.bytes > 8 * a.memory_bytes for a in CATALOG)
    else:
        accelerator, n = chosen
        assert n * accelerator.memory_bytes >= estimate.bytes
        assert (n - 1) * accelerator.memory_bytes < estimate.bytes


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
