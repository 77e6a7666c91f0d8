"""From a workspace's documents to the documents the loader validates: `Variable` documents
declare the workspace's variables, `${{ var.NAME }}` and `${{ stack.INSTANCE.OUTPUT }}` are
replaced, and each `Stack` document is rendered (in the order their outputs require) into
resource documents whose lines point at the templates they came from."""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pydantic

from substratus_cli.address import DNS_LABEL, KINDS
from substratus_cli.diagnostics import Diagnostic, Diagnostics, Subject
from substratus_cli.resource import API_VERSION, closest_line
from substratus_cli.stacks import interpolate, render
from substratus_cli.stacks.parameters import IDENTIFIER, Definition, Parameter, check
from substratus_cli.stacks.sandbox import DEFINITION
from substratus_cli.stacks.variables import Declaration, VariableInput, resolve
from substratus_cli.yamlpos import YamlDocument, parse_documents

STACK, VARIABLE = "Stack", "Variable"
CONFIG_KINDS = (STACK, VARIABLE)
# The stacks shipped with substratus: the repository's stacks/ folder.
SHIPPED = Path(__file__).resolve().parents[2] / "stacks"
SEARCH_PATH = "SUBSTRATUS_STACKS_PATH"


@dataclasses.dataclass(frozen=True)
class Source:
    """A document to validate, where it came from, and what else it depends on."""

    file: str
    document: YamlDocument
    instance: str | None = None  # the Stack that rendered it
    origin: str | None = None  # file:line of that Stack document
    extra_refs: tuple[tuple[str, str], ...] = ()  # (kind, name) named through stack outputs


@dataclasses.dataclass(frozen=True)
class OutputValue:
    instance: str
    name: str
    description: str
    value: Any = None  # None while unknown (a status field, known after apply)
    kind: str | None = None  # the resource it names, if any
    resource: str | None = None
    field: str | None = None

    @property
    def key(self) -> str:
        return f"{self.instance}.{self.name}"


@dataclasses.dataclass(frozen=True)
class Instance:
    name: str
    stack: str  # the source as written
    root: Path
    file: str  # the Stack document's file and line
    line: int


@dataclasses.dataclass(frozen=True)
class RenderedText:
    """One rendered file, as `substratus render` prints it."""

    instance: str
    file: str
    text: str


@dataclasses.dataclass(frozen=True)
class Expansion:
    sources: list[Source]
    outputs: list[OutputValue]
    instances: list[Instance]
    variables: dict[str, Any]
    texts: list[RenderedText]


def expand(documents: list[tuple[str, YamlDocument]], workdir: Path, given: VariableInput,
           diagnostics: Diagnostics) -> Expansion:
    plain = [(f, d) for f, d in documents if _kind(d) not in CONFIG_KINDS]
    stacks = [(f, d) for f, d in documents if _kind(d) == STACK]
    before = len(diagnostics.errors)
    declared = _declarations([(f, d) for f, d in documents if _kind(d) == VARIABLE], diagnostics)
    variables = resolve(declared, given, diagnostics)
    if len(diagnostics.errors) > before:
        # Every file may use the variables: checking them with wrong or missing values would
        # only repeat the same mistakes.
        return Expansion([], [], [], variables, [])
    expander = _Expander(workdir, declared, variables, diagnostics)
    ordered, in_cycle = _in_dependency_order(stacks, diagnostics)
    expander.failed.update(in_cycle)
    for file, document in ordered:
        expander.instantiate(file, document)
    sources = [s for s in (expander.interpolated(f, d) for f, d in plain) if s is not None]
    return Expansion(sources + expander.rendered, list(expander.outputs.values()),
                     expander.instances, variables, expander.texts)


def locate(source: str, workdir: Path) -> tuple[Path | None, str]:
    """The folder of the stack `source` names (./PATH from the workspace, or a shipped stack's
    name, looked up in SUBSTRATUS_STACKS_PATH first), or None and why not."""
    if "/" in source or source.startswith("."):
        candidates = [workdir / source]
    else:
        extra = [Path(p) for p in os.environ.get(SEARCH_PATH, "").split(os.pathsep) if p]
        candidates = [base / source for base in [*extra, SHIPPED]]
    for candidate in candidates:
        if (candidate / DEFINITION).is_file():
            return candidate.resolve(), ""
    shipped = sorted(p.parent.name for p in SHIPPED.glob(f"*/{DEFINITION}"))
    is_path = "/" in source or source.startswith(".")
    where = (f"no {DEFINITION} in {candidates[0]}" if is_path else
             f"not a shipped stack (shipped: {', '.join(shipped) or 'none'}); a folder of "
             "your own is written as a path, e.g. ./stacks/NAME")
    return None, f"stack {source!r} not found: {where}"


