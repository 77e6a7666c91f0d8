"""The binaries of the test control plane: which versions are pinned, where build.sh puts them,
and building them when they are missing."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")

Log = Callable[[str], None]


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message says why and what to do."""


def stderr_log(message: str) -> None:
    print(f"controlplane: {message}", file=sys.stderr, flush=True)


def versions() -> dict[str, str]:
    """The pinned versions, read from the wrapper modules' go.mod files (as build.sh does)."""
    return {
        "kubernetes": _required_version(HERE / "kubernetes" / "go.mod", "k8s.io/kubernetes"),
        "etcd": _required_version(HERE / "etcd" / "go.mod", "go.etcd.io/etcd/server/v3"),
        "kwok": _required_version(HERE / "kwok" / "go.mod", "sigs.k8s.io/kwok"),
    }


def _required_version(gomod: Path, module: str) -> str:
    pattern = rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)"
    found = re.search(pattern, gomod.read_text(), re.MULTILINE)
    if not found:
        raise ControlPlaneError(f"{gomod} does not require {module}")
    return found.group(1)


def bin_dir() -> Path:
    """Where build.sh puts the binaries of the pinned versions."""
    v = versions()
    root = Path(os.environ.get("SUBSTRATUS_CACHE") or Path.home() / ".cache" / "substratus")
    key = f"kubernetes-{v['kubernetes']}_etcd-{v['etcd']}_kwok-{v['kwok']}"
    return root / "controlplane" / key / "bin"


def ensure_binaries(log: Log = stderr_log) -> Path:
    """The bin directory, built first with build.sh if a binary is missing (unless
    SUBSTRATUS_NO_BUILD is set, where a missing binary is an error saying how to build)."""
    directory = bin_dir()
    missing = [b for b in BINARIES if not os.access(directory / b, os.X_OK)]
    if not missing:
        return directory
    how = (f"Build them once with `{BUILD_SCRIPT.relative_to(HERE.parent.parent)}` (needs Go 1.26 "
           "or newer and the Go module proxy; about 8 minutes on 2 cores).")
    if os.environ.get("SUBSTRATUS_NO_BUILD"):
        raise ControlPlaneError(f"the test control plane is not built: {', '.join(missing)} "
                                f"missing in {directory}, and SUBSTRATUS_NO_BUILD is set. {how}")
    build_log = directory.parent / "build.log"
    build_log.parent.mkdir(parents=True, exist_ok=True)
    # One build at a time: a second test module (or a second pytest) waits for the first, then
    # finds the binaries there.
    with (directory.parent / "build.lock").open("a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if all(os.access(directory / b, os.X_OK) for b in BINARIES):
            return directory
        log(f"building the test control plane ({', '.join(missing)} missing in {directory}); "
            f"this happens once per version and takes about 8 minutes on 2 cores; log: {build_log}")
        started = time.monotonic()
        code = run_build(["bash", str(BUILD_SCRIPT)], build_log)
    if code != 0:
        raise ControlPlaneError(f"building the test control plane failed (exit {code})"
                                f"; from {build_log}:\n{excerpt(build_log)}")
    log(f"built the test control plane in {time.monotonic() - started:.0f} s")
    return directory


def run_build(command: list[str], log_path: Path) -> int:
    """Run a build in a process group of its own, logging to `log_path`; its exit code. However
    the wait ends (an error, Ctrl-C, a test timeout's signal), the whole group is killed: no
    `go build` is left running as an orphan to race the next build. A build whose parent is
    killed outright gets SIGKILL from the kernel (its children then finish their step alone)."""
    def die_with_parent() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    with log_path.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=die_with_parent)
        try:
            return proc.wait()
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):  # what the build left behind
                os.killpg(proc.pid, signal.SIGKILL)


def excerpt(path: Path, head: int = 5, tail: int = 25) -> str:
    """The start of a log (where a flag error is, before the usage text) and its end (where a
    fatal error is)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    if len(lines) <= head + tail:
        return "\n".join(lines)
    return "\n".join([*lines[:head], "[...]", *lines[-tail:]])
