"""Changes an image undergoes anyway on its way to an analyst: a JPEG re-save, a resize, a small
shift, a mirror. A verdict that flips under one of them was not a verdict about the image.

Each perturbation maps an RGB PIL image to an RGB PIL image and is deterministic; they are used
by the stability check (`forensics.trust.stability`) and by robustness measurements.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageOps

Perturbation = Callable[[Image.Image], Image.Image]


def jpeg_resave(image: Image.Image, quality: int = 90) -> Image.Image:
    """The image saved as a JPEG at `quality` (1-100) and decoded again."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return decoded.convert("RGB")


def rescale(image: Image.Image, factor: float = 0.9) -> Image.Image:
    """The image resized by `factor` (bicubic, as image tools do), at least 1x1."""
    if factor <= 0:
        raise ValueError(f"rescale factor must be positive, got {factor}")
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.BICUBIC)


def resample_roundtrip(image: Image.Image, factor: float = 0.875) -> Image.Image:
    """The image resized by `factor` and back to its size (Lanczos, as dataset scripts do):
    applied to every image of a set, it takes away a difference in how its classes were
    resampled when the set was made (a shortcut check, `benchmarks.shortcut`)."""
    if factor <= 0:
        raise ValueError(f"resample factor must be positive, got {factor}")
    lanczos = Image.Resampling.LANCZOS
    small = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(small, lanczos).resize(image.size, lanczos)


def shift(image: Image.Image, pixels: int = 3) -> Image.Image:
    """The content moved `pixels` right and down (clamped to a third of the image), the
    uncovered edge filled by repeating the border; the size is unchanged."""
    step = max(0, min(pixels, image.width // 3, image.height // 3))
    if step == 0:
        return image.copy()
    array = np.asarray(image.convert("RGB"))
    padded = np.pad(array, ((step, 0), (step, 0), (0, 0)), mode="edge")
    return Image.fromarray(padded[: array.shape[0], : array.shape[1]])


def hflip(image: Image.Image) -> Image.Image:
    """The image mirrored left to right."""
    return ImageOps.mirror(image)


# The stability check's set: what an image meets anyway when it is shared or re-posted.
STABILITY_PERTURBATIONS: Mapping[str, Perturbation] = MappingProxyType(
    {
        "JPEG re-save (q90)": jpeg_resave,
        "rescale 0.9x": rescale,
        "shift 3 px": shift,
        "mirror": hflip,
    }
)
