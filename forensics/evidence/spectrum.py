"""The log-magnitude Fourier spectrum, averaged over tiles, and a score for periodic peaks.

Many generators upsample with transposed convolutions or fixed resizers, which leave a faint
grid at fixed periods: bright isolated points in the spectrum. Averaging the power of many
tiles (Welch's method) keeps such peaks while the content's own spectrum smooths out.
"""

from __future__ import annotations

import cv2
import numpy as np

from forensics.evidence.findings import View, fit_for_display

TILE = 256
MAX_TILES = 64
PEAK_LEVEL = 1.0  # log10 power above the local background: a peak is 10x its surroundings
STRONG_SCORE = 1.5  # the strongest peak 30x its surroundings: a regular grid is likely there
CENTRE_FRACTION = 1 / 16  # the lowest frequencies (the picture's content) are not peaks

LIMITS = (
    "JPEG's 8-pixel blocks, resizing and demosaicing leave periodic peaks in photographs too, "
    "and generators without an upsampling grid leave none: peaks are a reason to look closer, "
    "their absence clears nothing."
)


def spectrum_view(rgb: np.ndarray) -> View:
    """The tile-averaged log spectrum of `rgb` (uint8 HxWx3), centred, with its peak score."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    tiles = _tiles(grey)
    size = tiles.shape[1]
    window = np.outer(np.hanning(size), np.hanning(size)).astype(np.float32)
    tiles = (tiles - tiles.mean(axis=(1, 2), keepdims=True)) * window
    power = (np.abs(np.fft.fft2(tiles)) ** 2).mean(axis=0)
    log_power = np.log10(np.fft.fftshift(power) + 1e-6).astype(np.float32)
    prominence = log_power - cv2.medianBlur(log_power, 5)
    centre = size // 2
    yy, xx = np.mgrid[:size, :size] - centre
    prominence[np.hypot(yy, xx) < max(2.0, size * CENTRE_FRACTION)] = 0
    # The axes carry the tiles' edges (what the window leaves of them), not a periodic pattern.
    prominence[centre, :] = 0
    prominence[:, centre] = 0
    score = float(prominence.max()) if size >= 8 else 0.0
    peaks = int((prominence > PEAK_LEVEL).sum())
    summary = {"peak_score": round(score, 3), "peaks": peaks, "tiles": len(tiles), "tile": size}
    if score >= STRONG_SCORE:
        reading = (
            f"Strong periodic peaks (score {score:.2f}, {peaks} points 10x above their "
            "surroundings): a regular pixel grid, as generator upsampling, JPEG blocks or "
            "resizing leave."
        )
    elif peaks:
        reading = f"A few weak periodic peaks (score {score:.2f}): nothing clearly regular."
    else:
        reading = f"No periodic peaks (score {score:.2f}): no regular pixel grid shows."
    low, high = np.percentile(log_power, (1, 99.9))
    scaled = np.clip((log_power - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
    shown = cv2.resize(scaled, (512, 512), interpolation=cv2.INTER_NEAREST)
    return View("spectrum", "Fourier spectrum", fit_for_display(shown), reading, LIMITS, summary)


def _tiles(grey: np.ndarray) -> np.ndarray:
    """Up to MAX_TILES square tiles (N x S x S) on an even grid over `grey` (HxW float32)."""
    height, width = grey.shape
    # A single tile's spectrum is too noisy to tell a peak from chance: a small image is cut
    # into at least 4 x 4 smaller tiles (down to 32 px) so that the average settles.
    size = min(TILE, max(32, min(height, width) // 4), height, width)
    size -= size % 2
    if size < 2:
        return np.zeros((1, 2, 2), np.float32)
    rows = np.unique(np.linspace(0, height - size, max(1, min(8, height // size))).astype(int))
    columns = np.unique(np.linspace(0, width - size, max(1, min(8, width // size))).astype(int))
    tiles = [grey[r : r + size, c : c + size] for r in rows for c in columns]
    return np.stack(tiles[:MAX_TILES])
