"""The request and response bodies of the API: OpenAI's /v1/completions and the seed's /generate.

Parsing is strict about what it reads and says which field is wrong, as OpenAI's API does.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Mapping
from typing import Any

from substratus_workloads.contract import Param, ParamError
from substratus_workloads.server.generation import Completion


class RequestError(ValueError):
    """A request the API refuses (400 unless said); `param` is the body field at fault, if any."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.status = status


@dataclasses.dataclass(frozen=True)
class CompletionRequest:
    prompts: tuple[str, ...]
    max_tokens: int
    temperature: float
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


FIELDS = {
    "max_tokens": Param(int, minimum=1),
    "temperature": Param(float, minimum=0),
    "top_p": Param(float, above=0, maximum=1),
    "seed": Param(int),
}
# Options of OpenAI's API this server does not implement, and the value that asks for nothing.
UNSUPPORTED = {"stream": False, "echo": False, "logprobs": None, "suffix": None, "best_of": 1}


def parse_completions(body: Any, defaults: Mapping[str, Any]) -> CompletionRequest:
    body = _object(body)
    for name, harmless in UNSUPPORTED.items():
        if body.get(name, harmless) not in (harmless, None):
            raise RequestError(f"'{name}' is not supported by this server", name)
    if body.get("n", 1) not in (1, None):
        raise RequestError("only n=1 is supported", "n")
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not (isinstance(prompts, list) and prompts and all(isinstance(p, str) for p in prompts)):
        raise RequestError("'prompt' must be a string or a non-empty list of strings", "prompt")
    stop = body.get("stop") or []
    stops = [stop] if isinstance(stop, str) else stop
    if not (isinstance(stops, list) and len(stops) <= 4 and all(isinstance(s, str) and s
                                                                 for s in stops)):
        raise RequestError("'stop' must be a non-empty string or a list of up to 4", "stop")
    return CompletionRequest(
        prompts=tuple(prompts),
        max_tokens=_field(body, "max_tokens", defaults["max_tokens"]),
        temperature=_field(body, "temperature", defaults["temperature"]),
        top_p=_field(body, "top_p", 1.0),
        stop=tuple(stops),
        seed=_field(body, "seed", None))


def parse_generate(body: Any, defaults: Mapping[str, Any]) -> CompletionRequest:
    body = _object(body)
    if not isinstance(body.get("prompt"), str):
        raise RequestError("'prompt' must be a string", "prompt")
    return CompletionRequest(
        prompts=(body["prompt"],),
        max_tokens=_field(body, "max_new_tokens", defaults["max_tokens"], FIELDS["max_tokens"]),
        temperature=_field(body, "temperature", defaults["temperature"]))


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def _field(body: Mapping[str, Any], name: str, default: Any, rule: Param | None = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    try:
        return (rule or FIELDS[name]).check(name, value)
    except ParamError as e:
        raise RequestError(str(e).removeprefix("param "), name) from None


def completions_response(model: str, completions: list[Completion]) -> dict[str, Any]:
    prompt_tokens = sum(c.prompt_tokens for c in completions)
    completion_tokens = sum(c.completion_tokens for c in completions)
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"text": c.text, "index": i, "finish_reason": c.finish_reason,
                     "logprobs": None} for i, c in enumerate(completions)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def error_body(message: str, kind: str = "invalid_request_error",
               param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}
