"""Benchmark: a no-change plan of 20 Images, one of them built from a large context, against
`buildah bud` of that same unchanged context (which reads it again to know its COPY is cached).
Prints seconds, the bytes the plan read, its registry requests and the ratio.

    python bench/image_replan.py [--gib 1] [--images 20]

It starts a registry (Debian's docker-registry, as the tests do: apt-get install docker-registry
buildah), applies the workspace once (builds and pushes every image), then times a no-change
`substratus plan` in process and `buildah bud` of the large context with its layer cache warm.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from substratus_cli import operations  # noqa: E402
from substratus_cli.cli import run  # noqa: E402
from substratus_cli.planner import PlanOptions  # noqa: E402
from substratus_providers.images.provider import ImagesProvider  # noqa: E402
from tests.registry import registry_server  # noqa: E402


def rchar() -> int:
    line = next(x for x in Path("/proc/self/io").read_text().splitlines() if x.startswith("rchar"))
    return int(line.split()[1])


def quiet(*args: str) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return run(list(args))


def workspace(root: Path, registry: str, images: int, size: int) -> None:
    root.mkdir()
    (root / "environment.yaml").write_text("apiVersion: substratus.ai/v1\nkind: Environment\n"
                                           f"metadata: {{name: e}}\nspec: {{registry: {registry}}}\n")
    docs = []
    for n in range(images):
        context = root / f"image-{n}"
        context.mkdir()
        (context / "Dockerfile").write_text("FROM scratch\nCOPY . /app\n")
        (context / "main.py").write_text(f"print({n})\n")
        docs.append(f"apiVersion: substratus.ai/v1\nkind: Image\nmetadata: {{name: image-{n}}}\n"
                    f"spec: {{context: image-{n}}}\n")
    block = os.urandom(1 << 20)
    with open(root / "image-0" / "weights.bin", "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
    (root / "images.yaml").write_text("---\n".join(docs))
    time.sleep(0.2)  # files written within the last instant are never trusted to the stat cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args()
    size = int(args.gib * (1 << 30))
    import tempfile

    with registry_server() as server, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        workspace(root, f"{server.host}/bench", args.images, size)
        start = time.perf_counter()
        if quiet("apply", "--auto-approve", str(root)) != 0:
            sys.exit("the first apply failed")
        print(f"applied {args.images} images ({size / (1 << 20):.0f} MiB context for one) in "
              f"{time.perf_counter() - start:.1f} s")

        before, start = rchar(), time.perf_counter()
        ws = operations.open_workspace(root)
        plan = operations.plan_workspace(ws, PlanOptions())
        seconds, read = time.perf_counter() - start, rchar() - before
        if plan.has_changes:
            sys.exit("the re-plan found changes")
        images = ws.registry["Image"]
        assert isinstance(images, ImagesProvider)
        handler = images.images
        hashed = sum(handler.identities_read.values())

        buildah = ["buildah", "--storage-driver", "vfs", "--root",
                   str(root / ".substratus" / "buildah" / "storage"), "--runroot",
                   str(root / ".substratus" / "buildah" / "run"), "bud", "--layers", "-q",
                   "-t", "localhost/bench:again", str(root / "image-0")]
        env = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
        start = time.perf_counter()
        subprocess.run(buildah, check=True, capture_output=True, env=env)
        reference = time.perf_counter() - start
        # The same plan as a user runs it: a process of its own, imports and all.
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "substratus_cli", "plan", "--detailed-exitcode",
                        str(root)], check=True, capture_output=True)
        command = time.perf_counter() - start

    print(f"no-change plan in process: {seconds:.3f} s, {handler.client.requests} registry "
          f"requests, {hashed} bytes of the contexts hashed, {read / (1 << 20):.2f} MiB read in "
          "all (files' stats, state, the YAML)")
    print(f"`substratus plan --detailed-exitcode` as a command: {command:.3f} s")
    print(f"buildah bud of the unchanged {size / (1 << 20):.0f} MiB context (layer cache warm): "
          f"{reference:.3f} s")
    print(f"ratio (buildah bud / substratus plan command): {reference / command:.1f}x")


if __name__ == "__main__":
    main()
