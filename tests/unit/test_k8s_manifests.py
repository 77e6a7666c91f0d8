"""Kubernetes manifests of the ML kinds against golden files; secrets as secretKeyRefs, names
within Kubernetes' limits, and GPU sizing against the node pools a cluster offers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from substratus_cli.address import Address
from substratus_cli.config import load_directory
from substratus_cli.diff import spec_hash
from substratus_cli.errors import ProviderError
from substratus_cli.resource import Resource
from substratus_cli.sizing import CATALOG, ModelSize, PoolCapacity
from substratus_providers.kubernetes.gpus import gpu_request, pools_to_come, rollout_capacity
from substratus_providers.kubernetes.manifests import (
    RenderContext,
    object_name,
    render,
    token_secret_name,
)
from tests.support.goldens import check_golden

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BUCKET = "gs://substratus-test/artifacts"
L4 = next(a for a in CATALOG if a.label == "L4")
T4 = next(a for a in CATALOG if a.label == "T4")
DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def resource(kind: str, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None,
             ) -> Resource:
    return Resource(Address(kind, "default", name), spec, labels=labels or {})


def context(**overrides: Any) -> RenderContext:
    fields: dict[str, Any] = {"namespace": "ml", "part_of": "ws-1",
                              "registry": "ghcr.io/substratusai", "image_tag": "v0.1.0",
                              **overrides}
    return RenderContext(**fields)


def as_yaml(manifests: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(manifests, sort_keys=True, default_flow_style=False)


def container_of(manifest: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = manifest["spec"]["template"]["spec"]["containers"]
    return containers[0]


def env_of(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container_of(manifest)["env"]}


# Goldens


QUICKSTART_INPUTS = {
    "Model/base": {},
    "Model/colors": {"model": f"{BUCKET}/models/base/sha256-1111",
                     "data": f"{BUCKET}/datasets/favorite-colors/sha256-2222"},
    "ModelServer/colors": {"model": f"{BUCKET}/models/colors/sha256-3333"},
    "Notebook/explore": {"model": f"{BUCKET}/models/colors/sha256-3333",
                         "data": f"{BUCKET}/datasets/favorite-colors/sha256-2222"},
}


def quickstart() -> list[Resource]:
    loaded = load_directory(EXAMPLES / "quickstart")
    assert not list(loaded.diagnostics)
    return loaded.resources


@pytest.mark.parametrize("res", quickstart(), ids=lambda r: f"{r.kind}-{r.name}")
def test_quickstart_manifests_match_goldens(res: Resource, update_goldens: bool) -> None:
    key = f"{res.kind}/{res.name}"
    writes = res.kind in ("Dataset", "Model")
    ctx = context(inputs=QUICKSTART_INPUTS.get(key, {}),
                  artifacts=f"{BUCKET}/staging/{res.kind.lower()}s/{res.name}" if writes else None)
    check_golden(f"k8s/quickstart-{res.kind.lower()}-{res.name}.yaml", as_yaml(render(res, ctx)),
                 update_goldens)


def gpu_server() -> Resource:
    return resource("ModelServer", "llama", {
        "model": {"name": "llama-7b"}, "replicas": 2, "quantization": {"bits": 8},
        "rollout": {"maxSurge": 2, "readinessTimeoutSeconds": 900},
        "resources": {"cpu": 4, "memory": "16Gi", "gpu": {"type": "nvidia-l4", "count": 1}},
        "env": {"HF_TOKEN": "${{ secrets.hf.token }}", "LOG_LEVEL": "info"},
        "params": {"max_tokens": 256, "temperature": 0.7},
    }, labels={"team": "research"})


def test_gpu_model_server_matches_golden(update_goldens: bool) -> None:
    ctx = context(inputs={"model": f"{BUCKET}/models/llama-7b/sha256-4444"})
    check_golden("k8s/gpu-model-server.yaml", as_yaml(render(gpu_server(), ctx)), update_goldens)


def test_suspended_notebook_matches_golden(update_goldens: bool) -> None:
    notebook = resource("Notebook", "explore", {
        "model": {"name": "colors"}, "suspend": True, "image": "jupyter/base-notebook:2024-01-01",
        "resources": {"cpu": "500m", "memory": "2048Mi", "disk": "10Gi"},
        "params": {"greeting": "hello"},
    })
    ctx = context(inputs={"model": f"{BUCKET}/models/colors/sha256-3333"})
    manifests = render(notebook, ctx)
    assert manifests[0]["spec"]["replicas"] == 0
    check_golden("k8s/suspended-notebook.yaml", as_yaml(manifests), update_goldens)


def test_same_input_renders_the_same_bytes() -> None:
    ctx = context(inputs={"model": "gs://b/m", "data": "gs://b/d"}, artifacts="gs://b/out",
                  accelerators=(T4, L4), size=ModelSize(1_000_000_000, 16, "spec.size"))
    for res in [*quickstart(), gpu_server()]:
        first, second = render(res, ctx), render(res, ctx)
        assert json.dumps(first) == json.dumps(second)


# Ownership and identity


def test_every_object_carries_ownership_labels_and_the_spec_hash() -> None:
    server = gpu_server()
    for manifest in render(server, context()):
        metadata = manifest["metadata"]
        assert metadata["namespace"] == "ml"
        assert metadata["labels"] == {
            "team": "research", "app.kubernetes.io/managed-by": "substratus",
            "substratus.ai/part-of": "ws-1", "substratus.ai/kind": "ModelServer",
            "substratus.ai/name": "llama"}
        assert metadata["annotations"] == {
            "substratus.ai/spec-hash": spec_hash(server.spec, server.labels)}


def test_user_labels_never_override_ownership_labels() -> None:
    sneaky = resource("Dataset", "d", {"source": {"path": "x"}}, labels={
        "app.kubernetes.io/managed-by": "someone-else", "substratus.ai/part-of": "other"})
    labels = render(sneaky, context())[0]["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "substratus"
    assert labels["substratus.ai/part-of"] == "ws-1"


def test_selectors_match_the_pod_template_labels() -> None:
    deployment, service = render(gpu_server(), context())
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = {"substratus.ai/kind": "ModelServer", "substratus.ai/name": "llama"}
    assert deployment["spec"]["selector"]["matchLabels"] == selector
    assert service["spec"]["selector"] == selector
    assert selector.items() <= template_labels.items()


@pytest.mark.parametrize("kind", ["Dataset", "Model", "ModelServer", "Notebook"])
def test_names_stay_within_63_characters(kind: str) -> None:
    longest = "a" * 30 + "-" + "b" * 32  # the longest name a resource may have
    sibling = "a" * 30 + "-" + "b" * 31 + "c"
    name, other = object_name(kind, longest), object_name(kind, sibling)
    assert len(name) <= 63 and DNS_1123_LABEL.fullmatch(name), name
    assert name != other and name == object_name(kind, longest)
    if kind == "Notebook":
        # Room for the StatefulSet's controller-revision-hash label on its pods.
        assert len(name) <= 52
        assert len(token_secret_name(longest)) <= 63
    assert object_name(kind, "short") == {"Dataset": "dataset-short", "Model": "model-short",
                                          "ModelServer": "server-short",
                                          "Notebook": "notebook-short"}[kind]


# Secrets


def test_secret_env_becomes_a_secret_key_ref_and_no_value_leaks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBSTRATUS_SECRET_HF_TOKEN", "hf_do_not_leak")
    dataset = resource("Dataset", "gated", {
        "source": {"url": "https://example.com/data.tar",
                   "headers": {"Authorization": "Bearer ${{ secrets.hf.token }}"}},
        "env": {"HF_TOKEN": "${{ secrets.hf.token }}"},
    })
    manifests = [*render(dataset, context()), *render(gpu_server(), context())]
    assert "hf_do_not_leak" not in json.dumps(manifests)
    job_env = env_of(manifests[0])
    assert job_env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {
        "secretKeyRef": {"name": "hf", "key": "token"}}}
    # The loader substitutes the header's reference from the Secret, as the local runtime does.
    assert job_env["SUBSTRATUS_SECRET_HF_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "hf", "key": "token"}}
    assert env_of(manifests[1])["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "hf", "key": "token"}


def test_a_secret_inside_other_text_is_refused_naming_the_variable() -> None:
    mixed = resource("Model", "m", {"source": {"huggingface": {"name": "gpt2"}},
                                    "env": {"AUTH": "Bearer ${{ secrets.hf.token }}"}})
    with pytest.raises(ValueError, match=r"spec\.env\.AUTH: on Kubernetes a secret reference "
                                         r"must be the whole value"):
        render(mixed, context())


def test_a_notebook_reads_its_token_from_its_secret() -> None:
    notebook = resource("Notebook", "explore", {})
    token = env_of(render(notebook, context())[0])["JUPYTER_TOKEN"]
    assert token == {"name": "JUPYTER_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "notebook-explore-token", "key": "token"}}}


# The workload contract


def test_params_are_json_encoded_param_env_vars() -> None:
    dataset = resource("Dataset", "d", {"source": {"url": "https://x.test/a.csv"},
                                        "params": {"count": 3, "label": "3", "tags": ["a"]}})
    env = env_of(render(dataset, context())[0])
    assert env["PARAM_COUNT"]["value"] == "3"
    assert env["PARAM_LABEL"]["value"] == '"3"'
    assert env["PARAM_TAGS"]["value"] == '["a"]'
    assert env["SUBSTRATUS_SOURCE"]["value"] == '{"url":"https://x.test/a.csv"}'


def test_training_params_are_merged_with_spec_params() -> None:
    model = resource("Model", "tuned", {
        "training": {"baseModel": {"name": "base"}, "dataset": {"name": "d"},
                     "params": {"epochs": 3, "learning_rate": 0.01}},
        "params": {"epochs": 5}})
    job = render(model, context())[0]
    env = env_of(job)
    assert (env["PARAM_EPOCHS"]["value"], env["PARAM_LEARNING_RATE"]["value"]) == ("5", "0.01")
    assert container_of(job)["image"] == "ghcr.io/substratusai/substratus-trainer:v0.1.0"
    assert "SUBSTRATUS_SOURCE" not in env


def test_values_reach_the_workload_verbatim() -> None:
    # `$$` is the kubelet's escape: without it $(HOME) would be expanded in the pod.
    dataset = resource("Dataset", "d", {"image": "loader:1", "command": ["run", "$(HOME)"],
                                        "env": {"GREETING": "cost: $5", "EMPTY": ""}})
    job = render(dataset, context())[0]
    assert container_of(job)["command"] == ["run", "$$(HOME)"]
    assert env_of(job)["GREETING"] == {"name": "GREETING", "value": "cost: $$5"}
    assert env_of(job)["EMPTY"] == {"name": "EMPTY"}


def test_user_env_overrides_the_contract_env() -> None:
    dataset = resource("Dataset", "d", {"source": {"url": "https://x.test/a.csv"},
                                        "env": {"SUBSTRATUS_CONTENT": "/data"}})
    env = container_of(render(dataset, context())[0])["env"]
    assert [e["value"] for e in env if e["name"] == "SUBSTRATUS_CONTENT"] == ["/data"]


def test_files_on_this_machine_are_recorded_in_a_configmap_not_run_in_a_job() -> None:
    dataset = resource("Dataset", "d", {"source": {"path": "data/"}})
    ctx = context(artifacts=f"{BUCKET}/refs/ml/dataset/d/v1", version="v1", digest="sha256:" + "a" * 64)
    [record] = render(dataset, ctx)
    assert (record["kind"], record["metadata"]["name"]) == ("ConfigMap", "dataset-d")
    assert record["data"] == {"digest": "sha256:" + "a" * 64,
                              "artifact": f"{BUCKET}/refs/ml/dataset/d/v1"}
    assert record["metadata"]["annotations"]["substratus.ai/version"] == "v1"


def test_resources_become_requests_and_a_memory_limit() -> None:
    model = resource("Model", "m", {"source": {"huggingface": {"name": "gpt2"}},
                                    "resources": {"cpu": 0.5, "memory": "1024Mi", "disk": "20G"}})
    job = render(model, context())[0]
    assert container_of(job)["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "20G"},
        "limits": {"memory": "1Gi"}}
    assert job["spec"]["template"]["spec"]["volumes"] == [
        {"name": "content", "emptyDir": {"sizeLimit": "20G"}}]


def test_a_gpu_becomes_a_limit_a_node_selector_and_a_toleration() -> None:
    pod = render(gpu_server(), context())[0]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_an_image_built_from_spec_build_must_be_given() -> None:
    built = resource("Dataset", "d", {"build": {"context": "./loader"}})
    with pytest.raises(ValueError, match="spec.build has no image yet"):
        render(built, context())
    job = render(built, context(built_image="registry.local/loader@sha256:abc"))[0]
    assert container_of(job)["image"] == "registry.local/loader@sha256:abc"


# GPU sizing


def test_sizing_picks_one_gpu_that_holds_the_model_in_its_usable_memory() -> None:
    server = resource("ModelServer", "mid", {"model": {"name": "mid"}})
    size = ModelSize(9_000_000_000, 16, "spec.size")  # 20.1 GiB: more than a T4, less than an L4
    gpu, note = gpu_request(server, size, (T4, L4))
    assert gpu == {"type": "nvidia-l4", "count": 1}
    assert note == ("sizing: serving needs 9.0B parameters x 16 bits / 8 = 16.8 GiB of weights, "
                    "x 1.2 for the KV cache and activations = 20.1 GiB, which fits 1 x L4 (22.5 GiB "
                    "usable of 24 GB) (substratus's trainer and server load a model onto one GPU, "
                    "so one GPU must hold it)")
    deployment = render(server, context(size=size, accelerators=(T4, L4)))[0]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}


def test_sizing_never_spreads_a_model_over_gpus_the_loader_does_not_use() -> None:
    server = resource("ModelServer", "big", {"model": {"name": "big"}})
    size = ModelSize(17_000_000_000, 16, "spec.size")  # 38.0 GiB: two L4s would hold it
    with pytest.raises(ProviderError) as refused:
        gpu_request(server, size, (T4, L4))
    assert refused.value.message == (
        "ModelServer 'big': serving needs 17.0B parameters x 16 bits / 8 = 31.7 GiB of weights, "
        "x 1.2 for the KV cache and activations = 38.0 GiB, which no GPU the node pools offer "
        "holds: the largest is L4 (22.5 GiB usable of 24 GB), and substratus's trainer and server "
        "load a model onto one GPU, so one GPU must hold it")
    a100 = next(a for a in CATALOG if a.label == "A100 40GB")
    assert gpu_request(server, size, (T4, L4, a100))[0] == {"type": "nvidia-tesla-a100",
                                                              "count": 1}


def test_sizing_refuses_with_the_arithmetic_when_nothing_fits() -> None:
    model = resource("Model", "huge", {"training": {"baseModel": {"name": "b"},
                                                    "dataset": {"name": "d"}}})
    with pytest.raises(ProviderError) as refused:
        gpu_request(model, ModelSize(70_000_000_000, 16, "spec.size"), (T4, L4))
    assert refused.value.message.startswith(
        "Model 'huge': training needs 70.0B parameters x 16 bytes (weights, gradients and Adam "
        "state) = 1043.1 GiB, x 1.2 for activations = 1251.7 GiB, which no GPU the node pools "
        "offer holds")
    assert "spreads the model over several GPUs" in (refused.value.hint or "")


def test_a_declared_gpu_count_above_the_loaders_says_the_rest_stay_idle() -> None:
    server = resource("ModelServer", "two", {"model": {"name": "m"}, "resources": {
        "gpu": {"type": "nvidia-l4", "count": 2}}})
    gpu, note = gpu_request(server, None, (L4,))
    assert gpu == {"type": "nvidia-l4", "count": 2}
    assert note.endswith("load a model onto one GPU, so one GPU must hold it: 1 of them stay idle)")
    own = resource("ModelServer", "vllm", {"model": {"name": "m"}, "image": "vllm/vllm-openai",
                                           "resources": {"gpu": {"type": "nvidia-l4", "count": 2}}})
    assert gpu_request(own, None, (L4,))[1] == "sizing: spec.resources.gpu asks for 2 x nvidia-l4"


def test_a_declared_gpu_wins_over_sizing() -> None:
    size = ModelSize(17_000_000_000, 16, "spec.size")
    gpu, note = gpu_request(gpu_server(), size, (T4, L4))
    assert gpu == {"type": "nvidia-l4", "count": 1}
    assert note.endswith("= 19.0 GiB; spec.resources.gpu asks for 1 x nvidia-l4")


def test_sizing_without_a_size_or_without_gpus_requests_none() -> None:
    server = resource("ModelServer", "s", {"model": {"name": "m"}})
    gpu, note = gpu_request(server, None, (L4,))
    assert gpu is None and "known only after it is built or fetched" in note
    gpu, note = gpu_request(server, ModelSize(1_000_000, 32, "spec.size"), ())
    assert gpu is None and note.endswith("the cluster offers no GPU, so it runs on CPU")
    dataset = resource("Dataset", "d", {"source": {"path": "x"}})
    assert gpu_request(dataset, ModelSize(1_000_000, 32, "spec.size"), (L4,)) == (None, "")


def pool(name: str, kind: str, count: int, scaling: dict[str, int] | None = None) -> Resource:
    spec: dict[str, Any] = {"cluster": {"name": "gke"}, "machineType": "g2-standard-8",
                            "accelerator": {"type": kind, "count": count}}
    if scaling:
        spec["autoscaling"] = scaling
    return resource("NodePool", name, spec)


def test_a_declared_gpu_no_node_or_pool_offers_is_refused() -> None:
    with pytest.raises(ProviderError) as refused:
        gpu_request(gpu_server(), None, (L4,), {"nvidia-tesla-t4": 1})
    assert refused.value.message == (
        "ModelServer 'llama': spec.resources.gpu asks for 1 x nvidia-l4, which no node or node pool "
        "of the cluster offers (it offers: 1 x nvidia-tesla-t4 per node)")
    assert "declare a NodePool with that accelerator" in (refused.value.hint or "")
    with pytest.raises(ProviderError, match=r"\(it offers no GPU\)"):
        gpu_request(gpu_server(), None, (), {})


def test_a_declared_gpu_only_an_autoscaling_pool_offers_is_planned_with_that_pool() -> None:
    pools = [pool("gpu-l4-x1", "nvidia-l4", 1, {"min": 0, "max": 3}),
             pool("t4s", "nvidia-tesla-t4", 1)]
    to_come = pools_to_come(pools, {"nvidia-tesla-t4": 1})
    assert to_come == {"nvidia-l4": "NodePool gpu-l4-x1 (autoscaling 0-3 nodes)"}
    gpu, note = gpu_request(gpu_server(), None, (L4, T4), {"nvidia-l4": 1, "nvidia-tesla-t4": 1},
                            to_come)
    assert gpu == {"type": "nvidia-l4", "count": 1}
    assert note == ("sizing: spec.resources.gpu asks for 1 x nvidia-l4; no node has them yet: "
                    "NodePool gpu-l4-x1 (autoscaling 0-3 nodes) adds one when the pod asks")


def test_a_command_in_substratus_image_runs_under_the_pod_entrypoint() -> None:
    # The entrypoint fetches the inputs and publishes the artifacts around the user's program.
    ours = resource("Model", "m", {"source": {"scratch": {}}, "command": ["python", "build.py"]})
    assert container_of(render(ours, context())[0])["command"] == [
        "python", "-m", "substratus_workloads.pod", "--", "python", "build.py"]
    custom = resource("Model", "m", {"source": {"scratch": {}}, "image": "me/builder:1",
                                     "command": ["build"]})
    assert container_of(render(custom, context())[0])["command"] == ["build"]


def test_a_loader_job_is_told_which_kind_it_loads() -> None:
    for kind in ("Dataset", "Model"):
        job = render(resource(kind, "x", {"source": {"url": "https://x.test/a.tgz"}}),
                     context())[0]
        assert env_of(job)["SUBSTRATUS_KIND"] == {"name": "SUBSTRATUS_KIND", "value": kind}


def test_a_rollout_needs_room_for_its_replicas_and_surge_in_the_pools_of_its_gpu() -> None:
    server = resource("ModelServer", "s", {"model": {"name": "m"}, "replicas": 2,
                                           "rollout": {"maxSurge": 2}})
    l4 = {"type": "nvidia-l4", "count": 1}
    pools = (PoolCapacity("l4", "nvidia-l4", 2, 1), PoolCapacity("big", "nvidia-l4", 1, 2),
             PoolCapacity("t4", "nvidia-tesla-t4", 1, 9))
    assert rollout_capacity(server, l4, pools) == (
        "rollout: 2 replica(s) + 2 surge = 4 pods x 1 x nvidia-l4 = 4 GPUs; NodePool l4: at most "
        "1 node(s) x 2 pod(s), NodePool big: at most 2 node(s) x 1 pod(s): room for 4")
    with pytest.raises(ProviderError, match=r"4 GPUs, but NodePool l4: at most 1 node\(s\) x 2 "
                                            r"pod\(s\): room for 2"):
        rollout_capacity(server, l4, pools[:1])
    # Two GPUs a pod: a 2-GPU node holds one pod, a 1-GPU node none.
    with pytest.raises(ProviderError, match="room for 1"):
        rollout_capacity(server, {"type": "nvidia-l4", "count": 2}, pools[:2])
    # No declared pool of that GPU (a kubeconfig cluster): the need is shown, nothing refused.
    assert rollout_capacity(server, l4, ()).endswith("= 4 GPUs")
    assert rollout_capacity(server, None, pools) == ""
