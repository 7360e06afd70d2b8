"""``report.html`` for a person: the metric table with its protocol, per-frame curves as inline
SVG, and an animated GIF grid (ground truth, then samples) embedded as base64. One file, no
scripts, no external assets."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from einops import rearrange
from PIL import Image
from torch import Tensor

KNOWN_RGB = (40, 170, 70)  # border of a frame that was given to the model
GENERATED_RGB = (210, 60, 50)  # border of a frame the model generated
TRUTH_RGB = (150, 150, 150)  # border of a ground-truth frame


def gif_grid(rows: Sequence[Sequence[Tensor]], known: Tensor, *, fps: float = 5.0) -> bytes:
    """Animated GIF of a grid: each row is one test video as ``[truth, sample1, ...]``, every
    entry a float clip ``(T, C, H, W)`` in [-1, 1]. Borders mark truth (grey) and, in samples,
    known (green) and generated (red) frames. Frames under 64 pixels are enlarged (nearest)."""
    first = rows[0][0]
    t, c, h, w = first.shape
    zoom = max(1, 64 // max(h, w))
    pad = 3
    cell_h, cell_w = h * zoom + 2 * pad, w * zoom + 2 * pad
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    canvas = np.full((t, n_rows * cell_h, n_cols * cell_w, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, clip in enumerate(row):
            frames = ((clip.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            frames = rearrange(frames, "t c h w -> t h w c").expand(-1, -1, -1, 3).numpy()
            frames = frames.repeat(zoom, axis=1).repeat(zoom, axis=2)
            y, x = i * cell_h, j * cell_w
            for f in range(t):
                color = TRUTH_RGB if j == 0 else KNOWN_RGB if known[f] else GENERATED_RGB
                canvas[f, y : y + cell_h, x : x + cell_w] = color
                canvas[f, y + pad : y + cell_h - pad, x + pad : x + cell_w - pad] = frames[f]
    images = [Image.fromarray(frame) for frame in canvas]
    buf = io.BytesIO()
    duration = int(1000 / fps)
    images[0].save(
        buf, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0
    )
    return buf.getvalue()


def svg_curve(title: str, frames: Sequence[int], values: Sequence[float]) -> str:
    """A small line chart of one per-frame curve."""
    w, h, left, bottom, top, right = 360, 200, 48, 28, 24, 12
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return f"<p>{html.escape(title)}: no finite values</p>"
    lo, hi = min(finite), max(finite)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    f0, f1 = frames[0], frames[-1] if frames[-1] != frames[0] else frames[0] + 1

    def px(f: float, v: float) -> tuple[float, float]:
        x = left + (f - f0) / (f1 - f0) * (w - left - right)
        y = top + (hi - v) / (hi - lo) * (h - top - bottom)
        return x, y

    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (px(f, v) for f, v in zip(frames, values)))
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5"><title>frame {f}: {v:.4g}</title></circle>'
        for f, v in zip(frames, values)
        for x, y in [px(f, v)]
        if math.isfinite(v)
    )
    axis_y = h - bottom
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" class="curve">'
        f'<text x="{w / 2}" y="15" text-anchor="middle" font-weight="bold">'
        f"{html.escape(title)}</text>"
        f'<line x1="{left}" y1="{axis_y}" x2="{w - right}" y2="{axis_y}" stroke="#888"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{axis_y}" stroke="#888"/>'
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" font-size="10">{hi:.4g}</text>'
        f'<text x="{left - 4}" y="{axis_y}" text-anchor="end" font-size="10">{lo:.4g}</text>'
        f'<text x="{left}" y="{h - 8}" font-size="10">frame {f0}</text>'
        f'<text x="{w - right}" y="{h - 8}" text-anchor="end" font-size="10">frame {frames[-1]}'
        f"</text>"
        f'<polyline points="{pts}" fill="none" stroke="#2a6fdb" stroke-width="2"/>'
        f'<g fill="#2a6fdb">{dots}</g>'
        "</svg>"
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4f}" if v == 0 or abs(v) >= 1e-3 else f"{v:.3g}"
    return html.escape(str(v))


def _protocol_cell(protocol: dict[str, Any]) -> str:
    items = []
    for k, v in protocol.items():
        text = v if not isinstance(v, str) or len(v) < 80 else v[:77] + "..."
        items.append(f"<b>{html.escape(k)}</b>: {_fmt(text)}")
    return "<br>".join(items)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 6px 10px; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
td.value { font-size: 1.2em; font-family: monospace; white-space: nowrap; }
td.protocol { font-size: 0.85em; }
.curve { margin: 0.5em 1em 0.5em 0; border: 1px solid #eee; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; }
"""


def render_report(result: dict[str, Any], gif: bytes | None) -> str:
    """The HTML page for an ``evaluate_run`` result."""
    proto = result["protocol"]
    title = "Evaluation" + (f": {proto['run']}" if proto.get("run") else "")
    rows = []
    for name, m in result["metrics"].items():
        value = _fmt(m["value"])
        if "std" in m:
            value += f" ± {_fmt(m['std'])}"
        rows.append(
            f"<tr><th>{html.escape(name.upper())}</th><td class='value'>{value}</td>"
            f"<td class='protocol'>{_protocol_cell(m['protocol'])}</td></tr>"
        )
    curves = "".join(
        svg_curve(
            f"{name.upper()}{' (' + m['unit'] + ')' if m.get('unit') else ''} per frame, "
            f"best of {proto['best_of']}",
            m["frames"],
            m["per_frame"],
        )
        for name, m in result["metrics"].items()
        if "per_frame" in m
    )
    gif_html = ""
    if gif is not None:
        data = base64.b64encode(gif).decode("ascii")
        legend = "".join(
            f"<span style='background: rgb{c}'></span>{label}"
            for c, label in [(TRUTH_RGB, "ground truth"), (KNOWN_RGB, "known frame")]
            + [(GENERATED_RGB, "generated frame")]
        )
        gif_html = (
            "<h2>Samples</h2><p>Rows: test videos. Columns: ground truth, then samples "
            f"1, 2, ...</p><p class='legend'>{legend}</p>"
            f"<img alt='ground truth and samples' src='data:image/gif;base64,{data}'>"
        )
    setting_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in proto.items()
    )
    curves_html = f"<h2>Per-frame curves</h2>{curves}" if curves else ""
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>videogen: {html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        "<h2>Metrics</h2><table><tr><th>metric</th><th>value</th><th>protocol</th></tr>"
        f"{''.join(rows)}</table>{curves_html}{gif_html}"
        f"<h2>Protocol</h2><table>{setting_rows}</table></body></html>"
    )
