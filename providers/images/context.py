"""A build's identity: a digest over the context's files (path, mode, sha256; `.dockerignore`d
ones left out), the Dockerfile, the build args and the target. Hashing goes through the store
package's stat cache, so an unchanged context is not read again, only `stat`ed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from substratus_artifacts.files import hash_files, list_files
from substratus_artifacts.layout import StoreError
from substratus_artifacts.statcache import StatCache
from substratus_providers.images import dockerignore


class ContextError(ValueError):
    """A build context or Dockerfile that cannot be built from; the message says why."""


@dataclasses.dataclass(frozen=True)
class BuildInputs:
    context: Path  # absolute
    dockerfile: str = "Dockerfile"  # relative to the context
    build_args: Mapping[str, str] = dataclasses.field(default_factory=dict)
    target: str | None = None
    tags: tuple[str, ...] = ()  # pushed beside the identity's own tag


@dataclasses.dataclass(frozen=True)
class Identity:
    digest: str  # sha256:<hex> over everything below
    files: tuple[tuple[str, str, str], ...]  # (path, mode "644"|"755", sha256) of what is sent
    dockerfile_sha256: str
    bytes_hashed: int  # read to compute it (0 with a warm stat cache)
    commit: str | None = None  # for a context from git: the commit it was built from

    @property
    def tag(self) -> str:
        """What the image is pushed as: the identity's first 20 hex digits."""
        return self.digest.removeprefix("sha256:")[:20]


def dockerfile_path(inputs: BuildInputs) -> Path:
    """The Dockerfile, refused when it is absolute, climbs out with `..` or leaves the context
    through a symlink."""
    relative = PurePosixPath(inputs.dockerfile)
    if relative.is_absolute() or ".." in relative.parts:
        raise ContextError(f"the dockerfile {inputs.dockerfile!r} must be a path inside the "
                           "context (relative, without '..')")
    path = inputs.context / relative
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(os.path.realpath(inputs.context)):
        raise ContextError(f"the dockerfile {inputs.dockerfile!r} leaves the context "
                           f"(it resolves to {real})")
    if not real.is_file():
        raise ContextError(f"there is no dockerfile {inputs.dockerfile!r} in {inputs.context}")
    return path


def context_files(inputs: BuildInputs) -> list[tuple[str, Path]]:
    """(relative path, path) of each file the context sends: what `.dockerignore` leaves in,
    the folders it leaves out not even walked. A symlink out of the context is refused."""
    if not inputs.context.is_dir():
        raise ContextError(f"the build context {inputs.context} is not a folder")
    patterns = dockerignore.read(inputs.context)
    try:
        return [(rel, path) for rel, path in
                list_files(inputs.context, lambda rel: dockerignore.prunable(rel, patterns))
                if not dockerignore.ignored(rel, patterns)]
    except StoreError as e:
        raise ContextError(e.message) from None


def identity(inputs: BuildInputs, cache: StatCache | None) -> Identity:
    if not inputs.context.is_dir():
        raise ContextError(f"the build context {inputs.context} is not a folder")
    dockerfile = dockerfile_path(inputs)
    files = context_files(inputs)
    try:
        manifest, stats = hash_files(files, cache)
    except StoreError as e:
        raise ContextError(e.message) from None
    modes = {rel: "755" if os.stat(path).st_mode & 0o111 else "644" for rel, path in files}
    rows = tuple((e.path, modes[e.path], e.sha256) for e in manifest.entries)
    dockerfile_sha = hashlib.sha256(dockerfile.read_bytes()).hexdigest()
    canonical = json.dumps({"files": rows, "dockerfile": dockerfile_sha,
                            "buildArgs": dict(sorted(inputs.build_args.items())),
                            "target": inputs.target, **_tags(inputs)}, separators=(",", ":"))
    digest = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    return Identity(digest, rows, dockerfile_sha, stats.bytes_hashed)


def git_identity(git: Mapping[str, Any], commit: str, inputs: BuildInputs) -> Identity:
    """A build from a git commit: the commit names every file, so nothing is hashed here."""
    canonical = json.dumps({"git": str(git["url"]), "commit": commit,
                            "path": str(git.get("path") or ""),
                            "dockerfile": inputs.dockerfile,
                            "buildArgs": dict(sorted(inputs.build_args.items())),
                            "target": inputs.target, **_tags(inputs)}, separators=(",", ":"))
    digest = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    return Identity(digest, (), "", 0, commit)


def _tags(inputs: BuildInputs) -> dict[str, list[str]]:
    """The extra tags, when there are any: what is pushed is part of what is planned."""
    return {"tags": sorted(inputs.tags)} if inputs.tags else {}


def changed_paths(before: Identity, after: Identity) -> list[str]:
    """The paths added, removed or changed between two identities, sorted."""
    old = {path: (mode, sha) for path, mode, sha in before.files}
    new = {path: (mode, sha) for path, mode, sha in after.files}
    return sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))
