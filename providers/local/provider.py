"""The local provider: ML kinds on this machine, one handler per kind. Live objects are records
under `.substratus/runtime/objects/`; workloads are processes whose liveness the reads check."""

from __future__ import annotations

from collections.abc import Iterator

from substratus_cli.address import ML_KINDS, Address
from substratus_cli.errors import ProviderError
from substratus_cli.provider import (
    CheckRequest,
    CheckResponse,
    HandlerTable,
    KindHandler,
    ProviderContext,
    ProviderDiagnostic,
)
from substratus_providers.local.datasets import Datasets
from substratus_providers.local.machine import Machine
from substratus_providers.local.models import Models
from substratus_providers.local.notebooks import Notebooks
from substratus_providers.local.servers import Servers

WORKLOAD_KINDS = ("Model", "ModelServer", "Notebook")


class LocalProvider(HandlerTable):
    name = "local"
    kinds = frozenset(ML_KINDS)
    kind_order = ML_KINDS

    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        # What the handlers open (the artifact store, the workload runtime) is opened on first use.
        self.machine = Machine(context)
        self.notebooks = Notebooks(self.machine)
        self.handlers: dict[str, KindHandler] = {
            "Dataset": Datasets(self.machine), "Model": Models(self.machine),
            "ModelServer": Servers(self.machine), "Notebook": self.notebooks}

    def check(self, request: CheckRequest) -> CheckResponse:
        resources = request.resources
        out = []
        for r in resources:
            if r.kind == "Dataset" and "source" not in r.spec:
                out.append(ProviderDiagnostic(
                    f"Dataset {r.name!r}: loader images cannot run on the local runtime",
                    "give a `source` (path, url or huggingface) instead of an image or build, or "
                    "use the kubernetes runtime", r.address, "spec.source"))
            for field in ("image", "build"):
                if r.kind in WORKLOAD_KINDS and field in r.spec:
                    out.append(ProviderDiagnostic(
                        f"{r.kind} {r.name!r}: the local runtime runs workloads as processes, "
                        f"not container images (spec.{field})",
                        "remove it to use substratus's own workload, give `command` to run your "
                        "own program, or use the kubernetes runtime", r.address, f"spec.{field}"))
        # Whether the workloads extra is installed is not checked here: validate and plan need
        # only the core install. A step that runs one of substratus's programs checks it when it
        # is applied (runs.require_program), and its error names the install.
        return CheckResponse(tuple(out))

    # -- optional capabilities ----------------------------------------------------------------

    def logs(self, address: Address, *, follow: bool) -> Iterator[str]:
        runtime = self.machine.runtime
        paths = runtime.latest_logs(address)
        if not paths:
            raise ProviderError(f"{address.short()} has no logs on the local runtime",
                                hint="logs are kept for model builds and training, servers and "
                                     "notebooks, from their most recent run")
        logs = {str(p) for p in paths}

        def running() -> bool:
            return follow and any(e.log in logs and e.alive()
                                  for e in self.machine.book.entries(address))

        return runtime.follow(paths, running)

    def open_url(self, address: Address) -> str:
        if address.kind == "Notebook":
            return self.notebooks.open_url(address)
        live = self.machine.records.get(address)
        if live is not None and live.status.get("endpoint"):
            return str(live.status["endpoint"])
        raise ProviderError(f"{address.short()} has no URL to open")
