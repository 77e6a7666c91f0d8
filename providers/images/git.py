"""Build contexts from git: a branch, tag or ref resolved to a commit at plan time (`git
ls-remote`, nothing cloned), and that commit's tree checked out for the build (a bare mirror
cached per repository under the workspace's data folder, so a rebuild fetches only what is new)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

from substratus_providers.images.context import ContextError

_COMMIT = re.compile(r"[0-9a-f]{40}")


def resolve(url: str, *, branch: str | None = None, tag: str | None = None,
            ref: str | None = None) -> str:
    """The commit a branch, tag or ref of `url` names now (HEAD when none is given)."""
    if ref and _COMMIT.fullmatch(ref):
        return ref
    if branch:
        wanted = [f"refs/heads/{branch}"]
    elif tag:
        wanted = [f"refs/tags/{tag}^{{}}", f"refs/tags/{tag}"]  # an annotated tag's commit first
    else:
        wanted = [ref or "HEAD"]
    answer = _git("ls-remote", url, *wanted, what=f"read the refs of {url}")
    found: dict[str, str] = {}
    for line in answer.splitlines():
        commit, _, name = line.partition("\t")
        found[name] = commit
    for name in wanted:
        if name in found:
            return found[name]
    raise ContextError(f"{url} has no {'branch' if branch else 'tag' if tag else 'ref'} "
                       f"{branch or tag or ref or 'HEAD'}")


def checkout(url: str, commit: str, cache: Path, into: Path) -> None:
    """The files of `commit` written under `into` (no .git), fetched into a bare mirror kept in
    `cache` first."""
    mirror = cache / hashlib.sha256(url.encode()).hexdigest()[:16]
    if not (mirror / "HEAD").exists():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "--bare", "-q", str(mirror), what=f"make a mirror of {url}")
    _git("-C", str(mirror), "fetch", "-q", "--no-tags", url, commit, what=f"fetch {commit} of {url}")
    with tempfile.TemporaryFile() as archive:
        done = subprocess.run(["git", "-C", str(mirror), "archive", "--format=tar", commit],
                              stdout=archive, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise ContextError(f"cannot check out {commit} of {url}: "
                               f"{done.stderr.decode(errors='replace').strip()}")
        archive.seek(0)
        into.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=archive) as tar:
            tar.extractall(into, filter="data")  # refuses links and paths out of `into`


def _git(*args: str, what: str) -> str:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=300,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except FileNotFoundError:
        raise ContextError("git is not installed: builds from git need it "
                           "(apt-get install git)") from None
    except subprocess.TimeoutExpired:
        raise ContextError(f"cannot {what}: git did not answer within 300 s") from None
    if done.returncode != 0:
        raise ContextError(f"cannot {what}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout

