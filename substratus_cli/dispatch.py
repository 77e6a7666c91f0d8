"""The engine's side of the provider contract: each verb called through the Registry, every answer
checked (a provider that breaks the contract is named), and diagnostics placed at file:line."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from substratus_cli.action import Action
from substratus_cli.address import Address
from substratus_cli.diagnostics import (
    Diagnostic,
    Diagnostics,
    DiagnosticsError,
    Severity,
    Subject,
)
from substratus_cli.errors import ProviderError
from substratus_cli.provider import (
    ApplyRequest,
    ApplyResponse,
    CheckRequest,
    LiveObject,
    PlanItem,
    PlannedChange,
    PlanRequest,
    Provider,
    ProviderDiagnostic,
    Readiness,
    ReadRequest,
    ReadyRequest,
    Registry,
    StepProgress,
    unwatched,
)
from substratus_cli.resource import Resource


class ContractError(ProviderError):
    """A provider answered something the contract does not allow: a bug in that provider."""


def message(d: ProviderDiagnostic, resources: Mapping[Address, Resource] | None = None) -> str:
    """One line for a step's failure: placed at file:line when it names a field, hint after."""
    where = place(d, resources or {}).subject
    text = f"{where.file}:{where.line}: {d.summary}" if d.path is not None and where.file else d.summary
    return f"{text} ({d.detail})" if d.detail else text


def place(d: ProviderDiagnostic, resources: Mapping[Address, Resource]) -> Diagnostic:
    """The diagnostic at the file and line of the field it names."""
    r = resources.get(d.address) if d.address is not None else None
    if r is None or d.path is None:
        return Diagnostic(d.summary, d.detail, severity=d.severity)
    detail = d.detail
    if r.stack:  # rendered by a stack: say which instance, as the loader does
        detail = "; ".join(filter(None, [detail, f'in stack "{r.stack}"']))
    return Diagnostic(d.summary, detail, Subject(r.file, r.line_of(d.path) if d.path else r.line,
                                                 d.path or None), d.severity)


def check(registry: Registry, resources: Sequence[Resource]) -> list[Diagnostic]:
    by_address = {r.address: r for r in resources}
    out = []
    for provider in registry.providers:
        mine = tuple(r for r in resources if r.kind in provider.kinds)
        response = provider.check(CheckRequest(mine))
        out += [place(d, by_address) for d in response.diagnostics]
    return out


def read_live(registry: Registry, addresses: Iterable[Address], part_of: str, *,
              resources: Iterable[Resource] = (),
              recorded: Mapping[Address, Mapping[str, Any]] | None = None,
              ) -> dict[Address, LiveObject]:
    """One read per kind for all of its addresses (a LIST, not N GETs). `resources` and the
    `recorded` statuses tell a provider where objects live (see ReadRequest)."""
    declared = {r.address: r for r in resources}
    by_kind: dict[str, set[Address]] = defaultdict(set)
    for a in addresses:
        by_kind[a.kind].add(a)
    live: dict[Address, LiveObject] = {}
    for kind in sorted(by_kind):
        provider = registry[kind]
        response = provider.read(ReadRequest(kind, tuple(sorted(by_kind[kind])), part_of,
                                             declared, dict(recorded or {})))
        for a, obj in response.objects.items():
            if a.kind != kind or obj.address != a:
                raise ContractError(f"the {provider.name} provider answered a read of {kind} "
                                    f"objects with {obj.address} under {a}")
        live.update(response.objects)
    return live


def plan(registry: Registry, items: Sequence[PlanItem], resources: Sequence[Resource],
         progress: Callable[[Address], StepProgress] = unwatched) -> dict[Address, PlannedChange]:
    """Every item planned by its kind's provider, in one batch per provider; `progress` gives
    each address what its planning tells (see PlanRequest)."""
    by_provider: dict[str, list[PlanItem]] = defaultdict(list)
    for item in items:
        by_provider[registry[item.address.kind].name].append(item)
    by_address = {r.address: r for r in resources}
    planned: dict[Address, PlannedChange] = {}
    for provider in registry.providers:
        batch = by_provider.get(provider.name, [])
        if not batch:
            continue
        response = provider.plan(PlanRequest(tuple(batch), tuple(resources), dict(planned),
                                             progress))
        errors = [d for d in response.diagnostics if d.severity is Severity.ERROR]
        if errors:  # the files ask for what cannot be planned: exit 3, each at its place
            raise DiagnosticsError(Diagnostics(place(d, by_address) for d in errors))
        planned.update(check_plan(provider, batch, response.changes))
    return planned


def check_plan(provider: Provider, items: Sequence[PlanItem],
               changes: Sequence[PlannedChange]) -> dict[Address, PlannedChange]:
    """One change per item, an action that fits what exists and what is declared, and a reason
    for every replacement; else a ContractError naming the provider."""
    wanted = {i.address: i for i in items}
    out: dict[Address, PlannedChange] = {}
    for c in changes:
        item = wanted.get(c.address)
        problem = None
        if item is None:
            problem = "a change for an address it was not asked to plan"
        elif c.address in out:
            problem = "two changes"
        elif item.desired is None and c.action is not Action.DELETE:
            problem = f"{c.action.value} for an object that is not declared"
        elif item.desired is not None and item.live is None and c.action is not Action.CREATE:
            problem = f"{c.action.value} for an object that does not exist"
        elif item.live is not None and item.desired is not None and c.action in (
                Action.CREATE, Action.DELETE):
            problem = f"{c.action.value} for an object that exists and is declared"
        elif c.action is Action.REPLACE and not c.reason:
            problem = "a replacement without a reason"
        if problem:
            raise ContractError(f"the {provider.name} provider planned {problem} ({c.address})")
        out[c.address] = c
    missing = sorted(wanted.keys() - out.keys())
    if missing:
        raise ContractError(f"the {provider.name} provider planned no change for "
                            f"{', '.join(map(str, missing))}")
    return out


def apply(provider: Provider, request: ApplyRequest) -> ApplyResponse:
    response = provider.apply(request)
    live = response.live
    if live is not None and live.address != request.address:
        raise ContractError(f"the {provider.name} provider applied {request.address} and "
                            f"answered with {live.address}")
    if live is None and request.action is not Action.DELETE and not response.errors:
        raise ContractError(f"the {provider.name} provider answered a {request.action.value} of "
                            f"{request.address} with no object and no error")
    return response


def ready(provider: Provider, live: LiveObject) -> Readiness:
    return provider.ready(ReadyRequest(live))
