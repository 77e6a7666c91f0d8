"""Loading the causal LM a workload is handed (model_dir()), from local files only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from substratus_workloads import contract


def require_model(path: Path) -> None:
    """Refuse, in one line, a model directory that is missing or holds no model."""
    if not path.is_dir():
        contract.fail(f"no model at {path}: the model directory does not exist "
                      "(set SUBSTRATUS_MODEL_DIR or mount the model at /content/model)")
    if not (path / "config.json").is_file():
        contract.fail(f"no model at {path}: config.json is missing")


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        contract.fail(f"cannot load the tokenizer from {path}: {e}")
    if tokenizer.eos_token_id is None:
        contract.fail(f"the tokenizer in {path} has no end-of-sequence token")
    # Padding only fills batches; the attention mask keeps it out of the loss and attention.
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: Path, **kwargs: Any) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **kwargs)
    except (OSError, ValueError) as e:
        contract.fail(f"cannot load the model from {path}: {e}")


def max_positions(model: Any, tokenizer: Any) -> int:
    """The longest sequence the model takes: its position table, else the tokenizer's limit."""
    config = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else 2048


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