def _kind(document: YamlDocument) -> Any:
    return document.data.get("kind") if isinstance(document.data, dict) else None


def _name(document: YamlDocument) -> str | None:
    metadata = document.data.get("metadata") if isinstance(document.data, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else None


def _line(document: YamlDocument, field: str) -> int:
    return closest_line(document.field_lines, field, document.line)


def _envelope(file: str, document: YamlDocument, allowed: Iterable[str],
              diagnostics: Diagnostics) -> bool:
    """apiVersion and the top-level fields of a Stack or Variable document (all reported); False
    only when it has no name to go on with."""
    data = document.data
    if data.get("apiVersion") != API_VERSION:
        diagnostics.error(f'expected apiVersion "{API_VERSION}"', file=file,
                          line=_line(document, "apiVersion"), field="apiVersion")
    for key in data:
        if key not in ("apiVersion", "kind", "metadata", "spec"):
            diagnostics.error(f'unknown field "{key}"', file=file, line=_line(document, str(key)),
                              field=str(key))
    metadata = data.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        diagnostics.error("required field is missing", file=file,
                          line=_line(document, "metadata.name"), field="metadata.name")
        return False
    for key in metadata:
        if key not in allowed:
            diagnostics.error(f'unknown field "{key}"', file=file,
                              line=_line(document, f"metadata.{key}"), field=f"metadata.{key}")
    return True


def _declarations(documents: list[tuple[str, YamlDocument]],
                  diagnostics: Diagnostics) -> dict[str, Declaration]:
    declared: dict[str, Declaration] = {}
    for file, document in documents:
        if not _envelope(file, document, ("name",), diagnostics):
            continue
        name = _name(document)
        assert name is not None
        line = _line(document, "metadata.name")
        if not IDENTIFIER.fullmatch(name):
            diagnostics.error(f"invalid variable name {name!r}: use letters, digits and _, not "
                              "starting with a digit", file=file, line=line, field="metadata.name")
            continue
        if name in declared:
            first = declared[name]
            diagnostics.error(f'duplicate Variable "{name}" (first defined at {first.file}:'
                              f"{first.line})", file=file, line=line, field="metadata.name")
            continue
        parameter = _parameter(document.data.get("spec") or {}, file, document, "spec",
                               diagnostics)
        if parameter is None:
            continue
        if parameter.sensitive:
            diagnostics.error(
                "sensitive variables are not built yet: their values would be written into "
                "plans and state", detail="keep the value in a secret and write "
                "${{ secrets.NAME.KEY }} where it is used", file=file,
                line=_line(document, "spec.sensitive"), field="spec.sensitive")
            continue
        declared[name] = Declaration(name, parameter, file, line)
    return declared


def _parameter(data: Any, file: str, document: YamlDocument, path: str,
               diagnostics: Diagnostics) -> Parameter | None:
    try:
        return Parameter.model_validate(data)
    except pydantic.ValidationError as error:
        report_validation(error, file, document, path, diagnostics)
        return None


def report_validation(error: pydantic.ValidationError, file: str, document: YamlDocument,
                      path: str, diagnostics: Diagnostics) -> None:
    for detail in error.errors(include_url=False):
        field = ".".join([path, *(str(p) for p in detail["loc"])]).strip(".")
        message = str(detail["msg"]).removeprefix("Value error, ")
        if detail["type"] == "extra_forbidden":
            message = f'unknown field "{detail["loc"][-1]}"'
        elif detail["type"] == "missing":
            message = "required field is missing"
        diagnostics.error(message, file=file, line=_line(document, field), field=field)


def _in_dependency_order(stacks: list[tuple[str, YamlDocument]], diagnostics: Diagnostics
                         ) -> tuple[list[tuple[str, YamlDocument]], set[str]]:
    """Stack documents, each after the instances whose outputs its values use; the instances of a
    cycle are reported and left out (their names returned too)."""
    by_name: dict[str, tuple[str, YamlDocument]] = {}
    for file, document in stacks:
        name = _name(document)
        if name is None:
            _envelope(file, document, ("name", "namespace"), diagnostics)
            continue
        if name in by_name:
            first_file, first = by_name[name]
            diagnostics.error(f'duplicate Stack "{name}" (first defined at {first_file}:'
                              f"{first.line})", file=file, line=_line(document, "metadata.name"),
                              field="metadata.name")
            continue
        by_name[name] = (file, document)
    needs = {name: {r.name.split(".")[0] for r in interpolate.find(doc.data.get("spec"))
                    if r.namespace == "stack"} & set(by_name)
             for name, (_, doc) in by_name.items()}
    ordered: list[str] = []
    done: set[str] = set()
    visiting: list[str] = []
    in_cycle: set[str] = set()

    def visit(name: str) -> None:
        if name in done or name in in_cycle:
            return
        if name in visiting:
            cycle = visiting[visiting.index(name):] + [name]
            for member in cycle[:-1]:
                in_cycle.add(member)
                file, document = by_name[member]
                diagnostics.error(
                    "stack instances use each other's outputs in a cycle: " +
                    " -> ".join(cycle), file=file, line=_line(document, "spec.values"),
                    field="spec.values")
            return
        visiting.append(name)
        for other in sorted(needs[name]):
            visit(other)
        visiting.pop()
        if name not in in_cycle:
            done.add(name)
            ordered.append(name)

    for name in by_name:
        visit(name)
    return [by_name[n] for n in ordered], in_cycle


class _Expander:
    def __init__(self, workdir: Path, declared: Mapping[str, Declaration],
                 variables: Mapping[str, Any], diagnostics: Diagnostics) -> None:
        self.workdir = workdir
        self.declared = declared
        self.variables = variables
        self.diagnostics = diagnostics
        self.outputs: dict[str, OutputValue] = {}
        self.instances: list[Instance] = []
        self.rendered: list[Source] = []
        self.texts: list[RenderedText] = []
        self.failed: set[str] = set()  # instances that did not render: no second error for them
        self.definitions: dict[Path, tuple[Definition, YamlDocument] | None] = {}

    # References

    def interpolated(self, file: str, document: YamlDocument) -> Source | None:
        """The document with its references replaced; None when one cannot be (reported), or
        names a stack that could not be rendered (reported too)."""
        if any(r.namespace == "stack" and r.name.partition(".")[0] in self.failed
               for r in interpolate.find(document.data)):
            return None
        refs: list[tuple[str, str]] = []
        before = len(self.diagnostics.errors)
        data = self._substitute(file, document, refs)
        if len(self.diagnostics.errors) > before:
            return None  # the reference's text left in a field would only be refused again
        return Source(file, dataclasses.replace(document, data=data),
                      extra_refs=tuple(dict.fromkeys(refs)))

    def _substitute(self, file: str, document: YamlDocument,
                    refs: list[tuple[str, str]]) -> Any:
        def resolve_ref(namespace: str, name: str) -> Any:
            if namespace == "var":
                return self._variable(name)
            output = self._output(name)
            if output.kind and output.resource:
                refs.append((output.kind, output.resource))
            return output.value

        def report(path: str, message: str) -> None:
            self.diagnostics.error(message, file=file, line=_line(document, path), field=path)

        return interpolate.substitute(document.data, resolve_ref, report)

    def _variable(self, name: str) -> Any:
        if name in self.variables:
            return self.variables[name]
        if name in self.declared:  # declared, but its value was refused (reported)
            raise interpolate.Unresolved(f'variable "{name}" has no valid value')
        close = difflib.get_close_matches(name, list(self.declared), n=1, cutoff=0.6)
        hint = f' (did you mean "{close[0]}"?)' if close else \
            "; declare it with a Variable document"
        raise interpolate.Unresolved(f'undeclared variable "{name}"{hint}')

    def _output(self, reference: str) -> OutputValue:
        instance, _, name = reference.partition(".")
        if instance in self.failed:
            raise interpolate.Unresolved(f'stack "{instance}" could not be rendered (see above)')
        known = [o for o in self.outputs.values() if o.instance == instance]
        if not any(i.name == instance for i in self.instances):
            raise interpolate.Unresolved(f'no Stack named "{instance}"')
        output = self.outputs.get(reference)
        if output is None:
            names = ", ".join(sorted(o.name for o in known)) or "none"
            raise interpolate.Unresolved(f'stack "{instance}" has no output "{name}" '
                                         f"(outputs: {names})")
        if output.value is None:
            raise interpolate.Unresolved(
                f'output "{reference}" is known only after apply ({output.kind}/'
                f"{output.resource} {output.field}); `substratus output` shows it")
        return output

    # Instances

    def instantiate(self, file: str, document: YamlDocument) -> None:
        name = _name(document)
        assert name is not None
        self.failed.add(name)  # until it renders
        if not _envelope(file, document, ("name", "namespace", "labels"), self.diagnostics):
            return
        refs: list[tuple[str, str]] = []
        before = len(self.diagnostics.errors)
        data = self._substitute(file, document, refs)
        if len(self.diagnostics.errors) > before:
            return  # a reference's text left in a value would only be refused again
        spec = data.get("spec")
        if not DNS_LABEL.fullmatch(name):
            self._error(file, document, "metadata.name",
                        f"invalid name {name!r}: use at most 63 lowercase letters, digits and "
                        "'-', starting and ending with a letter or digit")
        if not isinstance(spec, dict) or not isinstance(spec.get("source"), str):
            self._error(file, document, "spec.source", "required field is missing: the "
                        "stack's folder (./PATH) or the name of a shipped stack")
            return
        for key in spec:
            if key not in ("source", "values"):
                self._error(file, document, f"spec.{key}", f'unknown field "{key}"; allowed: '
                            "source, values")
        values = spec.get("values") or {}
        if not isinstance(values, dict):
            self._error(file, document, "spec.values", "expected a mapping of parameter values")
            return
        root = self._locate(file, document, spec["source"])
        if root is None:
            return
        found = self._definition(root)
        if found is None:
            return
        definition, definition_document = found
        resolved = self._values(file, document, definition, values)
        if len(self.diagnostics.errors) > before:
            return
        namespace = (data.get("metadata") or {}).get("namespace")
        instance = Instance(name, spec["source"], root, file, document.line)
        self.instances.append(instance)
        self._render(instance, definition, definition_document, resolved, namespace,
                     tuple(dict.fromkeys(refs)))

    def _error(self, file: str, document: YamlDocument, field: str, message: str) -> None:
        self.diagnostics.error(message, file=file, line=_line(document, field), field=field)

    def _locate(self, file: str, document: YamlDocument, source: str) -> Path | None:
        root, problem = locate(source, self.workdir)
        if root is None:
            self._error(file, document, "spec.source", problem)
        return root

    def display(self, root: Path, relative: str = "") -> str:
        """How a stack's file is named in messages: as a path from the workspace, or
        stacks/NAME/FILE for a shipped stack."""
        path = root / relative if relative else root
        if root.is_relative_to(SHIPPED):
            return path.relative_to(SHIPPED.parent).as_posix()
        return Path(os.path.relpath(path, self.workdir)).as_posix()

    def _definition(self, root: Path) -> tuple[Definition, YamlDocument] | None:
        """The stack's definition, read once per run (its errors reported once, not per
        instance)."""
        if root not in self.definitions:
            self.definitions[root] = self._read_definition(root)
        return self.definitions[root]

    def _read_definition(self, root: Path) -> tuple[Definition, YamlDocument] | None:
        file = self.display(root, DEFINITION)
        try:
            text = (root / DEFINITION).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            self.diagnostics.error(f"cannot read the stack definition: {error}", file=file)
            return None
        before = len(self.diagnostics.errors)
        documents = parse_documents(text, file, self.diagnostics)
        if len(self.diagnostics.errors) > before:
            return None
        if not documents or not isinstance(documents[0].data, dict):
            self.diagnostics.error("expected a mapping with parameters and outputs", file=file,
                                   line=documents[0].line if documents else 1)
            return None
        try:
            return Definition.model_validate(documents[0].data), documents[0]
        except pydantic.ValidationError as error:
            report_validation(error, file, documents[0], "", self.diagnostics)
            return None

    def _values(self, file: str, document: YamlDocument, definition: Definition,
                values: dict[str, Any]) -> dict[str, Any]:
        resolved: dict[str, Any] = {}
        for key, value in values.items():
            field = f"spec.values.{key}"
            parameter = definition.parameters.get(str(key))
            if parameter is None:
                known = list(definition.parameters)
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f' (did you mean "{close[0]}"?)' if close else \
                    f"; parameters: {', '.join(known) or 'none'}"
                self._error(file, document, field, f'unknown parameter "{key}"{hint}')
                continue
            if value is None and not parameter.required:
                continue  # null: the default, as Terraform passes null to a module
            problem = "required parameter has no value" if value is None else \
                check(parameter, value)
            if problem:
                self._error(file, document, field, problem)
                continue
            resolved[str(key)] = value
        missing = [n for n, p in definition.parameters.items() if p.required and n not in values]
        if missing:
            self._error(file, document, "spec.values",
                        f"required parameter{'s' if len(missing) > 1 else ''} not given: "
                        f"{', '.join(missing)}")
        for name, parameter in definition.parameters.items():
            resolved.setdefault(name, parameter.default)
        return resolved

    def _render(self, instance: Instance, definition: Definition, where: YamlDocument,
                values: dict[str, Any], namespace: Any,
                refs: tuple[tuple[str, str], ...]) -> None:
        context = {"values": values, "instance": instance.name, "instance_namespace": namespace}
        sources = {name: (o.value if isinstance(o.value, str) else o.resource or "")
                   for name, o in definition.outputs.items()
                   if isinstance(o.value, str) or o.resource}
        result = render.render(instance.root, context, sources)
        origin = f"{instance.file}:{instance.line}"
        detail = f'in stack "{instance.name}" ({origin})'
        for error in result.errors:
            file = self.display(instance.root, error.file) if error.file else \
                self.display(instance.root)
            self.diagnostics.add(Diagnostic(error.message, detail,
                                            Subject(file, error.line or None)))
        rendered: list[Source] = []
        for part in result.files:
            rendered += self._documents(instance, part, detail, refs)
            self.texts.append(RenderedText(instance.name, self.display(instance.root, part.file),
                                           part.text))
        if result.errors:
            # A file that failed renders nothing: its outputs would only be reported missing.
            self.rendered += rendered
            return
        declared = {(_kind(s.document), _name(s.document)) for s in rendered}
        definition_file = self.display(instance.root, DEFINITION)
        for name, output in definition.outputs.items():
            value = result.outputs.get(name, output.value)
            if name in result.output_errors:
                self.diagnostics.add(Diagnostic(
                    f"output {name}: {result.output_errors[name]}", detail,
                    Subject(definition_file, _line(where, f"outputs.{name}.value"),
                            f"outputs.{name}")))
                continue
            if output.resource is None:
                self.outputs[f"{instance.name}.{name}"] = OutputValue(
                    instance.name, name, output.description, value)
                continue
            if value == "":  # the template chose no resource (a server not made): empty
                self.outputs[f"{instance.name}.{name}"] = OutputValue(
                    instance.name, name, output.description, "")
                continue
            kind, _, resource = str(value).partition("/")
            if kind not in KINDS or (kind, resource) not in declared:
                self.diagnostics.add(Diagnostic(
                    f"output {name}: the stack renders no {value!r} (expected Kind/name of one "
                    "of its resources, as rendered)", detail,
                    Subject(definition_file, _line(where, f"outputs.{name}.resource"),
                            f"outputs.{name}.resource")))
                continue
            self.outputs[f"{instance.name}.{name}"] = OutputValue(
                instance.name, name, output.description,
                None if output.field else resource, kind, resource, output.field)
        self.failed.discard(instance.name)
        self.rendered += rendered

    def _documents(self, instance: Instance, part: render.RenderedFile, detail: str,
                   refs: tuple[tuple[str, str], ...]) -> list[Source]:
        file = self.display(instance.root, part.file)
        found = Diagnostics()
        documents = parse_documents(part.text, file, found)

        def place(line: int | None) -> tuple[str, int | None]:
            if line is None or not 1 <= line <= len(part.lines):
                return file, line
            template, template_line = part.lines[line - 1]
            return self.display(instance.root, template), template_line

        for diagnostic in found:
            where, line = place(diagnostic.subject.line)
            self.diagnostics.add(Diagnostic(diagnostic.summary, detail,
                                            Subject(where, line, diagnostic.subject.field)))
        sources = []
        for document in documents:
            if _kind(document) in CONFIG_KINDS:
                self.diagnostics.error(f"a stack cannot declare a {_kind(document)}",
                                       detail=detail, file=place(document.line)[0],
                                       line=place(document.line)[1])
                continue
            for ref in interpolate.find(document.data):
                where, line = place(closest_line(document.field_lines, ref.path, document.line))
                self.diagnostics.error(
                    f"${{{{ {ref.namespace}.{ref.name} }}}} is not visible inside a stack; "
                    "pass it in the stack's values", detail=detail, file=where, line=line,
                    field=ref.path)
            sources.append(Source(file, _remapped(document, part.lines, part.file), instance.name,
                                  f"{instance.file}:{instance.line}", refs))
        return sources


def _remapped(document: YamlDocument, lines: tuple[tuple[str, int], ...],
              own: str) -> YamlDocument:
    """The document with its lines in the template's numbering; a line that an included partial
    wrote is given the nearest line above it that is the template's own."""
    def mapped(line: int) -> int:
        for index in range(min(line, len(lines)) - 1, -1, -1):
            if lines[index][0] == own:
                return lines[index][1]
        return 1
    return dataclasses.replace(
        document, line=mapped(document.line),
        field_lines={k: mapped(v) for k, v in document.field_lines.items()})

