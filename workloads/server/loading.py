"""Loading the served model: on CUDA when there is one, at the precision SUBSTRATUS_QUANTIZATION_BITS asks."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from substratus_workloads import contract, models

BITS_ENV = "SUBSTRATUS_QUANTIZATION_BITS"
BITS = (4, 8, 16, 32)


def quantization_bits() -> int:
    """The requested bits per weight; 32 (the model as saved) when unset."""
    raw = os.environ.get(BITS_ENV, "").strip()
    if not raw:
        return 32
    if not raw.isdigit() or int(raw) not in BITS:
        contract.fail(f"{BITS_ENV} must be one of {', '.join(map(str, BITS))}, got {raw!r}")
    return int(raw)


def check_quantization(bits: int, device: str) -> None:
    """Refuse, before loading anything, what this machine cannot do."""
    if bits not in (4, 8):
        return
    if device != "cuda":
        contract.fail(f"{BITS_ENV}={bits} needs a CUDA GPU and none is available; "
                      "use 16 or 32 on a CPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        contract.fail(f"{BITS_ENV}={bits} needs the bitsandbytes package, which is not "
                      "installed (pip install bitsandbytes)")


def load(path: Path, bits: int, device: str) -> tuple[Any, Any, str]:
    """The model (in eval mode, on `device`), its tokenizer and a name for its precision."""
    import torch

    tokenizer = models.load_tokenizer(path)
    if bits in (4, 8):
        from transformers import BitsAndBytesConfig

        quantization = (BitsAndBytesConfig(load_in_8bit=True) if bits == 8 else
                        BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float16))
        # bitsandbytes places the weights itself; moving the model afterwards is refused.
        model = models.load_model(path, quantization_config=quantization, device_map={"": 0})
        return model.eval(), tokenizer, f"int{bits}"
    if bits == 16:
        # CPUs have no fast float16 matmul, bfloat16 is the 16-bit type they compute well.
        dtype = torch.float16 if device == "cuda" else torch.bfloat16
        model = models.load_model(path, dtype=dtype)
    else:
        model = models.load_model(path)
    model = model.to(device).eval()
    return model, tokenizer, str(model.dtype).removeprefix("torch.")
