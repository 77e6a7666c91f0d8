"""Shared fixtures: the CLI run in-process, example directories copied to a scratch folder."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus_cli.cli import run
from substratus_providers.local import processes

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
def quickstart(tmp_path: Path) -> Iterator[Path]:
    """A private copy of examples/quickstart (no state from earlier runs). Whatever the test
    left running (servers, notebooks) is destroyed afterwards."""
    dest = tmp_path / "quickstart"
    shutil.copytree(EXAMPLES / "quickstart", dest,
                    ignore=shutil.ignore_patterns(".substratus"))
    yield dest
    tear_down(dest)


@pytest.fixture
def quickstart_datasets(tmp_path: Path) -> Path:
    """The quickstart's datasets alone: the engine's semantics without training a model."""
    dest = tmp_path / "quickstart"
    dest.mkdir()
    for name in ("environment.yaml", "datasets.yaml"):
        shutil.copy(EXAMPLES / "quickstart" / name, dest / name)
    shutil.copytree(EXAMPLES / "quickstart" / "data", dest / "data")
    return dest


def tear_down(workdir: Path) -> None:
    """Destroy what a test applied, then stop any process still in the books (a failed test's)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run(["destroy", "--auto-approve", str(workdir)])
    for book in (workdir / ".substratus" / "runtime" / "processes").glob("*/*/*.json"):
        for entry in json.loads(book.read_text()):
            processes.stop(processes.ProcessRef.from_dict(entry["process"]), grace=5)
