"""The test control plane as a pytest fixture body: built if missing, its progress shown live."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.cluster.controlplane import ControlPlane, ensure_binaries


def live_log(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """A log seen live even under pytest's output capture (a first build takes minutes)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def log(message: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"\ncontrolplane: {message}", flush=True)

    return log


def started_cluster(request: pytest.FixtureRequest, **options: Any) -> Iterator[ControlPlane]:
    log = live_log(request)
    ensure_binaries(log)
    with ControlPlane(log=log, **options) as cp:
        yield cp


def set_schedulable(cluster: ControlPlane, schedulable: bool) -> None:
    """Cordon (False) or uncordon every node: a pod then stays Pending, as on a full cluster."""
    for node in cluster.request("GET", "/api/v1/nodes")["items"]:
        cluster.request("PATCH", f"/api/v1/nodes/{node['metadata']['name']}",
                        {"spec": {"unschedulable": not schedulable}},
                        content_type="application/merge-patch+json")
