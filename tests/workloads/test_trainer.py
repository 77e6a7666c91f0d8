"""`python -m substratus_workloads.trainer`: fine-tuning on a dataset directory, logged per step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from substratus_workloads import logfmt
from substratus_workloads.trainer.dataset import DatasetError, load_samples
from tests.workloads.conftest import (
    RECORDS,
    Trained,
    assert_refused,
    params_env,
    run_workload,
    workload_env,
)


def step_lines(stdout: list[str]) -> list[dict[str, str]]:
    return [logfmt.parse(line) for line in stdout if line.startswith("step=")]


def test_training_loss_clearly_decreases(trained: Trained) -> None:
    losses = [float(s["loss"]) for s in step_lines(trained.train_stdout)]
    first, last = losses[:8], losses[-8:]
    assert sum(last) / len(last) < 0.5 * sum(first) / len(first), (first, last)


def test_trainer_logs_a_header_a_line_per_step_and_a_summary(trained: Trained) -> None:
    header = logfmt.parse(trained.train_stdout[0])
    assert trained.train_stdout[0].startswith("device=")
    assert header["device"] in ("cpu", "cuda")
    assert (header["parameters"], header["samples"]) == ("132928", "30")
    steps = step_lines(trained.train_stdout)
    assert [int(s["step"]) for s in steps] == list(range(1, int(header["steps"]) + 1))
    assert all({"epoch", "loss", "lr"} <= set(s) for s in steps)
    assert int(steps[-1]["epoch"]) == int(header["epochs"])
    done = trained.train_stdout[-1]
    assert done.startswith("done ")
    summary = logfmt.parse(done)
    assert summary["steps"] == header["steps"]
    assert summary["final_loss"] == steps[-1]["loss"]
    assert float(summary["seconds"]) > 0


def test_trained_model_is_saved_as_safetensors_with_its_tokenizer(trained: Trained) -> None:
    names = {p.name for p in trained.model.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert (trained.model / "model.safetensors").read_bytes() != (
        trained.scratch / "model.safetensors").read_bytes()


@pytest.mark.parametrize(("params", "words"), [
    ({"epochs": 0}, ["'epochs'", ">= 1"]),
    ({"learning_rate": "fast"}, ["'learning_rate'", "number"]),
    ({"learning_rate": 0}, ["'learning_rate'", "> 0"]),
    ({"batch_size": 1.5}, ["'batch_size'", "integer"]),
    ({"max_steps": -3}, ["'max_steps'"]),
    ({"epoch": 3}, ["unknown param 'epoch'", "epochs", "learning_rate", "max_steps"]),
])
def test_bad_params_are_refused_naming_the_param(tmp_path: Path, params: dict[str, object],
                                                 words: list[str]) -> None:
    result = run_workload("trainer", workload_env(tmp_path, **params_env(params)))
    assert_refused(result, *words)


def write_dataset(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / name).write_text(text)
    return root / "data"


def test_a_bad_record_is_refused_with_its_file_and_line(tmp_path: Path, trained: Trained) -> None:
    data = write_dataset(tmp_path, {"qa.jsonl": json.dumps(RECORDS[0]) + '\n{"question": "?"}\n'})
    result = run_workload("trainer", workload_env(tmp_path, SUBSTRATUS_MODEL_DIR=str(
        trained.scratch)))
    assert_refused(result, f"{data / 'qa.jsonl'}:2", "'prompt'", "'completion'")


def test_an_empty_dataset_is_refused(tmp_path: Path, trained: Trained) -> None:
    write_dataset(tmp_path, {"blank.txt": "\n  \n", "notes.md": "not a dataset format"})
    result = run_workload("trainer", workload_env(tmp_path, SUBSTRATUS_MODEL_DIR=str(
        trained.scratch)))
    assert_refused(result, "empty")


def test_a_missing_model_is_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path, {"a.txt": "hello\n"})
    result = run_workload("trainer", workload_env(tmp_path))
    assert_refused(result, str(tmp_path / "model"))


def test_samples_come_from_jsonl_json_and_text_files_recursively(tmp_path: Path) -> None:
    data = write_dataset(tmp_path, {
        "a.jsonl": '{"text": "one"}\n\n{"prompt": "two", "completion": " 2"}\n',
        "nested/b.json": json.dumps([{"text": "three"}]),
        "nested/deeper/c.txt": "four\n\nfive\n",
        ".hidden/d.txt": "never\n",
        "README.md": "ignored\n",
    })
    assert load_samples(data) == ["one", "two 2", "three", "four", "five"]


@pytest.mark.parametrize(("files", "where"), [
    ({"a.jsonl": "{not json\n"}, "a.jsonl:1: not valid JSON"),
    ({"a.json": '{"text": "x"}'}, "a.json: expected a JSON list"),
    ({"a.json": '[{"text": "x"}, {"text": 3}]'}, "a.json: record 1: expected a record"),
])
def test_dataset_errors_name_the_file(tmp_path: Path, files: dict[str, str], where: str) -> None:
    data = write_dataset(tmp_path, files)
    with pytest.raises(DatasetError) as error:
        load_samples(data)
    assert str(error.value).startswith(str(data / where.split(":")[0]))
    assert where in str(error.value)


def test_text_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(DatasetError, match="a.txt: not UTF-8"):
        load_samples(tmp_path / "data")


def test_max_steps_caps_training(tmp_path: Path, trained: Trained) -> None:
    write_dataset(tmp_path, {"a.txt": "one line\nanother line\n"})
    result = run_workload("trainer", workload_env(
        tmp_path, SUBSTRATUS_MODEL_DIR=str(trained.scratch),
        **params_env({"max_steps": 3, "epochs": 100, "batch_size": 1, "seq_len": 4096})))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert logfmt.parse(lines[0])["steps"] == "3"
    assert logfmt.parse(lines[0])["seq_len"] == "256"  # clipped to the model's positions
    assert len(step_lines(lines)) == 3
    assert (tmp_path / "artifacts" / "model.safetensors").is_file()
