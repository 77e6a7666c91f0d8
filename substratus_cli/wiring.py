"""Composition: which provider runs which kind for an Environment. The one core module that imports providers."""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from substratus_artifacts.layout import StoreError
from substratus_artifacts.store import Store, open_store
from substratus_cli.config.schema import EnvironmentSpec
from substratus_cli.diagnostics import Diagnostic, Subject
from substratus_cli.errors import UsageError
from substratus_cli.extras import install_command
from substratus_cli.provider import Expander, Provider, ProviderContext, Registry
from substratus_cli.resource import Resource
from substratus_cli.secrets import resolve_from_environ
from substratus_cli.state import StateBackend, open_backend
from substratus_cli.workspace import DATA_DIR, Loaded

if TYPE_CHECKING:
    from substratus_providers.gcp.provider import GCPProvider

def open_state_backend(url: str, base: Path) -> StateBackend:
    """file:// from the core; gs:// from the gcp provider (google-cloud-storage)."""
    if not url.startswith("gs://"):
        return open_backend(url, base)
    try:
        from substratus_providers.gcp.state import GCSStateBackend
    except ImportError as e:
        raise UsageError(f"state backend {url} needs google-cloud-storage ({e.name} is missing)",
                         hint=install_command("gcp")) from None
    return GCSStateBackend(url)


def open_artifact_store(url: str, base: Path) -> Store:
    """The Environment's `artifacts:` store; a relative file:// folder is under the workspace."""
    try:
        return open_store(url, base)
    except StoreError as e:  # a URL no backend takes, or gs:// without google-cloud-storage
        hint = install_command("gcp") if url.startswith("gs://") else e.hint
        raise UsageError(e.message, hint=hint) from None


def build_registry(loaded: Loaded, part_of: str) -> Registry:
    """The providers of one run: the runtime's for the ML kinds, gcp's for the infrastructure."""
    settings = loaded.settings
    context = ProviderContext(
        workdir=loaded.workdir, data_dir=loaded.workdir / DATA_DIR, part_of=part_of,
        artifacts_url=loaded.artifacts_url,
        settings=dict(loaded.environment.spec) if loaded.environment else {},
        resolve_secret=resolve_from_environ,
        open_artifacts=lambda: open_artifact_store(loaded.artifacts_url, loaded.workdir))
    gcp = _gcp_provider(context)
    from substratus_providers.images.provider import ImagesProvider

    cluster = _named_cluster(settings, loaded.resources)
    if cluster is not None:
        # The kubernetes runtime reaches the cluster a Cluster resource makes (endpoint, CA,
        # an ADC token), not a kubeconfig context.
        context = dataclasses.replace(context, cluster_access=lambda: gcp.cluster_access(cluster))
    runtime: Provider
    if settings.runtime == "local":
        from substratus_providers.local import LocalProvider

        runtime = LocalProvider(context)
        images = ImagesProvider(context)
    else:
        try:
            from substratus_providers.kubernetes.provider import KubernetesProvider
        except ImportError as e:
            raise UsageError(f"the kubernetes runtime needs the kubernetes client ({e.name} is "
                             "missing)", hint=install_command("kubernetes")) from None
        kubernetes = KubernetesProvider(context)
        runtime = kubernetes
        # In-cluster builds run as the runtime's Jobs.
        images = ImagesProvider(dataclasses.replace(context, cluster_jobs=kubernetes.jobs))
    # In the order they plan: what the runtime's kinds run on and run first.
    providers: list[Provider] = [gcp, images, runtime]
    # The providers' modules are imported: what they made lives as long as the process, so the
    # collector's full passes need not go through it again (a large plan makes several).
    gc.freeze()
    return Registry(providers)


def expand(registry: Registry, resources: Sequence[Resource],
           environment: EnvironmentSpec) -> list[Resource]:
    """The resources the files declare, plus what the providers derive from them."""
    out = list(resources)
    for provider in registry.providers:
        if isinstance(provider, Expander):
            out = list(provider.expand(out, environment))
    return out


def _named_cluster(settings: EnvironmentSpec, resources: Sequence[Resource]) -> Resource | None:
    kubernetes = settings.kubernetes
    if kubernetes is None or kubernetes.cluster is None:
        return None
    name = kubernetes.cluster.name
    return next((r for r in resources if r.kind == "Cluster" and r.name == name), None)


def _gcp_provider(context: ProviderContext) -> GCPProvider:
    """Cluster, NodePool and Bucket, on every runtime. Its module imports the Google libraries
    only on first use (its check() names a missing one)."""
    from substratus_providers.gcp.provider import GCPProvider

    return GCPProvider(context)


def unsupported(resources: Sequence[Resource], registry: Registry,
                environment: Resource | None) -> list[Diagnostic]:
    """Resources no built provider can run, each with a clear reason and its place in the files."""
    runtime = (environment.spec.get("runtime") if environment else None) or "local"
    out: list[Diagnostic] = []
    artifacts = str((environment.spec.get("artifacts") if environment else None) or "")
    if runtime == "kubernetes" and environment is not None and not artifacts.startswith("gs://"):
        why = ("pods do not fetch from an oci:// store yet (its registry credentials are not "
               "handed to them)" if artifacts.startswith("oci://") else
               "pods cannot read this machine's files")
        out.append(Diagnostic(
            "the kubernetes runtime needs an artifact store its pods can reach",
            f"{why}: set `artifacts: gs://BUCKET/PREFIX` in the "
            "Environment (Datasets and Models are stored there, content addressed)",
            Subject(environment.file, environment.line_of("spec.artifacts"), "spec.artifacts")))
    for r in resources:
        if registry.for_kind(r.kind) is not None:
            continue
        detail = f"no provider for {r.kind} on the {runtime} runtime"
        out.append(Diagnostic(f"{r.kind} {r.name!r} cannot be planned", detail,
                              Subject(r.file, r.line, "kind")))
    return out
