"""What a plan diffs of a Kubernetes object: live objects recorded from a real kube-apiserver equal
their manifests once normalized, real changes still show, quantities compare by amount."""

from __future__ import annotations

import copy
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from substratus_cli.address import Address
from substratus_cli.resource import Resource
from substratus_providers.kubernetes.manifests import RenderContext, render
from substratus_providers.kubernetes.normalize import (
    canonical_quantity,
    format_quantity,
    normalize,
    parse_quantity,
)

# The answers of kube-apiserver v1.37.2 (tests/cluster: with kube-controller-manager and kwok, an
# L4 pool) to a GET after a server-side apply (field manager `substratus`) of render()'s
# manifests of the resources below, copied as they came: managedFields, defaults, status.
RECORDED = Path(__file__).resolve().parent / "goldens" / "k8s" / "apiserver"
CTX = RenderContext(namespace="ml", part_of="0b6e1f9c-5d1e-4c55-9f0e-3f2d7a1c8e42",
                    registry="ghcr.io/substratusai", image_tag="v0.1.0",
                    inputs={"model": "gs://substratus-test/artifacts/models/base/sha256-1111",
                            "data": "gs://substratus-test/artifacts/datasets/colors/sha256-2222"},
                    artifacts="gs://substratus-test/artifacts/staging/models/colors")


def gpu_server() -> Resource:
    return Resource(Address("ModelServer", "ml", "llama"), {
        "model": {"name": "base"}, "replicas": 1, "rollout": {"readinessTimeoutSeconds": 600},
        "resources": {"cpu": 4, "memory": "16Gi", "gpu": {"type": "nvidia-l4", "count": 1}},
        "env": {"HF_TOKEN": "${{ secrets.hf.token }}"}, "params": {"max_tokens": 128},
    }, labels={"team": "research"})


def training_model() -> Resource:
    return Resource(Address("Model", "ml", "colors"), {
        "training": {"baseModel": {"name": "base"}, "dataset": {"name": "colors"},
                     "params": {"epochs": 3, "learning_rate": 0.003}},
        "resources": {"cpu": "2", "memory": "8Gi", "disk": "20Gi"},
    })


def notebook() -> Resource:
    return Resource(Address("Notebook", "ml", "explore"), {
        "model": {"name": "base"}, "resources": {"cpu": 0.5, "memory": "2Gi"}})


def desired(resource: Resource, kind: str) -> dict[str, Any]:
    return next(m for m in render(resource, CTX) if m["kind"] == kind)


