"""Build a small, randomly initialised causal LM and its byte tokenizer into the artifacts directory.

The params are the model's config; the same params and seed give the same weights, byte for byte.
"""

from __future__ import annotations

import time

from substratus_workloads import contract, logfmt, models
from substratus_workloads.contract import Param
from substratus_workloads.scratch import byte_tokenizer

PARAMS = {
    "architecture": Param(str, "gpt2", choices=("gpt2",)),
    "n_layer": Param(int, 2, minimum=1),
    "n_head": Param(int, 2, minimum=1),
    "n_embd": Param(int, 64, minimum=1),
    "n_positions": Param(int, 256, minimum=2),
    "seed": Param(int, 0, minimum=0),
}


def main() -> None:
    started = time.monotonic()
    params = contract.load_params(PARAMS)
    # Attention splits the embedding across heads, so it must divide evenly.
    if params["n_embd"] % params["n_head"]:
        contract.fail(f"param 'n_embd' ({params['n_embd']}) must be a multiple of "
                      f"param 'n_head' ({params['n_head']})")
    contract.go_offline()

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=byte_tokenizer.VOCAB_SIZE, n_layer=params["n_layer"], n_head=params["n_head"],
        n_embd=params["n_embd"], n_positions=params["n_positions"],
        bos_token_id=byte_tokenizer.EOS_ID, eos_token_id=byte_tokenizer.EOS_ID,
        pad_token_id=byte_tokenizer.EOS_ID)
    torch.manual_seed(params["seed"])
    model = GPT2LMHeadModel(config)
    tokenizer = byte_tokenizer.build(model_max_length=params["n_positions"])

    out = contract.artifacts_dir()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    logfmt.log(parameters=models.parameter_count(model),
               layers=params["n_layer"], heads=params["n_head"], embd=params["n_embd"],
               positions=params["n_positions"], vocab=config.vocab_size,
               architecture=params["architecture"], seed=params["seed"], out=str(out),
               seconds=round(time.monotonic() - started, 2))


if __name__ == "__main__":
    main()
