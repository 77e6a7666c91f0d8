"""The schema in an editor: `substratus schema --out FILE` read by a real yaml-language-server
(the npm package editors run; tests/yamlls/ pins it, tests/setup.sh installs it) through the
README's modeline, driven over LSP stdio the way an editor does."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.yamlls as yamlls
from tests.conftest import EXAMPLES
from tests.support.lsp import LanguageServer

# The settings an editor sends; the schema store (a catalog on the internet) is off: tests
# reach nothing beyond this machine, and the modeline names the schema anyway.
SETTINGS = {
    "yaml": {"validate": True, "hover": True, "completion": True,
             "schemaStore": {"enable": False}, "kubernetesCRDStore": {"enable": False}},
    "http": {}, "[yaml]": {}, "editor": {},
}
MODELINE = "# yaml-language-server: $schema=substratus.schema.json\n"
SERVER = MODELINE + """\
apiVersion: substratus.ai/v1
kind: ModelServer
metadata:
  name: colors
spec:
  model: {name: colors}
  replicas: 2
  replicaz: 3
"""


@pytest.fixture
def language_server(tmp_path: Path, cli) -> Iterator[LanguageServer]:
    """yaml-language-server over stdio, in a workspace holding the schema `substratus schema
    --out` wrote."""
    server = yamlls.server()
    if not server.exists():
        pytest.fail(yamlls.how_to_install())
    written = cli("schema", "--out", tmp_path / "substratus.schema.json")
    assert written.code == 0, written.output
    with LanguageServer([str(server), "--stdio"], SETTINGS, tmp_path) as ls:
        ls.initialize(tmp_path)
        yield ls


def _position(text: str, needle: str) -> tuple[int, int]:
    """The zero-based line and character of `needle`'s first occurrence, as LSP counts them."""
    before = text[:text.index(needle)]
    return before.count("\n"), len(before) - (before.rfind("\n") + 1)


def _inside(text: str, word: str) -> tuple[int, int]:
    """A position inside `word` (at its first character, a server may see the node before)."""
    line, character = _position(text, word)
    return line, character + 1


def test_hover_shows_the_field_description(language_server: LanguageServer, tmp_path: Path):
    uri = language_server.open(tmp_path / "servers.yaml", SERVER)
    hover = language_server.hover(uri, *_inside(SERVER, "replicas: 2"))
    assert hover is not None
    assert hover["contents"]["value"].startswith(
        "#### replicas\n\nHow many server processes or pods.\n")
    spec = language_server.hover(uri, *_inside(SERVER, "spec:"))
    assert spec is not None
    assert "replicas serving a model over HTTP" in spec["contents"]["value"]
    name = language_server.hover(uri, *_inside(SERVER, "name: colors\n"))
    assert name is not None
    assert "Example:\n\n```yaml\nfavorite-colors\n```" in name["contents"]["value"]


def test_a_misspelled_field_is_an_error_where_it_is(language_server: LanguageServer,
                                                     tmp_path: Path):
    uri = language_server.open(tmp_path / "servers.yaml", SERVER)
    diagnostics = language_server.diagnostics(uri, until=bool)
    line, character = _position(SERVER, "replicaz")
    assert [(d["message"], d["severity"], d["range"]["start"], d["range"]["end"])
            for d in diagnostics] == [
        ("Property replicaz is not allowed.", 1, {"line": line, "character": character},
         {"line": line, "character": character + len("replicaz")})]


def test_the_examples_are_valid_in_the_editor(language_server: LanguageServer, tmp_path: Path):
    """Every resource file of the examples, with the modeline on top, gets no diagnostic: the
    schema an editor reads accepts what substratus accepts (a wrong kind check or a type too
    strict would mark good files red)."""
    files = sorted(p for p in EXAMPLES.glob("*/*.y*ml") if p.suffix in (".yaml", ".yml"))
    assert len(files) >= 10
    uris = {}
    for i, path in enumerate(files):
        copy = tmp_path / f"{i}-{path.parent.name}-{path.name}"
        shutil.copyfile(path, copy)
        uris[language_server.open(copy, MODELINE + path.read_text())] = path
    # The server publishes each file's diagnostics once its schema is read; a typo check
    # proves it validates these files (an empty list would also come from no schema at all).
    typo = language_server.open(tmp_path / "typo.yaml", SERVER)
    assert language_server.diagnostics(typo, until=bool)
    found = {uris[uri]: language_server.diagnostics(uri, until=lambda _: True) for uri in uris}
    assert {str(p.relative_to(EXAMPLES)): [d["message"] for d in ds]
            for p, ds in found.items() if ds} == {}


def test_schema_out_writes_what_schema_prints(cli, tmp_path: Path):
    printed = cli("schema")
    assert printed.code == 0
    written = cli("schema", "--out", tmp_path / "s.json")
    assert written.code == 0
    assert written.out == f"Wrote the JSON Schema of the resource files to {tmp_path / 's.json'}.\n"
    assert (tmp_path / "s.json").read_text() == printed.out
    assert json.loads(printed.out)["$id"] == "https://substratus.ai/schemas/v1/resource.schema.json"


def test_schema_out_to_a_missing_folder_is_an_error(cli, tmp_path: Path):
    result = cli("schema", "--out", tmp_path / "no" / "s.json")
    assert result.code == 1
    assert result.err == (f"Error: cannot write the schema to {tmp_path / 'no' / 's.json'}: No "
                          "such file or directory\n")
