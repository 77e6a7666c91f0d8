"""What the fault tests share: workspaces of many small Datasets, and the real CLI run as a
subprocess, re-applied until it converges."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from substratus_cli.errors import ExitCode

# An apply under faults may end partially done (a step's retries ran out) and is then run again;
# anything else (an error exit, a traceback) is a bug the faults found.
EXPECTED_APPLY_CODES = (ExitCode.OK, ExitCode.PARTIAL_APPLY)


@dataclasses.dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"substratus {' '.join(self.args)} exited {self.code}\n{self.out}\n{self.err}"


def datasets(root: Path, count: int, environment: str) -> Path:
    """A workspace of `count` Datasets `d000`…, each a folder of one small file of its own."""
    root.mkdir(parents=True)
    (root / "environment.yaml").write_text(environment)
    docs = []
    for n in range(count):
        folder = root / "data" / f"d{n:03}"
        folder.mkdir(parents=True)
        (folder / "rows.csv").write_text(f"id,value\n{n},{n * n}\n")
        docs.append(f"apiVersion: substratus.ai/v1\nkind: Dataset\nmetadata: {{name: d{n:03}}}\n"
                    f"spec:\n  source: {{path: data/d{n:03}}}\n")
    (root / "datasets.yaml").write_text("---\n".join(docs))
    return root


def start(env: Mapping[str, str], *args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "substratus_cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1", **env})


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> Run:
    out, err = proc.communicate(timeout=timeout)
    return Run(tuple(map(str, proc.args[3:])), proc.returncode, out, err)  # type: ignore[index]


def substratus(env: Mapping[str, str], *args: str | Path) -> Run:
    return finish(start(env, *args))


def apply_until_converged(env: Mapping[str, str], workdir: Path, attempts: int,
                          *flags: str) -> list[Run]:
    """Applies until one exits 0, at most `attempts` times; each must exit 0 or 6."""
    runs: list[Run] = []
    for _ in range(attempts):
        run = substratus(env, "apply", "--auto-approve", *flags, workdir)
        runs.append(run)
        assert run.code in EXPECTED_APPLY_CODES, run
        assert "Traceback" not in run.out + run.err, run
        if run.code == ExitCode.OK:
            return runs
    raise AssertionError(f"no convergence after {attempts} applies; the last:\n{runs[-1]}")
