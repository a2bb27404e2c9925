"""The Detector: one loaded checkpoint that gives verdicts and explains them.

A Detector is shared by every app session and thread. All passes through the model take one
lock: a CAM attaches hooks to the shared model, and a plain `predict` running meanwhile would
feed those hooks and corrupt the heatmap.

Verdicts run on an inference engine (`forensics.inference`: by default the fused, channels-last,
TorchScript-frozen copy); heatmaps need gradients and hooks, so they run on the model itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from forensics.checkpoint import (
    DEFAULT_CHECKPOINT,
    CheckpointError,
    data_config_from_metadata,
    load_checkpoint,
)
from forensics.explain import (
    check_method,
    check_target,
    compute_cam,
    overlay_heatmap,
)
from forensics.images import ImageInfo, ImageSource, read_image
from forensics.inference import build_engine
from forensics.labels import CLASS_INDEX
from forensics.models import NUM_CLASSES, LogitsAndFeatures, get_cam_target_layer
from forensics.patches import PatchSpec, aggregate, draw_patch_map, patch_grid
from forensics.perturb import STABILITY_PERTURBATIONS
from forensics.transforms import (
    TrimLongSide,
    build_eval_geometry,
    build_eval_transform,
    normalize_batch,
    pil_to_uint8,
    to_display,
)
from forensics.trust import (
    Judgement,
    TrustProfile,
    TrustProfileError,
    judge_many,
    load_trust_profile,
)
from forensics.trust.calibration import sigmoid


@dataclass(frozen=True)
class Verdict:
    """What a checkpoint makes of one image.

    `decision` ("real", "fake" or "unsure") is what every user-facing surface shows, with its
    `reasons` in plain words (empty for a confident answer). `label` is the thresholded call
    ("fake" when `prob_fake >= threshold`), `prob_fake` the calibrated probability and
    `prob_fake_raw` the model's own softmax. `perturbed` holds the calibrated scores under the
    stability check's changes, when it ran; `checkpoint` names the folder used.
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

    def __post_init__(self) -> None:
        if not self.decision:
            object.__setattr__(self, "decision", self.label)
        if self.prob_fake_raw is None:
            object.__setattr__(self, "prob_fake_raw", self.prob_fake)

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
        }


@dataclass(frozen=True)
class Explanation:
    """A heatmap (float32 HxW in [0,1]) over the view the model saw (uint8 HxWx3)."""

    verdict: Verdict
    method: str
    target: str
    heatmap: np.ndarray = field(repr=False)
    view: np.ndarray = field(repr=False)
    overlay: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class PatchMap:
    """Per-patch scores over the whole image, at native resolution (no resampling)."""

    boxes: tuple[tuple[int, int, int, int], ...]  # (left, top, right, bottom) in the image
    prob_fake: np.ndarray = field(repr=False)  # (N,) calibrated, one per box
    grid: tuple[int, int]  # rows, columns of the boxes
    overlay: np.ndarray = field(repr=False)  # uint8 HxWx3: the whole image, tinted per patch
    aggregate_prob_fake: float  # the patches' scores combined by the checkpoint's rule


