"""Calibration and the abstain band: what a score means, and when it is too close to call.

A two-class model's logits (real, fake) reduce to one margin `m = logit_fake - logit_real`, and
its probability of "fake" is `sigmoid(m)`. Temperature scaling (Guo et al., 2017) divides the
margin by one number `T` fitted on held-out data, which keeps every ranking (and so ROC-AUC) and
makes the probability mean what it says. The abstain band is then one interval of calibrated
probability around the threshold where the model does not answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# log T is searched in [-4, 4]: T from 0.02 to 55, far wider than any real model needs.
LOG_TEMPERATURE_BOUNDS = (-4.0, 4.0)
BAND_STEP = 0.005  # half-widths tried when choosing the abstain band


def sigmoid(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -values))


def margins_from_logits(logits: np.ndarray) -> np.ndarray:
    """(N, 2) logits (real, fake) -> (N,) margins logit_fake - logit_real."""
    logits = np.asarray(logits, dtype=np.float64)
    return logits[:, 1] - logits[:, 0]


def negative_log_likelihood(margins: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean NLL of labels (0/1) under sigmoid(margin / temperature)."""
    scaled = np.asarray(margins, dtype=np.float64) / temperature
    labels = np.asarray(labels, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, scaled) - labels * scaled))


def fit_temperature(margins: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the NLL of `labels` (N,) given `margins` (N,): fit it on
    validation data, never on test."""
    from scipy.optimize import minimize_scalar

    margins, labels = np.asarray(margins, dtype=np.float64), np.asarray(labels)
    if margins.shape != labels.shape or margins.ndim != 1 or len(margins) == 0:
        raise ValueError("margins and labels must be two non-empty arrays of the same length")
    if len(np.unique(labels)) < 2:
        raise ValueError("calibration needs images of both classes")
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(margins, labels, float(np.exp(log_t))),
        bounds=LOG_TEMPERATURE_BOUNDS,
        method="bounded",
    )
    return float(np.exp(result.x))


@dataclass(frozen=True)
class AbstainBand:
    """No answer while `low < prob_fake < high` (calibrated probability)."""

    low: float
    high: float

    def contains(self, prob_fake: np.ndarray | float) -> np.ndarray:
        prob_fake = np.asarray(prob_fake, dtype=np.float64)
        return (prob_fake > self.low) & (prob_fake < self.high)

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


def choose_abstain_band(
    prob_fake: np.ndarray,
    labels: np.ndarray,
    *,
    threshold: float = 0.5,
    max_selective_risk: float = 0.01,
) -> tuple[AbstainBand, dict[str, float]]:
    """The narrowest band around `threshold` (same half-width on both sides, clipped to [0, 1])
    whose answered images have an error rate at most `max_selective_risk`, chosen on validation
    data. Where no band reaches it, the widest one tried. Returns the band and its validation
    figures (coverage: share answered; selective_risk: errors among the answered)."""
    prob_fake, labels = np.asarray(prob_fake, dtype=np.float64), np.asarray(labels)
    if prob_fake.shape != labels.shape or len(prob_fake) == 0:
        raise ValueError("prob_fake and labels must be two non-empty arrays of the same length")
    wrong = (prob_fake >= threshold) != (labels == 1)
    best = None
    for half_width in np.arange(0.0, 0.5 + BAND_STEP / 2, BAND_STEP):
        band = AbstainBand(max(0.0, threshold - half_width), min(1.0, threshold + half_width))
        answered = ~band.contains(prob_fake)
        risk = float(wrong[answered].mean()) if answered.any() else 0.0
        best = (band, {"coverage": float(answered.mean()), "selective_risk": risk})
        if risk <= max_selective_risk:
            break
    band, figures = best
    return band, {**figures, "max_selective_risk": max_selective_risk}
