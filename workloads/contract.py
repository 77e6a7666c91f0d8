"""The workload contract of workloads/README.md: where a workload finds its inputs and params,
where it writes its output, where it listens, and how it refuses a bad param (exit 2, one line).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

# Exit status for a mistake the user can fix (a bad param, a missing input), like a usage error.
USAGE_EXIT = 2

# Set before torch loads OpenMP: idle OpenMP threads that spin starve every other process on a
# shared machine (a training beside the server it will replace ran 10x slower). Passive waiting
# costs nothing measurable when the workload has the machine to itself.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def content_dir() -> Path:
    return Path(os.environ.get("SUBSTRATUS_CONTENT", "/content"))


def _content_subdir(env: str, name: str) -> Path:
    # The local runtime points each at a directory of its own (a snapshot, a fresh output dir);
    # on Kubernetes they are mounts under /content.
    value = os.environ.get(env)
    return Path(value) if value else content_dir() / name


def data_dir() -> Path:
    return _content_subdir("SUBSTRATUS_DATA_DIR", "data")


def model_dir() -> Path:
    return _content_subdir("SUBSTRATUS_MODEL_DIR", "model")


def artifacts_dir() -> Path:
    return _content_subdir("SUBSTRATUS_ARTIFACTS_DIR", "artifacts")


def port() -> int:
    value = os.environ.get("PORT", "8080")
    if not value.isdigit() or int(value) > 65535:
        fail(f"PORT must be a port number, got {value!r}")
    return int(value)


def host() -> str:
    return os.environ.get("HOST", "0.0.0.0")


def fail(message: str) -> NoReturn:
    """Refuse to go on: one line on stderr, exit 2, never a traceback."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(USAGE_EXIT)


def params() -> dict[str, Any]:
    """content/params.json, overlaid by PARAM_<KEY> environment variables (key lowercased)."""
    path = content_dir() / "params.json"
    result: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            fail(f"{path}: not valid JSON: {e}")
        if not isinstance(loaded, dict):
            fail(f"{path}: must hold a JSON object of params, got {type(loaded).__name__}")
        result.update(loaded)
    for name, raw in os.environ.items():
        if name.startswith("PARAM_") and len(name) > len("PARAM_"):
            result[name[len("PARAM_"):].lower()] = _parse_env_value(raw)
    return result


def _parse_env_value(raw: str) -> Any:
    # PARAM_EPOCHS=3 is the number 3, PARAM_NAME=alice the string "alice".
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def device() -> str:
    import torch  # imported here so workloads that need no torch (the notebook) load without it

    return "cuda" if torch.cuda.is_available() else "cpu"


def go_offline() -> None:
    """Make the Hugging Face libraries work from local files only, quietly; call before importing them."""
    for name, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                        ("HF_DATASETS_OFFLINE", "1"), ("HF_HUB_DISABLE_TELEMETRY", "1"),
                        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error"),
                        ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(name, value)


class ParamError(ValueError):
    """A value that breaks a param's rule; the message names the param."""


@dataclasses.dataclass(frozen=True)
class Param:
    """One known param: its type, default and allowed range (None: no bound, no default)."""

    type: type
    default: Any = None
    minimum: float | None = None
    above: float | None = None  # exclusive lower bound, for "> 0"
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None

    def check(self, name: str, value: Any) -> Any:
        value = self._typed(name, value)
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise ParamError(f"param {name!r} must be one of {allowed}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ParamError(f"param {name!r} must be >= {self.minimum}, got {value!r}")
        if self.above is not None and value <= self.above:
            raise ParamError(f"param {name!r} must be > {self.above}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ParamError(f"param {name!r} must be <= {self.maximum}, got {value!r}")
        return value

    def _typed(self, name: str, value: Any) -> Any:
        # bool is an int to Python but never a count or a rate to a user.
        if self.type is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if self.type is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if self.type in (str, bool) and isinstance(value, self.type):
            return value
        kind = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
        raise ParamError(f"param {name!r} must be {kind.get(self.type, self.type.__name__)}, "
                         f"got {json.dumps(value)}")


def validate(given: Mapping[str, Any], known: Mapping[str, Param]) -> dict[str, Any]:
    """Check `given` against the known params and fill in defaults; raises ParamError."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ParamError(f"unknown param {unknown[0]!r} (known params: {', '.join(sorted(known))})")
    result = {name: p.default for name, p in known.items()}
    for name, value in given.items():
        if value is None and known[name].default is None:
            continue  # an explicit null for an optional param means "not set"
        result[name] = known[name].check(name, value)
    return result


def load_params(known: Mapping[str, Param]) -> dict[str, Any]:
    """This workload's params, validated; a bad one ends the program with `error: ...`, exit 2."""
    try:
        return validate(params(), known)
    except ParamError as e:
        fail(str(e))
