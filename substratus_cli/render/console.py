"""The consoles rich prints to: stdout for results and progress, stderr for errors and
warnings. Colour and styles go with `--no-color` or a non-empty NO_COLOR (no-color.org); when
a stream is not a terminal rich writes plain text of its own accord."""

from __future__ import annotations

import os

from rich.console import Console

NO_COLOR_ENV = "NO_COLOR"


def colour_off(flag: bool = False) -> bool:
    """Whether colour is off: the --no-color flag, or NO_COLOR set to anything but ''."""
    return flag or bool(os.environ.get(NO_COLOR_ENV))


def make(*, stderr: bool, no_color: bool = False) -> Console:
    """A console that writes to whatever sys.stdout / sys.stderr is when it prints. Without
    colour it writes no style codes at all (bold included: rich's own NO_COLOR handling keeps
    bold and underline), only what a live progress display needs to redraw itself."""
    if colour_off(no_color):
        return Console(stderr=stderr, highlight=False, soft_wrap=True, no_color=True,
                       color_system=None)
    return Console(stderr=stderr, highlight=False, soft_wrap=True)
