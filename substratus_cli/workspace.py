"""A workspace: the resource files of one directory, their Environment, state backend and the
providers of this run (composed once by `operations` through `wiring`)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path

from substratus_cli.config import load_directory
from substratus_cli.config.schema import EnvironmentSpec
from substratus_cli.config.source_paths import DATA_DIR as DATA_DIR
from substratus_cli.diagnostics import Diagnostics
from substratus_cli.provider import Registry
from substratus_cli.resource import Resource
from substratus_cli.stacks import Expansion, VariableInput
from substratus_cli.state import StateBackend

# The data folder's own .gitignore: state, caches and artifacts of this machine, never committed.
DATA_DIR_GITIGNORE = "# Written by substratus: local state, caches and artifacts.\n*\n"
DEFAULT_STATE = f"file://{DATA_DIR}/state"
DEFAULT_ARTIFACTS = f"file://{DATA_DIR}/artifacts"


@dataclasses.dataclass(frozen=True)
class Loaded:
    """Validated resource files: every error of the run was raised together (exit 3) before."""

    workdir: Path
    resources: list[Resource]
    environment: Resource | None
    # Stack instances, their outputs and rendered files, and the variables' values.
    expansion: Expansion | None = None

    @property
    def settings(self) -> EnvironmentSpec:
        spec = self.environment.spec if self.environment else {}
        return EnvironmentSpec.model_validate(dict(spec))

    @property
    def state_url(self) -> str:
        return self.settings.state or DEFAULT_STATE

    @property
    def artifacts_url(self) -> str:
        return self.settings.artifacts or DEFAULT_ARTIFACTS


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """How a workspace's files are read: the variables given (`--var`, `--var-file`; None: only
    SUBSTRATUS_VAR_*) and whether its subfolders are read too (`--recursive`)."""

    variables: VariableInput | None = None
    recursive: bool = False


def load(directory: Path, options: LoadOptions | None = None) -> Loaded:
    workdir = directory.resolve()
    options = options or LoadOptions()
    given = options.variables if options.variables is not None else \
        VariableInput.from_command_line((), ())
    result = load_directory(workdir, given, recursive=options.recursive)
    Diagnostics(result.diagnostics).raise_if_errors()
    return Loaded(workdir, result.resources, result.environment, result.expansion)


@dataclasses.dataclass
class Workspace:
    workdir: Path
    resources: list[Resource]  # declared, plus what providers derive from them
    environment: Resource | None
    settings: EnvironmentSpec
    backend: StateBackend
    # The lineage the providers were built for: the inventory's, or the id a first apply gives it.
    lineage: str
    registry: Registry
    # Providers for another lineage (state created by someone else since this run began).
    rewire: Callable[[str], Registry]
    expansion: Expansion | None = None

    @property
    def runtime(self) -> str:
        return self.settings.runtime

    @property
    def data_dir(self) -> Path:
        return self.workdir / DATA_DIR

    @property
    def artifacts_url(self) -> str:
        return self.settings.artifacts or DEFAULT_ARTIFACTS

    def ignore_data_dir(self) -> None:
        """Give `.substratus/`, once something made it, its own .gitignore (`*`) if it has none,
        as venv and pytest do with theirs: git never offers to commit state or blobs."""
        ignore = self.data_dir / ".gitignore"
        if self.data_dir.is_dir() and not ignore.exists():
            # A read-only checkout: nothing here is ours to write either.
            with contextlib.suppress(OSError):
                ignore.write_text(DATA_DIR_GITIGNORE)

    def registry_for(self, lineage: str) -> Registry:
        if lineage != self.lineage:
            self.lineage, self.registry = lineage, self.rewire(lineage)
        return self.registry
