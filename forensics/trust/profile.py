"""A checkpoint's trust profile: everything that turns a score into a decision, stored with the
checkpoint (`model.json`'s "trust" record, and `trust.safetensors` for the feature statistics)
and fitted by `training.fit_trust` (which `training.publish` runs).

A decision is "real", "fake" or "unsure", with reasons in plain words. It is "unsure" when the
image is unlike the training data (input or features), when the verdict is unstable under
harmless changes, or when the calibrated score is inside the abstain band; a checkpoint without
a profile cannot say whether an image is like its training data, and says so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forensics.images import ImageInfo
from forensics.trust.calibration import AbstainBand, sigmoid
from forensics.trust.domain import FeatureDomain, InputDomain
from forensics.trust.stability import stability_reason

TRUST_FILE = "trust.safetensors"
TRUST_VERSION = 1
UNKNOWN_DOMAIN = (
    "this checkpoint records no description of its training data (it predates trust profiles; "
    "python -m training.fit_trust adds one), so whether this image is like what the model was "
    "trained on is unknown"
)
CLOSE_TO_THRESHOLD = "the score is close to the threshold"


class TrustProfileError(ValueError):
    """A trust record or its tensors file is missing, corrupt or inconsistent."""


@dataclass(frozen=True)
class Judgement:
    """What the profile makes of one image's scores."""

    decision: str  # "real" | "fake" | "unsure"
    reasons: tuple[str, ...]
    prob_fake: float  # calibrated
    prob_fake_raw: float
    label: str  # the thresholded call on the calibrated probability
    perturbed: Mapping[str, float] = field(default_factory=dict)  # calibrated, per change
    feature_distance: float | None = None


