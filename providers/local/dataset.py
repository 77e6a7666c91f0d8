"""Dataset on the local runtime: plan from the source's digest, apply by snapshotting into the store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from substratus_artifacts.statcache import StatCache
from substratus_artifacts.store import Store
from substratus_cli.action import UNKNOWN, Action, FieldChange
from substratus_cli.address import Address
from substratus_cli.diff import field_changes, matches_prefix
from substratus_cli.errors import ProviderError
from substratus_cli.provider import MANAGED_BY_LABEL, PART_OF_LABEL, PlanItem, PlannedChange
from substratus_providers.local import secret_env
from substratus_providers.local.runs import Runtime
from substratus_providers.local.sources import fetch_snapshot, plan_digest

# A snapshot is immutable: anything that changes what is fetched makes a new one.
REPLACE_FIELDS = ("spec.source", "spec.image", "spec.build", "spec.command", "spec.params")


class DatasetPlanner:
    def __init__(self, workdir: Path, store: Store, cache: StatCache, runtime: Runtime,
                 resolve_secret: Callable[[str, str], str] | None = None) -> None:
        self.workdir = workdir
        self.store = store
        self.cache = cache
        self.runtime = runtime
        self.resolve_secret = resolve_secret

    def plan(self, item: PlanItem) -> PlannedChange:
        a, desired, live = item.address, item.desired, item.live
        assert desired is not None, "LocalProvider.plan plans deletes itself"
        digest = plan_digest(desired.spec.get("source", {}), self.workdir, self.cache)
        planned = {"digest": digest}
        if live is None:
            return PlannedChange(a, Action.CREATE, "not in live state", planned_status=planned)
        changes = list(field_changes(
            live.spec, desired.spec,
            forces_replacement=lambda p: matches_prefix(p, REPLACE_FIELDS)))
        changes += field_changes(user_labels(live.labels), desired.labels, prefix="metadata.labels")
        live_digest = live.status.get("digest")
        content_changed = digest is not UNKNOWN and digest != live_digest
        if content_changed:
            changes.append(FieldChange("status.digest", live_digest, digest, True))
        forced = [c.path for c in changes if c.forces_replacement and c.path != "status.digest"]
        if forced:
            return PlannedChange(a, Action.REPLACE,
                                 f"{', '.join(forced)} changed: a snapshot is immutable",
                                 tuple(changes), planned)
        if content_changed:
            return PlannedChange(a, Action.REPLACE, "source content changed", tuple(changes),
                                 planned)
        if live_digest and not self.store.has_snapshot(live_digest):
            return PlannedChange(
                a, Action.REPLACE, f"snapshot {live_digest} is missing from the artifact store",
                (FieldChange("status.digest", live_digest, digest, True),), planned)
        if changes:
            return PlannedChange(a, Action.UPDATE, "spec changed", tuple(changes),
                                 {"digest": live_digest})
        return PlannedChange(a, Action.NOOP, "digest unchanged", (), {"digest": live_digest})

    def snapshot(self, address: Address, spec: Mapping[str, Any],
                 planned_digest: Any) -> dict[str, Any]:
        """Fetch the source into the store; returns the status to record."""
        result = fetch_snapshot(address, spec.get("source", {}), self.workdir, self.store,
                                self.cache, self.runtime,
                                secret_env.env_of(spec, self.resolve_secret), self.resolve_secret)
        if isinstance(planned_digest, str) and planned_digest != result.digest:
            raise ProviderError(
                f"the source changed after the plan was made: planned snapshot {planned_digest}, "
                f"found {result.digest}", hint="run plan again")
        return {"digest": result.digest, "files": len(result.manifest.entries),
                "bytes": result.manifest.total_size}


def user_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k not in (MANAGED_BY_LABEL, PART_OF_LABEL)}

