"""Self-contained HTML for reports: Jinja2 with autoescaping (file names and metadata are a
stranger's text), pictures embedded as data: URIs, one stylesheet that also prints cleanly.

Nothing in a report is fetched: no scripts, fonts, styles or images from anywhere. The only
addresses a report may contain are in text a file brought with it (a metadata value quoting a
web address is shown, escaped, never loaded).
"""

from __future__ import annotations

import base64
import functools
import io

import numpy as np
from PIL import Image

STYLE = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
       margin: 24px auto; max-width: 1080px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 22px 0 8px;
     border-bottom: 1px solid #ccc; padding-bottom: 3px; } h3 { font-size: 14px; margin: 8px 0; }
table { border-collapse: collapse; } td, th { padding: 3px 8px; vertical-align: top;
        text-align: left; border-bottom: 1px solid #e4e4e4; }
th { background: #f3f3f3; } .facts th { background: none; width: 12em; font-weight: 600; }
.mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px;
        word-break: break-all; }
.decision { font-size: 20px; font-weight: 700; padding: 4px 12px; border-radius: 4px;
            display: inline-block; }
.d-fake { background: #fde0dc; color: #8a1c10; } .d-real { background: #dcf3e1; color: #17582a; }
.d-unsure { background: #fff1c9; color: #6b4d00; } .d-unreadable { background: #eee; color: #555; }
.figures { display: flex; flex-wrap: wrap; gap: 14px; }
figure { margin: 0; width: 240px; break-inside: avoid; }
figure img { width: 240px; image-rendering: pixelated; border: 1px solid #ccc; }
figure.wide { width: 100%; } figure.wide img { width: auto; max-width: 100%;
              image-rendering: auto; }
figcaption { font-size: 12px; color: #333; }
.note { color: #555; font-size: 12px; } .limits { white-space: pre-wrap; }
.thumb { width: 64px; height: 64px; image-rendering: pixelated; }
.sortable th { cursor: pointer; user-select: none; } .sortable th:after { content: " \\2195";
               color: #999; }
section, .keep { break-inside: avoid; }
@media print {
  body { margin: 0; max-width: none; font-size: 11px; }
  .no-print { display: none; }
  h2 { break-after: avoid; }
  tr { break-inside: avoid; }
}
@page { size: A4; margin: 14mm; }
"""


def png_data_uri(pixels: np.ndarray | Image.Image, *, max_side: int | None = None) -> str:
    """A picture (uint8 HxWx3 or PIL) as a data:image/png URI, shrunk to `max_side` if given
    (nearest neighbour for small views, whose pixels matter; area-averaged when shrinking)."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(np.asarray(pixels))
    if max_side is not None and max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BOX)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@functools.cache
def _environment():
    import jinja2

    environment = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    environment.globals["style"] = STYLE
    environment.filters["pct"] = lambda value: "" if value is None else f"{value:.1%}"
    environment.filters["num"] = lambda value, digits=3: (
        "" if value is None else f"{value:.{digits}f}"
    )
    environment.filters["signed"] = lambda value: "n/a" if value is None else f"{value:+.2f}"
    return environment


@functools.cache
def _template(source: str):
    return _environment().from_string(source)


def render(source: str, **context) -> str:
    """The Jinja2 template `source` filled with `context` (every value escaped)."""
    return _template(source).render(**context)


def histogram_bars(
    scores: np.ndarray, groups: np.ndarray, *, order: tuple[str, ...], bins: int = 20
) -> dict:
    """Stacked bars for an inline SVG histogram of `scores` (in [0, 1]) by group: per bin and
    group, (x, y, width, height) in a 0-100 x 0-100 box, the count and the bin's range."""
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups, dtype=str)
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = {g: np.histogram(scores[groups == g], bins=edges)[0] for g in order}
    top = max(1, int(sum(counts.values()).max()) if len(scores) else 1)
    bars, width = [], 100.0 / bins
    for index in range(bins):
        base = 0.0
        for group in order:
            count = int(counts[group][index])
            if not count:
                continue
            height = 100.0 * count / top
            bars.append({
                "x": index * width, "y": 100.0 - base - height, "width": width, "height": height,
                "group": group, "count": count,
                "range": f"{edges[index]:.2f}-{edges[index + 1]:.2f}",
            })  # fmt: skip
            base += height
    return {"bars": bars, "top": top, "bins": bins}
