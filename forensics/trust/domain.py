"""Applicability: is this image like the ones the model was trained on?

Two descriptions of a checkpoint's training domain, each fitted on its training split:

- `InputDomain`: what the files were. The image's size against the model's input (how much it
  is resampled before the model sees it), its shape (how much a centre crop cuts away) and its
  JPEG quality. A model trained on 32 px thumbnails that is shown a 12 MP photograph squeezed to
  32 px has never seen anything like it, whatever its score says. How much resampling and
  re-compression beyond the training images it admits is measured, not assumed
  (`forensics.trust.tolerance`): a model whose verdicts change when its own validation images
  are resized by 10% admits no resampling at all.
- `FeatureDomain`: where the image's penultimate features fall. A Mahalanobis distance to the
  training features (Ledoit-Wolf covariance; Lee et al., 2018), with the threshold at a high
  quantile of in-domain validation distances. It sees content the model never met; it is known
  to miss an unseen generator whose images look like the training data (see
  shared/docs/HONEST-VERDICTS.md), which is why it is one check among several.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from forensics.images import ImageInfo
from forensics.trust.tolerance import JPEG_MARGIN_STEPS, SCALE_TOLERANCE_STEPS

# How far outside the training sizes and JPEG qualities an image may be before it is out of
# domain is measured for each model (forensics.trust.tolerance); these are what a record from
# before the measurement admits.
SCALE_TOLERANCE = 1.5
JPEG_QUALITY_MARGIN = 10
ASPECT_TOLERANCE = 1.5
JPEG_ONLY_SHARE = 0.95  # a training set at least this JPEG makes "not a JPEG" out of domain


@dataclass(frozen=True)
class InputDomain:
    """Ranges over the training images: scale = short side / the model's resize (1.0: used at
    its own size), aspect = long side / short side, JPEG quality among the JPEGs."""

    scale: tuple[float, float]
    aspect: tuple[float, float]
    jpeg_quality: tuple[int, int] | None
    jpeg_share: float
    resize: int  # the model's resize, to turn an image's size into its scale
    # A patch model's patch side: it never resamples, so every image at least that large is at
    # scale 1, a smaller one below it; and nothing is cut away, whatever the shape.
    patch: int | None = None
    # The resampling factor beyond the training scales, and the JPEG qualities beyond the
    # training ones, still admitted (forensics.trust.tolerance measures both).
    scale_tolerance: float = SCALE_TOLERANCE
    jpeg_margin: int = JPEG_QUALITY_MARGIN

    @classmethod
    def fit(
        cls,
        infos: Sequence[ImageInfo],
        *,
        resize: int,
        patch: int | None = None,
        scale_tolerance: float = SCALE_TOLERANCE,
        jpeg_margin: int = JPEG_QUALITY_MARGIN,
    ) -> InputDomain:
        if not infos:
            raise ValueError("no training images to describe")
        short = np.array([min(i.width, i.height) for i in infos], dtype=np.float64)
        long = np.array([max(i.width, i.height) for i in infos], dtype=np.float64)
        scale = np.minimum(short / patch, 1.0) if patch else short / resize
        aspect = long / short
        qualities = [i.jpeg_quality for i in infos if i.jpeg_quality is not None]
        return cls(
            scale=(float(scale.min()), float(scale.max())),
            aspect=(float(aspect.min()), float(aspect.max())),
            jpeg_quality=(min(qualities), max(qualities)) if qualities else None,
            jpeg_share=len(qualities) / len(infos),
            resize=resize,
            patch=patch,
            scale_tolerance=scale_tolerance,
            jpeg_margin=jpeg_margin,
        )

    def scale_of(self, info: ImageInfo) -> float:
        """What the model's preprocessing does to the image's size: its short side over the
        model's resize (a patch model: over its patch side, at most 1)."""
        short = min(info.width, info.height)
        return min(short / self.patch, 1.0) if self.patch else short / self.resize

    def reasons(self, info: ImageInfo) -> list[str]:
        """Why `info` is outside this domain, in plain words; empty when it is inside."""
        reasons = []
        size = f"{info.width}x{info.height}"
        scale = self.scale_of(info)
        trained = _trained_sizes(self)
        tolerance = self.scale_tolerance
        if self.patch:  # never resampled: any image as large as a patch is at its own scale
            if scale < self.scale[0] / tolerance:
                reasons.append(
                    f"it is {size}, smaller than the {self.patch} px patches the model judges at "
                    "native resolution: it sees less of the image than it learnt from"
                )
        elif scale > self.scale[1] * tolerance:
            reasons.append(
                f"it is {size}, downscaled {_factor(scale)}x before the model sees it, while "
                f"the model was trained on {trained}: the fine detail a generator leaves is "
                f"gone{self._withstands()}"
            )
        elif scale < self.scale[0] / tolerance:
            reasons.append(
                f"it is {size}, upscaled {_factor(1 / scale)}x before the model sees it, while "
                f"the model was trained on {trained}: interpolation can look synthetic to "
                f"it{self._withstands()}"
            )
        aspect = max(info.width, info.height) / min(info.width, info.height)
        if not self.patch and aspect > self.aspect[1] * ASPECT_TOLERANCE:
            kept = 100 / aspect
            reasons.append(
                f"its {size} shape is cut to a centre square ({kept:.0f}% of it) before the "
                "model sees it, unlike the training images"
            )
        if self.jpeg_quality is not None:
            low, high = self.jpeg_quality
            quality = info.jpeg_quality
            if quality is not None and not (
                low - self.jpeg_margin <= quality <= high + self.jpeg_margin
            ):
                reasons.append(
                    f"it is a JPEG at quality {quality}, while the training images were JPEGs "
                    f"at quality {_range(low, high)}{self._withstands_jpeg()}"
                )
            elif quality is None and self.jpeg_share >= JPEG_ONLY_SHARE:
                kind = info.format or "an image that is not a JPEG"
                reasons.append(
                    f"it is {_article(kind)}, while the model was trained on JPEGs only "
                    f"(quality {_range(low, high)}): compression traces are part of what it learnt"
                )
        return reasons

    def _withstands(self) -> str:
        """What the measured resampling tolerance says, where narrower than the old default."""
        if self.scale_tolerance >= SCALE_TOLERANCE:
            return ""
        if self.scale_tolerance <= 1.0:
            return (
                " (its verdicts change when its own validation images are resized by "
                f"{SCALE_TOLERANCE_STEPS[0]:g}x)"
            )
        return (
            f" (it withstands resizing by at most {self.scale_tolerance:g}x, measured on its "
            "validation images)"
        )

    def _withstands_jpeg(self) -> str:
        """What the measured JPEG margin says, where narrower than the old default."""
        if self.jpeg_margin >= JPEG_QUALITY_MARGIN:
            return ""
        if self.jpeg_margin <= 0:
            return (
                " (its verdicts change when its own validation images are re-saved "
                f"{JPEG_MARGIN_STEPS[0]} quality steps away)"
            )
        return (
            f" (it withstands re-saving at most {self.jpeg_margin} quality steps away, "
            "measured on its validation images)"
        )

    def to_dict(self) -> dict:
        return {
            "scale": list(self.scale),
            "aspect": list(self.aspect),
            "jpeg_quality": None if self.jpeg_quality is None else list(self.jpeg_quality),
            "jpeg_share": self.jpeg_share,
            "resize": self.resize,
            "patch": self.patch,
            "scale_tolerance": self.scale_tolerance,
            "jpeg_margin": self.jpeg_margin,
        }

    @classmethod
    def from_dict(cls, record: dict) -> InputDomain:
        quality = record.get("jpeg_quality")
        return cls(
            scale=_pair(record["scale"], float),
            aspect=_pair(record["aspect"], float),
            jpeg_quality=None if quality is None else _pair(quality, int),
            jpeg_share=float(record["jpeg_share"]),
            resize=int(record["resize"]),
            patch=None if record.get("patch") is None else int(record["patch"]),
            scale_tolerance=_tolerance(record.get("scale_tolerance", SCALE_TOLERANCE)),
            jpeg_margin=_margin(record.get("jpeg_margin", JPEG_QUALITY_MARGIN)),
        )


