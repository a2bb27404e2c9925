"""What a Detector returns: a Verdict on an image, an Explanation (a CAM over the view the
model saw) and a PatchMap (per-patch scores over a whole photograph)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forensics.patches import Box

# What each decision is called wherever a person reads it (the app, case reports, audits).
DECISION_NAMES = {"fake": "AI-generated", "real": "Real photograph", "unsure": "Unsure"}
PARTLY_GENERATED = "Partly AI-generated"  # a `fake` decision that evidence says covers a part
# What can decide (`Verdict.decided_by`), strongest first: a valid signed content credential,
# a generator's unsigned metadata, the model (`forensics.decision` weighs them).
DECIDERS = ("credential", "metadata", "model")
DECIDER_NAMES = {
    "credential": "the file's signed content credential",
    "metadata": "the file's metadata (unsigned)",
    "model": "the model",
}


@dataclass(frozen=True)
class Verdict:
    """What a checkpoint makes of one image.

    `decision` ("real", "fake" or "unsure") is what every user-facing surface shows, with its
    `reasons` in plain words (empty for a confident answer). `label` is the thresholded call
    ("fake" when `prob_fake >= threshold`), `prob_fake` the calibrated probability and
    `prob_fake_raw` the model's own softmax. `perturbed` holds the calibrated scores under the
    stability check's changes, when it ran; `checkpoint` names the folder used.

    Where the file's own evidence was weighed (`forensics.decision.weigh_evidence`),
    `decided_by` says what decided ("credential", "metadata" or "model"), `provenance` is the
    evidence's one-line summary, and `model_decision` / `model_reasons` keep the model's own
    decision beside the final one; `prob_fake` is always the model's score.
    `partly_generated`: the evidence says only a part of the picture was generated.
    """

    label: str
    prob_fake: float
    threshold: float
    decision: str = ""  # defaults to `label` (a Verdict made without trust checks)
    reasons: tuple[str, ...] = ()
    prob_fake_raw: float | None = None
    checkpoint: str = ""
    checkpoint_id: str = ""
    perturbed: Mapping[str, float] = field(default_factory=dict)
    feature_distance: float | None = None
    # Set by the automatic choice: "chosen" (the checkpoint's domain fits the image) or
    # "nearest" (none fits; the score is the nearest checkpoint's, not a verdict).
    routing: str = ""
    decided_by: str = "model"
    model_decision: str = ""  # defaults to `decision`
    model_reasons: tuple[str, ...] | None = None  # defaults to `reasons`
    partly_generated: bool = False
    provenance: str = ""  # the evidence's summary; empty where it was not weighed

    def __post_init__(self) -> None:
        if not self.decision:
            object.__setattr__(self, "decision", self.label)
        if self.prob_fake_raw is None:
            object.__setattr__(self, "prob_fake_raw", self.prob_fake)
        if not self.model_decision:
            object.__setattr__(self, "model_decision", self.decision)
        if self.model_reasons is None:
            object.__setattr__(self, "model_reasons", tuple(self.reasons))
        if self.decided_by not in DECIDERS:
            raise ValueError(f"decided_by must be one of {DECIDERS}, got {self.decided_by!r}")

    @property
    def decision_name(self) -> str:
        """The decision as a person reads it: 'AI-generated', 'Partly AI-generated', ..."""
        if self.decision == "fake" and self.partly_generated:
            return PARTLY_GENERATED
        return DECISION_NAMES[self.decision]

    @property
    def confidence(self) -> float:
        """Probability of the class the verdict names, in [0.5, 1] at the default threshold."""
        return self.prob_fake if self.label == "fake" else 1.0 - self.prob_fake

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reasons": list(self.reasons),
            "label": self.label,
            "prob_fake": self.prob_fake,
            "prob_fake_raw": self.prob_fake_raw,
            "threshold": self.threshold,
            "checkpoint": self.checkpoint,
            "checkpoint_id": self.checkpoint_id,
            "perturbed": dict(self.perturbed),
            "feature_distance": self.feature_distance,
            "routing": self.routing,
            "decided_by": self.decided_by,
            "partly_generated": self.partly_generated,
            "provenance": self.provenance,
            "model_decision": self.model_decision,
            "model_reasons": list(self.model_reasons or ()),
        }


@dataclass(frozen=True)
class Explanation:
    """A heatmap (float32 HxW in [0,1]) over the view the model saw (uint8 HxWx3): the whole
    image as the model's preprocessing shows it, or for a patch model one native-resolution
    patch (`box`, in the image's pixels).

    `faithfulness` (None: not measured) says whether the map reflects what the model used:
    positive when removing the regions it marks lowers the explained class's probability more
    than removing the regions it leaves out (`forensics.explain.measure_faithfulness`, in
    [-1, 1]); `removals` holds what it was computed from, one Removal per share removed.
    """

    verdict: Verdict
    method: str
    target: str
    heatmap: np.ndarray = field(repr=False)
    view: np.ndarray = field(repr=False)
    overlay: np.ndarray = field(repr=False)
    box: Box | None = None
    faithfulness: float | None = None
    removals: tuple[Removal, ...] = ()

    def describe_faithfulness(self) -> str:
        """'Removing the marked 20% of the image lowers P(fake) by 0.41; ...' (plain words)."""
        from forensics.explain import describe_faithfulness

        whole = "image" if self.box is None else "patch"
        rows = [(r.share, r.marked, r.unmarked) for r in self.removals]
        return describe_faithfulness(rows, self.target, whole=whole)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what was explained and how faithful the map is (no pixels)."""
        return {
            "method": self.method,
            "target": self.target,
            "patch": None if self.box is None else list(self.box),
            "faithfulness": self.faithfulness,
            "removals": [removal.to_dict() for removal in self.removals],
            "faithfulness_reading": self.describe_faithfulness(),
        }


@dataclass(frozen=True)
class Removal:
    """One step of the faithfulness check: with `share` of the pixels removed (imputed), the
    explained class's probability changed by `marked` when they were the map's hottest and by
    `unmarked` when they were its coldest."""

    share: float
    marked: float
    unmarked: float

    def to_dict(self) -> dict[str, float]:
        return {"share": self.share, "marked": self.marked, "unmarked": self.unmarked}


@dataclass(frozen=True)
class PatchMap:
    """Per-patch scores over the whole image, at native resolution (no resampling), and the
    image's verdict (for a patch model, the patches' scores combined by its rule)."""

    boxes: tuple[Box, ...]  # (left, top, right, bottom) in the image
    prob_fake: np.ndarray = field(repr=False)  # (N,) calibrated, one per box
    grid: tuple[int, int]  # rows, columns of the boxes
    overlay: np.ndarray = field(repr=False)  # uint8 HxWx3: the whole image, tinted per patch
    verdict: Verdict

    def most_telling(self) -> int:
        """The patch that most supports the verdict's label: the one that looks most generated
        for "fake", most photographic for "real" (where a CAM is most worth opening)."""
        if self.verdict.label == "fake":
            return int(np.argmax(self.prob_fake))
        return int(np.argmin(self.prob_fake))
