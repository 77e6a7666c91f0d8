"""`python -m tests.gke`: the GKE fake by hand, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from tests.gke import FakeGKE, Settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.gke", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--server", help="the endpoint clusters report: an API server URL "
                                         "(e.g. the test control plane's), needs --ca-file")
    parser.add_argument("--ca-file", type=Path, help="the PEM CA clusters report")
    parser.add_argument("--operation-seconds", type=float, default=5.0,
                        help="an operation is DONE this long after it started (default 5)")
    parser.add_argument("--operation-polls", type=int, default=None,
                        help="or after this many polls answered RUNNING (default: time only)")
    parser.add_argument("--quota", type=int, default=5,
                        help="concurrent operations per cluster (default 5)")
    args = parser.parse_args()
    timing = {"operation_seconds": args.operation_seconds,
              "operation_polls": args.operation_polls, "concurrent_operations": args.quota}
    if args.server:
        if not args.ca_file:
            parser.error("--server needs --ca-file")
        settings = Settings.pointing_at(args.server, args.ca_file, **timing)
    else:
        settings = Settings(**timing)
    stop = threading.Event()
    with FakeGKE(settings, port=args.port) as gke:
        print(f"GKE fake at {gke.url}")
        print(f"export SUBSTRATUS_GKE_ENDPOINT={gke.url}")
        print("Ctrl-C stops it.", flush=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        stop.wait()
    print("stopped")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
