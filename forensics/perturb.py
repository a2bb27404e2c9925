"""Changes an image undergoes on its way to an analyst: a JPEG re-save, a resize, a blur, sensor
or transmission noise, a crop, a small shift, a mirror. A verdict that flips under a harmless one
was not a verdict about the image; how far a detector's accuracy falls under stronger ones is
its robustness (Wang et al., CVPR 2020, measure CNNDetection that way).

Each perturbation maps an RGB PIL image to an RGB PIL image, validates its parameter (a
ValueError that names the valid range) and is deterministic: the noise is seeded, by default
from the image's own pixels. The stability check (`forensics.trust.stability`) uses
STABILITY_PERTURBATIONS; the robustness sweep (`forensics.robustness`) and the Classify page's
"Try a perturbation" use PERTURBATIONS, by name and strength, through `perturb_file`.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageFilter, ImageOps, JpegImagePlugin

Perturbation = Callable[[Image.Image], Image.Image]

MAX_SCALE = 8.0  # a larger factor is no longer a resize an image meets, and costs memory
MAX_BLUR_SIGMA = 50.0


def _check_number(value: float, name: str, low: float, high: float, *, open_low: bool) -> float:
    """`value` as a float within [low, high] (or (low, high] with `open_low`), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    inside = (low < value if open_low else low <= value) and value <= high
    if not (math.isfinite(value) and inside):
        bounds = f"{'(' if open_low else '['}{low:g}, {high:g}]"
        raise ValueError(f"{name} must be in {bounds}, got {value:g}")
    return value


def check_quality(quality: float) -> int:
    """A JPEG quality: a whole number in 1..100."""
    value = _check_number(quality, "JPEG quality", 1, 100, open_low=False)
    if value != int(value):
        raise ValueError(f"JPEG quality must be a whole number in 1..100, got {value:g}")
    return int(value)


def check_factor(factor: float) -> float:
    return _check_number(factor, "rescale factor", 0, MAX_SCALE, open_low=True)


def check_sigma(sigma: float) -> float:
    return _check_number(sigma, "blur sigma", 0, MAX_BLUR_SIGMA, open_low=False)


def check_noise_sigma(sigma: float) -> float:
    return _check_number(sigma, "noise sigma (0-255 scale)", 0, 255, open_low=False)


def check_fraction(fraction: float) -> float:
    return _check_number(fraction, "crop fraction", 0, 1, open_low=True)


def scaled_size(size: tuple[int, int], factor: float) -> tuple[int, int]:
    """(width, height) times `factor`, rounded, at least 1x1."""
    return max(1, round(size[0] * factor)), max(1, round(size[1] * factor))


def jpeg_resave(image: Image.Image, quality: int = 90) -> Image.Image:
    """The image saved as a JPEG at `quality` (1-100) and decoded again."""
    with Image.open(io.BytesIO(jpeg_bytes(image, quality))) as decoded:
        return decoded.convert("RGB")


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    """The image as a JPEG file at `quality` (1-100), Pillow's (libjpeg's) standard tables."""
    quality = check_quality(quality)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def rescale(image: Image.Image, factor: float = 0.9) -> Image.Image:
    """The image resized by `factor` in (0, 8] (bicubic, as image tools do), at least 1x1: below
    1 a downscale, above 1 an upscale."""
    return image.resize(scaled_size(image.size, check_factor(factor)), Image.Resampling.BICUBIC)


def resample_roundtrip(image: Image.Image, factor: float = 0.875) -> Image.Image:
    """The image resized by `factor` and back to its size (Lanczos, as dataset scripts do):
    applied to every image of a set, it takes away a difference in how its classes were
    resampled when the set was made (a shortcut check, `benchmarks.shortcut`)."""
    if factor <= 0:
        raise ValueError(f"resample factor must be positive, got {factor}")
    lanczos = Image.Resampling.LANCZOS
    return image.resize(scaled_size(image.size, factor), lanczos).resize(image.size, lanczos)


def gaussian_blur(image: Image.Image, sigma: float = 1.0) -> Image.Image:
    """The image blurred by a Gaussian of standard deviation `sigma` px in [0, 50] (Pillow's
    GaussianBlur, whose radius is the standard deviation); 0 leaves it unchanged."""
    sigma = check_sigma(sigma)
    rgb = image.convert("RGB")
    return rgb.copy() if sigma == 0 else rgb.filter(ImageFilter.GaussianBlur(radius=sigma))


def gaussian_noise(
    image: Image.Image, sigma: float = 5.0, *, seed: int | None = None
) -> Image.Image:
    """The image plus Gaussian noise of standard deviation `sigma` in [0, 255] on the 0-255 pixel
    scale, rounded and clipped to 0-255. `seed` seeds numpy's Generator; None derives it from
    the pixels, so the same image always gets the same noise and different images differ."""
    sigma = check_noise_sigma(sigma)
    pixels = np.asarray(image.convert("RGB"))
    if seed is None:
        seed = int.from_bytes(hashlib.blake2b(pixels.tobytes(), digest_size=8).digest(), "big")
    noise = np.random.default_rng(seed).normal(0.0, sigma, size=pixels.shape)
    return Image.fromarray(np.clip(np.rint(pixels + noise), 0, 255).astype(np.uint8))


