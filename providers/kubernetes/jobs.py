"""Jobs run to their end for another provider (`ClusterJobs`): the images provider's kaniko
builds. The Job is created like the runtime's own, waited on with the engine's wait and the
runtime's Job readiness gate, and a failed one is reported with its container's last lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from substratus_cli.address import Address
from substratus_cli.errors import ProviderError
from substratus_cli.provider import JobRun, Readiness, wait_until_ready
from substratus_providers.kubernetes.connection import Connection
from substratus_providers.kubernetes.live import Obj
from substratus_providers.kubernetes.workloads import gated, pods_of

LAST_LINES = 20


class Jobs:
    """`ClusterJobs` on the runtime's cluster."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def run(self, manifest: Mapping[str, Any], timeout: float) -> JobRun:
        meta = manifest["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        client = self.connection.client
        self.connection.ensure_namespace(namespace)
        old = client.get("batch/v1", "Job", namespace, name)
        if old is not None:
            if not self.connection.ours(old):
                raise ProviderError(f"Job {namespace}/{name} exists and was not made by this "
                                    "workspace; substratus does not replace it",
                                    hint="delete or rename it")
            # A Job cannot be changed: the previous build's goes first (its pods with it).
            self.connection.delete(Address("Image", namespace, name),
                                   {"Job": {"apiVersion": "batch/v1", "kind": "Job", **old}})
        client.apply(dict(manifest), force=True)

        def check() -> Readiness:
            obj = client.get("batch/v1", "Job", namespace, name)
            if obj is None:
                return Readiness(False, failed=True, message=f"Job {namespace}/{name} is gone")
            return gated(client, "Job", namespace, name, obj)

        why = wait_until_ready(check, timeout)
        if why is None:
            return JobRun(True, "Job complete")
        failed = failed_container(pods_of(client, "Job", namespace, name))
        if failed is None:
            return JobRun(False, why)
        # The gate's words hold the whole termination message: the lines are given apart.
        return JobRun(False, failed[0], failed[1])


def failed_container(pods: list[Obj]) -> tuple[str, tuple[str, ...]] | None:
    """What failed ("pod P: container C exited with code N (Reason)") and the last lines of its
    termination message: with `terminationMessagePolicy: FallbackToLogsOnError` the kubelet
    puts the end of its log there (80 lines, 2 KiB at most), readable even where the pod's log
    is not."""
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            if terminated and terminated.get("exitCode", 0) != 0:
                text = str(terminated.get("message") or "").rstrip("\n")
                what = (f"Job failed: pod {(pod.get('metadata') or {}).get('name', '?')}: "
                        f"container {status.get('name', '?')} exited with code "
                        f"{terminated.get('exitCode')} ({terminated.get('reason') or 'Error'})")
                return what, tuple(text.splitlines()[-LAST_LINES:])
    return None
