"""Loading a directory of resource files into validated Resources, gathering every mistake in it
as a Diagnostic with file, line and field (nothing the user wrote makes this raise)."""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel

from substratus_cli.address import DEFAULT_NAMESPACE, KINDS, Address, closest_kind
from substratus_cli.config import source_paths
from substratus_cli.config.schema import CROSS_FIELD, DOCUMENT_MODELS
from substratus_cli.diagnostics import Diagnostics
from substratus_cli.resource import API_VERSION, Resource, closest_line, references
from substratus_cli.stacks import CONFIG_KINDS, Expansion, Source, VariableInput, expand
from substratus_cli.stacks.sandbox import DEFINITION
from substratus_cli.yamlpos import YamlDocument, parse_documents

MAX_FILE_BYTES = 10 * 1024 * 1024
# A directory of hostile or generated files can hold errors by the hundred thousand: past this
# many the loader stops checking (a compiler's -fmax-errors).
MAX_ERRORS = 1000
SUFFIXES = (".yaml", ".yml")
# Variables files of the workspace (read as values, not resources; Terraform's *.auto.tfvars).
VARIABLE_FILES = (".vars.yaml", ".vars.yml")
# With --recursive, a file in a subfolder is a resource file only if it says so (a data/ folder
# may hold YAML of its own): `apiVersion: substratus.ai/v1` anywhere in it, quoted or not.
_DECLARES = re.compile(rb"""apiVersion["']?\s*:\s*["']?substratus\.ai/v1(?![\w./-])""")
_KIND_LIST = ", ".join((*KINDS, *CONFIG_KINDS))


@dataclasses.dataclass(frozen=True)
class LoadResult:
    resources: list[Resource]
    environment: Resource | None
    diagnostics: Diagnostics
    expansion: Expansion | None = None


@dataclasses.dataclass(frozen=True)
class _Declared:
    """A document whose kind and name are known, whether or not the rest of it is valid."""

    kind: str
    name: str
    namespace: str | None
    file: str
    document: YamlDocument
    validated: BaseModel | None
    source: Source | None = None


def load_directory(path: Path, variables: VariableInput | None = None, *,
                   recursive: bool = False) -> LoadResult:
    """Read and validate the resource files of `path` (`*.yaml`/`*.yml` at its top; with
    `recursive`, also those in its subfolders that declare `apiVersion: substratus.ai/v1`), with
    the resources its stacks render; all problems end up in `diagnostics`."""
    diagnostics = Diagnostics()
    found = _resource_files(path, diagnostics, recursive=recursive)
    files = [(f, r) for f, r in found if not r.endswith(VARIABLE_FILES)]
    given = variables or VariableInput()
    given = dataclasses.replace(given, workspace_files=tuple(
        (f, r) for f, r in found if r.endswith(VARIABLE_FILES) and "/" not in r))
    documents: list[tuple[str, YamlDocument]] = []
    for file, relative in files:
        text = _read_text(file, relative, diagnostics)
        for document in parse_documents(text, relative, diagnostics) if text is not None else []:
            documents.append((relative, document))
    expansion = expand(documents, path, given, diagnostics)
    declared: list[_Declared] = []
    for source in expansion.sources:
        if len(diagnostics) >= MAX_ERRORS:
            diagnostics.error(f"stopped after {MAX_ERRORS} errors; fix these first")
            break
        entry = _check_source(source, diagnostics)
        if entry is not None:
            declared.append(entry)

    environment = _environment(declared, diagnostics)
    namespace = _default_namespace(environment)
    addressed = _addresses([d for d in declared if d.kind != "Environment"], namespace,
                           diagnostics)
    if environment is not None:
        env_address = Address("Environment", environment.namespace or namespace, environment.name)
        addressed_env = {env_address: environment}
    else:
        addressed_env = {}
    for address, entry in [*addressed.items(), *addressed_env.items()]:
        _check_references(entry, address.namespace, set(addressed), diagnostics)
    for entry in addressed.values():
        _check_source_path(entry, path, diagnostics)

    resources = [_resource(e, a) for a, e in addressed.items() if e.validated is not None]
    env_resource = next((_resource(e, a) for a, e in addressed_env.items()
                         if e.validated is not None), None)
    # Reported in the order of the files and lines they are about, as a compiler would (what
    # stacks render after the workspace's own files).
    order = {relative: index for index, (_, relative) in enumerate(files)}
    in_order = sorted(diagnostics, key=lambda d: (order.get(d.subject.file or "", len(order)),
                                                  d.subject.file or "", d.subject.line or 0))
    return LoadResult(resources, env_resource, Diagnostics(in_order), expansion)


