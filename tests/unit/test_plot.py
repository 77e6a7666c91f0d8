"""The loss chart of `substratus logs --plot`: logfmt lines read into points, drawn as text."""

from __future__ import annotations

import pytest

from substratus_cli.render.plot import HEIGHT, Point, chart, metric_points


def test_points_are_read_from_the_lines_with_a_step_and_the_metric() -> None:
    lines = ["device=cpu parameters=132928 samples=30 steps=4",
             "step=1 epoch=1 loss=5.5429 lr=0.003",
             "step=2 epoch=1 loss=nan lr=0.002",  # not drawn: not a finite number
             "step=3 epoch=1 loss=4.5 lr=0.001",
             "step=x loss=1", "mystep=4 loss=1",
             "done steps=4 final_loss=4.1 seconds=1.2"]
    assert metric_points(lines, "loss") == [Point(1, 5.5429), Point(3, 4.5)]
    assert metric_points(lines, "lr") == [Point(1, 0.003), Point(2, 0.002), Point(3, 0.001)]


def test_chart_of_a_falling_curve() -> None:
    points = [Point(s, v) for s, v in enumerate([5.0, 3.0, 2.0, 1.5, 1.0, 1.0], start=1)]
    assert chart(points, "loss", width=80) == [
        "loss over 6 logged steps (step 1 to 6)",
        "5 ┤█",
        "  ┤█",
        "  ┤█",
        "  ┤█",
        "  ┤█",
        "  ┤█▁",
        "3 ┤██",
        "  ┤██",
        "  ┤██▁",
        "  ┤███",
        "  ┤███▅",
        "1 ┤████▁▁",
        "  └──────",
        "   step 1 step 6",
        "last loss 1 at step 6; lowest 1 at step 5",
    ]


def test_more_points_than_columns_are_averaged_in_runs() -> None:
    points = [Point(s, 1000.0 if s <= 400 else 1.0) for s in range(1, 801)]
    lines = chart(points, "loss", width=40)
    assert lines[0] == "loss over 800 logged steps (step 1 to 800)"
    bars = [line.split("┤", 1)[1] if "┤" in line else "" for line in lines[1:HEIGHT + 1]]
    assert bars[0] == "█" * 20, "the first half of the columns at the top"
    assert bars[-1] == "█" * 20 + "▁" * 20, "the second half a sliver at the bottom"
    assert lines[HEIGHT // 2 + 1].startswith("500.5 ┤"), "the middle label sets the margin"
    assert lines[HEIGHT + 1] == "      └" + "─" * 40
    assert lines[-1] == "last loss 1 at step 800; lowest 1 at step 401"
    assert lines[1].startswith(" 1000 ┤") and lines[HEIGHT].startswith("    1 ┤")


def test_a_flat_curve_is_half_height() -> None:
    lines = chart([Point(1, 2.0), Point(2, 2.0)], "loss", width=80)
    bars = [line.split("┤", 1)[1] for line in lines[1:HEIGHT + 1]]
    assert bars == [""] * (HEIGHT // 2) + ["██"] * (HEIGHT // 2)


def test_no_points_is_an_error() -> None:
    with pytest.raises(ValueError, match="no points"):
        chart([], "loss", width=80)
