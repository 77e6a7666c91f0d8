"""The program that renders a stack's templates, run as a child process with memory, CPU and
output limits (`python -m substratus_cli.stacks.sandbox`, JSON in on stdin, JSON out on stdout).

Templates run in jinja2's SandboxedEnvironment with StrictUndefined: no dunder attributes, no
filesystem beyond the stack's folder, no network, no randomness. A template that loops for ever
or builds a huge string is stopped by the limits; a separate process is the only way to stop a
single C-level operation (`9**9**9`, `'x'|center(10**10)`) that a thread cannot interrupt.

Line map: before compiling, every newline of a template's text (outside its tags) gets a marker
naming the template file and line; the rendered output keeps them, so each output line knows the
template line it came from. The markers are removed before the output is returned.

Imports only the standard library and jinja2, so the child starts fast.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

# A marker: \x1f FILE-INDEX : LINE \x1e, placed just before a newline of the template text.
MARKER = re.compile(r"\x1f(\d+):(\d+)\x1e")
_MARKER_CHARS = re.compile(r"[\x1e\x1f]")
TEMPLATE_SUFFIXES = (".yaml.j2", ".yml.j2")
PLAIN_SUFFIXES = (".yaml", ".yml")
DEFINITION = "stack.yaml"
# Jinja's own recursion (macros calling themselves) ends in RecursionError well before this.
_RECURSION_LIMIT = 400
_LIMITED_NUMBER = 10 ** 12


class RenderLimit(Exception):
    """Rendering went past one of the limits."""


class _Refused(Exception):
    """A template asked for something the sandbox refuses (a huge operand, a file outside)."""


def resource_files(root: Path) -> list[str]:
    """The stack's resource files, relative to `root`, sorted: templates and plain YAML, except
    the definition and partials (names starting with `_`, included by other templates)."""
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith((".", "_")))
        for name in names:
            if name.startswith((".", "_")):
                continue
            relative = Path(folder, name).relative_to(root).as_posix()
            if relative == DEFINITION:
                continue
            if name.endswith(TEMPLATE_SUFFIXES) or name.endswith(PLAIN_SUFFIXES):
                found.append(relative)
    return sorted(found)


class _StackLoader(jinja2.BaseLoader):
    """Templates from the stack's own folder only (symlinks that leave it are refused), with the
    line markers inserted."""

    def __init__(self, root: Path, files: list[str], lex: Callable[[str, str], Iterator[Any]]):
        self.root = root.resolve()
        self.files = files  # index -> name, shared with the caller to decode markers
        self.lex = lex

    def get_source(self, environment: jinja2.Environment,
                   template: str) -> tuple[str, str, Callable[[], bool]]:
        parts = template.split("/")
        if template.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise jinja2.TemplateNotFound(template)
        path = (self.root / template).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise jinja2.TemplateNotFound(template)
        text = path.read_text(encoding="utf-8-sig")
        if template not in self.files:
            self.files.append(template)
        return _with_markers(text, self.files.index(template), template, self.lex), \
            str(path), lambda: True


def _with_markers(text: str, index: int, name: str,
                  lex: Callable[[str, str], Iterator[Any]]) -> str:
    """`text` with a marker before each newline that is template data (not inside a tag)."""
    text = _MARKER_CHARS.sub("", text.replace("\r\n", "\n"))
    pieces = []
    try:
        tokens = list(lex(text, name))
    except jinja2.TemplateSyntaxError:
        return text  # compiling reports it, with its line
    for lineno, token, value in tokens:
        if token == "data" and "\n" in value:
            lines = value.split("\n")
            marked = [f"{part}\x1f{index}:{lineno + i}\x1e" for i, part in enumerate(lines[:-1])]
            value = "\n".join([*marked, lines[-1]])
        pieces.append(value)
    return "".join(pieces)


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**", "+"])

    def __init__(self, max_chars: int, **options: Any) -> None:
        super().__init__(**options)
        self.max_chars = max_chars

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if _number(left) and _number(right) and abs(right) > 64 and abs(left) > 1:
                raise _Refused(f"exponent too large: {left} ** {right}")
        elif operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int) and \
                        len(seq) * count > self.max_chars:
                    raise _Refused(f"result too large: a sequence of {len(seq)} times {count}")
            if _number(left) and _number(right) and _huge(left) and _huge(right):
                raise _Refused("number too large")
        elif operator == "+" and isinstance(left, str | list | tuple) and \
                isinstance(right, str | list | tuple) and len(left) + len(right) > self.max_chars:
            raise _Refused("result too large")
        return super().call_binop(context, operator, left, right)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _huge(value: Any) -> bool:
    return isinstance(value, int | float) and (not math.isfinite(value) or
                                               abs(value) > _LIMITED_NUMBER)


def _bounded(filter_: Callable[..., Any], limit: int, *positions: int) -> Callable[..., Any]:
    """A filter whose size arguments (at `positions` after the value, or `width=`) are bounded."""
    def checked(value: Any, *args: Any, **kwargs: Any) -> Any:
        sizes = [args[i] for i in positions if i < len(args)] + \
                [v for k, v in kwargs.items() if k in ("width", "length")]
        if any(isinstance(s, int) and s > limit for s in sizes):
            raise _Refused(f"size argument too large (at most {limit})")
        return filter_(value, *args, **kwargs)
    return checked


def environment(root: Path, files: list[str], max_chars: int) -> jinja2.Environment:
    env = _Sandbox(max_chars, undefined=jinja2.StrictUndefined, autoescape=False,
                   trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                   auto_reload=False)
    env.loader = _StackLoader(root, files, env.lexer.tokeniter)
    # Deterministic output: nothing random.
    for name in ("random",):
        env.filters.pop(name, None)
    env.globals.pop("lipsum", None)
    for name, positions in (("center", (0,)), ("indent", (0,)), ("wordwrap", (0,)),
                            ("truncate", (0,))):
        env.filters[name] = _bounded(env.filters[name], 1000, *positions)
    env.globals["secret"] = _secret_reference
    return env


def _secret_reference(name: str, key: str) -> str:
    """`${{ secrets.NAME.KEY }}`, written from a template (jinja would read the braces)."""
    return "${{ secrets." + str(name) + "." + str(key) + " }}"


def render(request: dict[str, Any]) -> dict[str, Any]:
    """Render every resource file of a stack: {"files": [{"file", "text", "lines"}], "errors":
    [{"file", "line", "message"}]}, one error at most per file that fails."""
    root = Path(request["root"])
    max_chars = int(request["max_chars"])
    deadline = time.monotonic() + float(request["seconds"])
    files: list[str] = []
    env = environment(root, files, max_chars)
    context = request["context"]
    rendered = []
    errors = []
    total = 0
    for name in resource_files(root):
        position = [name, 1]
        try:
            if name.endswith(PLAIN_SUFFIXES):
                text = (root / name).read_text(encoding="utf-8-sig")
                numbers = range(1, text.count("\n") + 2)
                rendered.append({"file": name, "text": text, "lines": [[name, n] for n in numbers]})
                total += len(text)
                continue
            template = env.get_template(name)
            chunks = []
            for chunk in template.generate(context):
                chunks.append(chunk)
                total += len(chunk)
                markers = MARKER.findall(chunk)
                if markers:
                    index, line = markers[-1]
                    position = [files[int(index)], int(line) + 1]
                if total > max_chars:
                    raise RenderLimit(f"the output is larger than {max_chars} characters")
                if time.monotonic() > deadline:
                    raise RenderLimit(f"rendering took longer than {request['seconds']} s")
            text, lines = _line_map("".join(chunks), files, name)
            rendered.append({"file": name, "text": text, "lines": lines})
        except jinja2.TemplateSyntaxError as error:
            errors.append({"file": error.name or name, "line": error.lineno or 1,
                           "message": f"template syntax error: {error.message}"})
        except Exception as error:  # any failure of the user's template, located
            file, line = _template_frame(error.__traceback__, root, position)
            errors.append({"file": file, "line": line, "message": _message(error)})
            if isinstance(error, RenderLimit | MemoryError):
                break  # the limits are the stack's, not the file's
    outputs, output_errors = {}, {}
    for key, source in request.get("outputs", {}).items():
        try:
            outputs[key] = env.from_string(source).render(context)
        except Exception as error:  # the output's template, located by its name
            output_errors[key] = _message(error)
    return {"files": rendered, "errors": errors, "outputs": outputs,
            "output_errors": output_errors}


def _line_map(output: str, files: list[str], name: str) -> tuple[str, list[list[Any]]]:
    """The output without markers, and for each of its lines the [file, line] it came from.

    A line with no marker (an expression's value spanning lines) belongs to the template line
    whose newline comes next."""
    raw_lines = output.split("\n")
    found: list[list[Any] | None] = []
    for raw in raw_lines:
        markers = MARKER.findall(raw)
        found.append([files[int(markers[-1][0])], int(markers[-1][1])] if markers else None)
    following: list[Any] = [name, max((f[1] for f in found if f and f[0] == name), default=1)]
    for i in range(len(found) - 1, -1, -1):
        here = found[i]
        if here is None:
            found[i] = following
        else:
            following = here
    return MARKER.sub("", output), [f for f in found if f is not None]


def _template_frame(tb: Any, root: Path, fallback: list[Any]) -> tuple[str, int]:
    """The innermost traceback frame in one of the stack's templates (jinja rewrites template
    frames to carry the template's file and line)."""
    found = (str(fallback[0]), int(fallback[1]))
    resolved = str(root.resolve())
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(resolved + os.sep):
            found = (Path(filename).relative_to(resolved).as_posix(), tb.tb_lineno)
        tb = tb.tb_next
    return found


def _message(error: BaseException) -> str:
    if isinstance(error, jinja2.UndefinedError):
        return f"undefined: {error.message}"
    if isinstance(error, jinja2.TemplateNotFound):
        return f"template not found in the stack's folder: {error.name}"
    if isinstance(error, jinja2.exceptions.SecurityError):
        return f"refused by the sandbox: {error}"
    if isinstance(error, _Refused | RenderLimit):
        return f"refused by the sandbox: {error}"
    if isinstance(error, OverflowError):
        return f"refused by the sandbox: {error}"
    if isinstance(error, RecursionError):
        return "refused by the sandbox: recursion too deep"
    if isinstance(error, MemoryError):
        return "refused by the sandbox: rendering needed more memory than allowed"
    return f"{type(error).__name__}: {error}"


def _limit_resources(memory_bytes: int, cpu_seconds: int) -> None:
    try:
        import resource  # noqa: PLC0415 (POSIX only)
    except ImportError:
        return
    for limit, value in ((resource.RLIMIT_AS, memory_bytes), (resource.RLIMIT_CPU, cpu_seconds)):
        try:
            soft, hard = resource.getrlimit(limit)
            ceiling = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(limit, (ceiling, hard))
        except (ValueError, OSError):
            pass


def main() -> None:
    request = json.load(sys.stdin)
    _limit_resources(int(request["memory_bytes"]), int(math.ceil(float(request["seconds"]))) + 1)
    sys.setrecursionlimit(_RECURSION_LIMIT)
    json.dump(render(request), sys.stdout)


if __name__ == "__main__":
    main()