class Detector:
    """A model plus the preprocessing, threshold and trust profile its checkpoint records.

    `engine` ("fast", "eager" or "onnxruntime", see `forensics.inference`) gives the verdicts;
    every engine holds its own copy of the weights, so build a new Detector after changing the
    model's. `trust` (None: the checkpoint has none) turns scores into decisions.
    """

    def __init__(
        self,
        model: nn.Module,
        metadata: dict[str, Any],
        *,
        checkpoint_dir: Path | None = None,
        checkpoint_id: str = "",
        engine: str = "fast",
        trust: TrustProfile | None = None,
    ) -> None:
        self.model = model.eval()
        self.metadata = metadata
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_id = checkpoint_id
        self.trust = trust
        self.data_config = data_config_from_metadata(metadata)
        self.threshold = float(metadata.get("threshold", 0.5))
        self.transform = build_eval_transform(self.data_config)
        self.geometry = build_eval_geometry(self.data_config)  # uint8, for batches of files
        self.trim = TrimLongSide(
            resize=self.data_config.resize, input_size=self.data_config.input_size
        )
        self.target_layer = get_cam_target_layer(model)
        patches = metadata.get("patches")
        self.patch_spec = PatchSpec.from_dict(patches) if patches else None
        size = int(self.data_config.input_size)
        # The engine gives the logits and the penultimate features in one pass. It is warmed up
        # on one image with its stability copies: the batch every single verdict runs.
        scorer = LogitsAndFeatures(self.model).eval()
        views = 1 + len(STABILITY_PERTURBATIONS)
        self.engine = build_engine(engine, scorer, (views, 3, size, size))
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The checkpoint's folder name, as every output names the model used."""
        return self.checkpoint_dir.name if self.checkpoint_dir is not None else ""

    @property
    def trust_id(self) -> str:
        """Changes when the trust profile is refitted (cached decisions must be redone)."""
        return self.trust.trust_id if self.trust is not None else "none"

    # ---------------------------------------------------------------- verdicts

    def predict(self, image: ImageSource, *, stability: bool = True) -> Verdict:
        """The verdict on one image with every check (stability included, by default)."""
        return self.predict_batch([image], batch_size=1, stability=stability)[0]

    def predict_batch(
        self,
        images: Sequence[ImageSource],
        batch_size: int = 32,
        *,
        stability: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Verdict]:
        """Verdicts for many images, `batch_size` at a time. `stability` also scores each image's
        perturbed copies (five passes instead of one). Raises ImageLoadError on the first
        unreadable image; `progress(done, total)` is called after each batch."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        verdicts: list[Verdict] = []
        for start in range(0, len(images), batch_size):
            loaded = [read_image(image) for image in images[start : start + batch_size]]
            verdicts += self.judge_images(
                [rgb for rgb, _ in loaded], [info for _, info in loaded], stability=stability
            )
            if progress is not None:
                progress(len(verdicts), len(images))
        return verdicts

    def judge_images(
        self, rgbs: Sequence[Image.Image], infos: Sequence[ImageInfo | None], *, stability: bool
    ) -> list[Verdict]:
        """Verdicts for decoded RGB images and what their files were (None: unknown)."""
        views = [self.stability_views(rgb) if stability else [rgb] for rgb in rgbs]
        pixels = torch.stack([self.geometry(view) for group in views for view in group])
        margins, features = self.score_pixels(pixels)
        per_image = len(views[0])
        features = features.reshape(len(rgbs), per_image, -1)[:, 0]  # the image's own view
        return self.verdicts_from_scores(margins.reshape(len(rgbs), per_image), features, infos)

    def stability_views(self, rgb: Image.Image) -> list[Image.Image]:
        """The image, then its copies under the stability check's changes. A large image is
        first reduced to four times the model's input scale: the model resizes it anyway, and
        a 12 MP re-save would cost more than the verdict."""
        limit = 4 * int(self.data_config.resize)
        # Only the part the model's crop keeps: a 1x400,000 strip would not even save as a JPEG.
        working = self.trim(rgb)
        if min(working.size) > limit:
            factor = limit / min(working.size)
            working = working.resize(
                (max(1, round(working.width * factor)), max(1, round(working.height * factor))),
                Image.Resampling.BILINEAR,
                reducing_gap=2.0,
            )
        return [rgb, *(change(working) for change in STABILITY_PERTURBATIONS.values())]

    def verdicts_from_scores(
        self, margins: np.ndarray, features: np.ndarray, infos: Sequence[ImageInfo | None]
    ) -> list[Verdict]:
        """Verdicts from each image's margins (N, V): its own view first, then (V > 1) its
        STABILITY_PERTURBATIONS copies in order; its features (N, D); what its file was."""
        margins = np.asarray(margins, dtype=np.float64).reshape(len(infos), -1)
        names = list(STABILITY_PERTURBATIONS) if margins.shape[1] > 1 else []
        judgements = judge_many(
            self.trust,
            margins=margins[:, 0],
            threshold=self.threshold,
            infos=infos,
            features=features,
            perturbed_margins=[dict(zip(names, row[1:], strict=True)) for row in margins],
        )
        return [self._verdict(j) for j in judgements]

    def score_pixels(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Margins (N,) = logit_fake - logit_real and penultimate features (N, D) for a uint8
        batch (N, 3, H, W) from `self.geometry`."""
        return self.score_tensor(normalize_batch(batch, self.data_config))

    def score_tensor(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """`score_pixels` for a preprocessed batch."""
        with self._lock:
            output = self.engine(batch).float().numpy()
        logits = output[:, :NUM_CLASSES]
        margin = logits[:, CLASS_INDEX["fake"]] - logits[:, CLASS_INDEX["real"]]
        return margin.astype(np.float64), output[:, NUM_CLASSES:]

    def predict_tensor(self, batch: torch.Tensor) -> np.ndarray:
        """Calibrated prob_fake (N,) for a preprocessed batch (no decisions)."""
        return self.calibrated(self.score_tensor(batch)[0])

    def calibrated(self, margins: np.ndarray) -> np.ndarray:
        if self.trust is None:
            return sigmoid(margins)
        return self.trust.calibrate(margins)

    def _verdict(self, judgement: Judgement) -> Verdict:
        return Verdict(
            label=judgement.label,
            prob_fake=judgement.prob_fake,
            threshold=self.threshold,
            decision=judgement.decision,
            reasons=judgement.reasons,
            prob_fake_raw=judgement.prob_fake_raw,
            checkpoint=self.name,
            checkpoint_id=self.checkpoint_id,
            perturbed=judgement.perturbed,
            feature_distance=judgement.feature_distance,
        )

    # ---------------------------------------------------------------- patches

    def patch_map(self, image: ImageSource, *, batch_size: int = 16) -> PatchMap:
        """P(fake) of native-resolution patches over the whole image: where in a photograph the
        model sees generated texture. Patches are the checkpoint's patch size (`patches` in
        model.json; its input size where it has none), on the bounded grid of
        `forensics.patches.patch_grid`; an image smaller than one patch is one patch, whole."""
        rgb, _ = read_image(image)
        spec = self.patch_spec or PatchSpec(size=int(self.data_config.input_size))
        boxes = patch_grid(rgb.width, rgb.height, size=spec.size, max_patches=spec.max_patches)
        if not boxes:
            boxes = [(0, 0, rgb.width, rgb.height)]
        margins = []
        for start in range(0, len(boxes), batch_size):
            crops = [pil_to_uint8(rgb.crop(box)) for box in boxes[start : start + batch_size]]
            margins.append(self.score_pixels(torch.stack(crops))[0])
        margin = np.concatenate(margins)
        probs = self.calibrated(margin)
        grid = (len({box[1] for box in boxes}), len({box[0] for box in boxes}))
        combined = self.calibrated(np.array([aggregate(margin, spec.aggregate, k=spec.k)]))
        return PatchMap(
            boxes=tuple(boxes),
            prob_fake=probs,
            grid=grid,
            overlay=draw_patch_map(rgb, boxes, probs, threshold=self.threshold),
            aggregate_prob_fake=float(combined[0]),
        )

    # ---------------------------------------------------------------- explanations

    def explain(
        self,
        image: ImageSource,
        method: str = "gradcam",
        target: str = "predicted",
        *,
        opacity: float = 0.5,
        batch_size: int = 32,
    ) -> Explanation:
        """Verdict plus a CAM heatmap for `target` ("predicted", "fake" or "real") over the view
        the model saw. `batch_size` bounds scorecam/ablationcam's batched forward passes."""
        (explanation,) = self.explain_batch(
            [image], method, target, opacity=opacity, batch_size=batch_size
        )
        return explanation

    def explain_batch(
        self,
        images: Sequence[ImageSource],
        method: str = "gradcam",
        target: str = "predicted",
        *,
        opacity: float = 0.5,
        batch_size: int = 32,
    ) -> list[Explanation]:
        """`explain` for several images with one forward and one backward pass for all of them
        (each image's own class when `target` is "predicted"): what a gallery of heatmaps needs.
        Raises ImageLoadError on the first unreadable image."""
        check_method(method)
        check_target(target)
        if not images:
            return []
        loaded = [read_image(image) for image in images]
        rgbs = [rgb for rgb, _ in loaded]
        tensor = torch.stack([self.transform(rgb) for rgb in rgbs])
        verdicts = self.judge_images(rgbs, [info for _, info in loaded], stability=True)
        explained = [v.label if target == "predicted" else target for v in verdicts]
        with self._lock:
            heatmaps = compute_cam(
                self.model,
                self.target_layer,
                tensor,
                method=method,
                class_index=[CLASS_INDEX[name] for name in explained],
                batch_size=batch_size,
            )
        explanations = []
        for rgb, verdict, name, heatmap in zip(rgbs, verdicts, explained, heatmaps, strict=True):
            view = to_display(rgb, self.data_config)
            explanations.append(
                Explanation(
                    verdict=verdict,
                    method=method,
                    target=name,
                    heatmap=heatmap,
                    view=view,
                    overlay=overlay_heatmap(view, heatmap, opacity=opacity),
                )
            )
        return explanations


def load_detector(path: str | Path | None = None, *, engine: str | None = None) -> Detector:
    """Load a checkpoint directory (None: the shipped default) as a Detector whose verdicts
    run on `engine` (None: $FORENSICS_ENGINE, else "fast").

    Raises CheckpointError for a missing, corrupt, tampered or incompatible checkpoint.
    """
    directory = Path(path) if path is not None else DEFAULT_CHECKPOINT
    model, meta = load_checkpoint(directory)
    try:
        trust = load_trust_profile(directory, meta)
    except TrustProfileError as exc:
        raise CheckpointError(f"{directory}: {exc}") from None
    return Detector(
        model,
        meta,
        checkpoint_dir=directory,
        checkpoint_id=meta["weights_sha256"][:12],
        engine=engine or os.environ.get("FORENSICS_ENGINE") or "fast",
        trust=trust,
    )
