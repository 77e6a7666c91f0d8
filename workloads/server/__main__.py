"""Serve the model in the model directory on host():port() until SIGTERM.

The model loads before the port is bound, so a 200 from /health means ready to generate.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from substratus_workloads import contract, logfmt, models
from substratus_workloads.contract import Param
from substratus_workloads.server import loading
from substratus_workloads.server.api import Server
from substratus_workloads.server.generation import Generator

# Defaults for requests that do not say; a request's own values win.
PARAMS = {
    "max_tokens": Param(int, 32, minimum=1),
    "temperature": Param(float, 0.0, minimum=0),
}


def main() -> None:
    params = contract.load_params(PARAMS)
    bits = loading.quantization_bits()
    host, port = contract.host(), contract.port()
    path = contract.model_dir()
    models.require_model(path)
    name = os.environ.get("SUBSTRATUS_MODEL_NAME") or path.name
    contract.go_offline()

    device = contract.device()
    loading.check_quantization(bits, device)
    model, tokenizer, precision = loading.load(path, bits, device)

    generator = Generator(model, tokenizer, device, models.max_positions(model, tokenizer))
    try:
        server = Server((host, port), generator, name, params)
    except OSError as e:
        contract.fail(f"cannot listen on {host}:{port}: {e.strerror or e}")
    logfmt.log(model=name, device=device, dtype=precision,
               parameters=models.parameter_count(model), max_positions=generator.max_positions)
    stop_on_signals(server)
    print(f"listening on http://{host}:{server.server_address[1]}", flush=True)
    server.serve_forever()
    # Closing the socket refuses new connections; server_close then waits for the requests
    # already being handled.
    server.server_close()
    logfmt.log("stopped", model=name)


def stop_on_signals(server: Any) -> None:
    """First SIGTERM/SIGINT: stop accepting and drain. A second: leave at once."""
    stopping = threading.Event()

    def handle(signum: int, frame: object) -> None:
        if stopping.is_set():
            os._exit(128 + signum)
        stopping.set()
        logfmt.log("stopping", signal=signal.Signals(signum).name, stream=sys.stderr)
        # shutdown() waits for serve_forever to return, which runs in this (the main) thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


if __name__ == "__main__":
    main()
