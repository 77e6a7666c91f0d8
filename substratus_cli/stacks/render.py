"""Rendering one stack instance: the sandbox program run as a child process under limits, its
answer read back as rendered files (each output line mapped to its template file and line)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from substratus_cli.stacks.sandbox import CODE_NAME, EVENT, template_line

# Rendering is bounded: a stack instance may take this long and write this much, whatever its
# templates do (SUBSTRATUS_RENDER_SECONDS lowers or raises the time, for slow machines or tests).
DEFAULT_SECONDS = 10.0
MAX_CHARS = 10 * 1024 * 1024
MEMORY_BYTES = 1024 * 1024 * 1024
_FRAME = re.compile(r'^\s*File "([^"]*)", line (\d+)', re.MULTILINE)


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
    code: int | None
    try:
        done = subprocess.run(
            # The file itself, not `-m`: importing the package would import its parents'
            # modules (pydantic, PyYAML), which the sandbox does not need.
            [sys.executable, "-P", "-s", str(Path(__file__).with_name("sandbox.py"))],
            # A value YAML reads as something JSON has not (a date) is given as its text.
            input=json.dumps(request, default=str), capture_output=True, text=True,
            timeout=limit + 5, env={"PYTHONPATH": _package_root(),
                                    "PATH": os.environ.get("PATH", "")},
            check=False)
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        code, stdout, stderr = None, _text(expired.stdout), _text(expired.stderr)
    answers = _answers(stdout)
    if code == 0 and answers and answers[-1].get("done"):
        return _rendered(answers)
    return _stopped(code, limit, answers, stderr, outputs)


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""


def _answers(stdout: str) -> list[dict[str, Any]]:
    """The child's answers, one JSON line each: the files, then each output, then "done"."""
    answers = []
    for line in stdout.splitlines():
        try:
            answer = json.loads(line)
        except json.JSONDecodeError:
            break
        if not isinstance(answer, dict):
            break
        answers.append(answer)
    return answers


def _rendered(answers: list[dict[str, Any]],
              stopped: dict[str, str] | None = None) -> Rendered:
    files = answers[0]
    results = [a for a in answers[1:] if "output" in a]
    return Rendered(
        files=[RenderedFile(f["file"], f["text"], tuple((str(a), int(b)) for a, b in f["lines"]))
               for f in files["files"]],
        errors=[TemplateError(e["file"], int(e["line"]), e["message"]) for e in files["errors"]],
        outputs={r["output"]: r["value"] for r in results if "value" in r},
        output_errors={**{r["output"]: r["error"] for r in results if "error" in r},
                       **(stopped or {})})


def _stopped(code: int | None, limit: float, answers: list[dict[str, Any]], stderr: str,
             outputs: dict[str, str]) -> Rendered:
    """The child ended before answering (past its time, memory or CPU): why, at the template
    line it was running (from the stack it wrote and the line tables it announced), or in the
    output it was rendering."""
    reason = _death(code, limit, stderr)
    tables: dict[str, tuple[str | None, str]] = {}
    current: dict[str, Any] = {}
    for line in stderr.splitlines():
        if not line.startswith(EVENT):
            continue
        try:
            event = json.loads(line[len(EVENT):])
        except json.JSONDecodeError:
            continue
        if "code" in event:
            tables[str(event["code"])] = (event.get("name"), str(event.get("lines") or ""))
        else:
            current = event
    file, line_number, output = current.get("file"), 0, current.get("output")
    # faulthandler's stack: most recent call first, so the first template frame is the innermost.
    for name, code_line in _FRAME.findall(stderr):
        kind = CODE_NAME.fullmatch(name)
        if kind is None or name not in tables and kind.group(1) == "file":
            continue
        if kind.group(1) == "output":
            file, output = None, kind.group(2)
        else:
            file, output = tables[name][0], None
            line_number = template_line(tables[name][1], int(code_line))
        break
    if output is not None and answers:
        done = {a["output"] for a in answers[1:] if "output" in a}
        stopped = {key: reason if key == output else
                   f"not rendered: rendering stopped at output {output}"
                   for key in outputs if key not in done}
        return _rendered(answers, stopped)
    return Rendered([], [TemplateError(str(file or ""), line_number, reason)], {}, {})


def _package_root() -> str:
    # The child's environment is only this: the package, jinja2 and PATH (no secrets reach it).
    import jinja2  # noqa: PLC0415

    here = Path(__file__).resolve().parents[2]
    return os.pathsep.join([str(here), str(Path(jinja2.__file__).resolve().parents[1])])


def _death(code: int | None, limit: float, stderr: str) -> str:
    if code is None or "Timeout (" in stderr:  # past the deadline (faulthandler's stack)
        return f"refused by the sandbox: rendering took longer than {limit:g} s"
    if code in (-9, -24, 137, 152):  # SIGKILL, SIGXCPU
        return f"refused by the sandbox: rendering used more than {limit:g} s of CPU"
    if "MemoryError" in stderr:
        return "refused by the sandbox: rendering needed more memory than allowed"
    lines = [line for line in stderr.strip().splitlines() if not line.startswith(EVENT)]
    return f"the renderer failed (exit {code}): {(lines[-1:] or ['no message'])[0]}"