def _check_source(source: Source, diagnostics: Diagnostics) -> _Declared | None:
    """Validate one document; what a stack rendered is reported with the instance that did."""
    if source.instance is None:
        entry = _check_document(source.document, source.file, diagnostics)
    else:
        found = Diagnostics()
        entry = _check_document(source.document, source.file, found)
        detail = f'in stack "{source.instance}" ({source.origin})'
        for d in found:
            diagnostics.add(dataclasses.replace(d, detail=d.detail or detail))
    return dataclasses.replace(entry, source=source) if entry is not None else None


def _default_namespace(environment: _Declared | None) -> str:
    """The Environment's Kubernetes namespace: where documents that name none belong."""
    validated: Any = environment.validated if environment is not None else None
    if validated is None or validated.spec.kubernetes is None:
        return DEFAULT_NAMESPACE
    namespace: str = validated.spec.kubernetes.namespace
    return namespace


def _addresses(declared: list[_Declared], namespace: str,
               diagnostics: Diagnostics) -> dict[Address, _Declared]:
    """The first document declaring each address; later ones are reported as duplicates."""
    first_at: dict[Address, _Declared] = {}
    for entry in declared:
        address = Address(entry.kind, entry.namespace or namespace, entry.name)
        if address in first_at:
            first = first_at[address]
            diagnostics.error(
                f"duplicate {address} (first defined at {first.file}:{first.document.line}"
                f"{', ' + _instance_of(first) if _instance_of(first) else ''})",
                detail=_instance_of(entry),
                file=entry.file, line=_line_of(entry.document, "metadata.name"),
                field="metadata.name")
        else:
            first_at[address] = entry
    return first_at


def _instance_of(entry: _Declared) -> str:
    """`in stack "x" (main.yaml:3)` for what a stack rendered, else nothing."""
    source = entry.source
    if source is None or not source.instance:
        return ""
    return f'in stack "{source.instance}" ({source.origin})'


def _resource_files(root: Path, diagnostics: Diagnostics, *,
                    recursive: bool = False) -> list[tuple[Path, str]]:
    """(path, path relative to `root` in POSIX style) of every resource file, sorted: the
    `*.yaml`/`*.yml` files at the top of `root`, like Terraform's `*.tf` and `kubectl -f DIR`;
    with `recursive`, also those of its subfolders that declare `apiVersion: substratus.ai/v1`
    (never dot folders, nor stacks: folders with a stack.yaml)."""
    if not root.exists():
        diagnostics.error(f"directory not found: {root}", file=str(root))
        return []
    if not root.is_dir():
        diagnostics.error(f"not a directory: {root}", file=str(root))
        return []
    if (root / DEFINITION).is_file():
        diagnostics.error(
            f"{root} is a stack (it has a {DEFINITION}), not a workspace",
            detail="use it from a workspace with a Stack document: `substratus init "
                   f"{root} DIR` writes one", file=DEFINITION)
        return []

    def unreadable(error: OSError) -> None:
        where = Path(error.filename).relative_to(root).as_posix() if error.filename else str(root)
        diagnostics.error(f"cannot read directory: {error.strerror}", file=where)

    found: list[tuple[Path, str]] = []
    unread: list[str] = []  # the subfolders left out without --recursive
    for folder, subfolders, names in os.walk(root, onerror=unreadable):
        # A folder with a stack.yaml is a stack: its files are rendered for the Stack documents
        # that use it, never read as resources.
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and
                         not Path(folder, d, DEFINITION).is_file()]
        if not recursive:
            unread, subfolders[:] = sorted(subfolders), []
        top = Path(folder) == root
        for name in names:
            if not name.startswith(".") and name.lower().endswith(SUFFIXES):
                file = Path(folder, name)
                relative = file.relative_to(root).as_posix()
                if top or (not relative.endswith(VARIABLE_FILES) and
                           _declares_resources(file, relative, diagnostics)):
                    found.append((file, relative))
    if not found and not diagnostics.has_errors:
        diagnostics.error(
            f"no resource files (*.yaml, *.yml) in {root}", file=str(root),
            detail=f"only the top of the directory is read ({', '.join(unread[:3])}"
                   f"{', ...' if len(unread) > 3 else ''} left out): --recursive reads its "
                   "subfolders too" if unread else "")
    return sorted(found, key=lambda item: item[1])


def _declares_resources(file: Path, relative: str, diagnostics: Diagnostics) -> bool:
    """Whether a file of a subfolder declares `apiVersion: substratus.ai/v1` (its first
    MAX_FILE_BYTES: a larger one that does is then reported as too large)."""
    try:
        if not stat.S_ISREG(file.stat().st_mode):  # a FIFO named x.yaml is no resource file
            return False
        with open(file, "rb") as handle:
            head = handle.read(MAX_FILE_BYTES)
    except OSError as error:  # it may be a resource file: say so rather than plan without it
        diagnostics.error(f"cannot read file: {error.strerror or error}", file=relative, line=1)
        return False
    return _DECLARES.search(head) is not None


