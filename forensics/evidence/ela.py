"""Error level analysis: how much each region changes when the image is re-saved as a JPEG.

Regions last saved at the same quality change alike; a region pasted in from another source,
or retouched after the last save, can stand out. The difference is amplified by a fixed gain,
so two images' views compare directly.
"""

from __future__ import annotations

import cv2
import numpy as np

from forensics.evidence.findings import View, cell_means, fit_for_display

QUALITY = 90
MAX_JPEG_SIDE = 65_496  # the largest multiple of 8 that a JPEG side may be
GAIN = 20
UNEVEN_RATIO = 3.0  # brightest cells' error over the median cell's: above this, regions differ
QUIET_ERROR = 0.5  # mean error (0-255) below which the re-save changed almost nothing

LIMITS = (
    "Edges, fine texture and saturated areas always show higher error, and an image re-saved, "
    "resized or screenshotted after an edit loses the signal: a bright region is a place to "
    "look, not proof of an edit, and an even view is not proof of authenticity."
)


def error_level_view(rgb: np.ndarray, *, quality: int = QUALITY, gain: int = GAIN) -> View:
    """ELA of `rgb` (uint8 HxWx3): |image - JPEG re-save at `quality`| x `gain`."""
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    error = np.empty(bgr.shape[:2], np.uint8)
    # JPEG stops at 65,500 pixels a side: a longer image is re-saved in pieces cut on the
    # 8-pixel block grid, which gives the same blocks as one re-save would.
    side = MAX_JPEG_SIDE
    for top in range(0, bgr.shape[0], side):
        for left in range(0, bgr.shape[1], side):
            piece = np.ascontiguousarray(bgr[top : top + side, left : left + side])
            ok, encoded = cv2.imencode(".jpg", piece, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise ValueError(f"OpenCV could not encode a {piece.shape} image as JPEG")
            resaved = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
            # The largest channel's change; OpenCV's max is ~8x faster than NumPy's over axis 2.
            blue, green, red = cv2.split(cv2.absdiff(piece, resaved))
            error[top : top + piece.shape[0], left : left + piece.shape[1]] = cv2.max(
                cv2.max(blue, green), red
            )
    cells = cell_means(error.astype(np.float32))
    median = float(np.median(cells))
    ratio = float(np.percentile(cells, 95) / max(median, 0.05))
    mean = float(error.mean())
    summary = {
        "quality": quality,
        "gain": gain,
        "mean_error": round(mean, 3),
        "p99_error": _uint8_percentile(error, 99),
        "uneven_ratio": round(ratio, 3),
    }
    if mean < QUIET_ERROR:
        reading = (
            f"A re-save at quality {quality} changes almost nothing (mean error {mean:.2f}): "
            "the image was probably last saved at this quality or lower, so ELA has little "
            "to show."
        )
    elif ratio > UNEVEN_RATIO:
        reading = (
            f"Some regions react far more to re-compression than the rest (the brightest "
            f"cells {ratio:.1f}x the median): look at them, remembering that edges and "
            "texture do this too."
        )
    else:
        reading = (
            f"Error levels are even across the image (brightest cells {ratio:.1f}x the "
            "median): no region stands out."
        )
    amplified = np.clip(error.astype(np.uint16) * gain, 0, 255).astype(np.uint8)
    return View("ela", "Error level analysis", fit_for_display(amplified), reading, LIMITS, summary)


def _uint8_percentile(values: np.ndarray, percent: float) -> int:
    """The `percent` percentile of uint8 values from their histogram (a sort of 12 MP is slow)."""
    counts = np.cumsum(np.bincount(values.ravel(), minlength=256))
    return int(np.searchsorted(counts, counts[-1] * percent / 100))
