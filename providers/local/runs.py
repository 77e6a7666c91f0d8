"""Workloads on the local runtime: the contract's /content laid out in a run directory, the
process started with its log under `.substratus/runtime/logs/`, its artifacts snapshotted."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from substratus_artifacts.snapshots import SnapshotResult, snapshot_tree
from substratus_artifacts.statcache import StatCache
from substratus_artifacts.store import Store
from substratus_cli import extras, failpoints
from substratus_cli.address import Address
from substratus_cli.errors import ProviderError
from substratus_cli.provider import QUIET, StepProgress
from substratus_cli.secrets import ENV_PREFIX as SECRET_ENV_PREFIX
from substratus_providers.local import processes
from substratus_providers.local.process_book import Entry, ProcessBook

WORKLOADS = "substratus_workloads"
# What substratus's own workload programs import beyond the core install: the `workloads` extra
# of pyproject.toml (tests/unit/test_workload_extra.py checks the two agree). The loader (a url or
# huggingface source) needs nothing of it; a user's spec.command is the user's business.
EXTRA = "workloads"
PROGRAM_MODULES: Mapping[str, tuple[str, ...]] = {
    "scratch": ("torch", "transformers", "tokenizers"),
    "trainer": ("torch", "transformers"),
    "server": ("torch", "transformers"),
    "notebook": ("jupyterlab",),
    "loader": (),
}
# How often a cancellable run looks at its interruption, and how long a stopped one gets to end.
_CANCEL_POLL_S = 0.2
_CANCEL_GRACE_S = 2.0
# This file is providers/local/runs.py: in a source checkout, the repository is two folders up.
_CHECKOUT = Path(__file__).resolve().parents[2]
# How often a running workload's log is read for its latest metric line.
WATCH_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class Workload:
    address: Address
    role: str  # "run", "server", "notebook"
    program: str  # the workload module's name, when no command is given: "trainer", "server"
    command: tuple[str, ...] = ()  # the user's spec.command, run instead of the program
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)  # secrets already resolved
    inputs: Mapping[str, str] = dataclasses.field(default_factory=dict)  # "data"/"model" -> digest

    def argv(self) -> list[str]:
        return list(self.command) if self.command else [sys.executable, "-m",
                                                         f"{WORKLOADS}.{self.program}"]


def require_program(program: str, what: str, command: Sequence[str] = ()) -> None:
    """Refuse to run one of substratus's programs whose libraries this Python lacks, before
    anything is started or recorded: ProviderError naming the `pip install` that adds them.
    Planning never needs them; only applying a step that runs such a program does."""
    if command:
        return
    missing = [m for m in PROGRAM_MODULES.get(program, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise ProviderError(
            f"{what} needs the {EXTRA} extra: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed",
            hint=f"install it (about 3 GB, once): {install_command()}")


def install_command() -> str:
    """The exact command that installs the workloads extra into the Python running this."""
    return extras.install_command(EXTRA, _CHECKOUT)


class Runtime:
    """Lays out content directories, starts workloads and keeps their logs."""

    def __init__(self, root: Path, workdir: Path, store: Store, book: ProcessBook,
                 cache: StatCache) -> None:
        self.root = root  # .substratus/runtime
        self.workdir = workdir
        self.store = store
        self.book = book
        self.cache = cache  # which blobs were hashed since they last changed

    def prepare(self, w: Workload, run_id: str, progress: StepProgress = QUIET) -> Path:
        """The content directory of one run: params.json, data/ and model/ from the store (the
        copies told to `progress`)."""
        content = self._dir("content", w.address) / run_id
        content.mkdir(parents=True, exist_ok=True)
        (content / "params.json").write_text(json.dumps(dict(w.params), indent=2, sort_keys=True))
        for name, digest in w.inputs.items():
            # Copies, checked: a workload (as root, or after chmod) must not write to a blob.
            self.store.materialize(digest, content / name, copies=self.cache, progress=progress)
        if self.cache.dirty:
            self.cache.save()
        (content / "artifacts").mkdir(exist_ok=True)
        return content

    def start(self, w: Workload, content: Path, log: Path, *, port: int | None = None,
              extra_env: Mapping[str, str] | None = None, version: str = "") -> Entry:
        require_program(w.program, f"substratus's {w.program} program", w.command)
        # The contract's PARAM_ variables come from the spec alone, not from the user's shell;
        # secrets reach a workload only through its own spec's references (w.env, resolved), as
        # a secretKeyRef does on Kubernetes, never all of the CLI's SUBSTRATUS_SECRET_*.
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("PARAM_", SECRET_ENV_PREFIX))}
        # Several torch processes share this machine (a training beside the server it will
        # replace): OpenMP threads that spin while idle starve the others, 10x slower training.
        inherited.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env = {**inherited, **self._contract_env(w, content), **w.env, **(extra_env or {})}
        if port is not None:
            env.update(PORT=str(port), HOST="127.0.0.1")
        try:
            ref = processes.spawn(w.argv(), env=env, cwd=self.workdir, log_path=log)
        except OSError as e:
            raise ProviderError(f"cannot start {' '.join(w.argv())}: {e}") from None
        entry = Entry(w.role, ref, str(log), port, version)
        self.book.add(w.address, entry)
        return entry

    def run_to_completion(self, w: Workload, what: str, *, quote_error: bool = False,
                          progress: StepProgress = QUIET,
                          interrupted: threading.Event | None = None) -> SnapshotResult:
        """Run a build, training or loader workload, then snapshot what it wrote to artifacts/.
        With quote_error, a failure the workload explained in one `error:` line is that line
        (the loader's are about the source, not about the run). The workload's latest metric
        line (`step=120 loss=0.41`) is its status on `progress` while it runs. Once
        `interrupted` is set (a download's, at the first Ctrl-C) the workload is stopped and
        this fails."""
        run_id = new_run_id()
        content = self.prepare(w, run_id, progress)
        try:
            entry = self.start(w, content, self.log_path(w.address, run_id, w.program))
            failpoints.hit("local.run.started")
            code = self._wait(entry, interrupted, progress)
            self.book.forget(w.address, [entry])
            if code is None and interrupted is not None and interrupted.is_set():
                raise ProviderError(f"{what} was cancelled (interrupted)",
                                    hint="apply again to fetch it")
            if code != 0:
                tail = processes.log_tail(Path(entry.log))
                said = tail.startswith("error: ") and quote_error
                raise ProviderError(tail[len("error: "):] if said else
                                    f"{what} exited with code {code}: {tail}",
                                    hint=f"see `substratus logs {w.address.short()}`")
            artifacts = content / "artifacts"
            if not any(artifacts.iterdir()):
                raise ProviderError(f"{what} succeeded but wrote nothing to its artifacts directory")
            return snapshot_tree(artifacts, self.store, None, progress)
        finally:
            shutil.rmtree(content, ignore_errors=True)

    @staticmethod
    def _wait(entry: Entry, interrupted: threading.Event | None,
              progress: StepProgress = QUIET) -> int | None:
        """The workload's exit code, telling `progress` each new metric line it logs meanwhile;
        None once it was stopped because `interrupted` was set."""
        if interrupted is None and progress is QUIET:
            return processes.wait(entry.ref)
        stop = interrupted if interrupted is not None else threading.Event()
        read_at = time.monotonic() + WATCH_SECONDS
        partial = b""  # a line still being written
        with open(entry.log, "rb") as log:
            while not stop.wait(_CANCEL_POLL_S):
                if processes.exit_code(entry.ref) is not None or not processes.alive(entry.ref):
                    return processes.wait(entry.ref)
                if progress is QUIET or time.monotonic() < read_at:
                    continue
                read_at += WATCH_SECONDS
                text = partial + log.read()
                whole, _, partial = text.rpartition(b"\n")
                metric = latest_metric(whole.decode(errors="replace"))
                if metric:
                    progress.status(metric)
        processes.stop(entry.ref, grace=_CANCEL_GRACE_S)
        return None

    def log_path(self, address: Address, run_id: str, role: str) -> Path:
        return self._dir("logs", address) / f"{run_id}-{role}.log"

    def latest_logs(self, address: Address) -> list[Path]:
        """The newest run's logs (a server version has one log a replica)."""
        logs = sorted(self._dir("logs", address).glob("*.log")) if self._dir(
            "logs", address).is_dir() else []
        if not logs:
            return []
        newest = logs[-1].name.split("-")[0]
        return [p for p in logs if p.name.startswith(newest)]

    def follow(self, paths: list[Path], alive: Any) -> Iterator[str]:
        """Yield the lines of these logs, then new ones while alive() says the writer runs."""
        handles = [open(p, errors="replace") for p in paths]  # noqa: SIM115 - closed below
        try:
            while True:
                got = False
                for h in handles:
                    for line in h:
                        got = True
                        yield line.rstrip("\n")
                if not got:
                    if not alive():
                        return
                    time.sleep(0.2)
        finally:
            for h in handles:
                h.close()

    def clear(self, address: Address) -> None:
        """Forget an object's run directories and logs (on delete)."""
        for area in ("content", "logs"):
            shutil.rmtree(self._dir(area, address), ignore_errors=True)

    def _dir(self, area: str, address: Address) -> Path:
        return self.root / area / address.kind / address.namespace / address.name

    @staticmethod
    def _contract_env(w: Workload, content: Path) -> dict[str, str]:
        env = {"SUBSTRATUS_CONTENT": str(content), "PYTHONUNBUFFERED": "1",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        for key, value in w.params.items():
            # JSON, so the string "3" stays a string when the workload decodes it.
            env[f"PARAM_{key.upper()}"] = json.dumps(value)
        return env


def latest_metric(text: str) -> str | None:
    """The last line of `text` that reports a training step (`step=120 epoch=1 loss=0.41`), as
    the workloads' logfmt writes it."""
    return next((line.strip() for line in reversed(text.splitlines())
                 if line.startswith("step=") or " step=" in line), None)


def new_run_id() -> str:
    # Sortable by time, so the newest run's logs come last.
    return time.strftime("%Y%m%dT%H%M%S") + f"{time.time_ns() % 10**9:09d}" + secrets.token_hex(2)