def _read_text(file: Path, relative: str, diagnostics: Diagnostics) -> str | None:
    try:
        info = file.stat()
        size = info.st_size
        if not stat.S_ISREG(info.st_mode):
            diagnostics.error("not a regular file", file=relative, line=1)
            return None
        if size > MAX_FILE_BYTES:
            diagnostics.error(f"file too large ({size} bytes); resource files are limited to "
                              f"{MAX_FILE_BYTES // (1024 * 1024)} MiB", file=relative, line=1)
            return None
        data = file.read_bytes()
    except OSError as error:
        diagnostics.error(f"cannot read file: {error.strerror or error}", file=relative, line=1)
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        diagnostics.error(f"not UTF-8 text (byte 0x{data[error.start]:02x} cannot be decoded)",
                          file=relative, line=line)
        return None


def _check_document(document: YamlDocument, file: str,
                    diagnostics: Diagnostics) -> _Declared | None:
    """Validate one document; a _Declared if its kind and name are known (even if invalid)."""
    data = document.data
    if not isinstance(data, dict):
        diagnostics.error("expected a mapping with apiVersion, kind, metadata and spec, "
                          f"got {_describe(data)}", file=file, line=document.line)
        return None

    def report(summary: str, field: str) -> None:
        diagnostics.error(summary, file=file, line=_line_of(document, field), field=field)

    if "apiVersion" not in data:
        report(f'required field is missing; expected "{API_VERSION}"', "apiVersion")
    elif data["apiVersion"] != API_VERSION:
        report(f'unsupported apiVersion {_quote(data["apiVersion"])}; expected "{API_VERSION}"',
               "apiVersion")
    kind = data.get("kind")
    if "kind" not in data:
        report(f"required field is missing; expected one of: {_KIND_LIST}", "kind")
        return None
    if not isinstance(kind, str) or kind not in KINDS:
        close = closest_kind(kind, (*KINDS, *CONFIG_KINDS)) if isinstance(kind, str) else None
        report(f'unknown kind {_quote(kind)} (did you mean "{close}"?)' if close else
               f"unknown kind {_quote(kind)}; expected one of: {_KIND_LIST}", "kind")
        return None

    model = DOCUMENT_MODELS[kind]
    validated: BaseModel | None = None
    try:
        validated = model.model_validate(data)
    except pydantic.ValidationError as error:
        found: list[tuple[str, str]] = []
        for detail in error.errors(include_url=False):
            loc = tuple(p if isinstance(p, int) else str(p) for p in detail["loc"])
            field = ".".join(str(p) for p in loc if p != "[key]")
            # apiVersion and kind are reported above in the user's words, unreadable values
            # where they were read.
            if loc[:1] in (("apiVersion",), ("kind",)) or _unreadable(field, detail["type"],
                                                                       document.broken):
                continue
            found.append((field, _summary(detail, model, loc)))
        for field, summary in sorted(found, key=lambda f: _line_of(document, f[0])):
            report(summary, field)

    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str):
        return None
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    return _Declared(kind, name, namespace if isinstance(namespace, str) else None, file,
                     document, validated)


def _environment(declared: list[_Declared], diagnostics: Diagnostics) -> _Declared | None:
    environments = [d for d in declared if d.kind == "Environment"]
    for extra in environments[1:]:
        first = environments[0]
        diagnostics.error(
            f'more than one Environment: "{extra.name}" here and "{first.name}" at '
            f"{first.file}:{first.document.line}; a directory holds at most one",
            file=extra.file, line=extra.document.line)
    return environments[0] if environments else None


def _resource(entry: _Declared, address: Address) -> Resource:
    assert entry.validated is not None
    validated: Any = entry.validated
    spec = _spec(entry)
    refs = tuple(Address(kind, address.namespace, name)
                 for _, kind, name in _references(entry.kind, spec))
    if entry.source is not None:
        refs += tuple(Address(kind, address.namespace, name)
                      for kind, name in entry.source.extra_refs)
    return Resource(
        address=address,
        spec=spec,
        labels=dict(validated.metadata.labels or {}),
        file=entry.file,
        line=entry.document.line,
        field_lines=dict(entry.document.field_lines),
        refs=tuple(dict.fromkeys(refs)),
        stack=entry.source.instance if entry.source is not None else None,
    )


def _spec(entry: _Declared) -> dict[str, Any]:
    """The validated spec, normalized: aliases as in files, defaults and nulls left out."""
    validated: Any = entry.validated
    spec: dict[str, Any] = validated.spec.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    return spec


