"""Text generation, one request at a time: greedy or sampled, with stop strings and the context limit."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any


class PromptTooLong(ValueError):
    """The prompt leaves no room for a single new token."""


@dataclasses.dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop": EOS or a stop string; "length": max tokens or the context limit
    prompt_tokens: int
    completion_tokens: int


class Generator:
    def __init__(self, model: Any, tokenizer: Any, device: str, max_positions: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_positions = max_positions
        # One model, one request at a time: concurrent forward passes would only compete for
        # the same cores (or GPU) and multiply the memory used for activations.
        self.lock = threading.Lock()
        eos = model.generation_config.eos_token_id if model.generation_config else None
        self.eos_ids = {tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}

    def complete(self, prompt: str, max_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                 stop: tuple[str, ...] = (), seed: int | None = None) -> Completion:
        with self.lock:
            ids = self.tokenizer(prompt)["input_ids"] or [self.tokenizer.eos_token_id]
            room = self.max_positions - len(ids)
            if room < 1:
                raise PromptTooLong(f"the prompt is {len(ids)} tokens and the model takes at "
                                    f"most {self.max_positions}, including the completion")
            new, finish = self._generate(ids, min(max_tokens, room), temperature, top_p, stop, seed)
            text, cut = self._text(new, stop)
            return Completion(text, "stop" if cut or finish else "length", len(ids), len(new))

    def _generate(self, ids: list[int], max_new: int, temperature: float, top_p: float,
                  stop: tuple[str, ...], seed: int | None) -> tuple[list[int], bool]:
        """New token ids (EOS excluded) and whether generation stopped on EOS or a stop string."""
        import torch

        rng = None
        if seed is not None and temperature > 0:
            rng = torch.Generator(device=self.device).manual_seed(seed)
        new: list[int] = []
        with torch.inference_mode():
            inputs = torch.tensor([ids], device=self.device)
            past = None
            for _ in range(max_new):
                out = self.model(input_ids=inputs, past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = pick(out.logits[0, -1].float(), temperature, top_p, rng)
                if token in self.eos_ids:
                    return new, True
                new.append(token)
                if stop and self._text(new, stop)[1]:
                    return new, True
                inputs = torch.tensor([[token]], device=self.device)
        return new, False

    def _text(self, ids: list[int], stop: tuple[str, ...]) -> tuple[str, bool]:
        """The decoded text, cut before the first stop string, and whether one was found."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
        return (text[:min(cuts)], True) if cuts else (text, False)


def pick(logits: Any, temperature: float, top_p: float, rng: Any = None) -> int:
    """The next token: the most likely at temperature 0, else sampled from the top-p nucleus."""
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest set of tokens whose mass reaches top_p (always at least one).
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=rng))
