"""Properties of the loader over generated input: it never raises, every diagnostic says where,
and valid generated directories load with no diagnostics."""

from __future__ import annotations

import string
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from substratus_cli.address import KINDS
from substratus_cli.config import LoadResult, load_directory

# hypothesis's DrawFn is generic per call; these helpers take any strategy.
Draw = Callable[[st.SearchStrategy[Any]], Any]
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Maps whose keys are the user's own: an unknown key there is no mistake.
FREE_FORM = {"params", "config", "env", "labels", "headers"}

names = st.from_regex(r"[a-z]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)
text = st.text(st.characters(categories=("L", "N", "P", "Zs")), min_size=1, max_size=12)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(text, inner, max_size=3), max_leaves=8)
plain_values = st.recursive(st.booleans() | st.integers(-10**6, 10**6) | text,
                            lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(text, inner, max_size=3), max_leaves=6)


def load(files: dict[str, bytes]) -> LoadResult:
    with tempfile.TemporaryDirectory() as root:
        for name, content in files.items():
            path = Path(root, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        for folder in ("data", "d"):  # what the generated path sources name
            Path(root, folder).mkdir(exist_ok=True)
        return load_directory(Path(root), recursive=True)


def dump(documents: list[Any]) -> bytes:
    return yaml.safe_dump_all(documents, sort_keys=False).encode()


def assert_located(result: LoadResult, files: dict[str, bytes]) -> None:
    for diagnostic in result.diagnostics:
        assert diagnostic.subject.file in files, diagnostic
        assert diagnostic.subject.line is not None and diagnostic.subject.line >= 1, diagnostic
        assert "https://errors.pydantic.dev" not in diagnostic.summary


# Valid documents


def document(kind: str, name: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": "substratus.ai/v1", "kind": kind,
                           "metadata": {"name": name}}
    if spec is not None:
        doc["spec"] = spec
    return doc


def optional(draw: Draw, spec: dict[str, Any], key: str, strategy: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        spec[key] = draw(strategy)


def workload(draw: Draw) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    choice = draw(st.sampled_from(["none", "image", "git", "context"]))
    if choice == "image":
        spec["image"] = draw(text)
    elif choice == "git":
        spec["build"] = {"git": {"url": draw(text), draw(st.sampled_from(["ref", "branch", "tag"])):
                                 draw(text)}}
    elif choice == "context":
        spec["build"] = {"context": draw(text)}
    optional(draw, spec, "command", st.lists(text, max_size=3))
    secret = st.builds("${{{{ secrets.{}.{} }}}}".format, names, names)
    optional(draw, spec, "env", st.dictionaries(st.text(string.ascii_uppercase, min_size=1),
                                                text | secret, max_size=3))
    optional(draw, spec, "params", st.dictionaries(text, plain_values, max_size=3))
    optional(draw, spec, "resources", st.fixed_dictionaries(
        {}, optional={"cpu": st.integers(1, 64) | st.just("500m"), "memory": st.just("8Gi"),
                      "gpu": st.fixed_dictionaries({"type": text, "count": st.integers(1, 8)})}))
    return spec


@st.composite
def worlds(draw: Draw) -> list[dict[str, Any]]:
    """A consistent set of documents: every reference names a document of the set."""
    docs: list[dict[str, Any]] = []
    clusters = draw(st.lists(names, max_size=2, unique=True))
    for cluster in clusters:
        docs.append(document("Cluster", cluster, {
            # GCP's own shapes: a project ID, a region or zone (test_gcp_fields covers the rest).
            "project": draw(st.from_regex(r"[a-z][-a-z0-9]{4,28}[a-z0-9]", fullmatch=True)),
            "location": draw(st.sampled_from(["us-central1", "europe-west4-a"])),
            "releaseChannel": draw(st.sampled_from(["RAPID", "REGULAR", "STABLE", "EXTENDED"])),
            "imageStreaming": draw(st.booleans())}))
        for pool in draw(st.lists(names, max_size=2, unique=True)):
            low = draw(st.integers(0, 3))
            docs.append(document("NodePool", f"{cluster}-{pool}", {
                "cluster": {"name": cluster},
                "machineType": draw(st.sampled_from(["e2-standard-4", "n1-standard-8"])),
                "spot": draw(st.booleans()),
                "autoscaling": {"min": low, "max": low + draw(st.integers(1, 3))},
                "taints": [{"key": draw(st.sampled_from(["nvidia.com/gpu", "team"])),
                            "effect": "NoSchedule"}]}))
    for bucket in draw(st.lists(names, max_size=2, unique=True)):
        docs.append(document("Bucket", bucket, {"location": draw(st.sampled_from(["US", "EU"]))}))
    datasets = draw(st.lists(names, max_size=3, unique=True))
    for dataset in datasets:
        spec = workload(draw)
        source = draw(st.sampled_from([{"path": "./data"}, {"url": "https://x/y", "sha256": "0" * 64},
                                       {"huggingface": {"name": "a/b"}}, None]))
        if source is not None or ("image" not in spec and "build" not in spec):
            spec["source"] = source or {"path": "./d"}
        docs.append(document("Dataset", dataset, spec))
    models: list[str] = []
    for model in draw(st.lists(names, max_size=3, unique=True)):
        spec = workload(draw)
        if models and datasets and draw(st.booleans()):
            spec["training"] = {"baseModel": {"name": draw(st.sampled_from(models))},
                                "dataset": {"name": draw(st.sampled_from(datasets))}}
        else:
            spec["source"] = {"scratch": {"config": {"layers": draw(st.integers(1, 4))}}}
        optional(draw, spec, "size", st.fixed_dictionaries(
            {"parameterCount": st.integers(1, 10**12), "parameterBits": st.sampled_from([4, 8, 16, 32])}))
        models.append(model)
        docs.append(document("Model", model, spec))
    for server in draw(st.lists(names, max_size=2, unique=True)) if models else []:
        spec = workload(draw) | {"model": {"name": draw(st.sampled_from(models))},
                                 "replicas": draw(st.integers(0, 3))}
        optional(draw, spec, "rollout", st.fixed_dictionaries({"maxSurge": st.integers(1, 3)}))
        docs.append(document("ModelServer", server, spec))
    for notebook in draw(st.lists(names, max_size=1)):
        spec = workload(draw) | {"suspend": draw(st.booleans())}
        if models:
            spec["model"] = {"name": models[0]}
        docs.append(document("Notebook", notebook, spec))
    if draw(st.booleans()):
        env: dict[str, Any] = {"runtime": "kubernetes", "kubernetes": {"namespace": draw(names)}}
        if clusters:
            env["kubernetes"]["cluster"] = {"name": clusters[0]}
        docs.append(document("Environment", "env", draw(st.sampled_from([env, None]))))
    return draw(st.permutations(docs))


def split(draw: Draw, docs: list[Any]) -> dict[str, bytes]:
    """Spread documents over one to three files."""
    files: dict[str, list[Any]] = {}
    for doc in docs:
        files.setdefault(draw(st.sampled_from(["a.yaml", "sub/b.yml", "c.yaml"])), []).append(doc)
    return {name: dump(content) for name, content in files.items()} or {"empty.yaml": b""}


@SETTINGS
@given(st.data(), worlds())
def test_valid_documents_load_without_diagnostics(data: st.DataObject, docs: list[Any]) -> None:
    files = split(data.draw, docs)
    result = load(files)
    assert [str(d) for d in result.diagnostics] == []
    loaded = [*result.resources, *([result.environment] if result.environment else [])]
    assert sorted(r.name for r in loaded) == sorted(d["metadata"]["name"] for d in docs)
    # Written back out, each resource reads in the same.
    again = load({"all.yaml": dump([r.to_document() for r in loaded])})
    assert [str(d) for d in again.diagnostics] == []
    assert [(r.address, r.spec, r.refs) for r in again.resources] == [
        (r.address, r.spec, r.refs) for r in result.resources]


# Malformed input


@SETTINGS
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_random_text_never_raises(content: str) -> None:
    files = {"r.yaml": content.encode("utf-8", "surrogatepass")}
    assert_located(load(files), files)


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(content: bytes) -> None:
    files = {"r.yaml": content}
    assert_located(load(files), files)


yaml_tokens = st.sampled_from([
    "apiVersion: substratus.ai/v1\n", "kind: Model\n", "kind: [\n", "metadata:\n", "  name: a\n",
    "spec:\n", "  source: {path: x}\n", "---\n", "- a\n", "&a x\n", "*a\n", "<<: *a\n", "!tag x\n",
    "!!binary aGk=\n", "? [a]\n", ": b\n", "  - ", "{", "}", "[", "]", '"', "'", "\t", "\x07",
    "%YAML 1.1\n", "...\n", "#", "a: &b [*b]\n", "x: !!int y\n", "\\ud800", '"\\ud800"\n',
])


@SETTINGS
@given(st.lists(yaml_tokens | st.text(max_size=5), max_size=40).map("".join))
def test_yaml_like_text_never_raises(content: str) -> None:
    files = {"r.yaml": content.encode("utf-8", "surrogatepass")}
    assert_located(load(files), files)


@SETTINGS
@given(st.lists(values | st.fixed_dictionaries(
    {"apiVersion": st.just("substratus.ai/v1") | values, "kind": st.sampled_from(KINDS) | values},
    optional={"metadata": st.fixed_dictionaries({"name": names | values}) | values,
              "spec": values}), max_size=4))
def test_random_structures_are_reported_with_fields(docs: list[Any]) -> None:
    files = {"r.yaml": dump(docs)}
    result = load(files)
    assert_located(result, files)
    for diagnostic in result.diagnostics:
        if isinstance(diagnostic.subject.field, str) or diagnostic.summary.startswith(
                ("expected a mapping with", "more than one Environment")):
            continue
        raise AssertionError(f"no field in {diagnostic}")


def paths(value: Any, prefix: str = "") -> list[str]:
    found: list[str] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else []
    for key, item in items:
        if str(key) == "" or "." in str(key):
            continue  # a user's own key that a dotted path cannot name (params: {".": 1})
        path = f"{prefix}.{key}" if prefix else str(key)
        found += [path, *paths(item, path)]
    return found


def change(doc: Any, path: str, edit: Callable[[Any, Any], None]) -> None:
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    edit(node, int(last) if isinstance(node, list) else last)


def free_form(path: str) -> bool:
    """Whether `path` lies inside a map of the user's own keys (its value may be anything)."""
    return any(part in FREE_FORM for part in path.split(".")[:-1])


@SETTINGS
@given(st.data(), worlds().filter(bool))
def test_mutated_documents_are_reported_at_the_field(data: st.DataObject, docs: list[Any]) -> None:
    doc = data.draw(st.sampled_from(docs))
    path = data.draw(st.sampled_from(paths(doc)))
    mutation = data.draw(st.sampled_from(["wrong type", "delete", "unknown key", "any value"]))
    if mutation == "wrong type":
        change(doc, path, lambda node, key: node.__setitem__(key, [[{"x": 1}]]))
    elif mutation == "delete":
        change(doc, path, lambda node, key: node.__delitem__(key))
    elif mutation == "any value":
        change(doc, path, lambda node, key: node.__setitem__(key, data.draw(values)))
    elif isinstance(_at(doc, path), dict):
        change(doc, f"{path}.zzz-unknown", lambda node, key: node.__setitem__(key, 1))
    files = {"r.yaml": dump(docs)}
    result = load(files)
    assert_located(result, files)
    fields = [d.subject.field or "" for d in result.diagnostics]
    for diagnostic, field in zip(result.diagnostics, fields, strict=True):
        assert field or diagnostic.summary.startswith("more than one Environment"), diagnostic
    if mutation == "wrong type" and not free_form(path):
        assert any(f == path or f.startswith(path + ".") for f in fields), (path, fields)
    target = f"{path}.zzz-unknown"
    if mutation == "unknown key" and isinstance(_at(doc, path), dict) and not free_form(target):
        assert target in fields, fields
    if mutation == "delete" and path in ("apiVersion", "kind", "metadata", "metadata.name"):
        assert path in fields, fields


def _at(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc.get(part)
    return doc