def center_crop(image: Image.Image, fraction: float = 0.9) -> Image.Image:
    """The centre of the image, `fraction` in (0, 1] of each side (at least 1x1): what a crop
    to the subject leaves."""
    width, height = scaled_size(image.size, check_fraction(fraction))
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.convert("RGB").crop((left, top, left + width, top + height))


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


@dataclass(frozen=True)
class PerturbationKind:
    """A perturbation by name, with the strengths a robustness sweep measures and the range of a
    live control. `apply(image, strength)` validates the strength (`check`)."""

    name: str  # what --perturbation takes: jpeg, scale, blur, noise, crop
    title: str  # a plot axis: "JPEG quality"
    label: str  # one setting, from its strength: "JPEG quality {strength:g}"
    apply: Callable[[Image.Image, float], Image.Image]
    check: Callable[[float], float]
    sweep: tuple[float, ...]  # mildest first
    control: tuple[float, float, float, float]  # (low, high, step, default) of a slider

    def describe(self, strength: float) -> str:
        """'JPEG quality 70', 'rescale 0.5x', 'blur sigma 1 px', ..."""
        return self.label.format(strength=strength)


_KINDS = (
    PerturbationKind("jpeg", "JPEG quality", "JPEG quality {strength:g}", jpeg_resave,
                     check_quality, (95, 90, 80, 70, 60, 50), (5, 100, 5, 70)),
    PerturbationKind("scale", "scale factor", "rescale {strength:g}x", rescale, check_factor,
                     (0.75, 0.5, 1.5), (0.25, 2.0, 0.05, 0.5)),
    PerturbationKind("blur", "blur sigma (px)", "blur sigma {strength:g} px", gaussian_blur,
                     check_sigma, (0.5, 1.0, 2.0), (0.0, 5.0, 0.25, 1.0)),
    PerturbationKind("noise", "noise sigma (0-255)", "noise sigma {strength:g}", gaussian_noise,
                     check_noise_sigma, (2.0, 5.0, 10.0), (0.0, 30.0, 1.0, 5.0)),
    PerturbationKind("crop", "centre crop (share of each side)", "centre crop {strength:.0%}",
                     center_crop, check_fraction, (0.9, 0.75, 0.5), (0.3, 1.0, 0.05, 0.75)),
)  # fmt: skip
# The robustness sweep's and the live control's perturbations, by name.
PERTURBATIONS: Mapping[str, PerturbationKind] = MappingProxyType({k.name: k for k in _KINDS})


def perturbation_kind(name: str) -> PerturbationKind:
    """The kind called `name`; ValueError naming the valid ones."""
    try:
        return PERTURBATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown perturbation {name!r}; valid: {', '.join(PERTURBATIONS)}"
        ) from None


def perturb_image(image: Image.Image, name: str, strength: float) -> Image.Image:
    """`image` under perturbation `name` at `strength` (ValueError for either being invalid)."""
    return perturbation_kind(name).apply(image, strength)


def perturb_file(data: bytes, name: str, strength: float) -> bytes:
    """The file a user would get after perturbation `name` at `strength`: for `jpeg`, the image
    saved as a JPEG at that quality; otherwise the changed picture saved again as the original
    was (a JPEG with the original's quantisation tables and chroma subsampling, any other format
    as a lossless PNG). A verdict on it then sees what a verdict on such a file sees, its
    format and JPEG quality included. Raises ImageLoadError for an unreadable `data`."""
    from forensics.images import read_image

    kind = perturbation_kind(name)
    strength = kind.check(strength)
    rgb, info = read_image(data)
    if kind.name == "jpeg":
        return jpeg_bytes(rgb, int(strength))
    changed = kind.apply(rgb, strength)
    buffer = io.BytesIO()
    if info.format == "JPEG":
        changed.save(buffer, format="JPEG", **_jpeg_settings_of(data, info.jpeg_quality))
    else:
        changed.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_settings_of(data: bytes, quality: int | None) -> dict:
    """How the JPEG in `data` was saved: its quantisation tables and subsampling where they can
    be reused for an RGB image, else its estimated quality."""
    with Image.open(io.BytesIO(data)) as original:
        tables = getattr(original, "quantization", None) or {}
        sampling = JpegImagePlugin.get_sampling(original)
    if len(tables) >= 2 and sampling in (0, 1, 2):
        return {"qtables": [tables[0], tables[1]], "subsampling": sampling}
    return {"quality": quality or 95}
