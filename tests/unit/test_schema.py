"""The JSON Schema editors use covers a document of every kind, from the same models."""

from __future__ import annotations

import json
import re
from typing import Any

from substratus_cli.address import KINDS
from substratus_cli.config import SPEC_MODELS, json_schema
from substratus_cli.config.schema import DOCUMENT_MODELS, SCHEMA_ID


def test_json_schema_has_a_document_per_kind() -> None:
    schema = json_schema()
    json.dumps(schema)  # plain JSON, ready to write to a file
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert sorted(schema["discriminator"]["mapping"]) == sorted([*KINDS, "Stack", "Variable"])
    definitions = schema["$defs"]
    for kind in KINDS:
        document = definitions[f"{kind}Document"]
        assert document["additionalProperties"] is False
        assert document["properties"]["kind"]["const"] == kind
        assert document["properties"]["apiVersion"]["const"] == "substratus.ai/v1"
        assert document["properties"]["spec"]["$ref"] == f"#/$defs/{kind}Spec"
        assert ("spec" in document["required"]) == (kind != "Environment")
    assert len(schema["oneOf"]) == len(KINDS) + 2 == len(SPEC_MODELS) + 2
    assert definitions["StackDocument"]["properties"]["spec"]["$ref"] == "#/$defs/StackSpec"
    assert "enum" in definitions["Parameter"]["properties"]


def test_json_schema_uses_the_names_written_in_files() -> None:
    definitions = json_schema()["$defs"]
    assert "releaseChannel" in definitions["ClusterSpec"]["properties"]
    assert "baseModel" in definitions["Training"]["properties"]
    server = definitions["ModelServerSpec"]
    assert server["properties"]["replicas"] == {
        "default": 1, "minimum": 0, "maximum": 2147483647, "title": "replicas",
        "type": "integer", "description": "How many server processes or pods."}
    assert definitions["ClusterSpec"]["properties"]["releaseChannel"]["title"] == "releaseChannel"
    assert definitions["Metadata"]["properties"]["name"]["pattern"].startswith("^")


def _properties(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(name, field, spec) for name, definition in schema["$defs"].items()
            for field, spec in definition.get("properties", {}).items()]


def test_every_field_of_every_kind_is_described_for_hover() -> None:
    schema = json_schema()
    definitions = schema["$defs"]
    undescribed = []
    for name, field, spec in _properties(schema):
        # A field holding a model may leave its description to the model's (pydantic drops a
        # field description equal to it); hover shows that one.
        ref = spec.get("$ref", "").removeprefix("#/$defs/")
        if not spec.get("description") and not definitions.get(ref, {}).get("description"):
            undescribed.append(f"{name}.{field}")
    assert undescribed == []
    assert len(_properties(schema)) > 100  # every kind's fields, not a few
    assert all(d.get("description") for d in definitions.values() if "properties" in d)


def test_examples_are_valid_values_of_their_field() -> None:
    schema = json_schema()
    examples = [(f"{name}.{field}", spec, e) for name, field, spec in _properties(schema)
                for e in spec.get("examples", [])]
    assert len(examples) >= 30
    for where, spec, example in examples:
        pattern = spec.get("pattern")
        if pattern is not None:
            assert re.search(pattern, example), where
    # The models accept their own examples: a document made of them validates.
    server = DOCUMENT_MODELS["ModelServer"].model_validate({
        "apiVersion": "substratus.ai/v1", "kind": "ModelServer",
        "metadata": {"name": "favorite-colors", "labels": {"team": "ml"}},
        "spec": {"model": {"name": "favorite-colors"}, "command": ["python", "train.py"],
                 "env": {"HF_TOKEN": "${{ secrets.hf.token }}"},
                 "resources": {"cpu": "500m", "memory": "8Gi", "disk": "20Gi",
                               "gpu": {"type": "nvidia-l4"}}}})
    assert server.spec.resources.cpu == "500m"  # type: ignore[attr-defined]


def test_the_schema_has_an_id_per_api_version() -> None:
    schema = json_schema()
    assert schema["$id"] == SCHEMA_ID == "https://substratus.ai/schemas/v1/resource.schema.json"
