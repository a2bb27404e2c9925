"""Which CAM method is most faithful for a model: every method's heatmaps over the same sample of
images, each scored by `forensics.explain.measure_faithfulness` (pytorch-grad-cam's ROAD), for
each image's own call. The evaluation page shows the table; the heatmaps of a method that scores
near zero here say little about what this model uses."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from forensics.explain import CAM_METHODS, QUOTED_SHARE, SLOW_METHODS, check_method
from forensics.images import ImageLoadError

COLUMNS = ("method", "n", "faithfulness", "faithfulness_sd", "share_positive",
           "marked_drop", "unmarked_drop", "ms_per_image")  # fmt: skip
DEFAULT_METHODS = tuple(m for m in CAM_METHODS if m not in SLOW_METHODS)


def compare_methods(
    detector,
    images: Sequence[bytes],
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    batch_size: int = 16,
    progress_callback: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """One row per method (COLUMNS), most faithful first: over the readable `images`, the mean
    faithfulness and its standard deviation, the share of maps scoring above zero, the mean
    fall in the explained class's probability when the marked (hottest) and the unmarked
    QUOTED_SHARE of the image is removed, and the time per image. Unreadable images are left
    out (`n` counts the rest); ValueError where none is readable or a method is unknown."""
    for method in methods:
        check_method(method)
    if not methods:
        raise ValueError("choose at least one CAM method to compare")
    readable = [data for data in images if _readable(data)]
    if not readable:
        raise ValueError("none of the images could be read")
    rows, total, done = [], len(methods) * len(readable), 0
    for method in methods:
        scores, marked, unmarked = [], [], []
        start = time.perf_counter()
        for first in range(0, len(readable), batch_size):
            batch = readable[first : first + batch_size]
            for explanation in detector.explain_batch(batch, method, "predicted"):
                scores.append(explanation.faithfulness)
                quoted = min(explanation.removals, key=lambda r: abs(r.share - QUOTED_SHARE))
                marked.append(-quoted.marked)
                unmarked.append(-quoted.unmarked)
            done += len(batch)
            if progress_callback is not None:
                progress_callback(done, total)
        elapsed = time.perf_counter() - start
        scores = np.asarray(scores, dtype=np.float64)
        rows.append({
            "method": method, "n": len(scores), "faithfulness": float(scores.mean()),
            "faithfulness_sd": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
            "share_positive": float((scores > 0).mean()), "marked_drop": float(np.mean(marked)),
            "unmarked_drop": float(np.mean(unmarked)),
            "ms_per_image": 1000.0 * elapsed / len(readable),
        })  # fmt: skip
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return table.sort_values("faithfulness", ascending=False, kind="stable").reset_index(drop=True)


def _readable(data: bytes) -> bool:
    from forensics.images import inspect_image  # the loader's checks, without an RGB copy

    try:
        inspect_image(data)
    except ImageLoadError:
        return False
    return True


def describe_comparison(table: pd.DataFrame) -> str:
    """One sentence: the most faithful method, and whether any map says much at all."""
    best = table.iloc[0]
    text = (
        f"For this model, {best['method']} is the most faithful of {len(table)} methods on "
        f"{int(best['n'])} images (mean {best['faithfulness']:+.2f}; removing its marked "
        f"{QUOTED_SHARE:.0%} lowers the explained class's probability by "
        f"{best['marked_drop']:.2f} on average, the unmarked {QUOTED_SHARE:.0%} by "
        f"{best['unmarked_drop']:.2f})."
    )
    if best["faithfulness"] <= 0.05:
        text += " No method's map marks much of what the model uses: read them with care."
    return text
