"""Plan, Change and Drift: what an apply will do, resource by resource, and the counts it prints."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from substratus_cli.action import Action, FieldChange
from substratus_cli.address import Address
from substratus_cli.cost import CostSummary, HourlyCost, summarize
from substratus_cli.provider import MANAGED_BY_LABEL, PART_OF_LABEL, LiveObject, Private
from substratus_cli.resource import Resource

# The reasons the engine itself gives (the providers give the others): the JSON plan maps them to
# Terraform's action_reason keywords.
REPLACE_REQUESTED = "replacement requested with --replace"
DESTROY_REQUESTED = "destroy requested"


def values(spec: Mapping[str, Any] | None, labels: Mapping[str, str] | None,
           status: Mapping[str, Any]) -> dict[str, Any]:
    """One object's values as plans show them (Terraform's `change.before`/`after`): shaped like a
    resource file, so that a field change's path ("metadata.labels.team") indexes into them.
    `spec` and `labels` None: not known (null)."""
    return {"metadata": {"labels": dict(labels)} if labels is not None else None,
            "spec": dict(spec) if spec is not None else None, "status": dict(status)}


def declared_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """A live object's labels less the ownership labels substratus puts on every object."""
    return {k: v for k, v in labels.items() if k not in (MANAGED_BY_LABEL, PART_OF_LABEL)}


@dataclasses.dataclass(frozen=True)
class Target:
    """What a plan was made against; a saved plan is refused for any other target."""

    runtime: str
    workdir: str
    state: str
    artifacts: str
    lineage: str | None  # None: nothing applied yet
    serial: int | None
    endpoint: str = ""  # API server URL, GCP project…: empty for the local runtime

    def identity(self) -> tuple[str, str, str, str]:
        return (self.runtime, self.state, self.artifacts, self.endpoint)


@dataclasses.dataclass(frozen=True)
class Change:
    address: Address
    provider: str
    action: Action
    reason: str = ""
    field_changes: tuple[FieldChange, ...] = ()
    desired: Resource | None = None
    live: LiveObject | None = None  # as read for the plan, None if absent
    planned_status: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()  # the provider's lines under the change (sizing arithmetic)
    details: tuple[str, ...] = ()  # more of them, shown by `plan --verbose` only
    cost: HourlyCost | None = None  # the provider's hourly price before and after, if it has one
    private: Private = dataclasses.field(default_factory=dict)  # the provider's, for its apply
    # Addresses that must be done first (creates/updates) or after (deletes run in reverse).
    depends_on: tuple[Address, ...] = ()

    @property
    def before(self) -> dict[str, Any] | None:
        """The live object's values (`values`), as Terraform's `change.before`."""
        if self.live is None:
            return None
        return values(self.live.spec, declared_labels(self.live.labels), self.live.status)

    @property
    def before_fingerprint(self) -> str | None:
        return self.live.fingerprint if self.live is not None else None

    @property
    def replace_paths(self) -> list[str]:
        return [f.path for f in self.field_changes if f.forces_replacement]


@dataclasses.dataclass(frozen=True)
class Drift:
    """An object someone changed outside substratus since its last apply."""

    address: Address
    reason: str
    field_changes: tuple[FieldChange, ...] = ()  # live -> files, as the plan will change them
    # The values (`values`) the last apply left, as far as the state tells: the status it
    # recorded, and the spec and labels of the files when they have not changed since (else None:
    # the state keeps only their hash). A drift is the three fields above: this one is not compared.
    applied: Mapping[str, Any] | None = dataclasses.field(default=None, compare=False)

    def live_changes(self) -> tuple[FieldChange, ...]:
        """The same fields read the other way: from the last apply to what is live now."""
        return tuple(dataclasses.replace(f, before=f.after, after=f.before)
                     for f in self.field_changes)


@dataclasses.dataclass(frozen=True)
class Summary:
    add: int
    change: int
    destroy: int

    @property
    def total(self) -> int:
        return self.add + self.change + self.destroy


@dataclasses.dataclass(frozen=True)
class Plan:
    target: Target
    changes: tuple[Change, ...]  # in apply order, no-ops included
    drift: tuple[Drift, ...] = ()
    destroy: bool = False
    # Addresses whose inventory entry is out of date though nothing live changes (a crash between
    # a provider call and its inventory write); apply rewrites them without calling providers.
    refresh: tuple[Address, ...] = ()
    environment: Resource | None = None
    documents: tuple[Resource, ...] = ()  # every desired resource, for saved plans
    # Terraform's -refresh-only: no changes; `refresh` is the whole plan and drift says why.
    refresh_only: bool = False

    @property
    def summary(self) -> Summary:
        actions = [c.action for c in self.changes]
        replace = actions.count(Action.REPLACE)
        return Summary(add=actions.count(Action.CREATE) + replace,
                       change=actions.count(Action.UPDATE),
                       destroy=actions.count(Action.DELETE) + replace)

    @property
    def cost(self) -> CostSummary | None:
        """The hourly cost change of the changes that carry a price (None: none does)."""
        return summarize(c.cost for c in self.actionable)

    @property
    def has_changes(self) -> bool:
        return any(c.action is not Action.NOOP for c in self.changes)

    @property
    def updates_state_only(self) -> bool:
        """A refresh-only plan that would change the state (what --detailed-exitcode reports
        and an apply asks approval for)."""
        return self.refresh_only and bool(self.refresh)

    @property
    def actionable(self) -> list[Change]:
        return [c for c in self.changes if c.action is not Action.NOOP]

    def change_for(self, address: Address) -> Change | None:
        return next((c for c in self.changes if c.address == address), None)
