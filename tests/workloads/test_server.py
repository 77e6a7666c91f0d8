"""`python -m substratus_workloads.server`: the trained model over HTTP, OpenAI-shaped."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.workloads.conftest import (
    Process,
    Trained,
    assert_refused,
    params_env,
    run_workload,
    started,
    workload_env,
)

ALICE = "What is Alice's favorite color?"


def serve(trained: Trained, tmp_path: Path, **env: str) -> Any:
    # PORT=0: the server takes a free port and says which in its `listening on` line.
    return started("server", workload_env(
        tmp_path, SUBSTRATUS_MODEL_DIR=str(trained.model), SUBSTRATUS_MODEL_NAME="colors",
        PORT="0", **env), tmp_path / "server.err")


def port_of(process: Process) -> int:
    return int(process.wait_for_line("listening on http://127.0.0.1:").rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def server(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[Process, int]]:
    with serve(trained, tmp_path_factory.mktemp("server")) as process:
        yield process, port_of(process)


def call(port: int, method: str, path: str, body: Any = None,
         raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_health_names_the_model(server: tuple[Process, int]) -> None:
    assert call(server[1], "GET", "/health") == (200, {"status": "ok", "model": "colors"})


def test_models_lists_the_one_model(server: tuple[Process, int]) -> None:
    status, body = call(server[1], "GET", "/v1/models")
    assert status == 200
    assert body["object"] == "list"
    assert [(m["id"], m["object"]) for m in body["data"]] == [("colors", "model")]


def test_completions_answer_in_openai_shape(server: tuple[Process, int]) -> None:
    status, body = call(server[1], "POST", "/v1/completions",
                        {"model": "anything", "prompt": [ALICE, "Red and"], "max_tokens": 4})
    assert status == 200, body
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["id"].startswith("cmpl-") and body["object"] == "text_completion"
    assert body["model"] == "colors" and abs(body["created"] - time.time()) < 60
    assert [c["index"] for c in body["choices"]] == [0, 1]
    for choice in body["choices"]:
        assert set(choice) == {"text", "index", "finish_reason", "logprobs"}
        assert isinstance(choice["text"], str) and choice["logprobs"] is None
        assert choice["finish_reason"] in ("length", "stop")
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(ALICE) + len("Red and")  # one token per byte
    assert 0 < usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_the_trained_model_answers_its_training_question(server: tuple[Process, int]) -> None:
    status, body = call(server[1], "POST", "/v1/completions", {"prompt": ALICE, "max_tokens": 64})
    assert status == 200, body
    assert body["choices"][0] == {"text": " Alice's favorite color is indigo.", "index": 0,
                                  "finish_reason": "stop", "logprobs": None}


def test_max_tokens_ends_with_length_and_stop_strings_cut(server: tuple[Process, int]) -> None:
    _, short = call(server[1], "POST", "/v1/completions", {"prompt": ALICE, "max_tokens": 3})
    assert short["choices"][0]["finish_reason"] == "length"
    assert short["usage"]["completion_tokens"] == 3
    _, cut = call(server[1], "POST", "/v1/completions",
                  {"prompt": ALICE, "max_tokens": 64, "stop": [" color", "zzz"]})
    assert cut["choices"][0]["text"] == " Alice's favorite"
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_generate_returns_the_generated_text(server: tuple[Process, int]) -> None:
    status, body = call(server[1], "POST", "/generate", {"prompt": ALICE, "max_new_tokens": 64})
    assert (status, body) == (200, {"generated_text": " Alice's favorite color is indigo."})


@pytest.mark.parametrize(("body", "param"), [
    ({"max_tokens": 4}, "prompt"),
    ({"prompt": 42}, "prompt"),
    ({"prompt": "x", "max_tokens": "many"}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "temperature": -1}, "temperature"),
    ({"prompt": "x", "top_p": 0}, "top_p"),
    ({"prompt": "x", "n": 2}, "n"),
    ({"prompt": "x", "stream": True}, "stream"),
    ({"prompt": "x", "stop": [""]}, "stop"),
    ({"prompt": "x" * 300}, "prompt"),  # longer than the model's 256 positions
])
def test_bad_completion_requests_get_400_naming_the_field(
        server: tuple[Process, int], body: dict[str, Any], param: str) -> None:
    status, answer = call(server[1], "POST", "/v1/completions", body)
    assert status == 400
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["param"] == param
    assert param in answer["error"]["message"] or param == "prompt"


def test_a_body_that_is_not_json_gets_400(server: tuple[Process, int]) -> None:
    status, answer = call(server[1], "POST", "/v1/completions", raw=b"{prompt")
    assert status == 400 and "not valid JSON" in answer["error"]["message"]
    status, answer = call(server[1], "POST", "/generate", {"prompt": ["a list"]})
    assert (status, answer["error"]["param"]) == (400, "prompt")


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/nope", 404), ("POST", "/v1/chat/completions", 404), ("GET", "/v1/completions", 405),
    ("DELETE", "/health", 405),
])
def test_unknown_paths_and_methods_get_json_errors(server: tuple[Process, int], method: str,
                                                   path: str, status: int) -> None:
    got, answer = call(server[1], method, path)
    assert got == status and answer["error"]["message"]


def test_each_request_writes_one_access_log_line(server: tuple[Process, int]) -> None:
    call(server[1], "GET", "/health?probe=1")
    time.sleep(0.2)
    assert "method=GET path=/health status=200" in server[0].stderr()


def test_a_malformed_request_gets_400_and_no_traceback(server: tuple[Process, int]) -> None:
    with socket.create_connection(("127.0.0.1", server[1]), timeout=10) as client:
        client.sendall(b"GARBAGE\r\n\r\n")
        answer = read_response(client)
    # No HTTP version in the request line, so none in the answer: only the JSON body.
    assert json.loads(answer)["error"]["message"].startswith("Bad request syntax")
    status, body = call(server[1], "OPTIONS", "/v1/completions")
    assert (status, body["error"]["type"]) == (501, "invalid_request_error")
    assert call(server[1], "GET", "/health")[0] == 200
    assert "Traceback" not in server[0].stderr()


@pytest.mark.parametrize(("env", "words"), [
    (params_env({"temperature": -0.5}), ["'temperature'", ">= 0"]),
    (params_env({"max_tokens": 0}), ["'max_tokens'"]),
    (params_env({"max_token": 5}), ["unknown param 'max_token'", "max_tokens"]),
    ({"SUBSTRATUS_QUANTIZATION_BITS": "3"}, ["SUBSTRATUS_QUANTIZATION_BITS", "'3'"]),
])
def test_bad_params_stop_the_server_before_it_listens(
        trained: Trained, tmp_path: Path, env: dict[str, str], words: list[str]) -> None:
    result = run_workload("server", workload_env(
        tmp_path, SUBSTRATUS_MODEL_DIR=str(trained.model), PORT="0", **env), timeout=60)
    assert_refused(result, *words)
    assert "listening" not in result.stdout


def test_sigterm_finishes_the_request_in_flight_then_exits_0(trained: Trained,
                                                             tmp_path: Path) -> None:
    with serve(trained, tmp_path) as process:
        port = port_of(process)
        body = json.dumps({"prompt": ALICE, "max_tokens": 64}).encode()
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            # Half a request: the server has accepted it and waits for the rest.
            client.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: test\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
            time.sleep(0.5)
            process.popen.send_signal(signal.SIGTERM)
            assert refuses_new_connections(port), "still accepting after SIGTERM"
            assert process.popen.poll() is None, "exited with a request in flight"
            client.sendall(body[10:])
            answer = read_response(client)
        finally:
            client.close()
        assert answer.startswith(b"HTTP/1.0 200"), answer
        assert b"indigo" in answer
        assert process.popen.wait(timeout=15) == 0
        assert process.stdout[-1].startswith("stopped")


def refuses_new_connections(port: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.1)
    return False


def read_response(client: socket.socket) -> bytes:
    chunks = []
    while chunk := client.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
