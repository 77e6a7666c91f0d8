"""`python -m tests.cluster`: the test control plane by hand, with a CPU pool and an L4 pool (2
nodes, 2 GPUs each), until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from tests.cluster.controlplane import ControlPlane


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__)
    parser.add_argument("--workdir", type=Path,
                        help="keep kubeconfig, logs and etcd data here (default: a temporary "
                             "folder removed on exit)")
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    with ControlPlane(workdir=args.workdir) as cluster:
        cluster.add_node_pool("l4-pool", 2, accelerator="nvidia-l4", gpus=2)
        print(f"kubeconfig: {cluster.kubeconfig}  (context substratus-test)")
        print(f"logs:       {cluster.workdir / 'logs'}")
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        print("Ctrl-C stops the cluster.", flush=True)
        # Also when started in the background, where a shell makes SIGINT ignored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        stop.wait()
    print("stopped")


if __name__ == "__main__":
    main()
