"""`python -m substratus_workloads.scratch`: a small model and a byte tokenizer, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from substratus_workloads import logfmt
from tests.workloads.conftest import (
    Trained,
    assert_refused,
    params_env,
    run_workload,
    workload_env,
)


def test_scratch_writes_a_safetensors_model_and_tokenizer(trained: Trained) -> None:
    names = {p.name for p in trained.scratch.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    config = json.loads((trained.scratch / "config.json").read_text())
    assert (config["model_type"], config["n_layer"], config["n_head"], config["n_embd"],
            config["n_positions"], config["vocab_size"]) == ("gpt2", 2, 2, 64, 256, 257)


def test_scratch_reports_its_model_in_one_logfmt_line(trained: Trained) -> None:
    lines = trained.scratch_stdout.strip().splitlines()
    assert len(lines) == 1
    fields = logfmt.parse(lines[0])
    assert lines[0].startswith("parameters=")
    assert (fields["parameters"], fields["layers"], fields["vocab"]) == ("132928", "2", "257")


def test_tokenizer_is_one_token_per_byte_and_round_trips_utf8(trained: Trained) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(trained.scratch / "tokenizer.json"))
    text = "Grüße, 世界! 😀\n\ttabs  and\r\nnewlines \x00 ÿ"
    ids = tokenizer.encode(text).ids
    assert ids == list(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text
    assert tokenizer.token_to_id("<|endoftext|>") == 256


def test_same_seed_builds_the_same_weights_and_another_seed_does_not(
        trained: Trained, tmp_path: Path) -> None:
    # Both builds at once: each is mostly the import of torch and transformers.
    builds = {seed: subprocess.Popen(
        [sys.executable, "-m", "substratus_workloads.scratch"],
        env=workload_env(tmp_path, SUBSTRATUS_ARTIFACTS_DIR=str(tmp_path / str(seed)),
                         **params_env({"seed": seed})),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for seed in (0, 1)}
    for build in builds.values():
        _, err = build.communicate(timeout=120)
        assert build.returncode == 0, err
    weights = (trained.scratch / "model.safetensors").read_bytes()
    assert (tmp_path / "0" / "model.safetensors").read_bytes() == weights
    assert (tmp_path / "1" / "model.safetensors").read_bytes() != weights


@pytest.mark.parametrize(("params", "words"), [
    ({"architecture": "llama"}, ["'architecture'", "'gpt2'"]),
    ({"n_layer": 0}, ["'n_layer'", ">= 1"]),
    ({"n_embd": "big"}, ["'n_embd'", "integer"]),
    ({"n_embd": 64, "n_head": 3}, ["'n_embd'", "'n_head'", "multiple"]),
    ({"layers": 4}, ["unknown param 'layers'", "n_layer"]),
])
def test_bad_params_are_refused_naming_the_param(tmp_path: Path, params: dict[str, object],
                                                 words: list[str]) -> None:
    result = run_workload("scratch", workload_env(tmp_path, **params_env(params)))
    assert_refused(result, *words)
    assert not (tmp_path / "artifacts").exists()


def test_params_file_is_read_and_checked(tmp_path: Path) -> None:
    (tmp_path / "params.json").write_text(json.dumps({"n_positions": 1}))
    assert_refused(run_workload("scratch", workload_env(tmp_path)), "'n_positions'", ">= 2")
