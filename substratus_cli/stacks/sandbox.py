"""The program that renders a stack's templates, run as a child process with memory, CPU and
output limits (`python sandbox.py`, JSON in on stdin, JSON out on stdout).

Templates run in jinja2's SandboxedEnvironment with StrictUndefined: no dunder attributes, no
filesystem beyond the stack's folder, no network, no randomness. A template that loops for ever
or builds a huge string is stopped by the limits; a separate process is the only way to stop a
single C-level operation (sorting millions of items, a pathological regular expression) that a
thread cannot interrupt; huge operands (`9**(9**9)`, `'x'|center(10**9)`) are refused first.
Nothing is evaluated while a template compiles (filters are not folded into constants), so every
failure happens in a template's code, at one of its lines.

Line map: before compiling, every newline of a template's text (outside its tags), and the end of
each piece of its data, gets a marker naming the template file and line; the rendered output
keeps them, so each output line knows the template line it came from. Markers are removed from
what a template captures (`{% set %}` blocks, macros, `{% filter %}`), whose lines belong to where
it is written out, and from the output before it is returned.

Answer: stdout holds one JSON line with the rendered files and their errors, one for each output,
then {"done": true}. stderr holds events, one JSON line each after EVENT: each compiled
template's code name and line table, and which file or output is being rendered. When the time
is up, the process writes the stack of the code it was running (faulthandler, which works even
inside a long C-level operation) and exits: the parent finds the template line in it with the
line tables.

Imports only the standard library and jinja2, so the child starts fast.
"""

from __future__ import annotations

import faulthandler
import json
import math
import os
import re
import string
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import CodeType
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.lexer import Lexer
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment

# A marker: U+FDD0 FILE-INDEX : LINE, then U+FDD1 placed just before a newline of the template
# text, or U+FDD2 just after data of that line. Unicode noncharacters: never in text, never
# whitespace or a line break for str methods.
MARKER = re.compile("\ufdd0(\\d+):(\\d+)([\ufdd1\ufdd2])")
_NEWLINE, _CONTENT = "\ufdd1", "\ufdd2"
_MARKER_CHARS = re.compile("[\ufdd0\ufdd1\ufdd2]")
TEMPLATE_SUFFIXES = (".yaml.j2", ".yml.j2")
PLAIN_SUFFIXES = (".yaml", ".yml")
DEFINITION = "stack.yaml"
# Jinja's own recursion (macros calling themselves) ends in RecursionError well before this.
_RECURSION_LIMIT = 400
# The largest integer an operation may make: one that can still be written (4300 digits).
_MAX_INT_BITS = 14_000
# Padding widths and precisions (filters, `%`, str.format, str.ljust...), slices and batches.
_MAX_WIDTH = 1000
_MAX_PIECES = 100_000
# Events on stderr, and the names compiled template code carries (in tracebacks and stack dumps).
EVENT = "substratus-sandbox-event "
CODE_NAME = re.compile(r"<stack-(file|output)-(\w+)>")
_DEBUG_INFO = re.compile(r"^debug_info = '([0-9=&]*)'$", re.MULTILINE)
# After the deadline, how long a running operation has before the stack is dumped and the
# process ends (the deadline itself is checked between output chunks, with the exact line).
GRACE_SECONDS = 0.5


class RenderLimit(Exception):
    """Rendering went past one of the limits."""


class _Refused(Exception):
    """A template asked for something the sandbox refuses (a huge operand, a file outside)."""


class TemplateFailure(Exception):
    """A template's own `fail(message)`: the stack's author refusing a combination of values."""


def _fail(message: object = "the template failed") -> None:
    raise TemplateFailure(str(message))


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


def code_name(index: int) -> str:
    """The file name the compiled code of template `index` (in the loader's list) carries."""
    return f"<stack-file-{index}>"


_EVENTS: list[bool] = []  # non-empty in the child process (main): events are written


def _announce(event: dict[str, Any]) -> None:
    if not _EVENTS:
        return
    sys.stderr.write(EVENT + json.dumps(event) + "\n")
    sys.stderr.flush()


def _inside(root: Path, relative: str) -> Path | None:
    """The file `relative` names in `root`, if it is a regular file that does not leave it."""
    path = (root / relative).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


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
        path = _inside(self.root, template)
        if path is None:
            raise jinja2.TemplateNotFound(template)
        text = path.read_text(encoding="utf-8-sig")
        if template not in self.files:
            self.files.append(template)
        index = self.files.index(template)
        return _with_markers(text, index, template, self.lex), code_name(index), lambda: True


