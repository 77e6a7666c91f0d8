"""The contract every provider passes (after Terraform's statemgr TestFull): the simple test provider,
local, gcp and kubernetes. Each check drives the real engine (build_plan, the Executor, a local
state backend, dispatch) against a provider a `Harness` builds, and asserts exactly what it sees.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest

from substratus_cli import dispatch
from substratus_cli.action import Action
from substratus_cli.address import Address
from substratus_cli.apply import Executor, Outcome, StepState
from substratus_cli.dispatch import ContractError
from substratus_cli.errors import ExitCode
from substratus_cli.plan import Drift, Plan, Target
from substratus_cli.planner import PlanOptions, UnmanagedObjectError, build_plan
from substratus_cli.provider import (
    ApplyRequest,
    ApplyResponse,
    CheckRequest,
    CheckResponse,
    LiveObject,
    PlanItem,
    PlannedChange,
    PlanRequest,
    PlanResponse,
    Provider,
    Readiness,
    ReadRequest,
    ReadResponse,
    ReadyRequest,
    Registry,
)
from substratus_cli.resource import Resource
from substratus_cli.state import Inventory, LocalStateBackend, StateSession

DELETED_OUTSIDE = "deleted outside substratus since the last apply"


class Harness(Protocol):
    """What a provider's test supplies to run the checks against it."""

    def provider(self, lineage: str) -> Provider:
        """The provider, built for the workspace whose part-of id is `lineage`."""
        ...

    def resource(self, name: str) -> Resource:
        """A cheap resource of one of the provider's kinds that can be applied for real."""
        ...

    def updated(self, resource: Resource) -> Resource:
        """`resource` with a change the provider makes in place (an UPDATE), e.g. a new label."""
        ...

    def delete_outside(self, address: Address) -> None:
        """Delete the live object behind substratus's back, as a person with the CLI would."""
        ...

    def create_unowned(self, resource: Resource) -> None:
        """Make an object where `resource` would live, without substratus's ownership labels."""
        ...

    def live_private(self, live: LiveObject) -> Mapping[str, Any]:
        """Exactly what `read` must put in LiveObject.private for `live` ({} if nothing)."""
        ...

    def change_private(self, change: PlannedChange, item: PlanItem) -> Mapping[str, Any]:
        """Exactly what `plan` must put in PlannedChange.private for `item` ({} if nothing)."""
        ...


def check_provider_conformance(harness: Harness, tmp_path: Path) -> None:
    """Every check, one after the other (each in its own workspace)."""
    for check in (check_apply_then_plan_is_empty, check_deleted_outside_is_planned_as_create,
                  check_unowned_object_is_refused, check_private_data_round_trips,
                  check_answers_are_validated):
        check(harness, tmp_path / check.__name__)


# -- driving the engine -----------------------------------------------------------------------

