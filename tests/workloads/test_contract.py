"""The workload contract's helpers: directories, params from file and environment, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from substratus_workloads import contract, logfmt
from substratus_workloads.contract import Param, ParamError, validate


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    import os

    for name in list(os.environ):
        if name.startswith(("PARAM_", "SUBSTRATUS_")) or name in ("PORT", "HOST"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SUBSTRATUS_CONTENT", str(tmp_path))
    return tmp_path


def test_directories_default_under_content(tmp_path: Path) -> None:
    assert contract.content_dir() == tmp_path
    assert contract.data_dir() == tmp_path / "data"
    assert contract.model_dir() == tmp_path / "model"
    assert contract.artifacts_dir() == tmp_path / "artifacts"


def test_each_directory_can_be_pointed_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBSTRATUS_DATA_DIR", "/snapshots/d1")
    monkeypatch.setenv("SUBSTRATUS_MODEL_DIR", "/snapshots/m1")
    monkeypatch.setenv("SUBSTRATUS_ARTIFACTS_DIR", "/runs/out")
    assert (contract.data_dir(), contract.model_dir(), contract.artifacts_dir()) == (
        Path("/snapshots/d1"), Path("/snapshots/m1"), Path("/runs/out"))


def test_content_defaults_to_slash_content(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUBSTRATUS_CONTENT")
    assert contract.content_dir() == Path("/content")
    assert (contract.host(), contract.port()) == ("0.0.0.0", 8080)


def test_params_file_is_overlaid_by_environment(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "params.json").write_text(json.dumps({"epochs": 3, "name": "a", "keep": True}))
    monkeypatch.setenv("PARAM_EPOCHS", "5")
    monkeypatch.setenv("PARAM_NAME", "alice")
    monkeypatch.setenv("PARAM_LEARNING_RATE", "1e-4")
    monkeypatch.setenv("PARAM_STOP", '["a", "b"]')
    assert contract.params() == {"epochs": 5, "name": "alice", "keep": True,
                                 "learning_rate": 1e-4, "stop": ["a", "b"]}


def test_missing_params_file_means_no_params() -> None:
    assert contract.params() == {}


def test_params_file_that_is_not_an_object_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "params.json").write_text("[1, 2]")
    with pytest.raises(SystemExit) as exit_info:
        contract.params()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'params.json'}: must hold a JSON object of params, got list\n")


KNOWN = {"epochs": Param(int, 3, minimum=1), "rate": Param(float, 0.1, above=0),
         "cap": Param(int, None, minimum=1), "kind": Param(str, "gpt2", choices=("gpt2",))}


def test_validate_fills_defaults_and_converts_integers_to_floats() -> None:
    assert validate({"rate": 1}, KNOWN) == {"epochs": 3, "rate": 1.0, "cap": None,
                                            "kind": "gpt2"}


@pytest.mark.parametrize(("given", "message"), [
    ({"epoch": 3}, "unknown param 'epoch' (known params: cap, epochs, kind, rate)"),
    ({"epochs": 0}, "param 'epochs' must be >= 1, got 0"),
    ({"epochs": "3"}, 'param \'epochs\' must be an integer, got "3"'),
    ({"epochs": True}, "param 'epochs' must be an integer, got true"),
    ({"epochs": 2.5}, "param 'epochs' must be an integer, got 2.5"),
    ({"rate": 0}, "param 'rate' must be > 0, got 0.0"),
    ({"kind": "llama"}, "param 'kind' must be one of 'gpt2', got 'llama'"),
])
def test_validate_names_the_param_at_fault(given: dict[str, object], message: str) -> None:
    with pytest.raises(ParamError) as error:
        validate(given, KNOWN)
    assert str(error.value) == message


def test_load_params_refuses_with_one_line_and_exit_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PARAM_EPOCHS", "-1")
    with pytest.raises(SystemExit) as exit_info:
        contract.load_params(KNOWN)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: param 'epochs' must be >= 1, got -1\n"


def test_bad_port_is_refused(monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PORT", "http")
    with pytest.raises(SystemExit):
        contract.port()
    assert "PORT" in capsys.readouterr().err


def test_logfmt_lines_round_trip() -> None:
    text = logfmt.line("done", step=3, loss=5.12345, lr=3e-5, note="two words", seconds=2.5)
    assert text == 'done step=3 loss=5.1235 lr=3e-05 note="two words" seconds=2.5'
    assert logfmt.parse(text) == {"step": "3", "loss": "5.1235", "lr": "3e-05",
                                  "note": "two words", "seconds": "2.5"}