def _with_markers(text: str, index: int, name: str,
                  lex: Callable[[str, str], Iterator[Any]]) -> str:
    """`text` with a marker before each newline that is template data (not inside a tag), and
    one after each piece of data that is not empty: an output line comes from the template line
    of the last data written on it, or of the newline that ends it (a line of expressions)."""
    text = _MARKER_CHARS.sub("", re.sub("\r\n?", "\n", text))
    pieces = []
    try:
        tokens = list(lex(text, name))
    except jinja2.TemplateSyntaxError:
        return text  # compiling reports it, with its line
    for lineno, token, value in tokens:
        if token == "data":
            value = "\n".join(
                (f"{part}\ufdd0{index}:{lineno + i}{_CONTENT}" if part else "") +
                (f"\ufdd0{index}:{lineno + i}{_NEWLINE}" if i < value.count("\n") else "")
                for i, part in enumerate(value.split("\n")))
        pieces.append(value)
    return "".join(pieces)


def _concat(parts: Iterable[str]) -> str:
    """What a template captures, without markers (jinja joins captured output with this)."""
    return MARKER.sub("", "".join(parts))


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**", "+", "%"])
    concat = staticmethod(_concat)

    def __init__(self, max_chars: int, files: list[str], **options: Any) -> None:
        super().__init__(**options)
        self.max_chars = max_chars
        self.files = files
        self.tables: dict[str, str] = {}  # code name -> line table

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if _integer(left) and _integer(right) and right > 0 and abs(left) > 1 and \
                    (abs(left).bit_length() - 1) * right > _MAX_INT_BITS:
                raise _Refused(f"number too large: {_short(left)} ** {_short(right)}")
        elif operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int) and \
                        len(seq) * count > self.max_chars:
                    raise _Refused(f"result too large: a sequence of {len(seq)} times "
                                   f"{_short(count)}")
            if _integer(left) and _integer(right) and \
                    abs(left).bit_length() + abs(right).bit_length() > _MAX_INT_BITS:
                raise _Refused("number too large")
        elif operator == "+" and isinstance(left, str | list | tuple) and \
                isinstance(right, str | list | tuple) and len(left) + len(right) > self.max_chars:
            raise _Refused("result too large")
        elif operator == "%" and isinstance(left, str):
            _check_percent(left, right)
        return super().call_binop(context, operator, left, right)

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        """An unsafe attribute is an error where it is asked for (jinja makes it an undefined
        value, which `|attr` chains and `is defined` tests would pass on without saying why)."""
        raise jinja2.exceptions.SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe.")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        formatter = super().wrap_str_format(value)
        if formatter is None:
            return None
        template, is_map = value.__self__, value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> str:
            given = list(args[0].values()) if is_map and args and isinstance(args[0], dict) \
                else [*args, *kwargs.values()]
            _check_format(template, given)
            return formatter(*args, **kwargs)
        return checked

    def call(__self, __context: Any, __obj: Any, *args: Any,  # noqa: N805 (jinja's signature)
             **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and getattr(__obj, "__name__", "") in _PADDING_METHODS:
            _check_sizes([*args, *kwargs.values()], _MAX_WIDTH, "width")
        return super().call(__context, __obj, *args, **kwargs)

    def _compile(self, source: str, filename: str) -> CodeType:
        """Python's compile of the generated code; its line table is announced for the parent,
        and Python's own limits (blocks nested too deeply) are reported at the template line."""
        found = _DEBUG_INFO.search(source)
        table = found.group(1) if found else ""
        name = _template_name(filename, self.files)
        self.tables[filename] = table
        _announce({"code": filename, "name": name, "lines": table})
        try:
            return compile(source, filename, "exec")
        except (SyntaxError, RecursionError, MemoryError) as error:
            line = template_line(table, getattr(error, "lineno", None) or 0)
            reason = error.msg if isinstance(error, SyntaxError) else "nested too deeply"
            raise jinja2.TemplateSyntaxError(f"the template is too complex: {reason}", line,
                                             name, filename) from None


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")
_PADDING_METHODS = frozenset(["ljust", "rjust", "center", "zfill", "expandtabs"])
_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    if _integer(value) and abs(value).bit_length() > 64:
        return "a very large number"
    return repr(value)


def _too_large(size: Any, limit: int) -> bool:
    return _integer(size) and size > limit


def _digits(text: str) -> list[int]:
    """The numbers written in a format specification (a run too long to read is too large)."""
    return [int(d) if len(d) <= 9 else sys.maxsize for d in re.findall(r"\d+", text)]


def _check_sizes(sizes: Iterable[Any], limit: int, what: str) -> None:
    if any(_too_large(s, limit) for s in sizes):
        raise _Refused(f"{what} too large (at most {limit})")


def _check_percent(template: str, values: Any) -> None:
    """`template % values` writes no padding or precision beyond the limit."""
    star = False
    for match in _PERCENT.finditer(template):
        for size in match.group(1, 2):
            if size == "*":
                star = True
            elif size:
                _check_sizes(_digits(size), _MAX_WIDTH, "padding width or precision")
    if star:
        given = values if isinstance(values, tuple) else (values,)
        _check_sizes(given, _MAX_WIDTH, "padding width or precision")


def _check_format(template: str, values: list[Any]) -> None:
    """`template.format(...)` writes no padding or precision beyond the limit."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # str.format reports it
    for _, _, spec, _ in fields:
        if not spec:
            continue
        _check_sizes(_digits(spec), _MAX_WIDTH, "padding width or precision")
        if "{" in spec:  # the width is one of the values
            _check_sizes(values, _MAX_WIDTH, "padding width or precision")


def _template_name(filename: str, files: list[str]) -> str | None:
    found = CODE_NAME.fullmatch(filename)
    if found is None or found.group(1) != "file":
        return None
    index = int(found.group(2))
    return files[index] if index < len(files) else None


def template_line(table: str, code_line: int) -> int:
    """The template line of `code_line` of a template's code, from its line table (jinja's
    `debug_info`: TEMPLATE=CODE pairs, in order)."""
    line = 1
    for pair in filter(None, table.split("&")):
        template, _, code = pair.partition("=")
        if int(code) > code_line:
            break
        line = int(template)
    return line


# Filters, with the arguments that size what they make: (positions after the value, keywords).
_SIZED_FILTERS = {
    "center": ((0,), ("width",)),
    "indent": ((0,), ("width",)),
    "wordwrap": ((0,), ("width",)),
    "truncate": ((0, 3), ("length", "leeway")),
}
_COUNTED_FILTERS = {
    "slice": ((0,), ("slices",)),
    "batch": ((0,), ("linecount",)),
}


def _guarded(filter_: Callable[..., Any], check: Callable[[Any, tuple[Any, ...],
                                                          dict[str, Any]], None] | None
             ) -> Callable[..., Any]:
    """`filter_` called at render time only (jinja folds a filter of constants into a constant
    while compiling: a filter that takes long or fails would do so with no line to show), with
    `check` of its arguments first."""
    passes = getattr(getattr(filter_, "jinja_pass_arg", None), "name", None)

    @jinja2.pass_context
    def guarded(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        if check is not None:
            check(value, args, kwargs)
        if passes == "context":
            return filter_(context, value, *args, **kwargs)
        if passes == "eval_context":
            return filter_(context.eval_ctx, value, *args, **kwargs)
        if passes == "environment":
            return filter_(context.environment, value, *args, **kwargs)
        return filter_(value, *args, **kwargs)
    return guarded


def _sizes(positions: tuple[int, ...], keywords: tuple[str, ...], limit: int,
           what: str) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], None]:
    def check(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        _check_sizes([args[i] for i in positions if i < len(args)] +
                     [v for k, v in kwargs.items() if k in keywords], limit, what)
    return check


def _format_check(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    _check_percent(str(value), tuple(kwargs.values()) or args)


def _finalize(value: Any) -> Any:
    """What `{{ }}` writes: values, not functions or objects (whose text names an address in
    memory: a different rendering each time)."""
    if isinstance(value, jinja2.Undefined | str | int | float) or value is None:
        return value
    if callable(value) or _ADDRESS.search(str(value)):
        raise _Refused(f"a {type(value).__name__} is not a value that can be written into the "
                       "output")
    return value


def environment(root: Path, files: list[str], max_chars: int) -> _Sandbox:
    env = _Sandbox(max_chars, files, undefined=jinja2.StrictUndefined, autoescape=False,
                   trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                   auto_reload=False, finalize=_finalize)
    env.loader = _StackLoader(root, files, env.lexer.tokeniter)
    # Deterministic output: nothing random.
    for name in ("random",):
        env.filters.pop(name, None)
    env.globals.pop("lipsum", None)
    for name, filter_ in list(env.filters.items()):
        check = None
        if name in _SIZED_FILTERS:
            check = _sizes(*_SIZED_FILTERS[name], _MAX_WIDTH, "size argument")
        elif name in _COUNTED_FILTERS:
            check = _sizes(*_COUNTED_FILTERS[name], _MAX_PIECES, "count")
        elif name == "format":
            check = _format_check
        env.filters[name] = _guarded(filter_, check)
    env.globals["secret"] = _secret_reference
    env.globals["fail"] = _fail
    return env


def _secret_reference(name: str, key: str) -> str:
    """`${{ secrets.NAME.KEY }}`, written from a template (jinja would read the braces)."""
    return "${{ secrets." + str(name) + "." + str(key) + " }}"


def render(request: dict[str, Any]) -> dict[str, Any]:
    """Render every resource file of a stack, then its outputs: {"files": [{"file", "text",
    "lines"}], "errors": [{"file", "line", "message"}], "outputs": {name: text},
    "output_errors": {name: message}}, one error at most per file that fails."""
    env = environment(Path(request["root"]), [], int(request["max_chars"]))
    deadline = time.monotonic() + float(request["seconds"])
    answer = render_files(env, request, deadline)
    outputs, output_errors = {}, {}
    for result in render_outputs(env, request):
        if "error" in result:
            output_errors[result["output"]] = result["error"]
        else:
            outputs[result["output"]] = result["value"]
    return {**answer, "outputs": outputs, "output_errors": output_errors}


def render_files(env: _Sandbox, request: dict[str, Any], deadline: float) -> dict[str, Any]:
    root = Path(request["root"]).resolve()
    max_chars = int(request["max_chars"])
    context = request["context"]
    files = env.files
    rendered = []
    errors = []
    total = 0
    for name in resource_files(root):
        _announce({"file": name})
        position = [name, 1]
        try:
            if _inside(root, name) is None:
                raise _Refused("a link to a file outside the stack's folder, or not a file")
            if name.endswith(PLAIN_SUFFIXES):
                text = (root / name).read_text(encoding="utf-8-sig")
                numbers = range(1, text.count("\n") + 2)
                rendered.append({"file": name, "text": text, "lines": [[name, n] for n in numbers]})
                total += len(text)
                if total > max_chars:
                    raise RenderLimit(f"the output is larger than {max_chars} characters")
                continue
            template = env.get_template(name)
            chunks = []
            stream = template.generate(context)
            for chunk in stream:
                chunks.append(chunk)
                total += len(chunk)
                markers = MARKER.findall(chunk)
                if markers:
                    index, line, kind = markers[-1]
                    position = [files[int(index)], int(line) + (kind == _NEWLINE)]
                if total > max_chars:
                    position = _running(stream, env, position)
                    raise RenderLimit(f"the output is larger than {max_chars} characters")
                if time.monotonic() > deadline:
                    position = _running(stream, env, position)
                    raise RenderLimit(f"rendering took longer than {request['seconds']:g} s")
            text, lines = _line_map("".join(chunks), files, name)
            rendered.append({"file": name, "text": text, "lines": lines})
        except jinja2.TemplateSyntaxError as error:
            errors.append({"file": error.name or name, "line": error.lineno or 1,
                           "message": f"template syntax error: {error.message}"})
        except Exception as error:  # any failure of the user's template, located
            file, line = _template_frame(error.__traceback__, files, position)
            errors.append({"file": file, "line": line, "message": _message(error)})
            if isinstance(error, RenderLimit | MemoryError):
                break  # the limits are the stack's, not the file's
    return {"files": rendered, "errors": errors}


def _running(stream: Any, env: _Sandbox, fallback: list[Any]) -> list[Any]:
    """The template line a suspended rendering is at: the innermost of its generators (a
    template's code, or one it includes) that is a template's, its line in the template."""
    found = fallback
    while stream is not None:
        frame = getattr(stream, "gi_frame", None)
        if frame is not None:
            code = frame.f_code.co_filename
            name = _template_name(code, env.files)
            if name is not None and code in env.tables:
                found = [name, template_line(env.tables[code], frame.f_lineno)]
        stream = getattr(stream, "gi_yieldfrom", None)
    return found


def render_outputs(env: _Sandbox, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Each output rendered: {"output", "value"} or {"output", "error"}."""
    for key, source in request.get("outputs", {}).items():
        _announce({"output": key})
        try:
            code = env.compile(source, filename=f"<stack-output-{key}>")
            template = env.template_class.from_code(env, code, env.make_globals(None), None)
            yield {"output": key, "value": template.render(request["context"])}
        except jinja2.TemplateSyntaxError as error:
            yield {"output": key, "error": f"template syntax error: {error.message}"}
        except Exception as error:  # the output's template, located by its name
            yield {"output": key, "error": _message(error)}


def _line_map(output: str, files: list[str], name: str) -> tuple[str, list[list[Any]]]:
    """The output without markers, and for each of its lines the [file, line] it came from: that
    of the last data written on it, else of the newline that ends it.

    A line with no marker (an expression's value spanning lines, what a macro or a `{% set %}`
    block captured) belongs to the template line of the next line that has one."""
    raw_lines = output.split("\n")
    found: list[list[Any] | None] = []
    for raw in raw_lines:
        markers = MARKER.findall(raw)
        content = [m for m in markers if m[2] == _CONTENT] or markers
        found.append([files[int(content[-1][0])], int(content[-1][1])] if content else None)
    following: list[Any] = [name, max((f[1] for f in found if f and f[0] == name), default=1)]
    for i in range(len(found) - 1, -1, -1):
        here = found[i]
        if here is None:
            found[i] = following
        else:
            following = here
    return MARKER.sub("", output), [f for f in found if f is not None]


def _template_frame(tb: Any, files: list[str], fallback: list[Any]) -> tuple[str, int]:
    """Where an error happened: the innermost traceback frame of a template's code (jinja
    rewrites those to carry the template's line), or of jinja's lexer, parser or compiler
    working on a template (an error while compiling: a number too long, nesting too deep)."""
    found = (str(fallback[0]), int(fallback[1]))
    compiling: str | None = None
    while tb is not None:
        frame = tb.tb_frame
        name = _template_name(frame.f_code.co_filename, files)
        if name is not None:
            found = (name, tb.tb_lineno)
        else:
            local = frame.f_locals
            owner, node = local.get("self"), local.get("node")
            if isinstance(owner, Parser | CodeGenerator) and owner.name:
                compiling = owner.name
            if isinstance(owner, Parser) and owner.name:
                found = (owner.name, owner.stream.current.lineno)
            elif isinstance(owner, Lexer) and isinstance(local.get("lineno"), int) and \
                    local.get("name"):
                found = (str(local["name"]), int(local["lineno"]))
            elif compiling is not None:
                for candidate in (node, owner):
                    if isinstance(candidate, nodes.Node) and candidate.lineno:
                        found = (compiling, candidate.lineno)
                        break
        tb = tb.tb_next
    return found


def _message(error: BaseException) -> str:
    if isinstance(error, TemplateFailure):
        return str(error)
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
    if isinstance(error, ValueError) and "int_max_str_digits" in str(error):
        return "refused by the sandbox: a number too large to write (more than 4300 digits)"
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8 text"
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
    _EVENTS.append(True)
    seconds = float(request["seconds"])
    _limit_resources(int(request["memory_bytes"]), int(math.ceil(seconds)) + 1)
    sys.setrecursionlimit(_RECURSION_LIMIT)
    deadline = time.monotonic() + seconds
    env = environment(Path(request["root"]), [], int(request["max_chars"]))
    # Past the deadline (plus a grace for the check between chunks, which knows the line), the
    # stack of whatever runs is written to stderr and the process ends.
    faulthandler.dump_traceback_later(seconds + GRACE_SECONDS, exit=True)
    answer = render_files(env, request, deadline)
    faulthandler.cancel_dump_traceback_later()
    _answer(answer)
    left = max(deadline - time.monotonic(), 0.0)
    faulthandler.dump_traceback_later(left + GRACE_SECONDS, exit=True)
    results = render_outputs(env, request)
    while True:
        result = next(results, None)
        faulthandler.cancel_dump_traceback_later()
        if result is None:
            break
        _answer(result)
        faulthandler.dump_traceback_later(max(deadline - time.monotonic(), 0.0) +
                                          GRACE_SECONDS, exit=True)
    _answer({"done": True})


def _answer(answer: dict[str, Any]) -> None:
    """One line of the answer, on stdout."""
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
