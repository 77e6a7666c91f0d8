"""Start a test registry by hand: `python -m tests.registry [--user NAME --password SECRET]`."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

from tests.registry import registry_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--port", type=int, help="a port on 127.0.0.1 (default: any free one)")
    args = parser.parse_args()
    credentials = (args.user, args.password) if args.user and args.password else None
    with registry_server(credentials, port=args.port) as server:
        print(f"registry: {server.url} (images: {server.host}/NAME:TAG), storage {server.root}",
              flush=True)
        print("Ctrl-C stops it.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