def _references(kind: str, spec: Any) -> Iterator[tuple[str, str, str]]:
    """(field path, referenced kind, name) for each reference the spec makes."""
    for field, name in references(kind, spec):
        yield field.path, field.kind, name


def _check_references(entry: _Declared, namespace: str, known: set[Address],
                      diagnostics: Diagnostics) -> None:
    # An invalid document's references are checked too, as written, so that every error of
    # the run shows at once.
    spec = _spec(entry) if entry.validated is not None else entry.document.data.get("spec")
    for field, kind, name in _references(entry.kind, spec):
        if Address(kind, namespace, name) in known:
            continue
        defined = sorted(a.name for a in known if a.kind == kind and a.namespace == namespace)
        names = ", ".join(defined[:10]) + (", ..." if len(defined) > 10 else "")
        where = f"defined: {names}" if defined else f"no {kind} is defined"
        if namespace != DEFAULT_NAMESPACE:
            where += f' in namespace "{namespace}"'
        detail = _instance_of(entry)
        diagnostics.error(f'{kind} "{name}" not found ({where})', detail=detail, file=entry.file,
                          line=_line_of(entry.document, field), field=field)


def _check_source_path(entry: _Declared, workdir: Path, diagnostics: Diagnostics) -> None:
    """A `path` source is read from this machine at plan: it must be there, in the workspace
    (unless `allowOutside`), so that validate says so rather than a plan or an apply."""
    if entry.kind not in ("Dataset", "Model"):
        return
    # An invalid document's path is checked too, as written, so every error shows at once.
    spec = _spec(entry) if entry.validated is not None else entry.document.data.get("spec")
    source = spec.get("source") if isinstance(spec, dict) else None
    if not isinstance(source, dict) or not isinstance(source.get("path"), str):
        return
    try:
        source_paths.locate(workdir, source)
    except source_paths.SourcePathError as error:
        field = "spec.source.path"
        detail = "; ".join(filter(None, [error.hint, _instance_of(entry)]))
        diagnostics.error(error.message, detail=detail, file=entry.file,
                          line=_line_of(entry.document, field), field=field)


def _unreadable(field: str, error_type: str, broken: frozenset[str]) -> bool:
    """Whether an error is only a consequence of a value that could not be read."""
    if any(field == p or field.startswith(p + ".") for p in broken):
        return True
    # A check across fields (a model validator) saw the unreadable value as missing.
    return error_type == CROSS_FIELD and any(p.startswith(field + ".") for p in broken)


def _line_of(document: YamlDocument, field: str) -> int:
    return closest_line(document.field_lines, field, document.line)


def _summary(detail: Any, model: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    """pydantic's message for one error, in the words of the file (no class names, no URLs)."""
    kind, message, value = str(detail["type"]), str(detail["msg"]), detail.get("input")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return _unknown_field(str(loc[-1]), _fields_at(model, loc[:-1]) or [])
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {_describe(value)}"
    if kind == "list_type":
        return f"expected a list, got {_describe(value)}"
    if kind == CROSS_FIELD:
        return message
    if kind in ("value_error", "assertion_error"):
        return message.split(", ", 1)[1] if message.startswith(("Value error", "Assertion")) \
            else message
    if kind.endswith("_parsing") or kind.endswith("_from_float"):
        message = message.split(", ", 1)[0]
    return f"{message}, got {_describe(value)}"


def _unknown_field(name: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if close:
        return f'unknown field "{name}" (did you mean "{close[0]}"?)'
    return f'unknown field "{name}"; allowed: {", ".join(allowed)}' if allowed \
        else f'unknown field "{name}"'


def _describe(value: Any) -> str:
    """A short, YAML-flavoured rendering of a value the user wrote."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, int) and value.bit_length() > 128:
        return "a very large number"
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _quote(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else _describe(value)


def _fields_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str] | None:
    """The field names (as written in files) of the model found at `loc` under `model`, if any."""
    current: Any = model
    for step in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {f.alias or n: f for n, f in current.model_fields.items()}
            fields.update(current.model_fields)
            if step not in fields:
                return None
            current = fields[str(step)].annotation
        elif getattr(current, "__origin__", None) in (list, dict):
            current = current.__args__[-1]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return None


def _unwrap(annotation: Any) -> Any:
    """`X | None` and `Annotated[X, ...]` -> X."""
    while True:
        metadata = getattr(annotation, "__metadata__", None)
        if metadata is not None:
            annotation = annotation.__origin__
            continue
        args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
        if getattr(annotation, "__origin__", None) not in (list, dict) and len(args) == 1 and \
                type(None) in getattr(annotation, "__args__", ()):
            annotation = args[0]
            continue
        return annotation
