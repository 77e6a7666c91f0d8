"""Parameters: what a stack's `stack.yaml` and a workspace's `Variable` documents declare (type,
default, description, enum, pattern, minimum, maximum), and the check of a given value."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from substratus_cli.diagnostics import Diagnostics
from substratus_cli.yamlpos import parse_documents

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
TYPES = ("string", "number", "integer", "boolean", "list", "map")
_PYTHON = {"string": (str,), "number": (int, float), "integer": (int,), "boolean": (bool,),
           "list": (list,), "map": (dict,)}


class Parameter(BaseModel):
    """A parameter: its type, default and the rules a given value must follow."""

    # Titles are the keys as written (hover shows them in editors).
    model_config = ConfigDict(extra="forbid", field_title_generator=lambda name, _: name)

    type: Literal["string", "number", "integer", "boolean", "list", "map"] = Field(
        default="string", description="The type a value must have.")
    description: str = Field(default="", description="What the parameter is for (shown by `substratus "
                             "init`).")
    default: Any = Field(default=None, description=(
        "The value when none is given; without a default the parameter is required "
        "(`default: null` makes it optional, its value null)."))
    enum: list[Any] | None = Field(default=None, description="The only values allowed.",
                                   examples=[["small", "large"]])
    pattern: str | None = Field(default=None, description=(
        "A regular expression a string value must match in full."), examples=["^[a-z]+$"])
    minimum: float | None = Field(default=None, description="The smallest number allowed.")
    maximum: float | None = Field(default=None, description="The largest number allowed.")
    sensitive: bool = Field(default=False, description=(
        "Marks a secret value. Not built yet: a Variable with `sensitive: true` is refused (its "
        "value would be written into plans and state); keep secrets in "
        "`${{ secrets.NAME.KEY }}`."))

    @model_validator(mode="after")
    def _consistent(self) -> Parameter:
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(f"invalid pattern {self.pattern!r}: {error}") from None
            if self.type != "string":
                raise ValueError("pattern applies to string parameters only")
        if (self.minimum is not None or self.maximum is not None) and \
                self.type not in ("number", "integer"):
            raise ValueError("minimum and maximum apply to number and integer parameters only")
        if self.default is not None:
            problem = check(self, self.default)
            if problem:
                raise ValueError(f"default {_show(self.default)}: {problem}")
        return self

    @property
    def required(self) -> bool:
        """No default given; `default: null` makes a parameter optional, its value null."""
        return "default" not in self.model_fields_set


class Output(BaseModel):
    """A stack's output: a value computed from the values (`value`, a template string), or the
    real name of one of the stack's resources (`resource: Kind/name` as rendered; referring to it
    makes a dependency), optionally one recorded status field of it (`field`, known after apply)."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    value: Any = None
    resource: str | None = None
    field: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Output:
        if (self.value is None) == (self.resource is None):
            raise ValueError("give exactly one of value, resource")
        if self.field is not None and self.resource is None:
            raise ValueError("field needs resource")
        return self


class Definition(BaseModel):
    """stack.yaml."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    outputs: dict[str, Output] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self) -> Definition:
        for kind, names in (("parameter", self.parameters), ("output", self.outputs)):
            for name in names:
                if not IDENTIFIER.fullmatch(name):
                    raise ValueError(f"invalid {kind} name {name!r}: use letters, digits and _, "
                                     "not starting with a digit")
        return self


def check(parameter: Parameter, value: Any) -> str | None:
    """Why `value` does not suit `parameter`, or None."""
    types = _PYTHON[parameter.type]
    if isinstance(value, bool) and parameter.type != "boolean" or not isinstance(value, types):
        return f"expected {_article(parameter.type)}, got {_describe(value)}"
    typed: Any = value  # of the parameter's type, checked above
    if parameter.enum is not None and typed not in parameter.enum:
        return f"expected one of {', '.join(_show(v) for v in parameter.enum)}, got {_show(typed)}"
    if parameter.pattern is not None and not re.fullmatch(parameter.pattern, typed):
        return f"{_show(typed)} does not match the pattern {parameter.pattern!r}"
    if parameter.minimum is not None and typed < parameter.minimum:
        return f"{typed} is less than the minimum {_number(parameter.minimum)}"
    if parameter.maximum is not None and typed > parameter.maximum:
        return f"{typed} is more than the maximum {_number(parameter.maximum)}"
    return None


def parse_text(parameter: Parameter, text: str) -> tuple[Any, str | None]:
    """A value given as text (`--var`, `SUBSTRATUS_VAR_`) read as the parameter's type."""
    if parameter.type == "string":
        return text, None
    # Read as a workspace file's value is read: no tags, dates kept as text.
    found = Diagnostics()
    documents = parse_documents(text, "--var", found) if text.strip() else []
    if found.has_errors or len(documents) > 1:
        return None, f"expected {_article(parameter.type)}, got {text!r}"
    return (documents[0].data if documents else None), None


def _article(kind: str) -> str:
    return {"integer": "an integer", "map": "a map (mapping)", "list": "a list"}.get(kind,
                                                                                 f"a {kind}")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
