"""Choosing the model by the image (`auto`): per image, the shipped checkpoint whose training
domain fits it best.

Above `forensics.detector` and never imported by it. For each image, the checkpoints whose input
domain (size, resampling, shape, JPEG quality) admits it are candidates; among several, the one
whose features are nearest its training features (distance over its own threshold) wins. When no
checkpoint admits the image, the decision is `unsure: no shipped model covers this kind of
image`, and the nearest model's score is kept, labelled as such (`Verdict.routing == "nearest"`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from PIL import Image

from forensics.checkpoint import shipped_checkpoints
from forensics.detector import Detector, Explanation, PatchMap, Verdict
from forensics.detector import load_detector as load_checkpoint_detector
from forensics.images import ImageInfo, ImageSource, read_image

AUTO = "auto"
NO_MODEL_FITS = "no shipped model covers this kind of image"


class AutoDetector:
    """The Detector interface (predict, predict_batch, explain, explain_batch) over several
    checkpoints, choosing one per image. Every verdict names the checkpoint it came from."""

    name = AUTO

    def __init__(self, detectors: Sequence[Detector]) -> None:
        usable = [d for d in detectors if d.trust is not None]
        if not usable:
            raise ValueError("automatic choice needs checkpoints with trust profiles")
        self.detectors = list(usable)

    @property
    def checkpoint_dir(self) -> Path:
        return Path(AUTO)  # what load_detector takes to build this again

    @property
    def checkpoint_id(self) -> str:
        return "+".join(d.checkpoint_id for d in self.detectors)

    @property
    def trust_id(self) -> str:
        return "+".join(d.trust_id for d in self.detectors)

    @property
    def threshold(self) -> float:
        """The threshold every checkpoint shares (metrics over routed verdicts need one)."""
        thresholds = {d.threshold for d in self.detectors}
        if len(thresholds) > 1:
            names = ", ".join(f"{d.name} {d.threshold}" for d in self.detectors)
            raise ValueError(f"the automatic choice's checkpoints differ in threshold ({names})")
        return thresholds.pop()

    def choose(self, rgb: Image.Image, info: ImageInfo) -> tuple[Detector, bool]:
        """(the detector for this image, whether its domain admits it). Admitted candidates are
        ranked by feature distance over their threshold; without any, the nearest by input."""
        admitted = [d for d in self.detectors if not d.trust.input_domain.reasons(info)]
        if len(admitted) == 1:
            return admitted[0], True
        if admitted:
            return min(admitted, key=lambda d: _feature_ratio(d, rgb)), True
        return min(self.detectors, key=lambda d: _input_gap(d, info)), False

    def predict(self, image: ImageSource, *, stability: bool = True) -> Verdict:
        return self.predict_batch([image], stability=stability)[0]

    def predict_batch(
        self,
        images: Sequence[ImageSource],
        batch_size: int = 32,
        *,
        stability: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Verdict]:
        """Verdicts in input order; images choosing the same checkpoint are judged together."""
        verdicts: list[Verdict | None] = [None] * len(images)
        for start in range(0, len(images), batch_size):
            loaded = [read_image(image) for image in images[start : start + batch_size]]
            groups: dict[int, tuple[Detector, list[tuple[int, Image.Image, ImageInfo, bool]]]] = {}
            for offset, (rgb, info) in enumerate(loaded):
                detector, fits = self.choose(rgb, info)
                group = groups.setdefault(id(detector), (detector, []))[1]
                group.append((start + offset, rgb, info, fits))
            for detector, group in groups.values():
                judged = detector.judge_images(
                    [g[1] for g in group], [g[2] for g in group], stability=stability
                )
                for (index, _, _, fits), verdict in zip(group, judged, strict=True):
                    verdicts[index] = routed(verdict, fits=fits)
            if progress is not None:
                progress(min(start + batch_size, len(images)), len(images))
        return verdicts  # type: ignore[return-value]

    def explain(self, image: ImageSource, method: str = "gradcam", target: str = "predicted",
                **options) -> Explanation:  # fmt: skip
        (explanation,) = self.explain_batch([image], method, target, **options)
        return explanation

    def explain_batch(
        self,
        images: Sequence[ImageSource],
        method: str = "gradcam",
        target: str = "predicted",
        *,
        boxes: Sequence[tuple[int, int, int, int] | None] | None = None,
        **options,
    ) -> list[Explanation]:
        """Each image explained by the checkpoint chosen for it (`boxes`: the patch of each
        that a patch model explains, see `Detector.explain`)."""
        explanations = []
        for image, box in zip(images, boxes or [None] * len(images), strict=True):
            rgb, info = read_image(image)
            detector, fits = self.choose(rgb, info)
            (explanation,) = detector.explain_batch([image], method, target, boxes=[box], **options)
            verdict = routed(explanation.verdict, fits=fits)
            explanations.append(replace(explanation, verdict=verdict))
        return explanations

    def patch_map(self, image: ImageSource, *, stability: bool = True) -> PatchMap:
        """The patch map of the checkpoint chosen for the image, with its routed verdict."""
        detector, fits = self.choose(*read_image(image))
        # Decoded again by the chosen detector (as explain_batch does): its cache of recent
        # maps is keyed by the file's bytes, and serves the CAMs that follow.
        patch_map = detector.patch_map(image, stability=stability)
        return replace(patch_map, verdict=routed(patch_map.verdict, fits=fits))


def routed(verdict: Verdict, *, fits: bool) -> Verdict:
    """The verdict as the automatic choice reports it: chosen, or only the nearest model's."""
    if fits:
        return replace(verdict, routing="chosen")
    reasons = (
        f"{NO_MODEL_FITS}; the nearest, {verdict.checkpoint}, would score it "
        f"P(fake) = {verdict.prob_fake:.2f}, which is not a verdict",
        *verdict.reasons,
    )
    return replace(verdict, decision="unsure", reasons=reasons, routing="nearest")


def _feature_ratio(detector: Detector, rgb: Image.Image) -> float:
    """The image's feature distance over the checkpoint's threshold (below 1: in domain)."""
    domain = detector.trust.feature_domain
    return float(domain.distance(detector.image_scores([rgb])[1])[0] / domain.threshold)


def _input_gap(detector: Detector, info: ImageInfo) -> float:
    """How far the image's scale is from the checkpoint's training scales (log ratio), plus
    one for each other input reason: the nearest model when none fits."""
    domain = detector.trust.input_domain
    scale = domain.scale_of(info)
    low, high = domain.scale
    gap = (
        0.0
        if low <= scale <= high
        else min(abs(math.log(scale / low)), abs(math.log(scale / high)))
    )
    return gap + len(domain.reasons(info))


def load_detector(
    path: str | Path | None = None, *, engine: str | None = None
) -> Detector | AutoDetector:
    """A checkpoint folder's Detector (None: the shipped default), or with "auto" an
    AutoDetector over every shipped checkpoint that has a trust profile. Raises
    CheckpointError for a bad checkpoint; ValueError where no shipped checkpoint can route."""
    if path is not None and str(path) == AUTO:
        return AutoDetector(
            [load_checkpoint_detector(p, engine=engine) for p in shipped_checkpoints()]
        )
    return load_checkpoint_detector(path, engine=engine)
