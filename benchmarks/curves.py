"""Quality-against-minutes curves as a PNG, drawn with Pillow (no plotting library needed).

``draw_curves(path, panels)``: one panel per measure side by side; each panel holds named
series of ``(minutes, value)`` points and optional horizontal reference lines (baselines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]
GREY = (120, 120, 120)


@dataclass
class Panel:
    title: str
    series: dict[str, list[tuple[float, float]]]
    references: dict[str, float] = field(default_factory=dict)  # dashed horizontal lines
    x_label: str = "GPU-minutes"
    markers: bool = True  # a dot at every point (off for long series)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = (hi - lo) / (n - 1) if hi > lo else 1.0
    return [lo + i * step for i in range(n)]


def _dashed(draw: ImageDraw.ImageDraw, y: float, x0: float, x1: float, colour) -> None:
    x = x0
    while x < x1:
        draw.line([(x, y), (min(x + 6, x1), y)], fill=colour, width=1)
        x += 12


def draw_panel(img: Image.Image, box: tuple[int, int, int, int], panel: Panel, names) -> None:
    """Draw ``panel`` into ``box`` (left, top, right, bottom) of ``img``."""
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, top, right, bottom = box
    px0, py0, px1, py1 = left + 48, top + 24, right - 12, bottom - 36
    points = [p for s in panel.series.values() for p in s]
    xs = [x for x, _ in points] or [0.0, 1.0]
    ys = [y for _, y in points] + list(panel.references.values()) or [0.0, 1.0]
    x_lo, x_hi = 0.0, max(xs) * 1.05 or 1.0
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.08 or abs(y_hi) * 0.1 or 1.0
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def at(x: float, y: float) -> tuple[float, float]:
        return (
            px0 + (x - x_lo) / (x_hi - x_lo) * (px1 - px0),
            py1 - (y - y_lo) / (y_hi - y_lo) * (py1 - py0),
        )

    draw.text((px0, top + 4), panel.title, fill=(0, 0, 0), font=font)
    draw.rectangle([px0, py0, px1, py1], outline=(0, 0, 0))
    for v in _ticks(y_lo, y_hi):
        _, y = at(x_lo, v)
        draw.line([(px0 - 4, y), (px0, y)], fill=(0, 0, 0))
        draw.text((left + 2, y - 6), f"{v:.3g}", fill=(0, 0, 0), font=font)
    for v in _ticks(x_lo, x_hi):
        x, _ = at(v, y_lo)
        draw.line([(x, py1), (x, py1 + 4)], fill=(0, 0, 0))
        draw.text((x - 8, py1 + 6), f"{v:.3g}", fill=(0, 0, 0), font=font)
    draw.text(((px0 + px1) // 2 - 40, bottom - 16), panel.x_label, fill=(0, 0, 0), font=font)
    for i, (name, value) in enumerate(panel.references.items()):
        _, y = at(x_lo, value)
        _dashed(draw, y, px0, px1, GREY)
        draw.text((px1 - 150, y - 12 - 10 * i), name, fill=GREY, font=font)
    for name, series in panel.series.items():
        colour = COLOURS[names.index(name) % len(COLOURS)]
        line = [at(x, y) for x, y in sorted(series)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        for x, y in line if panel.markers else []:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)


def draw_curves(path: str | Path, panels: list[Panel], width: int = 420, height: int = 300) -> Path:
    """Write the panels side by side with one legend of the series' names under them."""
    names = sorted({n for p in panels for n in p.series})
    legend = 18 * len(names) + 8
    img = Image.new("RGB", (width * len(panels), height + legend), "white")
    for i, panel in enumerate(panels):
        draw_panel(img, (i * width, 0, (i + 1) * width, height), panel, names)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for i, name in enumerate(names):
        y = height + 4 + 18 * i
        draw.line([(48, y + 6), (78, y + 6)], fill=COLOURS[i % len(COLOURS)], width=3)
        draw.text((86, y), name, fill=(0, 0, 0), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
