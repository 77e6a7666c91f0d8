"""GKE-like node pools simulated by kwok: the Node objects of a pool (labels, GPU capacity, taints)
and the test of whether a node is ready to take pods."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# kwok manages the nodes carrying this annotation (controlplane.py starts it with that selector),
# so a Node object created any other way stays a plain, never-ready node.
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
POOL_LABEL = "cloud.google.com/gke-nodepool"
ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
GPU_RESOURCE = "nvidia.com/gpu"
# The taint GKE puts on every GPU node; pods get past it with a toleration (which the apiserver's
# ExtendedResourceToleration admission plugin adds to any pod that requests nvidia.com/gpu).
GPU_TAINT = f"{GPU_RESOURCE}=present:NoSchedule"
# Added by the apiserver to a new node and removed by the node lifecycle controller once the node
# is Ready: until then the scheduler places nothing there.
NOT_READY_TAINT_KEYS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


@dataclass(frozen=True)
class NodePool:
    """`count` identical nodes named `<name>-0`, `<name>-1`, …; `gpus` is per node."""

    name: str
    count: int = 1
    accelerator: str | None = None  # GKE accelerator type, e.g. nvidia-l4, nvidia-tesla-t4
    gpus: int = 0
    cpu: str = "8"
    memory: str = "32Gi"
    pods: int = 110
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: Sequence[str] = ()  # "key=value:Effect" or "key:Effect", as `kubectl taint` writes them

    def __post_init__(self) -> None:
        if (self.accelerator is None) != (self.gpus == 0):
            raise ValueError(f"node pool {self.name}: give both accelerator and gpus, or neither")

    @property
    def node_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.count)]

    def nodes(self, kubelet_version: str, ips: Sequence[str]) -> list[dict[str, Any]]:
        """The Node objects, the i-th with InternalIP `ips[i]`."""
        return [self._node(name, kubelet_version, ip) for name, ip in zip(self.node_names, ips,
                                                                          strict=True)]

    def _node(self, name: str, kubelet_version: str, ip: str) -> dict[str, Any]:
        labels = {
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/os": "linux",
            "kubernetes.io/hostname": name,
            "type": "kwok",
            POOL_LABEL: self.name,
        }
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods)}
        taints = [parse_taint(t) for t in self.taints]
        if self.accelerator:
            labels[ACCELERATOR_LABEL] = self.accelerator
            resources[GPU_RESOURCE] = str(self.gpus)
            taints.append(parse_taint(GPU_TAINT))
        labels.update(self.labels)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]},
            },
            "spec": {"taints": taints},
            # Kept on create (a kubelet registers its node the same way); kwok's node-initialize
            # stage keeps capacity and allocatable and fills in conditions and addresses.
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "addresses": [{"type": "InternalIP", "address": ip},
                              {"type": "Hostname", "address": name}],
                "nodeInfo": {"kubeletVersion": kubelet_version, "architecture": "amd64",
                             "operatingSystem": "linux"},
            },
        }


def parse_taint(text: str) -> dict[str, str]:
    """`key=value:Effect` or `key:Effect` -> a Node taint."""
    key_value, sep, effect = text.rpartition(":")
    if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise ValueError(f"taint {text!r}: expected key=value:Effect with Effect one of "
                         "NoSchedule, PreferNoSchedule, NoExecute")
    key, _, value = key_value.partition("=")
    taint = {"key": key, "effect": effect}
    if value:
        taint["value"] = value
    return taint


def is_ready(node: Mapping[str, Any]) -> bool:
    """Ready, and no longer tainted as not ready: the scheduler will place pods on it."""
    conditions = node.get("status", {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    taints = node.get("spec", {}).get("taints") or []
    return ready and not any(t["key"] in NOT_READY_TAINT_KEYS for t in taints)
