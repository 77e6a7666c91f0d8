"""A metric curve as a text chart (`substratus logs Model/x --plot`): the values a workload logged
as logfmt (`step=3 epoch=1 loss=5.12`), drawn with block characters; plain text, no colours or
control codes, so it reads the same in a terminal, a CI log and a notebook cell."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Sequence

_PAIR = re.compile(r"(?:^|\s)([A-Za-z_][\w.]*)=(\S+)")
_BLOCKS = " ▁▂▃▄▅▆▇█"  # 0 to 8 eighths of a cell
HEIGHT = 12
MAX_WIDTH = 100


@dataclasses.dataclass(frozen=True)
class Point:
    step: int
    value: float


def metric_points(lines: Iterable[str], metric: str) -> list[Point]:
    """The (step, value) of every logfmt line that has both `step=` and `metric=` as numbers,
    in the order logged."""
    points = []
    for line in lines:
        pairs = dict(_PAIR.findall(line))
        try:
            step, value = int(pairs["step"]), float(pairs[metric])
        except (KeyError, ValueError):
            continue
        if math.isfinite(value):
            points.append(Point(step, value))
    return points


def chart(points: Sequence[Point], metric: str, width: int) -> list[str]:
    """The chart's lines: one column per point, or per run of consecutive points (their mean)
    when there are more than `width` columns fit, the y axis from the lowest to the highest."""
    if not points:
        raise ValueError("no points to plot")
    columns = _columns([p.value for p in points], max(1, min(width, MAX_WIDTH)))
    low, high = min(columns), max(columns)
    eighths = [_eighths(v, low, high) for v in columns]
    labels = {0: high, HEIGHT // 2: (low + high) / 2, HEIGHT - 1: low}
    margin = max(len(_number(v)) for v in labels.values())
    lines = [f"{metric} over {len(points)} logged steps (step {points[0].step} to "
             f"{points[-1].step})"]
    for row in range(HEIGHT):
        label = _number(labels[row]) if row in labels else ""
        floor = (HEIGHT - 1 - row) * 8  # eighths below this row
        cells = "".join(_BLOCKS[min(8, max(0, e - floor))] for e in eighths)
        lines.append(f"{label:>{margin}} ┤{cells}".rstrip())
    lines.append(" " * margin + " └" + "─" * len(columns))
    first, last = f"step {points[0].step}", f"step {points[-1].step}"
    gap = max(1, len(columns) - len(first) - len(last))
    lines.append(" " * (margin + 2) + first + " " * gap + last)
    lowest = min(points, key=lambda p: p.value)
    lines.append(f"last {metric} {_number(points[-1].value)} at step {points[-1].step}; lowest "
                 f"{_number(lowest.value)} at step {lowest.step}")
    return lines


def _columns(values: Sequence[float], width: int) -> list[float]:
    if len(values) <= width:
        return list(values)
    # Column c holds the points [c*n/width, (c+1)*n/width): every point in exactly one.
    n = len(values)
    return [sum(chunk) / len(chunk) for c in range(width)
            if (chunk := values[c * n // width:(c + 1) * n // width])]


def _eighths(value: float, low: float, high: float) -> int:
    """How many eighths of a cell the column fills: 1 (a sliver) at `low`, all at `high`."""
    if high == low:
        return HEIGHT * 4
    return 1 + round((value - low) / (high - low) * (HEIGHT * 8 - 1))


def _number(value: float) -> str:
    return f"{value:.4g}"
