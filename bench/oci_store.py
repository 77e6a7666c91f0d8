"""Push and pull of a model folder through the oci:// artifact store against `skopeo copy` of the
same bytes as the same OCI artifact, and against a plain `cp -r` of the folder, on a local
registry (Debian's docker-registry on 127.0.0.1, the tests' one). Prints figures and ratios;
asserts nothing about time.

    python bench/oci_store.py                    # 256 MiB file + 64 x 1 MiB files, best of 3
    python bench/oci_store.py --large-mb 512 --small 200 --repeat 2

Each timed run gets a fresh registry (nothing deduplicated between runs). Push is the store's
upload of a folder already hashed (the manifest known, as skopeo's is from its layout): one HEAD
and one upload per blob, OCI_PARALLELISM at once, then the artifact's manifest; hashing the
folder is timed on its own. Pull is `Store.materialize(verify=True)`: every blob downloaded and
checked against its sha256, as skopeo checks what it copies. skopeo pushes from, and pulls into,
an OCI image layout holding the very same manifest, config and blobs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from substratus_artifacts.files import hash_tree  # noqa: E402
from substratus_artifacts.manifest import Manifest  # noqa: E402
from substratus_artifacts.oci import OCI_PARALLELISM, artifact_manifest  # noqa: E402
from substratus_artifacts.store import open_store  # noqa: E402
from tests.registry import registry_server  # noqa: E402

MIB = 1 << 20


def make_model(root: Path, large_mb: int, small: int) -> None:
    root.mkdir(parents=True)
    with open(root / "model.safetensors", "wb") as handle:
        for _ in range(large_mb):
            handle.write(os.urandom(MIB))
    (root / "shards").mkdir()
    for i in range(small):
        (root / "shards" / f"part-{i:04}.bin").write_bytes(os.urandom(MIB))
    (root / "config.json").write_text(json.dumps({"layers": 24, "hidden": 2048}))


def oci_layout(folder: Path, manifest: Manifest, layout: Path) -> None:
    """An OCI image layout holding the artifact the store pushes: same manifest, config, blobs."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    config = manifest.canonical_json()
    (blobs / manifest.digest.removeprefix("sha256:")).write_bytes(config)
    for entry in manifest.entries:
        target = blobs / entry.sha256
        if not target.exists():
            os.link(folder / entry.path, target)
    body = artifact_manifest(manifest, config)
    digest = hashlib.sha256(body).hexdigest()
    (blobs / digest).write_bytes(body)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{digest}", "size": len(body),
            "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}))


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def drop(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def skopeo(*args: str) -> None:
    subprocess.run(["skopeo", *args], check=True, capture_output=True)


def one_run(work: Path, folder: Path, manifest: Manifest,
            results: dict[str, list[float]]) -> int:
    """One timed run of each side, each registry fresh; the blob bytes a re-push sent."""
    results["cp -r"].append(timed(lambda: shutil.copytree(folder, work / "copy")))
    drop(work / "copy")
    items = [(folder / e.path, e.sha256) for e in manifest.entries]
    with registry_server() as registry:
        store = open_store(f"oci://{registry.host}/bench/model")

        def push() -> None:
            store.put_files(items)
            store.put_manifest(manifest)

        results["store push"].append(timed(push))
        repush_bytes = store.put_files(items)
        results["store pull"].append(timed(
            lambda: store.materialize(manifest.digest, work / "pulled", verify=True)))
        drop(work / "pulled")
    with registry_server() as registry:
        image = f"docker://{registry.host}/bench/model:bench"
        results["skopeo push"].append(timed(lambda: skopeo(
            "copy", "--dest-tls-verify=false", f"oci:{work / 'layout'}:bench", image)))
        results["skopeo pull"].append(timed(lambda: skopeo(
            "copy", "--src-tls-verify=false", image, f"oci:{work / 'pulled'}:bench")))
        drop(work / "pulled")
    return repush_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large-mb", type=int, default=256)
    parser.add_argument("--small", type=int, default=64, help="how many 1 MiB files")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["DOCKER_CONFIG"] = tempfile.mkdtemp(prefix="bench-docker-")  # anonymous

    with tempfile.TemporaryDirectory(prefix="bench-oci-", dir=Path.cwd()) as tmp:
        work = Path(tmp)
        folder = work / "model"
        make_model(folder, args.large_mb, args.small)
        hash_s = timed(lambda: hash_tree(folder))
        manifest = hash_tree(folder)[0]
        size = manifest.total_size
        oci_layout(folder, manifest, work / "layout")
        results: dict[str, list[float]] = {k: [] for k in (
            "cp -r", "store push", "skopeo push", "store pull", "skopeo pull")}
        repush_bytes = -1
        for _ in range(args.repeat):
            repush_bytes = one_run(work, folder, manifest, results)

    best = {k: min(v) for k, v in results.items()}
    rate = {k: size / MIB / s for k, s in best.items()}
    version = subprocess.run(["skopeo", "--version"], capture_output=True, text=True).stdout
    print(f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
          f"{version.strip()}, docker-registry on 127.0.0.1; store parallelism {OCI_PARALLELISM}")
    print(f"model: {size / MIB:.0f} MiB in {len(manifest)} files (one {args.large_mb} MiB, "
          f"{args.small} x 1 MiB); best of {args.repeat}")
    print(f"hashing the folder (before a push, once; a warm stat cache skips it): {hash_s:.2f} s "
          f"({size / MIB / hash_s:.0f} MiB/s)")
    print()
    print("| what | best | MiB/s | runs (s) |")
    print("|---|---:|---:|---|")
    for key in results:
        runs = ", ".join(f"{s:.2f}" for s in results[key])
        print(f"| {key} | {best[key]:.2f} s | {rate[key]:.0f} | {runs} |")
    print()
    print(f"push: store {rate['store push']:.0f} MiB/s vs skopeo copy "
          f"{rate['skopeo push']:.0f} MiB/s: {best['skopeo push'] / best['store push']:.2f}x; "
          f"vs cp -r: {best['cp -r'] / best['store push']:.2f}x")
    print(f"pull: store {rate['store pull']:.0f} MiB/s vs skopeo copy "
          f"{rate['skopeo pull']:.0f} MiB/s: {best['skopeo pull'] / best['store pull']:.2f}x; "
          f"vs cp -r: {best['cp -r'] / best['store pull']:.2f}x")
    print(f"re-push of the unchanged model: {repush_bytes} blob bytes sent")


if __name__ == "__main__":
    main()
