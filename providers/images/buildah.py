"""The builder: buildah, daemonless (`--storage-driver vfs`, `BUILDAH_ISOLATION=chroot`: RUN steps
work as root with no Docker daemon), its storage under the workspace's data folder. A build or
push that fails says so with the builder's last lines; nothing is recorded as built."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from substratus_cli.errors import ProviderError
from substratus_providers.images.context import BuildInputs, dockerfile_path

LAST_LINES = 20
# A push failing with one of these is tried again, PUSH_TRIES times in all (buildah's own
# --retry does not take an unexpected 5xx for a passing failure).
TEMPORARY = re.compile(r"HTTP status: (?:5\d\d|429)[^\n]*|connection reset by peer|"
                       r"unexpected EOF|i/o timeout")
PUSH_TRIES = 3
PUSH_RETRY_DELAY = 1.0
# What buildah's push says when the registry refuses the credentials (401/403).
AUTH_WORDS = ("unauthorized", "authentication required", "denied", "403 forbidden")
logger = logging.getLogger(__name__)
INSTALL_HINT = ("install buildah (Debian/Ubuntu: apt-get install buildah; Fedora: dnf install "
                "buildah), which builds images without a Docker daemon")


class BuildError(ProviderError):
    """A build or a push that failed; its message ends with the builder's last lines."""


@dataclasses.dataclass(frozen=True)
class Buildah:
    program: str
    root: Path  # image storage; runroot and registries.conf beside it
    # Registries spoken to over plain HTTP (a loopback registry for tests or a local one).
    insecure: tuple[str, ...] = ()

    @classmethod
    def find(cls, root: Path, insecure: Sequence[str] = ()) -> Buildah:
        program = shutil.which("buildah")
        if program is None:
            raise ProviderError("no image builder on PATH: substratus builds with buildah",
                                hint=INSTALL_HINT)
        return cls(program, root, tuple(insecure))

    def build(self, inputs: BuildInputs, tag: str, log: Path) -> str:
        """Builds `inputs` as `tag` (local storage); returns the image id."""
        iid = log.with_suffix(".iid")
        command = ["bud", "--layers", "-f", str(dockerfile_path(inputs)), "-t", tag,
                   "--iidfile", str(iid)]
        for key, value in sorted(inputs.build_args.items()):
            command += ["--build-arg", f"{key}={value}"]
        if inputs.target:
            command += ["--target", inputs.target]
        self._run([*command, str(inputs.context)], log, f"building {tag}")
        return iid.read_text().strip()

    def push(self, tag: str, destination: str, log: Path, authfile: Path | None = None) -> str:
        """Pushes `tag` to `destination` (host/repo:tag); returns the manifest digest the
        registry stored, as buildah computed it for the upload."""
        digestfile = log.with_suffix(".digest")
        command = ["push", "--digestfile", str(digestfile)]
        if authfile is not None:
            command += ["--authfile", str(authfile)]
        if destination.split("/", 1)[0] in self.insecure:
            command.append("--tls-verify=false")
        try:
            self._push([*command, tag, f"docker://{destination}"], log, destination)
        except BuildError as e:
            if not any(word in e.message.lower() for word in AUTH_WORDS):
                raise
            host = destination.split("/", 1)[0]
            raise BuildError(f"registry {host} refused the push: {e.message}",
                             hint=f"log in to {host} (`docker login {host}`, or for Google's "
                                  "registries `gcloud auth configure-docker`), or give the "
                                  f"account push access to the repository; {e.hint}") from None
        return digestfile.read_text().strip()

    def _push(self, args: list[str], log: Path, destination: str) -> None:
        """A push, made again (blobs already there are skipped) while it fails with what a
        registry answers when it is briefly unwell: a 5xx, a 429, a connection reset."""
        for attempt in range(1, PUSH_TRIES + 1):
            try:
                self._run(args, log, f"pushing {destination}")
                return
            except BuildError as e:
                if attempt == PUSH_TRIES or not TEMPORARY.search(e.message):
                    raise
                delay = PUSH_RETRY_DELAY * attempt
                logger.warning("pushing %s failed for a reason that passes (%s); trying again in "
                             "%.0f s (try %d of %d)", destination,
                             TEMPORARY.search(e.message).group(0),  # type: ignore[union-attr]
                             delay, attempt + 1, PUSH_TRIES)
                time.sleep(delay)

    def _run(self, args: list[str], log: Path, what: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [self.program, "--storage-driver", "vfs", "--root", str(self.root / "storage"),
                   "--runroot", str(self.root / "run"), *args]
        with log.open("ab") as out:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, env=self._environment())
        if done.returncode != 0:
            lines = log.read_text(errors="replace").splitlines()[-LAST_LINES:]
            tail = "\n".join(f"  | {line}" for line in lines)
            raise BuildError(f"{what} failed (buildah exited with {done.returncode}); its last "
                             f"lines:\n{tail}", hint=f"the whole log is {log}")

    def _environment(self) -> dict[str, str]:
        conf = self.root / "registries.conf"
        entries = "".join(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n\n'
                          for host in self.insecure)
        conf.write_text(f"unqualified-search-registries = []\n\n{entries}")
        return {**os.environ, "BUILDAH_ISOLATION": "chroot",
                "CONTAINERS_REGISTRIES_CONF": str(conf)}
