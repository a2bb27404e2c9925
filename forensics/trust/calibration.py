"""Calibration and the abstain band: what a score means, and when it is too close to call.

A two-class model's logits (real, fake) reduce to one margin `m = logit_fake - logit_real`, and
its probability of "fake" is `sigmoid(m)`. Temperature scaling (Guo et al., 2017) divides the
margin by one number `T` fitted on held-out data, which keeps every ranking (and so ROC-AUC) and
makes the probability mean what it says. A model that leans to one class (it calls too many
photographs fake, say) also needs a bias: Platt scaling (Platt, 1999) fits `sigmoid(m / T + b)`,
which moves the decision boundary. It is used only where it pays for itself on validation data
it was not fitted on (cross-validated log loss, lower by more than one standard error), since a
bias always fits its own data at least as well. The abstain band is then one interval of
calibrated probability around the threshold where the model does not answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# log T is searched in [-4, 4]: T from 0.02 to 55, far wider than any real model needs.
LOG_TEMPERATURE_BOUNDS = (-4.0, 4.0)
BIAS_BOUNDS = (-20.0, 20.0)
CALIBRATION_FOLDS = 5
BAND_STEP = 0.005  # half-widths tried when choosing the abstain band


def sigmoid(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -values))


def margins_from_logits(logits: np.ndarray) -> np.ndarray:
    """(N, 2) logits (real, fake) -> (N,) margins logit_fake - logit_real."""
    logits = np.asarray(logits, dtype=np.float64)
    return logits[:, 1] - logits[:, 0]


def negative_log_likelihood(
    margins: np.ndarray, labels: np.ndarray, temperature: float, bias: float = 0.0
) -> float:
    """Mean NLL of labels (0/1) under sigmoid(margin / temperature + bias)."""
    return float(np.mean(_log_losses(margins, labels, temperature, bias)))


def _log_losses(margins, labels, temperature: float, bias: float) -> np.ndarray:
    scaled = np.asarray(margins, dtype=np.float64) / temperature + bias
    labels = np.asarray(labels, dtype=np.float64)
    return np.logaddexp(0.0, scaled) - labels * scaled


def _checked(margins: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    margins, labels = np.asarray(margins, dtype=np.float64), np.asarray(labels)
    if margins.shape != labels.shape or margins.ndim != 1 or len(margins) == 0:
        raise ValueError("margins and labels must be two non-empty arrays of the same length")
    if len(np.unique(labels)) < 2:
        raise ValueError("calibration needs images of both classes")
    return margins, labels


def fit_temperature(margins: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the NLL of `labels` (N,) given `margins` (N,): fit it on
    validation data, never on test."""
    from scipy.optimize import minimize_scalar

    margins, labels = _checked(margins, labels)
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(margins, labels, float(np.exp(log_t))),
        bounds=LOG_TEMPERATURE_BOUNDS,
        method="bounded",
    )
    return float(np.exp(result.x))


def fit_temperature_and_bias(margins: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Platt scaling: the temperature and bias minimising the NLL of `labels` under
    sigmoid(margin / T + b), starting from the temperature alone."""
    from scipy.optimize import minimize

    margins, labels = _checked(margins, labels)
    start = np.array([np.log(fit_temperature(margins, labels)), 0.0])
    result = minimize(
        lambda x: negative_log_likelihood(margins, labels, float(np.exp(x[0])), float(x[1])),
        start,
        method="L-BFGS-B",
        bounds=[LOG_TEMPERATURE_BOUNDS, BIAS_BOUNDS],
    )
    return float(np.exp(result.x[0])), float(result.x[1])


def choose_calibration(
    margins: np.ndarray, labels: np.ndarray, *, folds: int = CALIBRATION_FOLDS, seed: int = 0
) -> tuple[float, float, dict]:
    """Temperature alone, or temperature and bias (Platt): the bias only where it lowers the log
    loss on the held-out folds of a stratified `folds`-fold cross-validation of these
    (validation) images by more than one standard error of the per-image difference (a bias
    fitted to noise must not move the boundary). The chosen one is then fitted on all of them.
    Returns (temperature, bias, evidence); with too few images of a class to cross-validate,
    the temperature alone."""
    from sklearn.model_selection import StratifiedKFold

    margins, labels = _checked(margins, labels)
    folds = min(folds, int(np.bincount(labels.astype(int)).min()))
    evidence: dict = {"chosen": "temperature", "folds": folds, "cv_log_loss": {}}
    if folds >= 2:
        held_out = {
            "temperature": np.empty(len(margins)),
            "temperature_and_bias": np.empty(len(margins)),
        }
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for fit, check in splitter.split(margins, labels):
            fitted = {
                "temperature": (fit_temperature(margins[fit], labels[fit]), 0.0),
                "temperature_and_bias": fit_temperature_and_bias(margins[fit], labels[fit]),
            }
            for name, (t, b) in fitted.items():
                held_out[name][check] = _log_losses(margins[check], labels[check], t, b)
        gain = held_out["temperature"] - held_out["temperature_and_bias"]
        standard_error = float(gain.std(ddof=1) / np.sqrt(len(gain)))
        evidence["cv_log_loss"] = {name: float(v.mean()) for name, v in held_out.items()}
        evidence["gain_standard_error"] = standard_error
        if gain.mean() > standard_error:
            evidence["chosen"] = "temperature_and_bias"
    if evidence["chosen"] == "temperature_and_bias":
        temperature, bias = fit_temperature_and_bias(margins, labels)
    else:
        temperature, bias = fit_temperature(margins, labels), 0.0
    return temperature, bias, evidence


def calibrated_log_loss(margins: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> float:
    """The log loss of these margins once calibrated as `choose_calibration` would calibrate
    them, on images the calibration was not fitted on: the held-out log loss of its chosen
    calibration in its cross-validation. It scores a score as it will ship, so a rule whose
    margins rank well but lean to one class is not judged by a lean that calibration removes.
    With too few images of a class to cross-validate, the log loss after fitting on all of
    them (optimistic)."""
    temperature, bias, evidence = choose_calibration(margins, labels, seed=seed)
    if evidence["cv_log_loss"]:
        return float(evidence["cv_log_loss"][evidence["chosen"]])
    return negative_log_likelihood(margins, labels, temperature, bias)


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
