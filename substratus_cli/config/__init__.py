"""Load and validate the user's resource files: YAML with line numbers, the schema, the loader."""

from __future__ import annotations

from substratus_cli.config.loader import LoadResult, load_directory
from substratus_cli.config.schema import SPEC_MODELS, json_schema

__all__ = ["SPEC_MODELS", "LoadResult", "json_schema", "load_directory"]
