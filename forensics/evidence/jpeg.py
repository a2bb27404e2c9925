"""JPEG history: the file's estimated quality and quantisation tables, how blocky its pixels
are, and a double-compression hint from JPEG ghosts (Farid, 2009).

Re-saving an image at a range of qualities and measuring the change gives a curve that falls
towards the quality the image was last saved at. An earlier save at a lower quality leaves a
second dip (a "ghost") below it; a PNG that was once a JPEG dips at that JPEG's quality.
"""

from __future__ import annotations

import cv2
import numpy as np

from forensics.evidence.findings import View

QUALITIES = tuple(range(30, 101, 5))
GHOST_CROP = 512  # the ghost curve is measured on the central crop, aligned to the 8x8 grid
BLOCK_CROP = 1024
DIP = 0.85  # a local minimum this far below both neighbouring qualities is a ghost
BLOCKY = 1.3  # edge strength across 8-pixel block borders over within blocks

LIMITS = (
    "Quality is estimated against the standard (IJG) tables, which most but not all software "
    "uses; a resize or crop after the first save hides the ghost, and a smooth image shows "
    "none: an absent ghost does not mean a single save."
)


def jpeg_history_view(
    rgb: np.ndarray, *, quality: int | None = None, tables: dict | None = None
) -> View:
    """History of `rgb` (uint8 HxWx3, as decoded), given the file's estimated `quality` and
    quantisation `tables` ({index: 64 values}) when it is a JPEG (None otherwise)."""
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    errors = ghost_curve(bgr)
    ghost = find_ghost(errors, quality)
    blockiness = block_strength(bgr)
    summary = {
        "jpeg": quality is not None,
        "quality": quality,
        "quantization_tables": {str(k): [int(v) for v in t] for k, t in (tables or {}).items()},
        "ghost_quality": ghost,
        "blockiness": round(blockiness, 3),
        "ghost_curve": {str(q): round(e, 3) for q, e in zip(QUALITIES, errors, strict=True)},
    }
    if quality is not None:
        reading = f"A JPEG saved at about quality {quality}"
        reading += (
            f", with a ghost at about quality {ghost}: it was probably compressed before, "
            "at that lower quality (a re-saved or edited file)."
            if ghost
            else "; no sign of an earlier compression."
        )
    elif ghost:
        reading = (
            f"Not a JPEG file, but its pixels dip at quality {ghost}: it was probably a JPEG "
            "before being saved in this format."
        )
    elif blockiness > BLOCKY:
        reading = (
            f"Not a JPEG file, but its pixels are blocky on the 8-pixel grid ({blockiness:.2f}):"
            " it was probably a JPEG before."
        )
    else:
        reading = "Not a JPEG file, and no trace of an earlier JPEG compression in its pixels."
    chart = draw_curve(errors, quality, ghost)
    return View("jpeg", "JPEG history", chart, reading, LIMITS, summary)


def ghost_curve(bgr: np.ndarray) -> list[float]:
    """Mean squared change of the central crop when re-saved at each of QUALITIES."""
    height, width = bgr.shape[:2]
    top = max(0, (height - GHOST_CROP) // 2) // 8 * 8
    left = max(0, (width - GHOST_CROP) // 2) // 8 * 8
    crop = np.ascontiguousarray(bgr[top : top + GHOST_CROP, left : left + GHOST_CROP])
    original = crop.astype(np.float32)
    errors = []
    for quality in QUALITIES:
        _, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
        resaved = cv2.imdecode(encoded, cv2.IMREAD_COLOR).astype(np.float32)
        errors.append(float(np.mean((resaved - original) ** 2)))
    return errors


def find_ghost(errors: list[float], quality: int | None) -> int | None:
    """The quality of the deepest dip in `errors` below the file's own `quality` (if known),
    or None. A dip: DIP x the lower of its two neighbours, or less."""
    best, best_ratio = None, DIP
    for i in range(1, len(QUALITIES) - 1):
        if quality is not None and QUALITIES[i] > quality - 10:
            continue
        ratio = errors[i] / max(min(errors[i - 1], errors[i + 1]), 1e-9)
        if ratio <= best_ratio:
            best, best_ratio = QUALITIES[i], ratio
    return best


def block_strength(bgr: np.ndarray) -> float:
    """Mean step across 8-pixel block borders over the mean step within blocks (about 1 for
    an image never JPEG-compressed, higher for a blocky one), on a central crop."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    height, width = grey.shape
    top = max(0, (height - BLOCK_CROP) // 2) // 8 * 8
    left = max(0, (width - BLOCK_CROP) // 2) // 8 * 8
    crop = grey[top : top + BLOCK_CROP, left : left + BLOCK_CROP].astype(np.float32)
    ratios = []
    for steps in (np.abs(np.diff(crop, axis=1)), np.abs(np.diff(crop, axis=0)).T):
        if steps.shape[1] < 16:
            continue
        border = (np.arange(steps.shape[1]) % 8) == 7
        inside = float(steps[:, ~border].mean())
        ratios.append(float(steps[:, border].mean()) / max(inside, 1e-3))
    return float(np.mean(ratios)) if ratios else 1.0


def draw_curve(errors: list[float], quality: int | None, ghost: int | None) -> np.ndarray:
    """The ghost curve as a small RGB chart: quality on x, log change on y; the file's quality
    in blue, the ghost in red."""
    width, height, margin = 480, 240, 30
    chart = np.full((height, width, 3), 255, np.uint8)
    logs = np.log10(np.asarray(errors) + 1e-3)
    low, high = float(logs.min()), float(logs.max())
    span = max(high - low, 1e-6)

    def x(q: float) -> int:
        fraction = (q - QUALITIES[0]) / (QUALITIES[-1] - QUALITIES[0])
        return int(margin + fraction * (width - 2 * margin))

    def y(value: float) -> int:
        return int(height - margin - (value - low) / span * (height - 2 * margin))

    for mark, colour in ((quality, (40, 90, 220)), (ghost, (220, 40, 40))):
        if mark is not None:
            cv2.line(chart, (x(mark), margin // 2), (x(mark), height - margin), colour, 2)
    points = np.array([(x(q), y(v)) for q, v in zip(QUALITIES, logs, strict=True)], np.int32)
    cv2.polylines(chart, [points], False, (0, 0, 0), 2)
    for q in QUALITIES[::2]:
        cv2.putText(chart, str(q), (x(q) - 8, height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (80, 80, 80), 1, cv2.LINE_AA)  # fmt: skip
    return chart
