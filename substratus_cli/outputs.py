"""Outputs: the values scripts read (`substratus output`): each stack instance's declared outputs,
and the recorded results of every managed resource (a dataset's digest, a model's artifact, a
server's endpoint), so that nobody parses `state list`."""

from __future__ import annotations

import dataclasses
from typing import Any

from substratus_cli.address import Address
from substratus_cli.stacks import OutputValue
from substratus_cli.state import Inventory

# The recorded status fields that are results worth reading from a script.
RESULT_FIELDS = ("digest", "artifact", "endpoint", "image", "url")


@dataclasses.dataclass(frozen=True)
class Output:
    name: str
    value: Any  # None: not known yet (the resource was not applied)
    description: str = ""

    @property
    def known(self) -> bool:
        return self.value is not None


def collect(stack_outputs: list[OutputValue], inventory: Inventory | None,
            namespace: str) -> list[Output]:
    entries = inventory.entries if inventory else {}
    found: list[Output] = []
    for output in stack_outputs:
        value = output.value
        if output.field is not None and output.kind and output.resource:
            entry = entries.get(Address(output.kind, namespace, output.resource))
            value = entry.status.get(output.field) if entry else None
        found.append(Output(output.key, value, output.description))
    for address, entry in sorted(entries.items()):
        for field in RESULT_FIELDS:
            value = entry.status.get(field)
            if isinstance(value, str | int | float) and value != "":
                found.append(Output(f"{address.short()}.{field}", value))
    return found


def as_json(outputs: list[Output]) -> dict[str, Any]:
    """The shape of `terraform output -json`: name -> {value, type, sensitive}."""
    return {o.name: {"value": o.value, "type": _type(o.value), "sensitive": False,
                     **({"description": o.description} if o.description else {})}
            for o in outputs}


def _type(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "map"
