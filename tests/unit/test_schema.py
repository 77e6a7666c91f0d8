"""The JSON Schema editors use covers a document of every kind, from the same models."""

from __future__ import annotations

import json

from substratus_cli.address import KINDS
from substratus_cli.config import SPEC_MODELS, json_schema


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
        assert document["properties"]["spec"] == {"$ref": f"#/$defs/{kind}Spec"}
        assert ("spec" in document["required"]) == (kind != "Environment")
    assert len(schema["oneOf"]) == len(KINDS) + 2 == len(SPEC_MODELS) + 2
    assert definitions["StackDocument"]["properties"]["spec"] == {"$ref": "#/$defs/StackSpec"}
    assert "enum" in definitions["Parameter"]["properties"]


def test_json_schema_uses_the_names_written_in_files() -> None:
    definitions = json_schema()["$defs"]
    assert "releaseChannel" in definitions["ClusterSpec"]["properties"]
    assert "baseModel" in definitions["Training"]["properties"]
    server = definitions["ModelServerSpec"]
    assert server["properties"]["replicas"] == {
        "default": 1, "minimum": 0, "maximum": 2147483647, "title": "Replicas",
        "type": "integer"}
    assert definitions["Metadata"]["properties"]["name"]["pattern"].startswith("^")
