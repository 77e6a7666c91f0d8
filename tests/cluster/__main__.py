"""`python -m tests.cluster`: the test control plane by hand, with a CPU pool and an L4 pool (2
nodes, 2 GPUs each), until Ctrl-C. With `--gcs-bucket NAME`, also a fake-gcs-server holding that
bucket, for `artifacts: gs://NAME/…` and `state: gs://NAME/…`."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.cluster.controlplane import ControlPlane


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _gcs(bucket: str | None) -> Iterator[str | None]:
    if not bucket:
        yield None
        return
    from tests.support.gcs import fake_gcs_server

    with fake_gcs_server() as url:
        request = urllib.request.Request(f"{url}/storage/v1/b", method="POST",
                                         data=json.dumps({"name": bucket}).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).close()
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__)
    parser.add_argument("--workdir", type=Path,
                        help="an empty folder to keep kubeconfig, logs and etcd data in (default: "
                             "a temporary folder removed on exit)")
    parser.add_argument("--gcs-bucket", metavar="NAME",
                        help="also start a fake-gcs-server with this bucket and print its "
                             "STORAGE_EMULATOR_HOST")
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        if any(args.workdir.iterdir()):
            parser.error(f"--workdir {args.workdir} is not empty (a cluster starts from scratch)")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, _interrupt)  # while starting: stop what has started
    with ControlPlane(workdir=args.workdir) as cluster, _gcs(args.gcs_bucket) as gcs:
        cluster.add_node_pool("l4-pool", 2, accelerator="nvidia-l4", gpus=2, cpu="24",
                              memory="96Gi")
        print(f"kubeconfig: {cluster.kubeconfig}  (context substratus-test)")
        print(f"logs:       {cluster.workdir / 'logs'}")
        if gcs:
            print(f"bucket:     gs://{args.gcs_bucket} on the fake-gcs-server at {gcs}")
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        if gcs:
            print(f"export STORAGE_EMULATOR_HOST={gcs}")
        print("Ctrl-C stops the cluster.", flush=True)
        # Also when started in the background, where a shell makes SIGINT ignored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        stop.wait()
    print("stopped")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
