"""Noise residual: the image minus a denoised copy of itself, i.e. its finest grain.

A camera sensor leaves noise everywhere, stronger in the dark; a generator's grain is often
too smooth, too regular, or different in a pasted region. The residual shows where.
"""

from __future__ import annotations

import cv2
import numpy as np

from forensics.evidence.findings import View, cell_means, fit_for_display

GAIN = 8
UNEVEN_RATIO = 6.0  # noisiest cells' level over the quietest's: above this, regions differ
SMOOTH_LEVEL = 0.8  # mean |residual| (0-255) below which the image has almost no grain

LIMITS = (
    "Denoising, resizing, compression and beauty filters reshape the grain, and smooth regions "
    "(sky, walls) have little of it in any photograph: compare regions of similar texture and "
    "brightness, and never read the level alone as a verdict."
)


def noise_residual_view(rgb: np.ndarray) -> View:
    """|grey - median3(grey)| of `rgb` (uint8 HxWx3): where the fine grain is, and how even."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    residual = cv2.absdiff(grey, cv2.medianBlur(grey, 3))
    cells = cell_means(residual.astype(np.float32))
    level = float(residual.mean())
    ratio = float(np.percentile(cells, 95) / max(float(np.percentile(cells, 5)), 0.05))
    summary = {"mean_residual": round(level, 3), "uneven_ratio": round(ratio, 3)}
    if level < SMOOTH_LEVEL:
        reading = (
            f"Almost no fine grain (mean residual {level:.2f} of 255): unusually smooth for a "
            "camera photograph, as generated, denoised or heavily compressed images are."
        )
    elif ratio > UNEVEN_RATIO:
        reading = (
            f"The grain differs strongly between regions (noisiest cells {ratio:.1f}x the "
            "quietest): check whether that follows texture and brightness, or an outline."
        )
    else:
        reading = (
            f"Fine grain is present and fairly even (mean residual {level:.2f}, noisiest "
            f"cells {ratio:.1f}x the quietest)."
        )
    amplified = np.clip(residual.astype(np.uint16) * GAIN, 0, 255).astype(np.uint8)
    return View("noise", "Noise residual", fit_for_display(amplified), reading, LIMITS, summary)
