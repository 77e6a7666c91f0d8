"""Rendering one stack instance: the sandbox program run as a child process under limits, its
answer read back as rendered files (each output line mapped to its template file and line)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Rendering is bounded: a stack instance may take this long and write this much, whatever its
# templates do (SUBSTRATUS_RENDER_SECONDS lowers or raises the time, for slow machines or tests).
DEFAULT_SECONDS = 10.0
MAX_CHARS = 10 * 1024 * 1024
MEMORY_BYTES = 1024 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class RenderedFile:
    file: str  # relative to the stack's folder
    text: str
    lines: tuple[tuple[str, int], ...]  # per output line: (template file, line)


@dataclasses.dataclass(frozen=True)
class TemplateError:
    file: str  # relative to the stack's folder
    line: int
    message: str


@dataclasses.dataclass(frozen=True)
class Rendered:
    files: list[RenderedFile]
    errors: list[TemplateError]
    outputs: dict[str, Any]  # output name -> rendered value or resource text
    output_errors: dict[str, str]


def seconds() -> float:
    try:
        value = float(os.environ.get("SUBSTRATUS_RENDER_SECONDS", DEFAULT_SECONDS))
    except ValueError:
        return DEFAULT_SECONDS
    return value if value > 0 else DEFAULT_SECONDS


def render(root: Path, context: dict[str, Any], outputs: dict[str, str]) -> Rendered:
    """Render the stack in `root` with `context` (values, instance), and its `outputs` (name ->
    template string). Never raises for what the templates do."""
    limit = seconds()
    request = {"root": str(root), "context": context, "outputs": outputs, "seconds": limit,
               "max_chars": MAX_CHARS, "memory_bytes": MEMORY_BYTES}
    try:
        done = subprocess.run(
            # The file itself, not `-m`: importing the package would import its parents'
            # modules (pydantic, PyYAML), which the sandbox does not need.
            [sys.executable, "-P", "-s", str(Path(__file__).with_name("sandbox.py"))],
            input=json.dumps(request), capture_output=True, text=True, timeout=limit + 5,
            env={"PYTHONPATH": _package_root(), "PATH": os.environ.get("PATH", "")},
            check=False)
    except subprocess.TimeoutExpired:
        return _failed(f"refused by the sandbox: rendering took longer than {limit:g} s")
    if done.returncode != 0:
        return _failed(_death(done.returncode, limit, done.stderr))
    try:
        answer = json.loads(done.stdout)
    except json.JSONDecodeError:
        return _failed("the renderer gave no answer")
    return Rendered(
        files=[RenderedFile(f["file"], f["text"], tuple((str(a), int(b)) for a, b in f["lines"]))
               for f in answer["files"]],
        errors=[TemplateError(e["file"], int(e["line"]), e["message"]) for e in answer["errors"]],
        outputs=dict(answer.get("outputs", {})),
        output_errors=dict(answer.get("output_errors", {})))


def _package_root() -> str:
    # The child's environment is only this: the package, jinja2 and PATH (no secrets reach it).
    import jinja2  # noqa: PLC0415

    here = Path(__file__).resolve().parents[2]
    return os.pathsep.join([str(here), str(Path(jinja2.__file__).resolve().parents[1])])


def _failed(message: str) -> Rendered:
    return Rendered([], [TemplateError("", 0, message)], {}, {})


def _death(code: int, limit: float, stderr: str) -> str:
    if code in (-9, -24, 137, 152):  # SIGKILL, SIGXCPU
        return f"refused by the sandbox: rendering used more than {limit:g} s of CPU"
    if "MemoryError" in stderr:
        return "refused by the sandbox: rendering needed more memory than allowed"
    last = stderr.strip().splitlines()[-1:] or ["no message"]
    return f"the renderer failed (exit {code}): {last[0]}"
