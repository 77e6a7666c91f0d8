"""--no-color and NO_COLOR on a real terminal (a pty): rich writes no escape code at all, bold
included; without them the same commands are coloured (the control). -v/--verbose and
SUBSTRATUS_LOG are global options, accepted before and after the command."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

DATASET = "apiVersion: substratus.ai/v1\nkind: Dataset\nmetadata: {name: small}\n" \
          "spec: {source: {path: small.txt}}\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "small.txt").write_text("hello\n")
    (tmp_path / "small.yaml").write_text(DATASET)
    return tmp_path


def on_a_terminal(*args: str, **env: str) -> tuple[int, str]:
    """`substratus ARGS` with stdout and stderr on a pty, as in a terminal: exit code, output."""
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "SUBSTRATUS_LOG")}
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "substratus_cli", *args], stdin=subprocess.DEVNULL,
                            stdout=child, stderr=child, close_fds=True,
                            env={**inherited, "TERM": "xterm-256color", **env})
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    return proc.wait(timeout=120), out.decode(errors="replace")


def test_a_plan_on_a_terminal_is_coloured_unless_told_not_to(workspace: Path) -> None:
    code, coloured = on_a_terminal("plan", str(workspace))
    assert code == 0, coloured
    assert "\x1b[" in coloured  # the control: a terminal gets colours

    for args, env in ((("plan", "--no-color"), {}), (("--no-color", "plan"), {}),
                      (("plan", "-no-color"), {}), (("plan",), {"NO_COLOR": "1"})):
        code, plain = on_a_terminal(*args, str(workspace), **env)
        assert code == 0, plain
        assert "+ Dataset/default/small" in plain
        assert "\x1b" not in plain, (args, env, plain)


def test_errors_on_a_terminal_have_no_codes_with_no_color(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("apiVersion: substratus.ai/v1\nkind: Datset\n"
                                       "metadata: {name: x}\nspec: {}\n")
    code, coloured = on_a_terminal("validate", str(tmp_path))
    assert code == 3 and "\x1b[" in coloured, coloured
    code, plain = on_a_terminal("validate", str(tmp_path), NO_COLOR="1")
    assert code == 3, plain
    assert "Error: " in plain and "\x1b" not in plain, plain


def test_an_apply_on_a_terminal_with_no_color_has_no_codes(workspace: Path) -> None:
    code, plain = on_a_terminal("apply", "--auto-approve", "--no-color", str(workspace))
    assert code == 0, plain
    assert "Apply complete! Resources: 1 added" in plain
    assert "\x1b" not in plain, plain


def test_verbose_is_accepted_before_and_after_every_command(cli, workspace: Path) -> None:
    for args in (("-v", "validate"), ("validate", "-v"), ("validate", "--verbose"),
                 ("state", "list", "-v")):
        result = cli(*args, workspace)
        assert result.code == 0, (args, result.output)
