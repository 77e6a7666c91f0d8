"""Detached workload processes for the local runtime: start them so they outlive the CLI, tell
whether a recorded one still runs (pid reuse and zombies included), stop them with their children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PROC = Path("/proc")
_POLL_S = 0.05
_KILL_WAIT_S = 5.0  # after SIGKILL only the kernel is left to act; do not wait forever on it
_TAIL_BYTES = 64 * 1024

# Popen objects of the processes this interpreter spawned. Keeping them stops Popen's finalizer
# from reaping them behind our back (it would lose the exit code), and lets alive() reap zombies.
_children: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}


@dataclass(frozen=True)
class ProcessRef:
    """One incarnation of a process: its pid and a token that changes when the pid is reused."""

    pid: int
    started: str

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "started": self.started}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessRef:
        return cls(int(data["pid"]), str(data["started"]))


def spawn(argv: Sequence[str], *, env: Mapping[str, str] | None, cwd: str | os.PathLike[str],
          log_path: str | os.PathLike[str]) -> ProcessRef:
    """Start argv in a session of its own (so neither the CLI's exit nor the terminal's Ctrl-C
    reaches it), stdout and stderr appended to log_path."""
    log = Path(log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    # A workload's log may hold what it prints of its inputs: readable by its owner only.
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(descriptor, 0o600)
    with open(descriptor, "ab") as out:
        child = subprocess.Popen(
            list(argv), env=None if env is None else dict(env), cwd=cwd,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True)
    # Our unreaped child cannot vanish before this read: at worst it is a zombie, still listed.
    probe = _probe(child.pid)
    ref = ProcessRef(child.pid, probe[1] if probe else "")
    _children[child.pid] = (ref.started, child)
    return ref


def lookup(pid: int) -> ProcessRef | None:
    """The current incarnation of pid, or None when no such process exists."""
    probe = _probe(pid)
    return ProcessRef(pid, probe[1]) if probe else None


def alive(ref: ProcessRef) -> bool:
    """True while this very process runs: not exited, not a zombie, its pid not reused."""
    _reap(ref.pid)
    probe = _probe(ref.pid)
    return probe is not None and not probe[0].startswith("Z") and probe[1] == ref.started


def exit_code(ref: ProcessRef) -> int | None:
    """How a process this interpreter spawned ended (negative: killed by that signal); None while
    it runs or when it is not our child, since only the parent learns the code."""
    started, child = _children.get(ref.pid, ("", None))
    if child is None or started != ref.started:
        return None
    return child.poll()


def wait(ref: ProcessRef, poll: float = 0.1) -> int | None:
    """Block until the process ends; its exit code when it is our child, else None."""
    started, child = _children.get(ref.pid, ("", None))
    if child is not None and started == ref.started:
        return child.wait()
    while alive(ref):
        time.sleep(poll)
    return None


def stop(ref: ProcessRef, grace: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds; returns once it is gone.
    A process that is already gone, or whose pid now belongs to another, is left alone."""
    if not _group_is_ours(ref):
        _reap(ref.pid)
        return
    _signal_group(ref.pid, signal.SIGTERM)
    if _wait_group_gone(ref.pid, grace):
        return
    _signal_group(ref.pid, signal.SIGKILL)
    _wait_group_gone(ref.pid, _KILL_WAIT_S)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (another process may still take it before we do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def log_tail(path: str | os.PathLike[str], lines: int = 5) -> str:
    """The last non-empty lines of a log; only the last `error: ...` line when there is one,
    because that is what a workload prints when it rejects its parameters."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _TAIL_BYTES))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    errors = [line for line in kept if line.startswith("error:")]
    return errors[-1] if errors else "\n".join(kept[-lines:])


def wait_healthy(url: str, ref: ProcessRef, log_path: str | os.PathLike[str],
                 timeout: float) -> str | None:
    """Poll GET url until it answers 200 (None), the process exits or `timeout` seconds pass
    (a one-line reason with the log's tail)."""
    deadline = time.monotonic() + timeout
    last_status: int | None = None
    while True:
        if not alive(ref):
            return _with_tail(_describe_exit(ref), log_path)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        status = _http_status(url, min(1.0, remaining))
        if status == 200:
            return None
        last_status = status if status is not None else last_status
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    if last_status is None:
        return _with_tail(f"no answer from {url} after {timeout:g}s", log_path)
    return _with_tail(f"{url} still answers HTTP {last_status} after {timeout:g}s", log_path)


def _with_tail(message: str, log_path: str | os.PathLike[str]) -> str:
    tail = log_tail(log_path)
    return f"{message}: {tail}" if tail else message


def _describe_exit(ref: ProcessRef) -> str:
    code = exit_code(ref)
    if code is None:
        return "exited"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


# Health checks go to localhost: a proxy from the environment must not see them.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_status(url: str, timeout: float) -> int | None:
    """The HTTP status url answers with, None when nothing answers."""
    try:
        with _opener.open(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return None


# Read from /proc (ps elsewhere) rather than through psutil, on purpose: the start token is
# recorded in process books and must keep its format (psutil's create_time is another one, so a
# process recorded before a switch would read as gone and be started twice, the old one orphaned
# on its port), psutil has no process-group id for the group scan below, and it would be a
# compiled dependency of the core install for about 20 lines.
def _probe(pid: int) -> tuple[str, str] | None:
    """(state, start token) of pid, None when there is no such process."""
    if _PROC.is_dir():
        return _probe_proc(pid)
    return _probe_ps(pid)


def _probe_proc(pid: int) -> tuple[str, str] | None:
    fields = _stat_fields(pid)
    # Fields after the command name start at field 3 (state); starttime is field 22.
    return (fields[0], fields[19]) if fields else None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    # The command name may hold spaces and parentheses: split after its last ')'.
    return text[text.rindex(")") + 2:].split()


def _probe_ps(pid: int) -> tuple[str, str] | None:
    """macOS and other systems without /proc: ps's state and full start time."""
    try:
        out = subprocess.run(["ps", "-o", "stat=", "-o", "lstart=", "-p", str(pid)],
                             capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    parts = out.strip().split(None, 1)
    return (parts[0], " ".join(parts[1].split())) if len(parts) == 2 else None


def _reap(pid: int) -> None:
    """Collect pid's exit status if it is our exited child, so it stops being a zombie."""
    if pid in _children:
        _children[pid][1].poll()
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _group_is_ours(ref: ProcessRef) -> bool:
    probe = _probe(ref.pid)
    if probe is not None:
        return probe[1] == ref.started
    # The leader is gone but its group may live on in its children. The kernel does not hand
    # out a pid still used as a group id, so a group by that id can only be the same one.
    return _group_running(ref.pid)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(pgid)
        if not _group_running(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)


def _group_running(pgid: int) -> bool:
    """Whether any member of the group still runs. Zombies do not count: a child orphaned into
    a container whose init never reaps would otherwise keep its group 'running' forever."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not _PROC.is_dir():
        return True
    return any(_member_running(entry, pgid) for entry in os.listdir(_PROC) if entry.isdigit())


def _member_running(entry: str, pgid: int) -> bool:
    fields = _stat_fields(int(entry))
    # Field 5 (pgrp) sits two after the state.
    return fields is not None and fields[2] == str(pgid) and not fields[0].startswith("Z")

