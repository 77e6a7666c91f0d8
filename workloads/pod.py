"""The container entrypoint on Kubernetes: fetch the inputs the environment names from the artifact
store, run the workload, push what it wrote to artifacts, and leave the snapshot digest (or why it
failed) in the termination log, which the CLI reads back.

    python -m substratus_workloads.pod PROGRAM [ARGS...]  # scratch trainer loader server notebook
    python -m substratus_workloads.pod -- COMMAND [ARGS...]
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, NoReturn

from substratus_artifacts import snapshots
from substratus_artifacts.layout import StoreError, parse_url, ref_key
from substratus_artifacts.store import open_store
from substratus_workloads import contract, logfmt

PROGRAMS = ("scratch", "trainer", "loader", "server", "notebook")
INPUT_VAR = re.compile(r"SUBSTRATUS_INPUT_([A-Z0-9_]+)_URL")
TERMINATION_LOG = "/dev/termination-log"
TERMINATION_LOG_LIMIT = 4096  # the bytes of a termination message Kubernetes keeps
USAGE = ("usage: python -m substratus_workloads.pod PROGRAM [ARGS...] | -- COMMAND [ARGS...] "
         f"(PROGRAM: {', '.join(PROGRAMS)})")
STORE_EXIT = 1


class PodError(Exception):
    """The pod cannot go on; `code` is its exit status and the message its termination message."""

    def __init__(self, message: str, code: int = STORE_EXIT) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def main(argv: Sequence[str] | None = None) -> NoReturn:
    # As PID 1 a process ignores signals it has no handler for; a stop while fetching or pushing
    # leaves nothing to clean up (a ref is written last), so end at once.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    try:
        raise SystemExit(run(list(sys.argv[1:] if argv is None else argv)))
    except StoreError as e:
        _fail(PodError(e.message))
    except PodError as e:
        _fail(e)


def run(argv: list[str]) -> int:
    name, command = program(argv)
    artifacts_url = os.environ.get("SUBSTRATUS_ARTIFACTS_URL") or None
    if artifacts_url:
        _check_artifacts_store(artifacts_url)  # fail now, not after hours of training
    for role, url in sorted(inputs(os.environ).items()):
        fetch_input(role, url)
    if artifacts_url is None:
        # Nothing to do once it ends: become the program, so signals reach it directly.
        sys.stdout.flush()
        sys.stderr.flush()
        _exec(name, command)
    out = contract.artifacts_dir()
    out.mkdir(parents=True, exist_ok=True)
    run_job(name, command)
    started = time.monotonic()
    try:
        pushed = snapshots.push(out, artifacts_url)
    except StoreError as e:
        raise PodError(f"cannot push the artifacts to {artifacts_url}: {e.message}") from None
    logfmt.log("pushed", ref=artifacts_url, digest=pushed.digest, files=len(pushed.manifest),
               bytes=pushed.manifest.total_size, blobs_uploaded=pushed.blobs_copied,
               bytes_uploaded=pushed.bytes_copied, seconds=round(time.monotonic() - started, 2))
    write_termination_log(pushed.digest)
    return 0


def program(argv: list[str]) -> tuple[str, list[str]]:
    """(a name for messages, the command to run)."""
    if argv and argv[0] == "--":
        if len(argv) == 1:
            raise PodError(f"no command after `--`; {USAGE}", contract.USAGE_EXIT)
        return os.path.basename(argv[1]), argv[1:]
    if not argv or argv[0] not in PROGRAMS:
        given = f"unknown program {argv[0]!r}; " if argv else ""
        raise PodError(given + USAGE, contract.USAGE_EXIT)
    return argv[0], [sys.executable, "-m", f"substratus_workloads.{argv[0]}", *argv[1:]]


def inputs(environ: Mapping[str, str]) -> dict[str, str]:
    """{role: url} from SUBSTRATUS_INPUT_<ROLE>_URL (DATA, MODEL, ...); empty ones left out."""
    found = {}
    for var, url in environ.items():
        match = INPUT_VAR.fullmatch(var)
        if match and url:
            found[match[1].lower()] = url
    return found


def input_dir(role: str) -> Path:
    """Where the workloads read a role: data and model as contract.py says, others by name."""
    if role == "data":
        return contract.data_dir()
    if role == "model":
        return contract.model_dir()
    return contract.content_dir() / role


def fetch_input(role: str, url: str) -> None:
    started = time.monotonic()
    dest = input_dir(role)
    try:
        fetched = snapshots.fetch(url, dest)
    except StoreError as e:
        raise PodError(f"cannot fetch the {role} input: {e.message}") from None
    logfmt.log("fetched", role=role, url=url, digest=fetched.digest,
               files=len(fetched.manifest), bytes=fetched.manifest.total_size, blobs=fetched.blobs, to=str(dest),
               seconds=round(time.monotonic() - started, 2))


def _check_artifacts_store(url: str) -> None:
    location = parse_url(url)
    if location.ref is None:
        raise PodError(f"SUBSTRATUS_ARTIFACTS_URL must name a ref (<root>/refs/<name>), got {url}",
                       contract.USAGE_EXIT)
    # One metadata read proves the store is reachable with these credentials.
    open_store(location.root).backend.exists(ref_key(location.ref))


def _exec(name: str, command: list[str]) -> NoReturn:
    try:
        os.execvp(command[0], command)
    except OSError as e:
        raise PodError(f"cannot run {name}: {e.strerror or e}",
                       127 if isinstance(e, FileNotFoundError) else 126) from None


def run_job(name: str, command: list[str]) -> None:
    """Run the program as a child, forwarding SIGTERM and SIGINT; PodError unless it exits 0."""
    try:
        # Its own process group: a terminal's Ctrl-C reaches it once, through us.
        child = subprocess.Popen(command, stderr=subprocess.PIPE, process_group=0)
    except OSError as e:
        raise PodError(f"cannot run {name}: {e.strerror or e}",
                       127 if isinstance(e, FileNotFoundError) else 126) from None
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        child.send_signal(signum)  # a no-op once it has exited

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    assert child.stderr is not None
    tee = _StderrTee(child.stderr)
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        tee.join()
    if code == 0 and not received:
        return
    raise _job_failure(name, code, received, tee)


def _job_failure(name: str, code: int, received: list[int], tee: _StderrTee) -> PodError:
    exit_code = code if code > 0 else 128 + (-code or received[0])
    if tee.last_error is not None:
        return _Reported(tee.last_error, exit_code)
    if code < 0:
        why = f"{name} was killed by {signal.Signals(-code).name}"
        if -code == signal.SIGKILL:
            why += " (out of memory?)"
    elif received:
        why = (f"{name} stopped on {signal.Signals(received[0]).name} before its artifacts "
               "were pushed")
    else:
        why = f"{name} exited with code {code}"
    if tee.last_line:
        why += f"; its last words: {tee.last_line}"
    return PodError(why, exit_code)


class _Reported(PodError):
    """A failure the program already printed as `error: ...` on stderr."""


class _StderrTee:
    """Copies the child's stderr to ours as it comes, keeping its last line and last `error:`
    line: the termination message when the child fails."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.last_line = ""
        self.last_error: str | None = None
        self.thread = threading.Thread(target=self._copy, daemon=True)
        self.thread.start()

    def _copy(self) -> None:
        out = sys.stderr.buffer
        for raw in self.stream:
            out.write(raw)
            out.flush()
            line = raw.decode("utf-8", errors="replace").strip()
            if line:
                self.last_line = line[:500]
            if line.startswith("error: "):
                self.last_error = line[len("error: "):]

    def join(self) -> None:
        # A grandchild that kept stderr open must not hold the pod up.
        self.thread.join(timeout=5)


def write_termination_log(message: str) -> None:
    """The message Kubernetes reports for this container; skipped where there is no such file's
    folder (a run outside Kubernetes), and never a reason to fail."""
    path = Path(os.environ.get("SUBSTRATUS_TERMINATION_LOG", TERMINATION_LOG))
    if not path.parent.is_dir():
        return
    data = message.encode("utf-8")[:TERMINATION_LOG_LIMIT]
    with contextlib.suppress(OSError):
        path.write_bytes(data)


def _stop(signum: int, _frame: object) -> None:
    write_termination_log(f"error: stopped by {signal.Signals(signum).name}")
    os._exit(128 + signum)


def _fail(error: PodError) -> NoReturn:
    line = "error: " + " ".join(error.message.split())  # one line, whatever a library said
    if not isinstance(error, _Reported):
        print(line, file=sys.stderr, flush=True)
    write_termination_log(line)
    raise SystemExit(error.code)


if __name__ == "__main__":
    main()
