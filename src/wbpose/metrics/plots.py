"""A sweep's picture: each part's AP against the swept value, mean with the seed spread as error bars (OpenCV).

Drawn with OpenCV, as :mod:`wbpose.visualize` draws poses: no plotting library is needed to summarise a sweep on a
cluster's login node (matplotlib is only in the notebook extras). One panel per combination of the other swept
values (usually one panel); in each, one line per series (part) over the x positions, a vertical bar of
``mean ± spread`` at every point, and a y axis in AP units with round ticks.

The x axis is categorical (input sizes, codec names: in the order given) or numeric (learning rates, sigmas:
positions proportional to the values, on a log scale when they span a factor of 20 or more).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from wbpose.metrics.files import write_atomic

__all__ = ["PART_PLOT_COLORS", "Panel", "Series", "axis_ticks", "draw_sweep_plot", "format_number", "write_png"]

#: RGB colour of each part's line (distinct on white; Tableau's first colours, whole-body in black).
PART_PLOT_COLORS: dict[str, tuple[int, int, int]] = {
    "body": (31, 119, 180),
    "foot": (255, 127, 14),
    "face": (44, 160, 44),
    "hand": (214, 39, 40),
    "wholebody": (0, 0, 0),
}

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK = (40, 40, 40)
_GRID = (225, 225, 225)
_PLOT_W, _PLOT_H = 520, 330
_LEFT, _RIGHT, _TOP, _BOTTOM = 72, 24, 46, 64


@dataclass
class Series:
    """One line: ``mean[i]`` and ``spread[i]`` (half the error bar) at x position ``i``; NaN leaves a gap."""

    name: str
    color: tuple[int, int, int]
    mean: Sequence[float]
    spread: Sequence[float]


@dataclass
class Panel:
    """One chart: a title and its lines (every series has one value per x position)."""

    title: str
    series: list[Series] = field(default_factory=list)


def format_number(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, without a trailing ``.0`` (``0.000655``, ``3e-05``, ``2``)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    text = f"{value:.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def axis_ticks(lo: float, hi: float, max_ticks: int = 7) -> list[float]:
    """Round tick values covering ``[lo, hi]`` (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"axis range must be finite, got [{lo}, {hi}]")
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 0.1
    raw = (hi - lo) / max(1, max_ticks - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
    first = math.floor(lo / step + 1e-9) * step
    count = math.ceil((hi - first) / step - 1e-9) + 1
    return [round(first + k * step, 12) for k in range(count)]


def _text(
    image: np.ndarray, text: str, xy: tuple[float, float], scale: float = 0.45, anchor: str = "left", thickness: int = 1
) -> None:
    (w, h), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    x, y = xy
    x = {"left": x, "center": x - w / 2, "right": x - w}[anchor]
    cv2.putText(image, text, (round(x), round(y + h / 2)), _FONT, scale, _INK, thickness, cv2.LINE_AA)


def _vertical_text(image: np.ndarray, text: str, center: tuple[int, int], scale: float = 0.5) -> None:
    (w, h), base = cv2.getTextSize(text, _FONT, scale, 1)
    strip = np.full((h + base + 4, w + 4, 3), 255, np.uint8)
    cv2.putText(strip, text, (2, h + 2), _FONT, scale, _INK, 1, cv2.LINE_AA)
    strip = np.ascontiguousarray(np.rot90(strip))
    x0, y0 = center[0] - strip.shape[1] // 2, center[1] - strip.shape[0] // 2
    if x0 < 0 or y0 < 0 or y0 + strip.shape[0] > image.shape[0]:
        return
    image[y0 : y0 + strip.shape[0], x0 : x0 + strip.shape[1]] = np.minimum(
        image[y0 : y0 + strip.shape[0], x0 : x0 + strip.shape[1]], strip
    )


def _x_scale(x_labels: Sequence[str], x_values: Sequence[float] | None) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """x positions in [0, 1] of each label, and the ticks ``(position, text)``."""
    n = len(x_labels)
    if x_values is None:
        positions = (np.arange(n) + 0.5) / n
        return positions, list(zip(positions.tolist(), x_labels))
    values = np.asarray(x_values, dtype=np.float64)
    log = bool(np.all(values > 0) and values.max() / values.min() >= 20)
    v = np.log10(values) if log else values
    lo, hi = float(v.min()), float(v.max())
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    pad = 0.06 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    positions = (v - lo) / (hi - lo)
    if log:
        ticks = [(math.log10(t), t) for k in range(math.floor(lo), math.ceil(hi) + 1) for t in (10.0**k,)]
        if len([t for t in ticks if lo <= t[0] <= hi]) < 3:  # less than two decades: 1-2-5 steps
            ticks = [(math.log10(m * 10.0**k), m * 10.0**k) for k in range(math.floor(lo), math.ceil(hi) + 1)
                     for m in (1, 2, 5)]  # fmt: skip
    else:
        ticks = [(t, t) for t in axis_ticks(lo, hi)]
    return positions, [((p - lo) / (hi - lo), format_number(t)) for p, t in ticks if lo <= p <= hi]


def draw_sweep_plot(
    x_labels: Sequence[str],
    panels: Sequence[Panel],
    x_title: str,
    y_title: str = "AP",
    x_values: Sequence[float] | None = None,
    connect: bool = True,
    note: str = "",
    columns: int = 3,
) -> np.ndarray:
    """Draw the sweep's panels side by side (``columns`` per row) with one legend below; returns RGB uint8.

    Args:
        x_labels: the text of each x position (categorical axis), in order.
        panels: the charts; every series has ``len(x_labels)`` values.
        x_title: the swept key (under the x axis).
        y_title: the metric (beside the y axis).
        x_values: numbers of the x positions for a numeric axis (``None``: categorical, evenly spaced).
        connect: join a series' points by lines (off when the points of one x are unrelated configurations).
        note: a line under the legend (e.g. what the error bars are).
        columns: panels per row.
    """
    if not panels or not x_labels:
        raise ValueError("draw_sweep_plot needs at least one panel and one x position")
    for panel in panels:
        for s in panel.series:
            if len(s.mean) != len(x_labels) or len(s.spread) != len(x_labels):
                raise ValueError(f"series {s.name!r} of panel {panel.title!r} has not one value per x position")
    positions, ticks = _x_scale(x_labels, x_values)
    cells = [(m, d) for p in panels for s in p.series for m, d in zip(s.mean, s.spread) if math.isfinite(m)]
    lows = [m - (d if math.isfinite(d) else 0) for m, d in cells]
    highs = [m + (d if math.isfinite(d) else 0) for m, d in cells]
    lo, hi = (min(lows), max(highs)) if cells else (0.0, 1.0)
    margin = max(0.02, 0.08 * (hi - lo))
    y_ticks = axis_ticks(max(0.0, lo - margin), min(1.0, hi + margin) if hi <= 1 else hi + margin, max_ticks=6)
    y_lo, y_hi = y_ticks[0], y_ticks[-1]

    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    cell_w, cell_h = _LEFT + _PLOT_W + _RIGHT, _TOP + _PLOT_H + _BOTTOM
    legend_h = 40 + (22 if note else 0)
    entries = [30 + cv2.getTextSize(s.name, _FONT, 0.5, 1)[0][0] + 24 for s in panels[0].series]
    note_w = cv2.getTextSize(note, _FONT, 0.45, 1)[0][0] if note else 0
    width = max(columns * cell_w, _LEFT + max(sum(entries), note_w) + _RIGHT)
    image = np.full((rows * cell_h + legend_h, width, 3), 255, np.uint8)

    def y_px(value: float, top: int) -> int:
        return round(top + _PLOT_H * (1 - (value - y_lo) / (y_hi - y_lo)))

    series_count = max(len(p.series) for p in panels)
    dodge = min(6.0, 0.25 * _PLOT_W / max(1, len(x_labels)) / max(1, series_count))
    for index, panel in enumerate(panels):
        left = (index % columns) * cell_w + _LEFT
        top = (index // columns) * cell_h + _TOP
        for value in y_ticks:
            y = y_px(value, top)
            cv2.line(image, (left, y), (left + _PLOT_W, y), _GRID, 1, cv2.LINE_AA)
            _text(image, format_number(value, 3), (left - 8, y), anchor="right")
        cv2.rectangle(image, (left, top), (left + _PLOT_W, top + _PLOT_H), _INK, 1)
        tick_scale = 0.45
        widths = [cv2.getTextSize(text, _FONT, tick_scale, 1)[0][0] for _, text in ticks]
        while len(ticks) > 1 and tick_scale > 0.3 and max(widths) > 0.9 * _PLOT_W / len(ticks):
            tick_scale -= 0.05
            widths = [cv2.getTextSize(text, _FONT, tick_scale, 1)[0][0] for _, text in ticks]
        for pos, text in ticks:
            x = round(left + pos * _PLOT_W)
            cv2.line(image, (x, top + _PLOT_H), (x, top + _PLOT_H + 5), _INK, 1)
            _text(image, text, (x, top + _PLOT_H + 16), scale=tick_scale, anchor="center")
        _text(image, x_title, (left + _PLOT_W / 2, top + _PLOT_H + 42), scale=0.5, anchor="center")
        _vertical_text(image, y_title, (left - 56, top + _PLOT_H // 2))
        if panel.title:
            _text(image, panel.title, (left + _PLOT_W / 2, top - 20), scale=0.5, anchor="center")
        for k, s in enumerate(panel.series):
            shift = (k - (len(panel.series) - 1) / 2) * dodge
            points = []
            for pos, mean, spread in zip(positions, s.mean, s.spread):
                if not math.isfinite(mean):
                    continue
                x = round(left + pos * _PLOT_W + shift)
                if math.isfinite(spread) and spread > 0:
                    y0, y1 = y_px(mean - spread, top), y_px(mean + spread, top)
                    cv2.line(image, (x, y0), (x, y1), s.color, 1, cv2.LINE_AA)
                    for y in (y0, y1):
                        cv2.line(image, (x - 4, y), (x + 4, y), s.color, 1, cv2.LINE_AA)
                points.append((x, y_px(mean, top)))
            if connect and len(points) > 1:
                ordered = np.asarray(sorted(points), np.int32)
                cv2.polylines(image, [ordered], False, s.color, 2, cv2.LINE_AA)
            for x, y in points:
                cv2.circle(image, (x, y), 4, s.color, -1, cv2.LINE_AA)

    # the legend: the first panel's series (every panel has the same parts)
    x, y = _LEFT, rows * cell_h + 14
    for s, entry in zip(panels[0].series, entries):
        cv2.line(image, (x, y), (x + 24, y), s.color, 2, cv2.LINE_AA)
        cv2.circle(image, (x + 12, y), 4, s.color, -1, cv2.LINE_AA)
        _text(image, s.name, (x + 30, y), scale=0.5)
        x += entry
    if note:
        _text(image, note, (_LEFT, y + 24), scale=0.45)
    return image


def write_png(path: str | Path, image_rgb: np.ndarray) -> Path:
    """Write an RGB image as PNG atomically (:func:`wbpose.metrics.files.write_atomic`) and return the path."""
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image_rgb[..., ::-1]))
    if not ok:
        raise OSError(f"could not encode the PNG for {path}")
    return write_atomic(path, encoded.tobytes())
