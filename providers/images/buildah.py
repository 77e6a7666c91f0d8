"""The builder: buildah, daemonless (`--storage-driver vfs`, `BUILDAH_ISOLATION=chroot`: RUN steps
work as root with no Docker daemon), its storage under the workspace's data folder. A build or
push that fails says so with the builder's last lines; nothing is recorded as built."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from substratus_cli.errors import ProviderError
from substratus_providers.images.context import BuildInputs, dockerfile_path

LAST_LINES = 20
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
        self._run([*command, tag, f"docker://{destination}"], log, f"pushing {destination}")
        return digestfile.read_text().strip()

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
