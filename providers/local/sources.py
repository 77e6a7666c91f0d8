"""Dataset and Model sources on the local runtime: a `path` is snapshotted here, with its digest
known at plan time (hashed with the stat cache); a URL or a Hugging Face repo is fetched at apply
by the loader workload, as on every runtime, and what it wrote is snapshotted."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from substratus_artifacts.files import hash_tree
from substratus_artifacts.snapshots import SnapshotResult, snapshot_tree
from substratus_artifacts.statcache import StatCache
from substratus_artifacts.store import Store
from substratus_cli.action import UNKNOWN
from substratus_cli.address import Address
from substratus_cli.config import source_paths
from substratus_cli.errors import ProviderError, UsageError
from substratus_cli.provider import QUIET, StepProgress
from substratus_cli.secrets import env_var_name, references
from substratus_providers.local.runs import Runtime, Workload

if TYPE_CHECKING:
    from substratus_cli.action import _Unknown

_SOURCE_KINDS = ("path", "url", "huggingface")


def source_kind(source: Mapping[str, Any], what: str = "dataset") -> str:
    """Which of path / url / huggingface the source is; exactly one must be set."""
    present = [kind for kind in _SOURCE_KINDS if source.get(kind) is not None]
    if len(present) != 1:
        raise UsageError(
            f"a {what} source needs exactly one of `path`, `url` or `huggingface`"
            + (f" (found {', '.join(present)})" if present else "")
        )
    return present[0]


def plan_digest(source: Mapping[str, Any], workdir: Path, cache: StatCache,
                what: str = "dataset", progress: StepProgress = QUIET) -> str | _Unknown:
    """The snapshot digest a plan shows: hashed now for `path` (told to `progress`), UNKNOWN
    for fetched sources."""
    if source_kind(source, what) != "path":
        return UNKNOWN
    root = _local_path(source, workdir, what)
    manifest, _ = hash_tree(root, cache, progress, _skip(root, workdir))
    return manifest.digest


def fetch_snapshot(
    address: Address,
    source: Mapping[str, Any],
    workdir: Path,
    store: Store,
    cache: StatCache,
    runtime: Runtime,
    env: Mapping[str, str],
    resolve_secret: Callable[[str, str], str] | None,
    progress: StepProgress = QUIET,
    interrupted: threading.Event | None = None,
) -> SnapshotResult:
    """Snapshot the source into the store. `env` is the resource's spec.env, secrets resolved
    (HF_TOKEN, HF_ENDPOINT reach the loader through it); `resolve_secret` gives the values of
    the secrets the source's headers name, handed to the loader as its variables. A download
    stops (ProviderError) once `interrupted` is set: the first Ctrl-C."""
    what = address.kind.lower()
    if source_kind(source, what) == "path":
        root = _local_path(source, workdir, what)
        return snapshot_tree(root, store, cache, progress, _skip(root, workdir))
    secrets = {env_var_name(name, key): resolve_secret(name, key)
               for name, key in references(dict(source))} if resolve_secret else {}
    loader_env = {
        **env, **secrets,
        "SUBSTRATUS_SOURCE": json.dumps(dict(source)),
        "SUBSTRATUS_KIND": address.kind,
        # Workloads run offline (runs.Runtime); fetching a Hub repo is the loader's whole job.
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0"),
    }
    return runtime.run_to_completion(Workload(address, "run", "loader", env=loader_env),
                                     f"fetching the {what} source", quote_error=True,
                                     progress=progress, interrupted=interrupted)


def _local_path(source: Mapping[str, Any], workdir: Path, what: str = "dataset") -> Path:
    # validate refuses these with file:line; a saved plan or a path removed since comes here.
    try:
        return source_paths.locate(workdir, source)
    except source_paths.SourcePathError as e:
        raise ProviderError(f"{what} {e.message}", hint=e.hint) from None


def _skip(root: Path, workdir: Path) -> Callable[[str], bool]:
    return source_paths.excluded(root, Path(workdir) / source_paths.DATA_DIR)
