"""Hostile sizes are refused while parsing, and a flood of errors is cut short: what a generated or
malicious directory costs is bounded (issue 13, item 8)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from substratus_cli.config import load_directory
from substratus_cli.config.loader import MAX_ERRORS
from substratus_cli.yamlpos import MAX_NODES

HEAD = "apiVersion: substratus.ai/v1\nkind: Dataset\nmetadata: {name: a}\n"


def test_a_huge_flow_list_is_refused_before_it_is_composed(tmp_path: Path) -> None:
    # 4.9 million values in 9.8 MB: composing them took 33 s and 1.5 GB. Run as a user would,
    # with 700 MB of address space: composing it there ends in MemoryError.
    values = ",".join(["1"] * (MAX_NODES * 49))
    (tmp_path / "a.yaml").write_text(f"{HEAD}spec: {{params: {{x: [{values}]}}}}\n---\n"
                                     f"{HEAD.replace('name: a', 'name: b')}spec: {{}}\n")
    (tmp_path / "ok.yaml").write_text(HEAD.replace("name: a", "name: c") +
                                      "spec: {source: {path: x}}\n")
    (tmp_path / "x").write_text("data\n")
    program = ("import sys; from pathlib import Path; "
               "from substratus_cli.config import load_directory; "
               "result = load_directory(Path(sys.argv[1])); "
               "print([str(d) for d in result.diagnostics]); "
               "print([r.name for r in result.resources])")
    done = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path)], capture_output=True, text=True,
        timeout=120, check=False,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (700 << 20, 700 << 20)))
    assert done.returncode == 0, done.stderr[-2000:]
    diagnostics, resources = done.stdout.splitlines()
    assert diagnostics == str([f"a.yaml:4: document too large: more than {MAX_NODES} values"])
    # The file's later documents are not read (as after a syntax error); other files are.
    assert resources == str(["c"])


def test_a_document_just_under_the_limit_is_read(tmp_path: Path) -> None:
    values = ",".join(["1"] * (MAX_NODES - 20))
    (tmp_path / "x").write_text("data\n")
    (tmp_path / "a.yaml").write_text(f"{HEAD}spec: {{source: {{path: x}}, params: "
                                     f"{{x: [{values}]}}}}\n")
    result = load_directory(tmp_path)
    assert not result.diagnostics.has_errors, [str(d) for d in result.diagnostics][:3]
    assert len(result.resources[0].spec["params"]["x"]) == MAX_NODES - 20


def test_a_flood_of_errors_stops_after_the_cap(tmp_path: Path, cli) -> None:
    (tmp_path / "a.yaml").write_text("---\nkind: Datset\n" * 20_000)
    result = cli("validate", tmp_path)
    assert result.code == 3
    errors = [line for line in result.err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 100
    assert f"... and {MAX_ERRORS + 1 - 100} more (the first 100 are shown)" in result.err
    assert result.err.rstrip().endswith(f"{MAX_ERRORS + 1} errors in the resource files.")
