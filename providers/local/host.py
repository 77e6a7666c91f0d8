"""Does a model fit this machine? Its size (from spec.size, the scratch config or the weights'
headers), the machine's memory and GPUs, and the sizing arithmetic the plan prints."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import struct
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from substratus_cli.errors import ProviderError
from substratus_cli.sizing import Estimate, ModelSize, human_bytes

# The scratch builder's byte-level tokenizer: 256 bytes and <|endoftext|>.
SCRATCH_VOCAB = 257
SCRATCH_DEFAULTS = {"n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": 256}
_DTYPE_BITS = {"F64": 64, "F32": 32, "F16": 16, "BF16": 16, "I8": 8, "U8": 8, "F8_E4M3": 8,
               "F8_E5M2": 8, "I32": 32, "I64": 64, "I16": 16, "BOOL": 8}


@dataclasses.dataclass(frozen=True)
class GPU:
    name: str
    memory_bytes: int


@dataclasses.dataclass(frozen=True)
class Host:
    memory_bytes: int
    gpus: tuple[GPU, ...]


@functools.cache
def this_host() -> Host:
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return Host(pages * page_size, _nvidia_gpus())


def _nvidia_gpus() -> tuple[GPU, ...]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        out = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    gpus = []
    for line in out.strip().splitlines():
        name, _, mib = line.rpartition(",")
        if name and mib.strip().isdigit():
            gpus.append(GPU(name.strip(), int(mib) * 1024**2))
    return tuple(gpus)


def check_fits(estimate: Estimate, host: Host, what: str, gpu_request: Mapping[str, Any] | None,
               ) -> str:
    """The plan's sizing note, or ProviderError with the arithmetic when the machine cannot hold it."""
    if gpu_request and len(host.gpus) < int(gpu_request.get("count", 1)):
        raise ProviderError(
            f"{what} requests {gpu_request.get('count', 1)} GPU(s) ({gpu_request.get('type')}) "
            f"but this machine has {len(host.gpus) or 'none'}",
            hint="remove spec.resources.gpu to run on this machine's "
                 f"{'GPU' if host.gpus else 'CPU'}, or use the kubernetes runtime")
    if host.gpus:
        device = f"{host.gpus[0].name} ({human_bytes(host.gpus[0].memory_bytes)})"
        room = host.gpus[0].memory_bytes
    else:
        device = f"this machine's memory ({human_bytes(host.memory_bytes)}, no GPU found)"
        room = host.memory_bytes
    arithmetic = f"{estimate.purpose} needs {estimate.arithmetic}"
    if estimate.bytes > room:
        raise ProviderError(
            f"{what} does not fit: {arithmetic}, more than {device}",
            hint="use a smaller model or quantization, or the kubernetes runtime with GPU nodes")
    return f"sizing: {arithmetic}; fits in {device}"


def scratch_size(config: Mapping[str, Any]) -> ModelSize:
    """GPT-2's parameter count from its shape (embeddings tied to the output layer)."""
    c = {**SCRATCH_DEFAULTS, **config}
    layers, width, positions = int(c["n_layer"]), int(c["n_embd"]), int(c["n_positions"])
    per_layer = 12 * width * width + 13 * width  # attention + MLP weights, biases, two layer norms
    total = SCRATCH_VOCAB * width + positions * width + layers * per_layer + 2 * width
    return ModelSize(total, 32, "the scratch config")


def weights_size(directory: Path) -> ModelSize | None:
    """Exact parameter count and bits from the safetensors headers under a model directory."""
    files = sorted(directory.rglob("*.safetensors"))
    if not files:
        return None
    total, bits = 0, 0
    for f in files:
        for name, tensor in _safetensors_header(f).items():
            if name == "__metadata__":
                continue
            total += math.prod(tensor.get("shape", [])) if tensor.get("shape") else 1
            bits = max(bits, _DTYPE_BITS.get(str(tensor.get("dtype")), 0))
    return ModelSize(total, bits or 32, "the weights") if total else None


def _safetensors_header(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100 * 1024**2:
                raise ValueError("header too large")
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error) as e:
        raise ProviderError(f"cannot read the safetensors header of {path}: {e}") from None
    if not isinstance(header, dict):
        raise ProviderError(f"cannot read the safetensors header of {path}: not a JSON object")
    return header
