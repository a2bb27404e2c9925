"""What a verdict is worth: calibration, the abstain band, applicability (is this image like the
training data?) and stability, combined into a decision with reasons. Used by
`forensics.detector`; fitted by `training.fit_trust`."""

from forensics.trust.calibration import (
    AbstainBand,
    choose_abstain_band,
    choose_calibration,
    fit_temperature,
)
from forensics.trust.domain import FeatureDomain, InputDomain
from forensics.trust.profile import (
    TRUST_FILE,
    Judgement,
    TrustProfile,
    TrustProfileError,
    judge,
    judge_many,
    load_trust_profile,
    save_trust_profile,
)

__all__ = [
    "TRUST_FILE",
    "AbstainBand",
    "FeatureDomain",
    "InputDomain",
    "Judgement",
    "TrustProfile",
    "TrustProfileError",
    "choose_abstain_band",
    "choose_calibration",
    "fit_temperature",
    "judge",
    "judge_many",
    "load_trust_profile",
    "save_trust_profile",
]