class Recording:
    """A provider that hands every verb to `inner` and records each request with its answer."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.kinds = inner.kinds
        self.checks: list[tuple[CheckRequest, CheckResponse]] = []
        self.reads: list[tuple[ReadRequest, ReadResponse]] = []
        self.plans: list[tuple[PlanRequest, PlanResponse]] = []
        self.applies: list[tuple[ApplyRequest, ApplyResponse]] = []
        self.readies: list[tuple[ReadyRequest, Readiness]] = []

    def check(self, request: CheckRequest) -> CheckResponse:
        response = self.inner.check(request)
        self.checks.append((request, response))
        return response

    def read(self, request: ReadRequest) -> ReadResponse:
        response = self.inner.read(request)
        self.reads.append((request, response))
        return response

    def plan(self, request: PlanRequest) -> PlanResponse:
        response = self.answer(self.inner.plan(request))
        self.plans.append((request, response))
        return response

    def answer(self, response: PlanResponse) -> PlanResponse:
        """What the engine gets for a plan (a subclass tampers with it)."""
        return response

    def apply(self, request: ApplyRequest) -> ApplyResponse:
        response = self.inner.apply(request)
        self.applies.append((request, response))
        return response

    def ready(self, request: ReadyRequest) -> Readiness:
        response = self.inner.ready(request)
        self.readies.append((request, response))
        return response

    def clear(self) -> None:
        for calls in (self.checks, self.reads, self.plans, self.applies, self.readies):
            calls.clear()


class Tampered(Recording):
    """A provider whose plan answers are rewritten by `rewrite` before the engine sees them."""

    def __init__(self, inner: Provider, rewrite: Callable[[PlanResponse], PlanResponse]) -> None:
        super().__init__(inner)
        self.rewrite = rewrite

    def answer(self, response: PlanResponse) -> PlanResponse:
        return self.rewrite(response)


@dataclasses.dataclass
class Workspace:
    """One workspace: a lineage, its provider (recorded), and its inventory in a local backend."""

    provider: Recording
    backend: LocalStateBackend
    lineage: str
    workdir: Path

    @classmethod
    def start(cls, harness: Harness, workdir: Path) -> Workspace:
        lineage = f"conformance-{uuid.uuid4().hex[:12]}"
        backend = LocalStateBackend(workdir / "state")
        backend.write(Inventory(lineage, 1, {}), None)
        return cls(Recording(harness.provider(lineage)), backend, lineage, workdir)

    @property
    def registry(self) -> Registry:
        return Registry([self.provider])

    def plan(self, resources: list[Resource]) -> Plan:
        inventory = self.backend.read()
        target = Target(runtime=self.provider.name, workdir=str(self.workdir),
                        state=self.backend.location, artifacts="", lineage=self.lineage,
                        serial=inventory.serial if inventory else None)
        return build_plan(resources=resources, registry=self.registry, inventory=inventory,
                          target=target, options=PlanOptions())

    def apply(self, plan: Plan) -> Outcome:
        session = StateSession(self.backend, self.backend.read(), lineage=self.lineage)
        return Executor(plan, self.registry, session, ready_timeout=60).run()

    def apply_cleanly(self, resources: list[Resource], action: Action) -> Plan:
        """Plan `resources`, expecting `action` for each, and apply it: every step done."""
        plan = self.plan(resources)
        assert actions(plan) == {r.address: action for r in resources}
        outcome = self.apply(plan)
        assert [(s.address, s.action, s.state, s.message) for s in outcome.results] == [
            (r.address, action, StepState.DONE, "") for r in resources]
        assert outcome.exit_code == ExitCode.OK and not outcome.interrupted
        return plan


def actions(plan: Plan) -> dict[Address, Action]:
    return {c.address: c.action for c in plan.changes}


def unique(what: str) -> str:
    """A fresh name (servers are shared by a module's tests): lowercase, DNS and bucket safe."""
    return f"{what}-{uuid.uuid4().hex[:8]}"


def assert_ready_asked_about(provider: Recording, live: LiveObject) -> None:
    """Readiness was asked about the object exactly as apply answered it, private included."""
    asked = [request.live for request, _ in provider.readies]
    assert asked and all(a == live for a in asked), asked
    assert provider.readies[-1][1].ready


def assert_empty(plan: Plan, resources: list[Resource]) -> None:
    """Nothing to do: every change a no-op without field changes, no drift, nothing to refresh."""
    assert actions(plan) == {r.address: Action.NOOP for r in resources}, plan.changes
    assert [c.field_changes for c in plan.changes] == [() for _ in resources], plan.changes
    assert plan.drift == ()
    assert plan.refresh == ()
    assert not plan.has_changes and plan.actionable == []


# -- the checks -------------------------------------------------------------------------------

def check_apply_then_plan_is_empty(harness: Harness, workdir: Path) -> None:
    """After a successful apply, the next plan has nothing to do."""
    ws = Workspace.start(harness, workdir)
    r = harness.resource(unique("apply"))
    first = ws.apply_cleanly([r], Action.CREATE)
    assert first.drift == () and first.refresh == ()
    ((_, answer),) = ws.provider.applies
    assert answer.live is not None and answer.live.owner == ws.lineage
    inventory = ws.backend.read()
    assert inventory is not None and inventory.lineage == ws.lineage
    (entry,) = inventory.entries.values()
    assert (str(entry.address), entry.provider, entry.pending) == (str(r.address), ws.provider.name,
                                                                   None)
    assert (entry.fingerprint, entry.status) == (answer.live.fingerprint, dict(answer.live.status))
    again = ws.plan([r])
    assert_empty(again, [r])
    (change,) = again.changes
    assert change.live is not None and change.live.fingerprint == answer.live.fingerprint


def check_deleted_outside_is_planned_as_create(harness: Harness, workdir: Path) -> None:
    """An applied object someone deleted is drift, planned as a create; applying brings it back."""
    ws = Workspace.start(harness, workdir)
    r = harness.resource(unique("gone"))
    ws.apply_cleanly([r], Action.CREATE)
    harness.delete_outside(r.address)
    plan = ws.plan([r])
    assert actions(plan) == {r.address: Action.CREATE}
    (change,) = plan.changes
    assert change.live is None and change.before is None
    assert plan.drift == (Drift(r.address, DELETED_OUTSIDE),)
    assert plan.refresh == ()
    ws.apply_cleanly([r], Action.CREATE)
    assert_empty(ws.plan([r]), [r])


def check_unowned_object_is_refused(harness: Harness, workdir: Path) -> None:
    """An object at a declared address without the ownership labels stops the plan, and stays."""
    ws = Workspace.start(harness, workdir)
    r = harness.resource(unique("theirs"))
    harness.create_unowned(r)
    with pytest.raises(UnmanagedObjectError) as err:
        ws.plan([r])
    first, *problems = err.value.message.splitlines()
    assert first == "refusing to change objects substratus does not own:"
    assert len(problems) == 1, err.value.message
    (problem,) = problems
    assert problem.startswith(f"  {r.address} ({r.file}:{r.line}): exists"), problem
    assert problem.endswith(" and is not managed by substratus"), problem
    assert err.value.hint is not None and "never adopts or deletes" in err.value.hint
    assert ws.provider.plans == [] and ws.provider.applies == []
    # The object is left as it was: still there, still nobody's.
    found = ws.provider.read(ReadRequest(r.kind, (r.address,), ws.lineage)).objects
    assert list(found) == [r.address]
    assert found[r.address].owner is None


def check_private_data_round_trips(harness: Harness, workdir: Path) -> None:
    """What read puts in LiveObject.private reaches plan (PlanItem.live) and apply (ApplyRequest.live)
    unchanged; what plan puts in PlannedChange.private reaches apply in ApplyRequest.private."""
    ws = Workspace.start(harness, workdir)
    provider = ws.provider
    r = harness.resource(unique("private"))
    a = r.address

    # A create: nothing live, so only the change's private travels.
    plan = ws.plan([r])
    ((request, response),) = provider.plans
    (item,) = request.items
    (planned,) = response.changes
    assert (item.address, item.desired, item.live) == (a, r, None)
    assert dict(planned.private) == dict(harness.change_private(planned, item))
    engine_change = plan.change_for(a)
    assert engine_change is not None and engine_change.private == planned.private
    provider.clear()
    outcome = ws.apply(plan)
    assert [s.state for s in outcome.results] == [StepState.DONE], outcome.results
    ((applied, answer),) = provider.applies
    assert (applied.address, applied.action, applied.live) == (a, Action.CREATE, None)
    assert applied.private == planned.private
    assert answer.live is not None
    assert_ready_asked_about(provider, answer.live)
    assert dict(answer.live.private) == dict(harness.live_private(answer.live))

    # An update: the live object's private travels from read to plan to apply too.
    changed = harness.updated(r)
    provider.clear()
    plan = ws.plan([changed])
    assert actions(plan) == {a: Action.UPDATE}, plan.changes
    read = [response.objects[a] for request, response in provider.reads if a in response.objects]
    assert len(read) == 1, provider.reads
    (live,) = read
    assert dict(live.private) == dict(harness.live_private(live))
    ((request, response),) = provider.plans
    (item,) = request.items
    (planned,) = response.changes
    assert item.address == a and item.desired == changed
    assert item.live == live and item.live.private == live.private
    assert dict(planned.private) == dict(harness.change_private(planned, item))
    provider.clear()
    outcome = ws.apply(plan)
    assert [s.state for s in outcome.results] == [StepState.DONE], outcome.results
    ((applied, answer),) = provider.applies
    assert (applied.address, applied.action) == (a, Action.UPDATE)
    assert applied.live == live and applied.live is not None
    assert applied.live.private == live.private
    assert applied.private == planned.private
    assert answer.live is not None
    assert_ready_asked_about(provider, answer.live)


def check_answers_are_validated(harness: Harness, workdir: Path) -> None:
    """The provider's genuine plan answers pass dispatch.check_plan; a plan answer that drops,
    duplicates or misplaces a change, or replaces without a reason, is a ContractError naming it."""
    ws = Workspace.start(harness, workdir)
    r = harness.resource(unique("contract"))
    a = r.address
    ws.apply_cleanly([r], Action.CREATE)
    inner = ws.provider.inner
    live = dispatch.read_live(Registry([inner]), [a], ws.lineage, resources=[r])
    assert list(live) == [a]
    existing, absent, leaving = PlanItem(a, r, live[a]), PlanItem(a, r, None), PlanItem(a, None, live[a])

    for item, action in ((existing, Action.NOOP), (absent, Action.CREATE), (leaving, Action.DELETE)):
        response = inner.plan(PlanRequest((item,), (r,) if item.desired else ()))
        checked = dispatch.check_plan(inner, [item], response.changes)
        assert list(checked) == [a] and checked[a].action is action
        assert dispatch.plan(Registry([inner]), [item], [r] if item.desired else [])[a] == checked[a]

    other = Address(a.kind, a.namespace, unique("other"))
    name = inner.name
    tampering: list[tuple[Callable[[PlanResponse], PlanResponse], str]] = [
        (lambda p: dataclasses.replace(p, changes=()),
         f"the {name} provider planned no change for {a}"),
        (lambda p: dataclasses.replace(p, changes=p.changes * 2),
         f"the {name} provider planned two changes ({a})"),
        (lambda p: dataclasses.replace(p, changes=tuple(
            dataclasses.replace(c, action=Action.REPLACE, reason="") for c in p.changes)),
         f"the {name} provider planned a replacement without a reason ({a})"),
        (lambda p: dataclasses.replace(p, changes=tuple(
            dataclasses.replace(c, action=Action.CREATE) for c in p.changes)),
         f"the {name} provider planned create for an object that exists and is declared ({a})"),
        (lambda p: dataclasses.replace(p, changes=tuple(
            dataclasses.replace(c, address=other) for c in p.changes)),
         f"the {name} provider planned a change for an address it was not asked to plan "
         f"({other})"),
    ]
    for rewrite, expected in tampering:
        tampered = Tampered(inner, rewrite)
        with pytest.raises(ContractError) as err:
            dispatch.plan(Registry([tampered]), [existing], [r])
        assert err.value.message == expected
        assert len(tampered.plans) == 1  # the provider was asked once; its answer was refused
