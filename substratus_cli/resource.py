"""Resource: one validated document from the user's files, with where it came from and what it references."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from substratus_cli.address import Address

API_VERSION = "substratus.ai/v1"


@dataclasses.dataclass(frozen=True)
class ReferenceField:
    """A field that names another resource: an edge of the dependency graph."""

    path: str  # dotted, from the document root
    kind: str  # the kind it names
    role: str | None = None  # the /content/<role> folder a workload reads it into


# Where each kind references others by name (the loader checks them, workloads read them).
REFERENCE_FIELDS: Mapping[str, tuple[ReferenceField, ...]] = {
    "Environment": (ReferenceField("spec.kubernetes.cluster.name", "Cluster"),),
    "NodePool": (ReferenceField("spec.cluster.name", "Cluster"),),
    "Model": (ReferenceField("spec.training.baseModel.name", "Model", "model"),
              ReferenceField("spec.training.dataset.name", "Dataset", "data")),
    "ModelServer": (ReferenceField("spec.model.name", "Model", "model"),),
    "Notebook": (ReferenceField("spec.model.name", "Model", "model"),
                 ReferenceField("spec.dataset.name", "Dataset", "data")),
}


def references(kind: str, spec: Any) -> Iterator[tuple[ReferenceField, str]]:
    """Each reference a `kind` document's spec makes, with the name it gives."""
    for field in REFERENCE_FIELDS.get(kind, ()):
        value: Any = {"spec": spec}
        for step in field.path.split("."):
            value = value.get(step) if isinstance(value, Mapping) else None
        if isinstance(value, str):
            yield field, value


@dataclasses.dataclass(frozen=True)
class Resource:
    address: Address
    # The spec as declared, normalized by the schema (aliases as in the file, defaults and
    # nulls left out), so two spellings of the same intent compare equal.
    spec: Mapping[str, Any]
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    file: str = ""
    line: int = 0
    # Dotted field path ("spec.source.path") -> line in `file`, for diagnostics about fields.
    field_lines: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # Addresses this resource references by name; they are edges of the dependency graph.
    refs: tuple[Address, ...] = ()
    # The stack instance that rendered it, if one did.
    stack: str | None = None

    @property
    def kind(self) -> str:
        return self.address.kind

    @property
    def name(self) -> str:
        return self.address.name

    def line_of(self, field: str) -> int:
        """The line of `field` or of its closest declared parent, else the document's line."""
        return closest_line(self.field_lines, field, self.line)

    def to_document(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.address.name, "namespace": self.address.namespace}
        if self.labels:
            metadata["labels"] = dict(self.labels)
        return {"apiVersion": API_VERSION, "kind": self.kind, "metadata": metadata,
                "spec": dict(self.spec)}


def closest_line(field_lines: Mapping[str, int], field: str, default: int) -> int:
    """The line of dotted `field`, or of its closest parent present in the file, else `default`."""
    path = field
    while path:
        if path in field_lines:
            return field_lines[path]
        path = path.rpartition(".")[0]
    return default
