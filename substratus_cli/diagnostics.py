"""Diagnostics: the user's mistakes, each with a subject (file:line and field path), reported together."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Iterator

from substratus_cli.errors import ExitCode, SubstratusError


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclasses.dataclass(frozen=True)
class Subject:
    """Where a diagnostic points: a file and line, and the field path inside the document."""

    file: str | None = None
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.field:
            where = f"{where}: {self.field}" if where else self.field
        return where


@dataclasses.dataclass(frozen=True)
class Diagnostic:
    summary: str
    detail: str = ""
    subject: Subject = dataclasses.field(default_factory=Subject)
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = str(self.subject)
        text = f"{where}: {self.summary}" if where else self.summary
        return f"{text}\n  {self.detail}" if self.detail else text


class Diagnostics:
    """An ordered collection of diagnostics gathered across a whole run."""

    def __init__(self, items: Iterable[Diagnostic] = ()) -> None:
        self._items: list[Diagnostic] = list(items)

    def add(self, diagnostic: Diagnostic) -> None:
        self._items.append(diagnostic)

    def extend(self, other: Iterable[Diagnostic]) -> None:
        self._items.extend(other)

    def error(self, summary: str, *, detail: str = "", file: str | None = None,
              line: int | None = None, field: str | None = None) -> None:
        self.add(Diagnostic(summary, detail, Subject(file, line, field)))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self._items if d.severity is Severity.ERROR]

    @property
    def has_errors(self) -> bool:
        return bool(self.errors)

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def raise_if_errors(self) -> None:
        if self.has_errors:
            raise DiagnosticsError(self)


class DiagnosticsError(SubstratusError):
    """Raised at a stage boundary when diagnostics hold errors; rendered once, exit 3."""

    exit_code = ExitCode.INVALID_INPUT

    def __init__(self, diagnostics: Diagnostics) -> None:
        n = len(diagnostics.errors)
        super().__init__(f"{n} error{'s' if n != 1 else ''} in the resource files")
        self.diagnostics = diagnostics
