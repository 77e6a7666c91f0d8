"""Live progress as a person sees it: `substratus apply` of a 1 GiB dataset snapshot on a real
terminal (Debian's tmux, read back with `tmux capture-pane`) draws a progress bar and prints
Terraform's heartbeat; piped, the same apply prints plain lines and no escape code; a training
workload's latest `step=` line rides on the heartbeat.

The copy is slowed with a failpoint (a sleep per 1 MiB chunk) so that it outlasts the 10 s
heartbeat on any machine: nothing here measures time."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

GIB = 1 << 30
DATASET = "apiVersion: substratus.ai/v1\nkind: Dataset\nmetadata: {name: big}\n" \
          "spec: {source: {path: big.bin}}\n"
# A bar as rich draws it, read back without its colours: label, bar, bytes.
BAR = re.compile(r"Dataset/default/big: copying +[━╸╺ ]*[━╸╺][━╸╺ ]* +[\d.]+/[\d.]+ [KMG]iB")
HEARTBEAT = re.compile(r"Dataset/default/big: Still creating\.\.\. \[\d+s elapsed\] copying "
                       r"[\d.]+ [KMG]iB of [\d.]+ [KMG]iB \(\d+%, [\d.]+ [KMG]iB/s\)")


def substratus(*args: str) -> list[str]:
    return [sys.executable, "-m", "substratus_cli", *args]


def plain_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "SUBSTRATUS_LOG",
                        "SUBSTRATUS_FAILPOINTS")}
    return {**env, **extra}


@pytest.fixture
def big_dataset(tmp_path: Path) -> Iterator[Path]:
    """A workspace with one 1 GiB file (sparse: made at no cost, read as zeros)."""
    with open(tmp_path / "big.bin", "wb") as f:
        f.truncate(GIB)
    (tmp_path / "big.yaml").write_text(DATASET)
    yield tmp_path
    for blob in (tmp_path / ".substratus").rglob("*"):  # the store's copy: read-only, 1 GiB
        if blob.is_file():
            blob.chmod(0o644)
            blob.unlink()


class Tmux:
    """A tmux server of this test's own (its own socket, no user config)."""

    def __init__(self, socket: Path) -> None:
        self.binary = shutil.which("tmux")
        if self.binary is None:
            pytest.fail("tmux is missing: tests/setup.sh installs it (apt-get install tmux)")
        self.socket = socket

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run([str(self.binary), "-S", str(self.socket), "-f", "/dev/null",
                               *args], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def pane(self) -> str:
        """What the pane shows, with its scrollback, as text (no attributes)."""
        return self("capture-pane", "-p", "-J", "-S", "-", "-t", "progress")

    def kill(self) -> None:
        subprocess.run([str(self.binary), "-S", str(self.socket), "kill-server"],
                       capture_output=True, timeout=60)


def test_apply_of_a_1gib_snapshot_on_a_terminal_shows_a_bar_and_the_heartbeat(
        big_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    scratch = tmp_path_factory.mktemp("tmux")
    exit_file = scratch / "exit"
    command = (f"cd {shlex.quote(str(big_dataset))} && "
               f"{shlex.join(substratus('apply', '--auto-approve', '.'))}; "
               f"echo $? > {shlex.quote(str(exit_file))}")
    tmux = Tmux(scratch / "socket")
    env = plain_env(SUBSTRATUS_FAILPOINTS="progress.copying=sleep(0.012)", TERM="xterm-256color")
    try:
        # The pane stays after the command ends, so its last screen can be read.
        tmux("new-session", "-d", "-s", "progress", "-x", "160", "-y", "48", command, ";",
             "set-option", "-t", "progress", "remain-on-exit", "on", env=env)
        bars = []
        while not exit_file.exists():  # pytest's timeout stops a hang
            screen = tmux.pane()
            bars += [line for line in screen.splitlines() if BAR.search(line)]
            time.sleep(0.25)
        final = tmux.pane()
    finally:
        tmux.kill()
    assert exit_file.read_text().strip() == "0", final
    assert bars, f"no progress bar was ever on the screen; the last screen:\n{final}"
    assert HEARTBEAT.search(final), final
    assert "Dataset/default/big: copied 1.0 GiB in" in final
    assert "Dataset/default/big: Creation complete after" in final
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in final


def test_a_piped_apply_prints_plain_progress_lines_without_escape_codes(tmp_path: Path) -> None:
    with open(tmp_path / "big.bin", "wb") as f:
        f.truncate(64 << 20)
    (tmp_path / "big.yaml").write_text(DATASET)
    # 64 chunks of 1 MiB, each held 0.2 s: the copy outlasts one heartbeat.
    env = plain_env(SUBSTRATUS_FAILPOINTS="progress.copying=sleep(0.2)", TERM="xterm-256color")
    done = subprocess.run(substratus("apply", "--auto-approve", str(tmp_path)),
                          capture_output=True, env=env, timeout=600)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, out + err
    assert HEARTBEAT.search(out), out
    assert "Dataset/default/big: copied 64.0 MiB in" in out
    assert "\x1b" not in out + err and "\r" not in out + err


def test_a_training_workloads_latest_metric_rides_on_the_heartbeat(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "config.json").write_text("{}")
    (tmp_path / "rows.jsonl").write_text('{"text": "a"}\n')
    script = ("echo loading; echo 'step=1 epoch=0 loss=2.5'; echo 'step=2 epoch=0 loss=0.41'; "
              "echo saving; sleep 12; echo w > $SUBSTRATUS_CONTENT/artifacts/w.bin")
    (tmp_path / "models.yaml").write_text(f"""\
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {{name: rows}}
spec: {{source: {{path: rows.jsonl}}}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {{name: base}}
spec: {{source: {{path: weights}}}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {{name: tuned}}
spec:
  training: {{baseModel: {{name: base}}, dataset: {{name: rows}}}}
  command: ["sh", "-c", {json.dumps(script)}]
""")
    done = subprocess.run(substratus("apply", "--auto-approve", str(tmp_path)),
                          capture_output=True, env=plain_env(), timeout=600)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "Model/default/tuned: Still creating... [10s elapsed] step=2 epoch=0 loss=0.41" \
        in out.splitlines(), out
