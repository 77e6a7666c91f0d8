"""The workload contract (workloads/README.md) inside a pod: /content, the environment a
workload reads (inputs, params, source, the user's env with secrets as secretKeyRefs), resources."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from substratus_cli.secrets import SECRET_REF, env_var_name, references
from substratus_providers.kubernetes.gpus import GPU_RESOURCE
from substratus_providers.kubernetes.normalize import canonical_quantity

CONTENT = "/content"
CONTENT_VOLUME = "content"
Env = dict[str, dict[str, Any]]  # env var name -> its entry in a container's `env`


def _verbatim(text: str) -> str:
    # The kubelet expands $(VAR) in env values and commands; `$$` is its escape for `$`. Every
    # value reaches the workload as written, as on the local runtime.
    return text.replace("$", "$$")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def plain_env(values: Mapping[str, str]) -> Env:
    # The apiserver drops an empty `value`, so an empty one is left out to match what it returns.
    return {name: {"name": name, "value": _verbatim(v)} if v else {"name": name}
            for name, v in values.items()}


def contract_env(inputs: Mapping[str, str], artifacts: str | None) -> Env:
    """Where the content root is, where the inputs come from and where the output goes."""
    values = {"SUBSTRATUS_CONTENT": CONTENT}
    if artifacts:
        values["SUBSTRATUS_ARTIFACTS_URL"] = artifacts
    for role in sorted(inputs):
        values[f"SUBSTRATUS_INPUT_{_env_word(role)}_URL"] = inputs[role]
    return plain_env(values)


def _env_word(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", text).upper()


def param_env(params: Mapping[str, Any]) -> Env:
    """Params as PARAM_<KEY>, JSON-encoded (strings too, so "3" stays a string): the workload
    reads these (contract.params()); there is no params.json in a pod's /content."""
    return plain_env({f"PARAM_{key.upper()}": _json(params[key]) for key in sorted(params)})


def source_env(source: Mapping[str, Any] | None) -> Env:
    """A loader's source as JSON, and each secret it references as SUBSTRATUS_SECRET_<NAME>_<KEY>
    from the Secret, which the loader substitutes as the local runtime does."""
    if not source:
        return {}
    env = plain_env({"SUBSTRATUS_SOURCE": _json(source)})
    for name, key in sorted(set(references(source))):
        env[env_var_name(name, key)] = _secret_ref(env_var_name(name, key), name, key)
    return env


def _secret_ref(var: str, name: str, key: str) -> dict[str, Any]:
    return {"name": var, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}


def user_env(env: Mapping[str, str]) -> Env:
    """spec.env: a value that is exactly ${{ secrets.NAME.KEY }} comes from the Secret NAME.

    substratus never reads secret values for Kubernetes, so it cannot splice one into other text:
    a value that mixes a reference with text is refused (ValueError naming the variable)."""
    out: Env = {}
    for var, value in env.items():
        whole = SECRET_REF.fullmatch(value)
        if whole:
            out[var] = _secret_ref(var, whole.group(1), whole.group(2))
        elif SECRET_REF.search(value):
            raise ValueError(
                f"spec.env.{var}: on Kubernetes a secret reference must be the whole value "
                "(the pod reads it from the Secret; substratus never reads it, so it cannot "
                "put it inside other text)")
        else:
            out.update(plain_env({var: value}))
    return out


def resource_requirements(resources: Mapping[str, Any],
                          gpu: Mapping[str, Any] | None) -> dict[str, Any]:
    """Requests, and limits for memory (= request, so a pod is never killed below what it asked
    for) and GPUs. No CPU limit: throttling a workload helps nobody on a node it paid for."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    for field, name in (("cpu", "cpu"), ("memory", "memory"), ("disk", "ephemeral-storage")):
        if resources.get(field) is not None:
            requests[name] = _quantity(resources[field], f"spec.resources.{field}")
    if "memory" in requests:
        limits["memory"] = requests["memory"]
    if gpu:
        limits[GPU_RESOURCE] = canonical_quantity(int(gpu["count"]))
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _quantity(value: Any, field: str) -> str:
    try:
        return canonical_quantity(value)
    except ValueError:
        raise ValueError(f"{field}: {value!r} is not a quantity (e.g. 500m, 2, 16Gi)") from None


def content_volume(resources: Mapping[str, Any]) -> dict[str, Any]:
    """/content as an emptyDir, capped at spec.resources.disk when given."""
    empty_dir: dict[str, Any] = {}
    if resources.get("disk") is not None:
        empty_dir["sizeLimit"] = _quantity(resources["disk"], "spec.resources.disk")
    return {"name": CONTENT_VOLUME, "emptyDir": empty_dir}


def container(name: str, image: str, env: Sequence[dict[str, Any]],
              requirements: Mapping[str, Any], command: Sequence[str] | None = None,
              port: int | None = None, probe: Mapping[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "image": image}
    if command:
        out["command"] = [_verbatim(c) for c in command]
    if port is not None:
        out["ports"] = [{"name": "http", "containerPort": port}]
    out["env"] = list(env)
    if requirements:
        out["resources"] = dict(requirements)
    if probe:
        out["readinessProbe"] = dict(probe)
    out["volumeMounts"] = [{"name": CONTENT_VOLUME, "mountPath": CONTENT}]
    # The pod entrypoint writes one `error: …` line there; a program it execs (a server) cannot,
    # so its last log lines stand in: either way a failed pod says why.
    out["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return out
