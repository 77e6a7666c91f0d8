"""Shared fixtures: the CLI run in-process, example directories copied to a scratch folder."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from substratus_cli.cli import run

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true",
                     help="rewrite golden files with the current output instead of comparing")


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run `substratus ARGS…` in-process through the real entry point; stdin from `input`."""

    def invoke(*args: str, input: str | None = None) -> Result:
        if input is not None:
            import io

            monkeypatch.setattr("sys.stdin", io.StringIO(input))
        capsys.readouterr()
        code = run([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(int(code), captured.out, captured.err)

    return invoke


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    """A private copy of examples/quickstart (no state from earlier runs)."""
    dest = tmp_path / "quickstart"
    shutil.copytree(EXAMPLES / "quickstart", dest,
                    ignore=shutil.ignore_patterns(".substratus"))
    return dest
