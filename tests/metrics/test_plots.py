"""wbpose.metrics.plots: round numbers and ticks, and the sweep picture's points and error bars where they belong."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from wbpose.metrics.plots import Panel, Series, axis_ticks, draw_sweep_plot, format_number, write_png

RED, BLUE = (200, 0, 0), (0, 0, 200)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0006554064060987877, "0.000655"), (3e-05, "3e-5"), (2.0, "2"), (1234567.0, "1.23e6"), (0.0, "0"),
     (0.125, "0.125"), (-0.5, "-0.5")],
)  # fmt: skip
def test_format_number_keeps_significant_digits(value: float, text: str) -> None:
    assert format_number(value) == text


@pytest.mark.parametrize(("lo", "hi"), [(0.13, 0.62), (0.0, 1.0), (0.4211, 0.4219), (1e-4, 3e-3), (-2.0, 7.0)])
def test_axis_ticks_are_round_and_cover_the_range(lo: float, hi: float) -> None:
    ticks = axis_ticks(lo, hi)
    assert ticks[0] <= lo + 1e-12 and ticks[-1] >= hi - 1e-12
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** math.floor(math.log10(steps[0]))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5))
    assert 3 <= len(ticks) <= 9


def test_axis_ticks_refuses_an_infinite_range() -> None:
    with pytest.raises(ValueError, match="finite"):
        axis_ticks(0.0, math.inf)


def _blobs(image: np.ndarray, color: tuple[int, int, int]) -> list[tuple[float, float, int]]:
    """Centroids (x, y) and areas of the connected areas painted exactly ``color``."""
    mask = np.all(image == np.asarray(color, np.uint8), axis=-1).astype(np.uint8)
    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask)
    return sorted((float(cx), float(cy), int(stats[i, cv2.CC_STAT_AREA])) for i, (cx, cy) in enumerate(centroids)
                  if i > 0 and stats[i, cv2.CC_STAT_AREA] >= 20)  # fmt: skip


def test_points_sit_at_their_values_and_a_gap_stays_empty() -> None:
    panel = Panel("", [Series("A", RED, [0.2, 0.6], [math.nan] * 2), Series("B", BLUE, [math.nan, 0.4], [0.0, 0.0])])
    image = draw_sweep_plot(["small", "large"], [panel], x_title="input", connect=False)
    (ax0, ay0, _), (ax1, ay1, _) = _blobs(image[: image.shape[0] - 60], RED)  # above the legend
    blue = _blobs(image[: image.shape[0] - 60], BLUE)
    assert len(blue) == 1  # NaN at the first position: no point there
    bx, by, _ = blue[0]
    assert ax1 > ax0 and ay1 < ay0  # the larger AP is higher up
    assert abs(by - (ay0 + ay1) / 2) <= 1.5  # 0.4 halfway between 0.2 and 0.6: a linear axis
    assert abs(bx - ax1) < 20  # same x position (shifted a few pixels so error bars do not overlap)


def test_error_bars_span_the_spread() -> None:
    spread = 0.1
    panel = Panel("", [Series("A", RED, [0.2, 0.6], [spread, math.nan])])
    image = draw_sweep_plot(["a", "b"], [panel], x_title="x", connect=False)
    plot = image[: image.shape[0] - 60]
    (x0, y0, _), (_, y1, _) = _blobs(plot, RED)
    near = plot[:, round(x0) - 1 : round(x0) + 2].astype(int)
    column = np.any(near[..., 0] - near[..., 1] > 60, axis=1).nonzero()[0]  # reddish (anti-aliased) pixels
    per_ap = (y0 - y1) / 0.4  # pixels per AP unit, from the two points
    assert column.max() - column.min() == pytest.approx(2 * spread * per_ap, abs=3)
    assert (column.max() + column.min()) / 2 == pytest.approx(y0, abs=2)  # centred on the mean


def test_one_panel_per_title_and_mismatched_series_refused(tmp_path) -> None:
    panels = [Panel(f"codec={c}", [Series("A", RED, [0.3, 0.5], [0.01, 0.02])]) for c in ("msra", "dark")]
    image = draw_sweep_plot(["128x96", "256x192"], panels, x_title="input", x_values=None)
    single = draw_sweep_plot(["128x96", "256x192"], panels[:1], x_title="input")
    assert image.shape[0] == single.shape[0] and image.shape[1] > 1.8 * single.shape[1] - 300
    joined = _blobs(image[: image.shape[0] - 60], RED)  # each panel's two points joined by its line
    assert len(joined) == 2 and joined[1][0] - joined[0][0] == pytest.approx(image.shape[1] / 2, abs=2)
    path = write_png(tmp_path / "plot.png", image)
    assert np.array_equal(cv2.imread(str(path))[..., ::-1], image)
    with pytest.raises(ValueError, match="not one value per x position"):
        draw_sweep_plot(["a", "b", "c"], panels, x_title="x")


def test_numeric_axis_places_values_proportionally() -> None:
    panel = Panel("", [Series("A", RED, [0.5, 0.5, 0.5], [math.nan] * 3)])
    image = draw_sweep_plot(["1", "2", "4"], [panel], x_title="sigma", x_values=[1.0, 2.0, 4.0], connect=False)
    xs = [x for x, _, _ in _blobs(image[: image.shape[0] - 60], RED)]
    assert len(xs) == 3
    assert (xs[2] - xs[1]) == pytest.approx(2 * (xs[1] - xs[0]), abs=1.5)
