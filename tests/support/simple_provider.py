"""A tiny in-memory provider for engine tests (after Terraform's internal/provider-simple).

Objects live in a dict; every write bumps a version, which with the object's uid is its
fingerprint. It records what it was asked (reads per kind, applies in order, readiness checks,
the most applies seen running at once) and can be told to fail, wait or call a hook per address.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from substratus_cli.action import Action
from substratus_cli.address import Address
from substratus_cli.diff import field_changes, matches_prefix
from substratus_cli.provider import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PART_OF_LABEL,
    ApplyRequest,
    ApplyResponse,
    CheckRequest,
    CheckResponse,
    LiveObject,
    PlanItem,
    PlannedChange,
    PlanRequest,
    PlanResponse,
    ProviderDiagnostic,
    Readiness,
    ReadRequest,
    ReadResponse,
    ReadyRequest,
)

OWN_LABELS = (MANAGED_BY_LABEL, PART_OF_LABEL)


class SimpleProvider:
    """`context` is anything with a `part_of` attribute (a ProviderContext in real use)."""

    def __init__(self, context: Any, kinds: Iterable[str] = ("Dataset", "Model"), *,
                 name: str = "simple", replace_prefixes: tuple[str, ...] = ("spec.source",)) -> None:
        self.name = name
        self.kinds = frozenset(kinds)
        self.part_of: str = context.part_of
        self.replace_prefixes = replace_prefixes
        self.objects: dict[Address, LiveObject] = {}
        # Knobs, per address: an apply error, planned status, readiness (a Readiness or a callable).
        self.fail: dict[Address, str] = {}
        self.planned_status: dict[Address, Mapping[str, Any]] = {}
        self.readiness: dict[Address, Readiness | Callable[[LiveObject], Readiness]] = {}
        self.delay: float | threading.Event | None = None  # every apply sleeps or waits for it
        self.hook: Callable[[ApplyRequest], None] | None = None  # called inside every apply
        # What it was asked.
        self.reads: collections.Counter[str] = collections.Counter()
        self.read_requests: list[ReadRequest] = []
        self.plan_requests: list[PlanRequest] = []
        self.apply_requests: list[ApplyRequest] = []
        self.applied: list[tuple[Address, Action]] = []
        self.calls: list[tuple[str, str]] = []  # ("apply" | "ready", address) in order
        self.max_concurrency = 0
        self._running = 0
        self._mutex = threading.Lock()

    # -- setting up live state ---------------------------------------------------------------

    def put(self, address: Address, spec: Mapping[str, Any], *,
            labels: Mapping[str, str] | None = None, owned: bool = True,
            status: Mapping[str, Any] | None = None) -> LiveObject:
        """Write an object as anyone would (bumping its version); `owned` adds our labels."""
        old = self.objects.get(address)
        uid, version = old.fingerprint.split("/") if old else (uuid.uuid4().hex[:8], "0")
        labels = dict(labels or {})
        if owned:
            labels.update({MANAGED_BY_LABEL: MANAGED_BY_VALUE, PART_OF_LABEL: self.part_of})
        obj = LiveObject(address, dict(spec), dict(status or {}), labels,
                         f"{uid}/{int(version) + 1}", private={"version": int(version) + 1})
        self.objects[address] = obj
        return obj

    # -- the Provider protocol ---------------------------------------------------------------

    def check(self, request: CheckRequest) -> CheckResponse:
        return CheckResponse()

    def read(self, request: ReadRequest) -> ReadResponse:
        with self._mutex:
            self.reads[request.kind] += 1
            self.read_requests.append(request)
        wanted = set(request.addresses)
        return ReadResponse({a: o for a, o in self.objects.items() if a.kind == request.kind
                             and (a in wanted or (request.part_of and o.owner == request.part_of))})

    def plan(self, request: PlanRequest) -> PlanResponse:
        self.plan_requests.append(request)
        return PlanResponse(tuple(self._plan_one(item) for item in request.items))

    def _plan_one(self, item: PlanItem) -> PlannedChange:
        change = self._planned(item)
        # What apply gets back: the version this plan was made from, as the read handed it over.
        seen = item.live.private.get("version") if item.live is not None else None
        return dataclasses.replace(change, private={"planned_from": seen})

    def _planned(self, item: PlanItem) -> PlannedChange:
        a, desired, live = item.address, item.desired, item.live
        status = self.planned_status.get(a, {})
        if desired is None:
            return PlannedChange(a, Action.DELETE, "not in the resource files")
        if live is None:
            return PlannedChange(a, Action.CREATE, "not in live state", planned_status=status)
        changes = field_changes(live.spec, desired.spec,
                                forces_replacement=lambda p: matches_prefix(p, self.replace_prefixes))
        changes += field_changes({k: v for k, v in live.labels.items() if k not in OWN_LABELS},
                                 desired.labels, prefix="metadata.labels")
        forced = [c.path for c in changes if c.forces_replacement]
        if forced:
            return PlannedChange(a, Action.REPLACE, f"{', '.join(forced)} changed", changes, status)
        if changes:
            return PlannedChange(a, Action.UPDATE, "spec changed", changes, status)
        return PlannedChange(a, Action.NOOP, "up to date", (), status)

    def apply(self, request: ApplyRequest) -> ApplyResponse:
        a = request.address
        with self._mutex:
            self._running += 1
            self.max_concurrency = max(self.max_concurrency, self._running)
            self.applied.append((a, request.action))
            self.apply_requests.append(request)
            self.calls.append(("apply", str(a)))
        try:
            if self.hook is not None:
                self.hook(request)
            if isinstance(self.delay, threading.Event):
                self.delay.wait(timeout=30)
            elif self.delay:
                time.sleep(self.delay)
            if a in self.fail:
                return ApplyResponse(self.objects.get(a), (ProviderDiagnostic(self.fail[a]),))
            if request.action is Action.DELETE:
                self.objects.pop(a, None)
                return ApplyResponse(None)
            assert request.desired is not None
            if request.action is not Action.UPDATE:
                self.objects.pop(a, None)  # a new object: new uid
            obj = self.put(a, request.desired.spec, labels=request.desired.labels,
                           status={"applied": request.action.value})
            return ApplyResponse(obj)
        finally:
            with self._mutex:
                self._running -= 1

    def ready(self, request: ReadyRequest) -> Readiness:
        live = request.live
        with self._mutex:
            self.calls.append(("ready", str(live.address)))
        answer = self.readiness.get(live.address, Readiness(True))
        return answer(live) if callable(answer) else answer