def _tolerance(value) -> float:
    tolerance = float(value)
    if not (np.isfinite(tolerance) and tolerance >= 1.0):
        raise ValueError(f"invalid scale tolerance {value!r}")
    return tolerance


def _margin(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError(f"invalid JPEG quality margin {value!r}")
    return value


def _factor(value: float) -> str:
    """A resampling factor as a person reads it: 35, 4, 1.3."""
    return f"{value:.0f}" if value >= 2 else f"{value:.2g}"


def _pair(values, kind) -> tuple:
    low, high = (kind(v) for v in values)
    if not (np.isfinite(low) and np.isfinite(high) and low <= high):
        raise ValueError(f"invalid range {values!r}")
    return low, high


def _range(low: int, high: int) -> str:
    return f"{low}" if low == high else f"{low}-{high}"


def _article(word: str) -> str:
    return word if word.startswith("an image") else f"a {word}"


def _trained_sizes(domain: InputDomain) -> str:
    if domain.patch:
        return f"native-resolution patches of {domain.patch} px"
    low, high = (round(s * domain.resize) for s in domain.scale)
    side = f"{low} px" if low == high else f"{low}-{high} px"
    return f"images of {side} on the short side"


@dataclass(frozen=True)
class FeatureDomain:
    """Mahalanobis distance of penultimate features (D,) to the training features."""

    mean: np.ndarray  # (D,)
    precision: np.ndarray  # (D, D): inverse of the shrunk covariance
    threshold: float  # distances above it are out of domain
    quantile: float  # the in-domain validation quantile the threshold was set at

    @classmethod
    def fit(
        cls, train_features: np.ndarray, val_features: np.ndarray, *, quantile: float = 0.99
    ) -> FeatureDomain:
        from sklearn.covariance import LedoitWolf

        train = np.asarray(train_features, dtype=np.float64)
        if train.ndim != 2 or len(train) < 2:
            raise ValueError("need at least two training feature vectors (N, D)")
        estimate = LedoitWolf().fit(train)
        unfitted = cls(estimate.location_, estimate.precision_, np.inf, quantile)
        threshold = float(np.quantile(unfitted.distance(val_features), quantile))
        return cls(estimate.location_, estimate.precision_, threshold, quantile)

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(N, D) -> (N,) Mahalanobis distances."""
        centred = np.asarray(features, dtype=np.float64) - self.mean
        squared = np.sum((centred @ self.precision) * centred, axis=1)  # a BLAS product
        return np.sqrt(np.maximum(squared, 0.0))

    def reason(self, distance: float) -> str | None:
        if distance <= self.threshold:
            return None
        return (
            "what the model sees in it is unlike its training images (feature distance "
            f"{distance:.1f}, above the {self.threshold:.1f} that {self.quantile:.0%} of "
            "in-domain validation images stay under)"
        )
