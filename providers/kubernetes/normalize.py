"""What a plan diffs of a Kubernetes object: the live object without what the server writes
(bookkeeping, status, defaults), with quantities parsed exactly and spelled one way (`1000m` ==
`1`). A plan compares `normalize(live, desired)` with `normalize(desired)`."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

SERVER_METADATA = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation",
                   "selfLink")
SERVER_ANNOTATION_PREFIXES = ("kubectl.kubernetes.io/", "batch.kubernetes.io/")
SERVER_ANNOTATIONS = ("deployment.kubernetes.io/revision",)
# The Job controller labels its pod template (and selector) with these.
SERVER_LABELS = ("batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name",
                 "controller-uid", "job-name")
# Maps of resource name -> quantity, and single quantity fields.
QUANTITY_MAPS = ("requests", "limits", "capacity", "allocatable", "hard", "used")
QUANTITY_FIELDS = ("sizeLimit",)


def normalize(obj: Mapping[str, Any], desired: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`obj` as a plan compares it. With `desired`, only the fields `desired` sets are kept, so a
    field the server defaulted (dnsPolicy, a Service's clusterIP, …) never shows as a change."""
    # No deep copy: every step below builds new containers, so `obj` is never changed.
    out = {k: v for k, v in obj.items() if k != "status"}
    if isinstance(out.get("metadata"), dict):
        out["metadata"] = {k: v for k, v in out["metadata"].items() if k not in SERVER_METADATA}
    if desired is not None:
        out = _only_declared(out, desired)  # first: what is left to strip is much smaller
        # The items of a LIST answer carry no apiVersion and kind; they are the desired ones.
        for field in ("apiVersion", "kind"):
            if field in desired and field not in out:
                out[field] = desired[field]
    out = _strip_server_marks(out)
    result: dict[str, Any] = _canonical_quantities(out)
    return result


# What the server adds to labels and annotations, wherever they are (the pod template too)


def _strip_server_marks(value: Any) -> Any:
    if isinstance(value, list):
        return [_strip_server_marks(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key in ("labels", "matchLabels") and isinstance(item, dict):
            item = {k: v for k, v in item.items() if k not in SERVER_LABELS}
        elif key == "annotations" and isinstance(item, dict):
            item = {k: v for k, v in item.items() if not _server_annotation(k)}
        else:
            item = _strip_server_marks(item)
        if item == {} and value[key] != {}:
            continue  # emptied here: it held only the server's marks
        out[key] = item
    return out


def _server_annotation(key: str) -> bool:
    return key in SERVER_ANNOTATIONS or key.startswith(SERVER_ANNOTATION_PREFIXES)


# Only what the desired object declares


def _only_declared(live: Any, desired: Any) -> Any:
    if isinstance(live, dict) and isinstance(desired, Mapping):
        return {k: _only_declared(live[k], v) for k, v in desired.items() if k in live}
    if isinstance(live, list) and isinstance(desired, list):
        return _only_declared_items(live, desired)
    return live


def _only_declared_items(live: list[Any], desired: list[Any]) -> list[Any]:
    by_name = _by_name(desired)
    if by_name is not None:
        # Containers, env, ports, volumes: matched by name. Items only another field manager
        # declared (an injected sidecar) are not ours to diff: server-side apply keeps them.
        return [_only_declared(item, by_name[item["name"]]) for item in live
                if isinstance(item, dict) and item.get("name") in by_name]
    if len(live) == len(desired):
        # Items without names (tolerations, command) pair by position; a list that grew or
        # shrank is compared whole.
        return [_only_declared(item, want) for item, want in zip(live, desired, strict=True)]
    return live


def _by_name(items: list[Any]) -> dict[str, Any] | None:
    if not items or not all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in items):
        return None
    return {i["name"]: i for i in items}


# Quantities spelled one way


def _canonical_quantities(value: Any, key: str = "") -> Any:
    if isinstance(value, list):
        return [_canonical_quantities(v) for v in value]
    if isinstance(value, dict):
        if key in QUANTITY_MAPS:
            return {k: _quantity(v) for k, v in value.items()}
        return {k: _canonical_quantities(v, k) for k, v in value.items()}
    if key in QUANTITY_FIELDS:
        return _quantity(value)
    return value


def _quantity(value: Any) -> Any:
    try:
        return canonical_quantity(value)
    except ValueError:
        return value  # not a quantity: left for the diff to show as it is


# Quantities ("500m", "1Gi", "1e3") as exact Fractions, and one spelling per amount

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 10**3),
            "": Fraction(1), "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9),
            "T": Fraction(10**12), "P": Fraction(10**15), "E": Fraction(10**18)}
# The apiserver's grammar: a signed decimal number, then a binary suffix, a decimal suffix, or an
# exponent ("1E3" is an exponent, a bare "1E" is exa).
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:[eE](?P<exponent>[+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)"
)
# The apiserver keeps no precision below a nano unit and rounds finer amounts up.
_NANO = Fraction(1, 10**9)


def parse_quantity(value: str | int | float) -> Fraction:
    """The exact amount of a quantity; ValueError when it is not one."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"not a quantity: {value!r}")
    text = repr(value) if isinstance(value, float) else str(value)
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(f"not a quantity: {value!r}")
    amount = Fraction(match["number"])
    if match["exponent"] is not None:
        amount *= Fraction(10) ** int(match["exponent"])
    else:
        suffix = match["suffix"] or ""
        amount *= _BINARY.get(suffix) or _DECIMAL[suffix]
    return _round_up_to_nano(amount)


def _round_up_to_nano(amount: Fraction) -> Fraction:
    nanos = amount / _NANO
    if nanos.denominator == 1:
        return amount
    # Away from zero, as the apiserver rounds.
    magnitude = math.ceil(abs(nanos))
    return Fraction(magnitude if amount > 0 else -magnitude) * _NANO


def format_quantity(amount: Fraction) -> str:
    """The canonical spelling: the shortest of the largest binary or decimal suffix that keeps an
    integer mantissa (decimal on a tie), so one amount always reads the same."""
    amount = _round_up_to_nano(Fraction(amount))
    if amount == 0:
        return "0"
    candidates = [_decimal_spelling(amount)]
    binary = _binary_spelling(amount)
    if binary is not None:
        candidates.append(binary)
    return min(candidates, key=len)


def _decimal_spelling(amount: Fraction) -> str:
    for suffix, factor in sorted(_DECIMAL.items(), key=lambda item: item[1], reverse=True):
        mantissa = amount / factor
        if mantissa.denominator == 1:
            return f"{mantissa.numerator}{suffix}"
    raise AssertionError("every amount is a whole number of nano units")


def _binary_spelling(amount: Fraction) -> str | None:
    if amount.denominator != 1:
        return None
    for suffix, factor in sorted(_BINARY.items(), key=lambda item: item[1], reverse=True):
        if amount.numerator % factor == 0:
            return f"{amount.numerator // factor}{suffix}"
    return None


def canonical_quantity(value: str | int | float) -> str:
    """`value` spelled canonically ("1000m" -> "1", "1024Mi" -> "1Gi", 0.5 -> "500m")."""
    return format_quantity(parse_quantity(value))