def recorded(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((RECORDED / name).read_text())
    return loaded


CASES = [
    (gpu_server, "Deployment", "deployment-server-llama.json"),
    (gpu_server, "Service", "service-server-llama.json"),
    (training_model, "Job", "job-model-colors.json"),
    (notebook, "StatefulSet", "statefulset-notebook-explore.json"),
    (notebook, "Service", "service-notebook-explore.json"),
]


# Live objects against their manifests


@pytest.mark.parametrize(("make", "kind", "file"), CASES, ids=[c[2] for c in CASES])
def test_a_live_object_from_the_apiserver_equals_its_manifest(make: Any, kind: str,
                                                              file: str) -> None:
    want = desired(make(), kind)
    live = recorded(file)
    assert live["metadata"]["managedFields"]  # the recording is what the apiserver returns
    assert normalize(live, want) == normalize(want)


def test_a_changed_replica_count_shows_as_a_difference() -> None:
    want = desired(gpu_server(), "Deployment")
    live = recorded("deployment-server-llama.json")
    live["spec"]["replicas"] = 2  # scaled by someone else
    got = normalize(live, want)
    assert got != normalize(want)
    assert got["spec"]["replicas"] == 2
    assert {k: v for k, v in got["spec"].items() if k != "replicas"} == {
        k: v for k, v in normalize(want)["spec"].items() if k != "replicas"}


def test_a_changed_image_in_a_job_shows_as_a_difference() -> None:
    want = desired(training_model(), "Job")
    live = recorded("job-model-colors.json")
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "trainer:hotfix"
    got = normalize(live, want)["spec"]["template"]["spec"]["containers"][0]
    assert got["image"] == "trainer:hotfix"


def test_server_defaults_are_not_kept_when_the_manifest_does_not_set_them() -> None:
    live = normalize(recorded("deployment-server-llama.json"),
                     desired(gpu_server(), "Deployment"))
    pod = live["spec"]["template"]["spec"]
    assert "revisionHistoryLimit" not in live["spec"]
    assert {"dnsPolicy", "schedulerName", "securityContext"}.isdisjoint(pod)
    assert "terminationMessagePath" not in pod["containers"][0]
    job = normalize(recorded("job-model-colors.json"), desired(training_model(), "Job"))
    assert {"podReplacementPolicy", "selector", "completions"}.isdisjoint(job["spec"])
    service = normalize(recorded("service-server-llama.json"), desired(gpu_server(), "Service"))
    assert "clusterIP" not in service["spec"]


def test_without_a_manifest_only_the_servers_bookkeeping_goes() -> None:
    job = normalize(recorded("job-model-colors.json"))
    assert "status" not in job
    assert {"managedFields", "resourceVersion", "uid", "creationTimestamp",
            "generation"}.isdisjoint(job["metadata"])
    template_labels = job["spec"]["template"]["metadata"]["labels"]
    assert set(template_labels) == {"substratus.ai/kind", "substratus.ai/name"}
    assert job["spec"]["podReplacementPolicy"] == "TerminatingOrFailed"  # a default stays


def test_server_annotations_and_labels_are_stripped() -> None:
    live = {"metadata": {"name": "x", "annotations": {
        "deployment.kubernetes.io/revision": "3",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "batch.kubernetes.io/job-tracking": "", "substratus.ai/spec-hash": "sha256:1"},
        "labels": {"job-name": "x", "controller-uid": "u", "team": "ml"}}}
    assert normalize(live)["metadata"] == {
        "name": "x", "annotations": {"substratus.ai/spec-hash": "sha256:1"},
        "labels": {"team": "ml"}}


def test_items_of_a_list_answer_take_the_manifests_api_version_and_kind() -> None:
    want = desired(gpu_server(), "Deployment")
    item = recorded("deployment-server-llama.json")
    del item["apiVersion"], item["kind"]
    assert normalize(item, want) == normalize(want)


def test_a_sidecar_added_by_someone_else_is_not_ours_to_diff() -> None:
    want = desired(gpu_server(), "Deployment")
    live = recorded("deployment-server-llama.json")
    live["spec"]["template"]["spec"]["containers"].append({"name": "istio-proxy", "image": "x"})
    assert normalize(live, want) == normalize(want)


def test_an_unnamed_list_of_another_length_is_compared_whole() -> None:
    want = desired(gpu_server(), "Deployment")
    live = recorded("deployment-server-llama.json")
    extra = {"key": "spot", "operator": "Exists", "effect": "NoSchedule"}
    live["spec"]["template"]["spec"]["tolerations"].append(extra)
    got = normalize(live, want)["spec"]["template"]["spec"]["tolerations"]
    assert got[-1] == extra


def test_a_missing_env_var_shows_as_a_difference() -> None:
    want = desired(gpu_server(), "Deployment")
    live = recorded("deployment-server-llama.json")
    env = live["spec"]["template"]["spec"]["containers"][0]["env"]
    env[:] = [e for e in env if e["name"] != "PARAM_MAX_TOKENS"]
    assert normalize(live, want) != normalize(want)


def test_quantities_compare_by_amount() -> None:
    want = copy.deepcopy(desired(gpu_server(), "Deployment"))
    container = want["spec"]["template"]["spec"]["containers"][0]
    container["resources"] = {"requests": {"cpu": "4000m", "memory": "16384Mi"},
                              "limits": {"memory": "16Gi", "nvidia.com/gpu": 1}}
    live = recorded("deployment-server-llama.json")
    assert normalize(live, want) == normalize(want)
    assert normalize(want)["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": "1"}}


# The quantity parser


