"""Stability: the verdict recomputed under changes an image undergoes anyway (forensics.perturb).

A score that swings when the image is re-saved, resized by 10%, shifted by three pixels or
mirrored is not evidence about the image. The spread allowed is fitted on in-domain validation
images (a high quantile of their spreads), so a model that is steady on its own data is held to
that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def spread(base: float, perturbed: Sequence[float]) -> float:
    """Largest minus smallest probability among the base score and the perturbed ones."""
    values = [base, *perturbed]
    return float(max(values) - min(values))


# A change that flips more of the model's own validation verdicts than this is one it is known
# not to withstand: it is reported, not checked (checking it would refuse in-domain images).
MAX_FLIP_RATE = 0.05


def flip_rates(base: np.ndarray, perturbed: np.ndarray, *, threshold: float) -> np.ndarray:
    """Per change (K,): the share of images whose thresholded call the change flips; base
    (N,), perturbed (N, K) probabilities."""
    called = np.asarray(base)[:, None] >= threshold
    return ((np.asarray(perturbed) >= threshold) != called).mean(axis=0)


def fit_max_spread(base: np.ndarray, perturbed: np.ndarray, *, quantile: float = 0.99) -> float:
    """The `quantile` of the spreads of validation images: base (N,), perturbed (N, K)."""
    values = np.concatenate([np.asarray(base)[:, None], np.asarray(perturbed)], axis=1)
    return float(np.quantile(values.max(axis=1) - values.min(axis=1), quantile))


def stability_reason(
    base: float, perturbed: Mapping[str, float], *, threshold: float, max_spread: float
) -> str | None:
    """Why the verdict is unstable (its label flips under a perturbation, or the scores spread
    wider than `max_spread`), or None when it is steady."""
    if not perturbed:
        return None
    label = base >= threshold
    flipped = [name for name, prob in perturbed.items() if (prob >= threshold) != label]
    if flipped:
        return (
            f"the verdict changes under a harmless {flipped[0]} (P(fake) "
            f"{base:.2f} -> {perturbed[flipped[0]]:.2f})"
        )
    width = spread(base, list(perturbed.values()))
    if width > max_spread:
        return (
            f"the score moves by {width:.2f} under a harmless re-save/resize/shift/mirror, more "
            f"than the {max_spread:.2f} seen on the model's own validation images"
        )
    return None
