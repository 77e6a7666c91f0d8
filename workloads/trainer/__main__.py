"""Fine-tune the causal LM in the model directory on the dataset directory; write it to artifacts.

Logs one logfmt line per step on stdout, as it goes, so the runtime can stream progress.
"""

from __future__ import annotations

import math
import time
from typing import Any

from substratus_workloads import contract, logfmt, models
from substratus_workloads.contract import Param
from substratus_workloads.trainer.dataset import DatasetError, load_samples

# The defaults fit the quickstart: the ~130k-parameter model `scratch` builds learns 30 short
# question/answer lines by heart (800 steps) in ~10-15 s on two CPU cores. For a large
# pretrained model lower the learning rate (e.g. 5e-5) and the epochs (1-3).
PARAMS = {
    "epochs": Param(int, 200, minimum=1),
    "max_steps": Param(int, None, minimum=1),  # None: as many as the epochs make
    "learning_rate": Param(float, 3e-3, above=0),
    "batch_size": Param(int, 8, minimum=1),
    "seq_len": Param(int, 256, minimum=2),  # clipped to the model's max positions
    "seed": Param(int, 0, minimum=0),
    "log_every": Param(int, 1, minimum=1),
}


def main() -> None:
    started = time.monotonic()
    params = contract.load_params(PARAMS)
    try:
        texts = load_samples(contract.data_dir())
    except DatasetError as e:
        contract.fail(str(e))
    model_path = contract.model_dir()
    models.require_model(model_path)
    contract.go_offline()

    import torch

    torch.manual_seed(params["seed"])
    device = contract.device()
    tokenizer = models.load_tokenizer(model_path)
    model = models.load_model(model_path).to(device)
    seq_len = min(params["seq_len"], models.max_positions(model, tokenizer))
    samples = encode(texts, tokenizer, seq_len)

    batch_size = min(params["batch_size"], len(samples))
    per_epoch = math.ceil(len(samples) / batch_size)
    steps = per_epoch * params["epochs"]
    if params["max_steps"] is not None:
        steps = min(steps, params["max_steps"])
    logfmt.log(device=device, parameters=models.parameter_count(model), samples=len(samples),
               steps=steps, epochs=math.ceil(steps / per_epoch), batch_size=batch_size,
               seq_len=seq_len)

    loss = train(model, samples, tokenizer.pad_token_id, params, batch_size, steps, device)

    out = contract.artifacts_dir()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    logfmt.log("done", steps=steps, final_loss=loss, seconds=round(time.monotonic() - started, 2))


def encode(texts: list[str], tokenizer: Any, seq_len: int) -> list[list[int]]:
    """Token ids per sample with EOS appended, so the model learns where a sample ends.

    The tokenizer adds its own special tokens (a BOS for some models), as the server's does.
    """
    eos = tokenizer.eos_token_id
    ids = tokenizer(texts)["input_ids"]
    return [(sample if sample[-1:] == [eos] else [*sample, eos])[:seq_len] for sample in ids]


def batches(samples: list[list[int]], batch_size: int, pad_id: int, generator: Any,
            device: str) -> Any:
    """An epoch of shuffled, right-padded batches; padding is masked out of attention and loss."""
    import torch

    order = torch.randperm(len(samples), generator=generator).tolist()
    for start in range(0, len(order), batch_size):
        chunk = [samples[i] for i in order[start:start + batch_size]]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, sample in enumerate(chunk):
            ids[row, :len(sample)] = torch.tensor(sample)
            mask[row, :len(sample)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        yield ids.to(device), mask.to(device), labels.to(device)


def train(model: Any, samples: list[list[int]], pad_id: int, params: dict[str, Any],
          batch_size: int, steps: int, device: str) -> float:
    """AdamW with the learning rate decaying linearly to zero; returns the last step's loss."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=params["learning_rate"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / steps)
    generator = torch.Generator().manual_seed(params["seed"])
    model.train()
    step, epoch, loss_value = 0, 0, math.nan
    while step < steps:
        epoch += 1
        for ids, mask, labels in batches(samples, batch_size, pad_id, generator, device):
            lr = schedule.get_last_lr()[0]
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_value = loss.item()
            if step % params["log_every"] == 0 or step == steps:
                logfmt.log(step=step, epoch=epoch, loss=loss_value, lr=lr)
            if step == steps:
                break
    model.eval()
    return loss_value


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # Ctrl-C ends a local run; a traceback would tell the user nothing more.
        logfmt.log("interrupted")
        raise SystemExit(130) from None
