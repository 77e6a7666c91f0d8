"""The kubernetes provider: Dataset and Model as Jobs (or, for files on this machine, a snapshot
uploaded to the artifact store and recorded in a ConfigMap), ModelServer as a Deployment and a
Service, Notebook as a StatefulSet and a Service. Server-side apply as field manager `substratus`.
A {kind: handler} table (`workloads.py`) over one connection (`connection.py`).

Requests: a plan's reads are one LIST per (object kind, namespace), shared by the resource kinds
made of that object kind (Jobs for Datasets and Models, Services for ModelServers and Notebooks),
plus one GET per object kind for a resource that is not found (to refuse an object of the same name that we do not own). A plan
sends a dry-run apply only for an object whose normalized live form differs from its manifest
(`compare.py`), so a plan with no changes sends no write at all."""

from __future__ import annotations

from substratus_cli.address import ML_KINDS
from substratus_cli.provider import (
    CheckRequest,
    CheckResponse,
    HandlerTable,
    KindHandler,
    ProviderContext,
    ProviderDiagnostic,
)
from substratus_providers.kubernetes.client import Client
from substratus_providers.kubernetes.connection import Connection
from substratus_providers.kubernetes.jobs import Jobs
from substratus_providers.kubernetes.pods import user_env
from substratus_providers.kubernetes.workloads import Artifacts, Notebooks, Workloads


class KubernetesProvider(HandlerTable):
    name = "kubernetes"
    kinds = frozenset(ML_KINDS)
    kind_order = ML_KINDS

    def __init__(self, context: ProviderContext, client: Client | None = None) -> None:
        self.context = context
        self.connection = Connection(context, client)
        self.jobs = Jobs(self.connection)  # lent to the images provider (wiring)
        artifacts = Artifacts(self.connection)
        self.handlers: dict[str, KindHandler] = {
            "Dataset": artifacts, "Model": artifacts,
            "ModelServer": Workloads(self.connection), "Notebook": Notebooks(self.connection)}

    def endpoint(self) -> str:
        return self.connection.endpoint()

    def check(self, request: CheckRequest) -> CheckResponse:
        out = []
        for r in request.resources:
            try:
                user_env(r.spec.get("env") or {})
            except ValueError as e:
                out.append(ProviderDiagnostic(f"{r.kind} {r.name!r}: {e}", "", r.address,
                                              "spec.env"))
        return CheckResponse(tuple(out))

