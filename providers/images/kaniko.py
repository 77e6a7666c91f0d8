"""In-cluster builds (`builder: cluster`): the context as a deterministic, content-addressed
tarball in the artifact store, and the kaniko Job that builds it there and pushes to the
registry as the namespace's ServiceAccount (Workload Identity on GKE). The Job runs through the
kubernetes runtime (`ClusterJobs`); what it pushed is read back from the registry, never from
its log."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from substratus_artifacts.layout import StoreError
from substratus_artifacts.store import Store
from substratus_cli.errors import ProviderError
from substratus_cli.provider import MANAGED_BY_LABEL, MANAGED_BY_VALUE, PART_OF_LABEL, ClusterJobs
from substratus_providers.images.buildah import LAST_LINES, BuildError
from substratus_providers.images.context import BuildInputs, Identity, context_files

# The last release of kaniko published under gcr.io/kaniko-project (Environment
# `kubernetes.kanikoImage` names another, e.g. a mirror or a maintained fork).
KANIKO_IMAGE = "gcr.io/kaniko-project/executor:v1.23.2"
# Every pod substratus runs in a namespace runs as its `default` ServiceAccount; so does the
# builder, so one Workload Identity binding grants both.
SERVICE_ACCOUNT = "default"
BUILD_TIMEOUT_SECONDS = 60 * 60
JOB_TTL_SECONDS = 60 * 60
CONTEXTS = "image-contexts/sha256"


def context_tarball(inputs: BuildInputs, built: Identity, out: Path) -> str:
    """Writes the context as a gzipped tar to `out`: sorted paths, mtime 0, uid and gid 0, no
    owner names, modes 644 or 755 as the identity has them, gzip without name or time; so the
    same files always make the same bytes. Files that changed since the identity was computed
    are refused. Returns the tarball's sha256 (bare hex)."""
    files = dict(context_files(inputs))
    dockerfile = inputs.dockerfile.replace(os.sep, "/")
    if dockerfile not in files:  # a .dockerignore'd Dockerfile is still sent, as Docker does
        files[dockerfile] = inputs.context / dockerfile
    planned = {path: (mode, sha) for path, mode, sha in built.files}
    digest = hashlib.sha256()
    with out.open("wb") as raw:
        hashing = _Hashing(raw, digest)
        with gzip.GzipFile(filename="", mode="wb", fileobj=hashing, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel in sorted(files):
                data = files[rel].read_bytes()
                mode = "755" if os.stat(files[rel]).st_mode & 0o111 else "644"
                sha = hashlib.sha256(data).hexdigest()
                if rel in planned and planned[rel] != (mode, sha):
                    raise ProviderError(f"{rel} of the build context changed since the plan",
                                        hint="plan again")
                info = tarfile.TarInfo(rel)
                info.size, info.mode, info.mtime = len(data), int(mode, 8), 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    return digest.hexdigest()


class _Hashing(io.RawIOBase):
    """A sink that hashes what passes through on the way to `out`."""

    def __init__(self, out: Any, digest: Any) -> None:
        self.out, self.digest = out, digest

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.digest.update(data)
        return int(self.out.write(data))


def upload_context(store: Store, inputs: BuildInputs, built: Identity, scratch: Path) -> str:
    """The context's tarball in the artifact store (uploaded unless there): its URL."""
    with tempfile.TemporaryDirectory(dir=scratch, prefix="context-") as tmp:
        tarball = Path(tmp) / "context.tar.gz"
        sha = context_tarball(inputs, built, tarball)
        key = f"{CONTEXTS}/{sha}.tar.gz"
        try:
            store.backend.create(key, tarball, sha)
        except StoreError as e:
            raise ProviderError(f"cannot upload the build context to {store.url}: {e.message}",
                                hint=e.hint) from None
    return f"{store.url}/{key}"


def job_name(repository_name: str) -> str:
    """`image-<name>`, hash-suffixed when longer than a Job's pods' label values allow."""
    full = f"image-{repository_name}"
    if len(full) <= 63:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[:54].rstrip('-')}-{digest}"


def job_manifest(*, name: str, namespace: str, part_of: str, labels: Mapping[str, str],
                 image: str, context_url: str, inputs: BuildInputs,
                 destinations: Sequence[str], insecure: bool) -> dict[str, Any]:
    """The kaniko Job: one try (a failed build is reported, the next apply decides), as the
    namespace's ServiceAccount. The Image's labels go on the Job and its pod."""
    args = [f"--context={context_url}", f"--dockerfile={inputs.dockerfile}"]
    args += [f"--destination={d}" for d in destinations]
    args += [f"--build-arg={k}={v}" for k, v in sorted(inputs.build_args.items())]
    if inputs.target:
        args.append(f"--target={inputs.target}")
    if insecure:  # a registry on a loopback address speaks plain HTTP
        args.append("--insecure")
    own = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, PART_OF_LABEL: part_of,
           "substratus.ai/kind": "Image", "substratus.ai/name": name}
    container = {"name": "kaniko", "image": image, "args": args,
                 # The kubelet keeps the end of a failed container's log in its status.
                 "terminationMessagePolicy": "FallbackToLogsOnError"}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(name), "namespace": namespace,
                         "labels": {**labels, **own}},
            # Kept an hour after it ends, for `kubectl logs`; replaced by the next build.
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": JOB_TTL_SECONDS, "template": {
                "metadata": {"labels": {**labels, "substratus.ai/kind": "Image",
                                        "substratus.ai/name": name}},
                "spec": {"serviceAccountName": SERVICE_ACCOUNT, "restartPolicy": "Never",
                         "containers": [container]}}}}


def run_build(jobs: ClusterJobs, manifest: Mapping[str, Any], what: str) -> None:
    """Runs the kaniko Job to its end; a failure ends with the builder's last lines."""
    done = jobs.run(manifest, BUILD_TIMEOUT_SECONDS)
    if done.succeeded:
        return
    meta = manifest["metadata"]
    lines = done.last_lines[-LAST_LINES:]
    tail = ("; its last lines:\n" + "\n".join(f"  | {line}" for line in lines)) if lines else ""
    raise BuildError(f"building {what} in the cluster failed (kaniko Job "
                     f"{meta['namespace']}/{meta['name']}: {done.message}){tail}",
                     hint=f"kubectl logs -n {meta['namespace']} job/{meta['name']} has the "
                          "whole log while the Job stands (an hour after it ended)")
