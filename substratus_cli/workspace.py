"""A workspace: the resource files of one directory, their Environment, state backend and providers."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from substratus_cli.config import load_directory
from substratus_cli.diagnostics import Diagnostics, DiagnosticsError
from substratus_cli.graph import find_cycles
from substratus_cli.provider import ProviderContext
from substratus_cli.resource import Resource
from substratus_cli.secrets import resolve_from_environ
from substratus_cli.state import StateBackend
from substratus_cli.wiring import (
    Registry,
    build_registry,
    open_artifact_store,
    open_state_backend,
    unsupported,
    with_derived_resources,
)

DATA_DIR = ".substratus"
DEFAULT_STATE = f"file://{DATA_DIR}/state"
DEFAULT_ARTIFACTS = f"file://{DATA_DIR}/artifacts"


@dataclasses.dataclass
class Workspace:
    workdir: Path
    resources: list[Resource]
    environment: Resource | None
    backend: StateBackend

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.environment.spec) if self.environment else {}

    @property
    def runtime(self) -> str:
        return str(self.settings.get("runtime", "local"))

    @property
    def data_dir(self) -> Path:
        return self.workdir / DATA_DIR

    @property
    def artifacts_url(self) -> str:
        return str(self.settings.get("artifacts", DEFAULT_ARTIFACTS))

    def registry(self, part_of: str) -> Registry:
        context = ProviderContext(
            workdir=self.workdir, data_dir=self.data_dir, part_of=part_of,
            artifacts_url=self.artifacts_url, settings=self.settings,
            resolve_secret=resolve_from_environ,
            open_artifacts=lambda: open_artifact_store(self.artifacts_url, self.workdir),
        )
        return build_registry(self.settings, context, self.resources)


def open_workspace(directory: Path) -> Workspace:
    """Load and validate a directory; every error of the run is raised together (exit 3)."""
    workdir = directory.resolve()
    result = load_directory(workdir)
    diagnostics = Diagnostics(result.diagnostics)
    diagnostics.raise_if_errors()
    resources = with_derived_resources(result.resources, result.environment)
    diagnostics.extend(find_cycles(resources))
    diagnostics.raise_if_errors()
    return from_resources(workdir, resources, result.environment)


def from_resources(workdir: Path, resources: list[Resource],
                   environment: Resource | None) -> Workspace:
    settings = dict(environment.spec) if environment else {}
    backend = open_state_backend(str(settings.get("state", DEFAULT_STATE)), workdir)
    ws = Workspace(workdir, resources, environment, backend)
    registry = ws.registry(part_of="")
    problems = unsupported(resources, registry, environment)
    for provider in registry.providers:
        problems.extend(provider.check([r for r in resources if r.kind in provider.kinds]))
    if problems:
        raise DiagnosticsError(Diagnostics(problems))
    return ws