@pytest.mark.parametrize(("a", "b"), [
    ("1000m", "1"), ("1Gi", "1024Mi"), ("0.5", "500m"), (0.5, "500m"), (2, "2"), ("1e3", "1k"),
    ("1E3", "1000"), ("1E", "1000P"), (".5Ki", "512"), ("1.5Gi", "1536Mi"), ("+1", "1"),
    ("1.5n", "2n"), ("0", "0m"), ("1073741824", "1Gi"),
])
def test_spellings_of_the_same_amount_are_equal(a: Any, b: Any) -> None:
    assert parse_quantity(a) == parse_quantity(b)
    assert canonical_quantity(a) == canonical_quantity(b)


@pytest.mark.parametrize(("value", "canonical"), [
    ("1000m", "1"), ("0.5", "500m"), ("1024Mi", "1Gi"), ("1536Mi", "1536Mi"), ("2000", "2k"),
    ("1500", "1500"), ("0.1", "100m"), ("100u", "100u"), ("0", "0"), ("512Mi", "512Mi"),
])
def test_quantities_are_spelled_canonically(value: str, canonical: str) -> None:
    assert canonical_quantity(value) == canonical


@pytest.mark.parametrize("value", ["", "m", "1.2.3", "1Ki1", "1 Gi", "1KB", "1e", "one", True,
                                   None, float("inf"), "0x10"])
def test_what_is_not_a_quantity_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity(value)


# Amounts the apiserver can hold: whole numbers of nano units.
amounts = st.builds(lambda n, exponent: Fraction(n) * Fraction(10) ** exponent,
                    st.integers(-(10**15), 10**15), st.integers(-9, 9))
DECIMAL_FACTORS = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
                   "": Fraction(1), "k": Fraction(1000), "M": Fraction(10**6),
                   "G": Fraction(10**9), "T": Fraction(10**12)}
BINARY_FACTORS = {"Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30)}


def decimal_text(amount: Fraction) -> str:
    """The exact decimal digits of `amount` (its denominator has only the factors 2 and 5)."""
    places = 0
    while (amount * 10**places).denominator != 1:
        places += 1
    scaled = abs(int(amount * 10**places))
    digits = str(scaled).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}" if places else digits
    return ("-" if amount < 0 else "") + text


@st.composite
def spellings(draw: st.DrawFn) -> tuple[Fraction, str]:
    """An amount and one way to write it: any suffix, or an exponent."""
    amount = draw(amounts)
    style = draw(st.sampled_from([*DECIMAL_FACTORS, *BINARY_FACTORS, "exponent"]))
    if style == "exponent":
        exponent = draw(st.integers(-9, 9))
        return amount, f"{decimal_text(amount / Fraction(10) ** exponent)}e{exponent}"
    factor = {**DECIMAL_FACTORS, **BINARY_FACTORS}[style]
    return amount, decimal_text(amount / factor) + style


@given(amounts)
def test_an_amount_and_its_rendering_are_equal(amount: Fraction) -> None:
    text = format_quantity(amount)
    assert parse_quantity(text) == amount
    assert canonical_quantity(text) == text


@given(spellings(), spellings())
def test_different_spellings_of_one_amount_normalize_equal(
        first: tuple[Fraction, str], second: tuple[Fraction, str]) -> None:
    amount, text = first
    assert parse_quantity(text) == amount
    assert canonical_quantity(text) == format_quantity(amount)
    other_amount, other_text = second
    assert (canonical_quantity(text) == canonical_quantity(other_text)) == (amount == other_amount)


@given(amounts.flatmap(lambda a: st.tuples(st.just(a), st.sampled_from(list(DECIMAL_FACTORS)))))
def test_a_resource_map_normalizes_equal_however_it_is_spelled(
        drawn: tuple[Fraction, str]) -> None:
    amount, suffix = drawn
    spelled = decimal_text(amount / DECIMAL_FACTORS[suffix]) + suffix
    live = {"spec": {"resources": {"limits": {"memory": spelled}}}}
    want = {"spec": {"resources": {"limits": {"memory": format_quantity(amount)}}}}
    assert normalize(live, want) == normalize(want)
