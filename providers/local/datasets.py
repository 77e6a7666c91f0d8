"""Dataset on the local runtime: plan from the source's digest, apply by snapshotting into the store."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from substratus_cli.action import UNKNOWN, Action, FieldChange
from substratus_cli.address import Address
from substratus_cli.diff import field_changes, matches_prefix
from substratus_cli.errors import ProviderError
from substratus_cli.provider import (
    ApplyRequest,
    Batch,
    LiveObject,
    PlanItem,
    PlannedChange,
    Readiness,
    StepProgress,
)
from substratus_providers.local import secret_env
from substratus_providers.local.machine import (
    RecordedKind,
    artifact_readiness,
    damage_reason,
    discard_damaged,
    user_labels,
)
from substratus_providers.local.sources import fetch_snapshot, plan_digest

# A snapshot is immutable: anything that changes what is fetched makes a new one.
REPLACE_FIELDS = ("spec.source", "spec.image", "spec.build", "spec.command", "spec.params")


class Datasets(RecordedKind):
    def plan(self, item: PlanItem, batch: Batch) -> PlannedChange:
        a, desired, live = item.address, self.declared(item), item.live
        m = self.machine
        digest = plan_digest(desired.spec.get("source", {}), m.workdir, m.cache,
                             progress=batch.request.progress(a))
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
        if live_digest and not self.machine.store.has_snapshot(live_digest):
            return PlannedChange(
                a, Action.REPLACE, f"snapshot {live_digest} is missing from the artifact store",
                (FieldChange("status.digest", live_digest, digest, True),), planned)
        damaged = live_digest and self.machine.store.damaged(live_digest, self.machine.cache)
        if damaged:
            return PlannedChange(
                a, Action.REPLACE, damage_reason(str(live_digest), damaged),
                (FieldChange("status.digest", live_digest, digest, True),), planned)
        if changes:
            return PlannedChange(a, Action.UPDATE, "spec changed", tuple(changes),
                                 {"digest": live_digest})
        return PlannedChange(a, Action.NOOP, "digest unchanged", (), {"digest": live_digest})

    def apply(self, request: ApplyRequest) -> LiveObject:
        a, desired, m = request.address, self.desired_of(request), self.machine
        if request.action is Action.UPDATE and request.live is not None:
            status = dict(request.live.status)  # nothing fetched changed: the snapshot stays
        else:
            discard_damaged(m.store, request.live, m.cache)
            status = self._snapshot(a, desired.spec, request.planned_status.get("digest"),
                                    request.progress, request.interrupted)
        return m.records.put(a, spec=desired.spec, status=status, labels=m.labels(desired),
                             new_object=request.action is not Action.UPDATE)

    def _snapshot(self, address: Address, spec: Mapping[str, Any], planned_digest: Any,
                  progress: StepProgress, interrupted: threading.Event) -> dict[str, Any]:
        """Fetch the source into the store; returns the status to record."""
        m = self.machine
        result = fetch_snapshot(address, spec.get("source", {}), m.workdir, m.store, m.cache,
                                m.runtime, secret_env.env_of(spec, m.resolve_secret),
                                m.resolve_secret, progress, interrupted)
        if isinstance(planned_digest, str) and planned_digest != result.digest:
            raise ProviderError(
                f"the source changed after the plan was made: planned snapshot {planned_digest}, "
                f"found {result.digest}", hint="run plan again")
        return {"digest": result.digest, "files": len(result.manifest.entries),
                "bytes": result.manifest.total_size}

    def delete(self, request: ApplyRequest) -> None:
        self.book.stop_all(request.address)
        self.records.delete(request.address)

    def ready(self, live: LiveObject) -> Readiness:
        return artifact_readiness(self.machine.store, live)
