"""The workloads extra is needed only to apply a step that runs one of substratus's programs:
planning needs the core install, and an apply that would run a program whose libraries are
missing is refused before it changes anything, naming the install. (tests/e2e/test_core_install.py
runs the CLI in a venv that really lacks them.)"""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest

from substratus_artifacts.store import open_store
from substratus_cli.action import Action
from substratus_cli.address import Address
from substratus_cli.errors import ProviderError
from substratus_cli.provider import ApplyRequest, CheckRequest, ProviderContext
from substratus_cli.resource import Resource
from substratus_providers.local import LocalProvider, runs

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = "file://.substratus/artifacts"
MISSING = "substratus_test_no_such_module"
DIGEST = "sha256:" + "0" * 64


def requirement_names(extra: str) -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-")
            for r in project["optional-dependencies"][extra]}


def test_what_the_programs_need_is_the_workloads_extra():
    needed = {m for modules in runs.PROGRAM_MODULES.values() for m in modules}
    assert needed == {"torch", "transformers", "tokenizers", "jupyterlab"}
    assert needed <= requirement_names(runs.EXTRA)
    # The core install (the project's dependencies) holds none of them.
    core = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not {r.split(">")[0].lower() for r in core} & needed
    assert runs.PROGRAM_MODULES["loader"] == ()


def test_a_missing_library_is_refused_naming_the_exact_install(monkeypatch):
    monkeypatch.setitem(runs.PROGRAM_MODULES, "trainer", ("sys", MISSING))
    with pytest.raises(ProviderError) as raised:
        runs.require_program("trainer", "training")
    assert raised.value.message == f"training needs the workloads extra: {MISSING} is not installed"
    assert raised.value.hint == (f"install it (about 3 GB, once): cd {shlex.quote(str(REPO))} && "
                                 f"{shlex.quote(sys.executable)} -m pip install -e '.[workloads]'")
    # A user's command runs whatever the user installed; the loader needs nothing of the extra.
    runs.require_program("trainer", "training", ("python", "train.py"))
    runs.require_program("loader", "fetching the source")


def test_outside_a_checkout_the_command_says_where_to_run_it(monkeypatch, tmp_path):
    monkeypatch.setattr(runs, "_CHECKOUT", tmp_path)
    assert runs.install_command() == (f"{shlex.quote(sys.executable)} -m pip install -e "
                                      "'.[workloads]', run in the substratus repository")


@pytest.fixture
def provider(tmp_path: Path) -> LocalProvider:
    return LocalProvider(ProviderContext(
        workdir=tmp_path, data_dir=tmp_path / ".substratus", part_of="test",
        artifacts_url=ARTIFACTS, open_artifacts=lambda: open_store(ARTIFACTS, tmp_path)))


def resource(kind: str, name: str, spec: dict) -> Resource:
    return Resource(Address(kind, "default", name), spec, file="r.yaml", line=1)


WORKLOADS = [
    resource("Model", "base", {"source": {"scratch": {"config": {"n_layer": 1}}}}),
    resource("Model", "tuned", {"training": {"baseModel": {"name": "base"},
                                             "dataset": {"name": "rows"}}}),
    resource("ModelServer", "tuned", {"model": {"name": "tuned"}}),
    resource("Notebook", "explore", {"model": {"name": "tuned"}}),
]


def test_checking_the_files_never_asks_for_the_extra(provider, monkeypatch):
    for program in ("scratch", "trainer", "server", "notebook"):
        monkeypatch.setitem(runs.PROGRAM_MODULES, program, (MISSING,))
    assert provider.check(CheckRequest(tuple(WORKLOADS))).diagnostics == ()


@pytest.mark.parametrize("desired", WORKLOADS, ids=lambda r: r.address.short())
def test_applying_a_program_without_its_libraries_changes_nothing(provider, monkeypatch,
                                                                   desired, tmp_path):
    for program in ("scratch", "trainer", "server", "notebook"):
        monkeypatch.setitem(runs.PROGRAM_MODULES, program, (MISSING,))
    # Its inputs exist, so the refusal is the extra and nothing else.
    records = provider.machine.records
    for kind, name in (("Model", "base"), ("Dataset", "rows"), ("Model", "tuned")):
        if Address(kind, "default", name) != desired.address:
            records.put(Address(kind, "default", name), spec={}, status={"digest": DIGEST},
                        labels={}, new_object=True)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    response = provider.apply(ApplyRequest(desired.address, Action.CREATE, desired, None))

    (diagnostic,) = response.diagnostics
    assert f"needs the workloads extra: {MISSING} is not installed" in diagnostic.summary
    assert "pip install -e '.[workloads]'" in diagnostic.detail
    assert response.live is None
    assert records.get(desired.address) is None
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert provider.machine.book.entries(desired.address) == []


def test_a_users_command_or_an_imported_model_needs_no_extra(provider, monkeypatch, tmp_path):
    monkeypatch.setitem(runs.PROGRAM_MODULES, "scratch", (MISSING,))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "config.json").write_text("{}")
    imported = resource("Model", "imported", {"source": {"path": "weights"}})
    response = provider.apply(ApplyRequest(imported.address, Action.CREATE, imported, None))
    assert response.diagnostics == ()
    assert response.live is not None and str(response.live.status["digest"]).startswith("sha256:")

    own = resource("Model", "own", {"source": {"scratch": {}}, "command": [
        sys.executable, "-c", "import os, pathlib; pathlib.Path(os.environ['SUBSTRATUS_CONTENT'],"
        " 'artifacts', 'w.txt').write_text('x')"]})
    response = provider.apply(ApplyRequest(own.address, Action.CREATE, own, None))
    assert response.diagnostics == ()
    assert response.live is not None and response.live.status["files"] == 1