@dataclass(frozen=True)
class TrustProfile:
    temperature: float
    band: AbstainBand
    input_domain: InputDomain
    feature_domain: FeatureDomain
    max_spread: float
    record: Mapping[str, Any]  # the "trust" record as stored (fit figures included)
    # The changes the stability check holds the verdict to: those the model withstands on its
    # own validation images. One that flips many in-domain verdicts (a 0.9x resize of a 32 px
    # thumbnail, say) is a known weakness, reported in the card, not a reason to refuse most of
    # the images the model was made for.
    checked_changes: tuple[str, ...] = ()
    # Platt scaling's bias (0: temperature scaling alone), added after the temperature.
    bias: float = 0.0

    @property
    def trust_id(self) -> str:
        """Short hash of the record: changes whenever the profile is refitted."""
        text = json.dumps(self.record, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def calibrate(self, margins: np.ndarray) -> np.ndarray:
        return sigmoid(np.asarray(margins, dtype=np.float64) / self.temperature + self.bias)

    def to_record(self, figures: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON record stored in model.json (the feature statistics go to TRUST_FILE)."""
        fit = dict(figures or {})
        return {
            "version": TRUST_VERSION,
            "temperature": self.temperature,
            "bias": self.bias,
            "abstain_band": self.band.to_dict(),
            "input_domain": self.input_domain.to_dict(),
            "feature_threshold": self.feature_domain.threshold,
            "feature_quantile": self.feature_domain.quantile,
            "max_spread": self.max_spread,
            "checked_changes": list(self.checked_changes),
            "fit": fit,
        }

    def tensors(self) -> dict[str, np.ndarray]:
        return {
            "feature_mean": self.feature_domain.mean.astype(np.float32),
            "feature_precision": self.feature_domain.precision.astype(np.float32),
        }


def judge(
    profile: TrustProfile | None,
    *,
    margin: float,
    threshold: float,
    info: ImageInfo | None,
    feature_distance: float | None = None,
    perturbed_margins: Mapping[str, float] | None = None,
) -> Judgement:
    """The decision on one image from its score (`margin` = logit_fake - logit_real), what the
    file was (`info`), its features' distance to the training features
    (`profile.feature_domain.distance`) and the margins of its perturbed copies. Without a
    profile the probability is the raw one and the decision is unsure."""
    raw = float(sigmoid(margin))
    if profile is None:
        label = "fake" if raw >= threshold else "real"
        return Judgement("unsure", (UNKNOWN_DOMAIN,), raw, raw, label)
    prob = float(profile.calibrate(margin))
    label = "fake" if prob >= threshold else "real"
    reasons = []
    if info is not None:
        reasons += profile.input_domain.reasons(info)
    if feature_distance is not None:
        reason = profile.feature_domain.reason(feature_distance)
        if reason:
            reasons.append(reason)
    if reasons:
        reasons = [f"this image is unlike what the model was trained on: {r}" for r in reasons]
    perturbed = {
        name: float(profile.calibrate(value)) for name, value in (perturbed_margins or {}).items()
    }
    checked = {name: perturbed[name] for name in profile.checked_changes if name in perturbed}
    unstable = stability_reason(prob, checked, threshold=threshold, max_spread=profile.max_spread)
    if unstable:
        reasons.append(unstable)
    if bool(profile.band.contains(prob)):
        reasons.append(
            f"{CLOSE_TO_THRESHOLD} (P(fake) {prob:.2f}, inside the {profile.band.low:.2f}-"
            f"{profile.band.high:.2f} band where this model's validation answers were unreliable)"
        )
    decision = "unsure" if reasons else label
    return Judgement(decision, tuple(reasons), prob, raw, label, perturbed, feature_distance)


def judge_many(
    profile: TrustProfile | None,
    *,
    margins: np.ndarray,
    threshold: float,
    infos: Sequence[ImageInfo | None],
    features: np.ndarray | None = None,
    perturbed_margins: Sequence[Mapping[str, float]] | None = None,
) -> list[Judgement]:
    """`judge` for N images: margins (N,), penultimate features (N, D), one perturbed mapping
    each. The feature distances are computed for all N at once (one matrix product, where one
    per image cost more than the rest of an evaluation's bookkeeping)."""
    distances = (
        profile.feature_domain.distance(features)
        if profile is not None and features is not None
        else [None] * len(margins)
    )
    return [
        judge(
            profile,
            margin=float(margins[i]),
            threshold=threshold,
            info=infos[i],
            feature_distance=None if distances[i] is None else float(distances[i]),
            perturbed_margins=None if perturbed_margins is None else perturbed_margins[i],
        )
        for i in range(len(margins))
    ]


def load_trust_profile(directory: Path, metadata: Mapping[str, Any]) -> TrustProfile | None:
    """The profile stored in a checkpoint, or None where it has none. Raises TrustProfileError
    for a record or tensors file that does not hold together."""
    record = metadata.get("trust")
    if record is None:
        return None
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from forensics.atomic import file_sha256

    try:
        if not isinstance(record, dict) or record.get("version") != TRUST_VERSION:
            raise ValueError(f"unsupported trust record version {record.get('version')!r}")
        path = directory / TRUST_FILE
        if not path.is_file():
            raise ValueError(f"model.json has a trust record but {TRUST_FILE} is missing")
        if file_sha256(path) != record.get("tensors_sha256"):
            raise ValueError(f"{TRUST_FILE} is not the file the trust record was saved with")
        tensors = load_file(str(path))
        mean, precision = tensors["feature_mean"], tensors["feature_precision"]
        dim = mean.shape[0]
        if mean.ndim != 1 or precision.shape != (dim, dim) or not np.isfinite(precision).all():
            raise ValueError("feature statistics have inconsistent shapes or are not finite")
        temperature, max_spread = float(record["temperature"]), float(record["max_spread"])
        bias = float(record.get("bias", 0.0))  # records before Platt scaling have none
        band_record = record["abstain_band"]
        band = AbstainBand(float(band_record["low"]), float(band_record["high"]))
        if not (0 < temperature < np.inf and 0 <= band.low <= band.high <= 1 and max_spread >= 0):
            raise ValueError("temperature, band or spread out of range")
        if not np.isfinite(bias):
            raise ValueError("calibration bias is not finite")
        return TrustProfile(
            temperature=temperature,
            band=band,
            input_domain=InputDomain.from_dict(record["input_domain"]),
            feature_domain=FeatureDomain(
                mean.astype(np.float64),
                precision.astype(np.float64),
                float(record["feature_threshold"]),
                float(record["feature_quantile"]),
            ),
            max_spread=max_spread,
            record=record,
            checked_changes=tuple(str(name) for name in record["checked_changes"]),
            bias=bias,
        )
    except (KeyError, TypeError, ValueError, OSError, SafetensorError) as exc:
        raise TrustProfileError(f"the checkpoint's trust profile is unusable: {exc}") from None


def save_trust_profile(
    directory: Path, metadata: dict[str, Any], profile: TrustProfile, figures: Mapping[str, Any]
) -> dict[str, Any]:
    """Write TRUST_FILE and return `metadata` with the trust record (the caller writes
    model.json, after the tensors, so a crash between the two is caught by the hash)."""
    from safetensors.numpy import save_file

    from forensics.atomic import file_sha256, write_atomic

    path = directory / TRUST_FILE
    write_atomic(path, lambda tmp: save_file(profile.tensors(), str(tmp)))
    record = {**profile.to_record(figures), "tensors_sha256": file_sha256(path)}
    return {**metadata, "trust": record}
