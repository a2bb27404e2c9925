"""The Detector: one loaded checkpoint that gives verdicts and explains them.

A Detector is shared by every app session and thread. All passes through the model take one
lock: a CAM attaches hooks to the shared model, and a plain `predict` running meanwhile would
feed those hooks and corrupt the heatmap.

Verdicts run on an inference engine (`forensics.inference`: by default the fused, channels-last,
TorchScript-frozen copy); heatmaps need gradients and hooks, so they run on the model itself.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
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
    REMOVED_SHARES,
    check_method,
    check_target,
    compute_cam,
    faithfulness_score,
    measure_faithfulness,
    overlay_heatmap,
)
from forensics.images import ImageInfo, ImageSource, read_image
from forensics.inference import build_engine
from forensics.labels import CLASS_INDEX
from forensics.models import NUM_CLASSES, LogitsAndFeatures, get_cam_target_layer
from forensics.patches import (
    Box,
    PatchSpec,
    PatchViews,
    aggregate,
    cut_patches,
    draw_patch_map,
    perturbed_aggregate,
)
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
from forensics.verdicts import Explanation, PatchMap, Removal, Verdict

__all__ = ["Detector", "Explanation", "PatchMap", "Verdict", "load_detector"]
RECENT_MAPS = 4


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
        # The last few patch maps, by file content: the Classify page asks a photograph's
        # verdict, map and two CAMs in turn, and each would score its patches again.
        self._recent_maps: OrderedDict[tuple, PatchMap] = OrderedDict()
        self._recent_lock = threading.Lock()

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
        """Verdicts for decoded RGB images and what their files were (None: unknown). A patch
        model judges each image by its native-resolution patches (`score_patch_views`)."""
        margins, features = self.image_scores(rgbs, stability=stability)
        return self.verdicts_from_scores(margins, features, infos)

    def image_scores(
        self, rgbs: Sequence[Image.Image], *, stability: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Margins (N, V) and penultimate features (N, D) of decoded images, each scored as its
        verdict scores it: V is 1, or with `stability` 1 + its STABILITY_PERTURBATIONS copies
        (`verdicts_from_scores` takes both). A patch model scores its patches
        (`score_patch_views`)."""
        if self.patch_spec is not None:
            scored = [self.score_patch_views(self.patch_views(rgb, stability=stability))
                      for rgb in rgbs]  # fmt: skip
            margins = np.stack([margin for margin, _, _ in scored])
            return margins, np.stack([feature for _, feature, _ in scored])
        views = [self.stability_views(rgb) if stability else [rgb] for rgb in rgbs]
        pixels = torch.stack([self.geometry(view) for group in views for view in group])
        margins, features = self.score_pixels(pixels)
        per_image = len(views[0])
        features = features.reshape(len(rgbs), per_image, -1)[:, 0]  # the image's own view
        return margins.reshape(len(rgbs), per_image), features

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

    def _logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits (N, 2) of a preprocessed batch from the engine; the caller holds the lock."""
        return self.engine(batch).float()[:, :NUM_CLASSES]

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

    @property
    def patches(self) -> PatchSpec:
        """The checkpoint's patch settings; for a model that judges whole views, patches of its
        input size (for a patch map only: its verdicts stay whole-view)."""
        return self.patch_spec or PatchSpec(size=int(self.data_config.input_size))

    def patch_views(self, rgb: Image.Image, *, stability: bool) -> PatchViews:
        """The image's native-resolution patches (and their stability copies)."""
        return cut_patches(rgb, self.patches, stability=stability)

    def score_patch_views(
        self, views: PatchViews, *, batch_size: int = 16
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(margins (V,): the patches' margins combined by the checkpoint's rule, then one per
        stability change; features (D,): the patches' mean; each patch's margin (P,)).
        `batch_size` patches per pass: 16 keeps the activations beside a decoded 48 MP
        photograph within the hostile-input memory budget, at no cost in speed here."""
        spec = self.patches
        patch_margins, features = self._score_in_batches(views.patches, batch_size)
        margins = [aggregate(patch_margins, spec.aggregate, k=spec.k)]
        for copies in views.perturbed:
            perturbed, _ = self._score_in_batches(copies, batch_size)
            margins.append(perturbed_aggregate(patch_margins, views.subset, perturbed, spec))
        return np.array(margins), features.mean(axis=0), patch_margins

    def _score_in_batches(self, pixels: torch.Tensor, batch_size: int):
        parts = [self.score_pixels(pixels[i : i + batch_size])
                 for i in range(0, len(pixels), batch_size)]  # fmt: skip
        return np.concatenate([m for m, _ in parts]), np.concatenate([f for _, f in parts])

    def patch_map(self, image: ImageSource, *, stability: bool = True) -> PatchMap:
        """P(fake) of native-resolution patches over the whole image (where in a photograph the
        model sees generated texture) and the image's verdict. Patches are the checkpoint's
        (`patches` in model.json; its input size where it has none) on the bounded grid of
        `forensics.patches.patch_grid`; one pass serves both for a patch model."""
        return self._map_of(image, *read_image(image), stability=stability)

    def _map_of(self, source: ImageSource, rgb, info, *, stability: bool) -> PatchMap:
        """`map_patches`, remembered for the last RECENT_MAPS files given as bytes."""
        if not isinstance(source, bytes):
            return self.map_patches(rgb, info, stability=stability)
        digest = hashlib.blake2b(source, digest_size=16).hexdigest()
        key = (digest, stability, id(self.trust), self.trust_id, self.threshold, self.patches)
        with self._recent_lock:
            if key in self._recent_maps:
                self._recent_maps.move_to_end(key)
                return self._recent_maps[key]
        result = self.map_patches(rgb, info, stability=stability)
        with self._recent_lock:
            self._recent_maps[key] = result
            while len(self._recent_maps) > RECENT_MAPS:
                self._recent_maps.popitem(last=False)
        return result

    def map_patches(
        self, rgb: Image.Image, info: ImageInfo | None, *, stability: bool = True
    ) -> PatchMap:
        """`patch_map` for a decoded image and what its file was (None: unknown)."""
        views = self.patch_views(rgb, stability=stability and self.patch_spec is not None)
        margins, features, patch_margins = self.score_patch_views(views)
        if self.patch_spec is not None:
            (verdict,) = self.verdicts_from_scores(margins[None], features[None], [info])
        else:
            (verdict,) = self.judge_images([rgb], [info], stability=stability)
        probs = self.calibrated(patch_margins)
        return PatchMap(
            boxes=views.boxes,
            prob_fake=probs,
            grid=views.grid,
            overlay=draw_patch_map(rgb, views.boxes, probs, threshold=self.threshold),
            verdict=verdict,
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
        box: Box | None = None,
        faithfulness: bool = True,
    ) -> Explanation:
        """Verdict plus a CAM heatmap for `target` ("predicted", "fake" or "real") over the view
        the model saw, and how faithful the heatmap is (`faithfulness=False` skips that check:
        1 + 2 x len(REMOVED_SHARES) more forward passes). `batch_size` bounds scorecam/
        ablationcam's batched forward passes. A patch model explains one native-resolution
        patch: `box` (one of its patch map's boxes), else the patch that most supports the
        verdict."""
        (explanation,) = self.explain_batch(
            [image], method, target, opacity=opacity, batch_size=batch_size, boxes=[box],
            faithfulness=faithfulness,
        )  # fmt: skip
        return explanation

    def explain_batch(
        self,
        images: Sequence[ImageSource],
        method: str = "gradcam",
        target: str = "predicted",
        *,
        opacity: float = 0.5,
        batch_size: int = 32,
        boxes: Sequence[Box | None] | None = None,
        faithfulness: bool = True,
    ) -> list[Explanation]:
        """`explain` for several images with one forward and one backward pass for all of them
        (each image's own class when `target` is "predicted"): what a gallery of heatmaps needs.
        A patch model's patches may differ in size between images: one pass each. Raises
        ImageLoadError on the first unreadable image."""
        check_method(method)
        check_target(target)
        if not images:
            return []
        boxes = list(boxes) if boxes is not None else [None] * len(images)
        if len(boxes) != len(images):
            raise ValueError(f"{len(images)} images but {len(boxes)} boxes")
        loaded = [read_image(image) for image in images]
        rgbs = [rgb for rgb, _ in loaded]
        if self.patch_spec is None and all(box is None for box in boxes):
            verdicts = self.judge_images(rgbs, [info for _, info in loaded], stability=True)
            views = [to_display(rgb, self.data_config) for rgb in rgbs]
            tensors = [torch.stack([self.transform(rgb) for rgb in rgbs])]
        else:
            verdicts, boxes, views, tensors = self._patch_views_to_explain(images, loaded, boxes)
        explained = [v.label if target == "predicted" else target for v in verdicts]
        heatmaps, changes = [], []
        with self._lock:
            for tensor in tensors:
                done = len(heatmaps)
                classes = [CLASS_INDEX[n] for n in explained[done : done + len(tensor)]]
                maps = compute_cam(self.model, self.target_layer, tensor, method=method,
                                   class_index=classes, batch_size=batch_size)  # fmt: skip
                heatmaps += list(maps)
                if faithfulness:  # the verdicts' engine: the model as it scores, but faster
                    changes += list(measure_faithfulness(
                        self._logits, tensor, maps, class_index=classes, calibrate=self.calibrated
                    ))  # fmt: skip
        scores = faithfulness_score(np.array(changes)) if changes else [None] * len(heatmaps)
        removals = [
            tuple(
                Removal(s, float(m), float(u)) for s, (m, u) in zip(REMOVED_SHARES, c, strict=True)
            )
            for c in changes
        ] or [()] * len(heatmaps)
        return [
            Explanation(
                verdict=verdict,
                method=method,
                target=name,
                heatmap=heatmap,
                view=view,
                overlay=overlay_heatmap(view, heatmap, opacity=opacity),
                box=box,
                faithfulness=None if score is None else float(score),
                removals=removal,
            )
            for verdict, name, heatmap, view, box, score, removal in zip(
                verdicts, explained, heatmaps, views, boxes, scores, removals, strict=True
            )
        ]

    def _patch_views_to_explain(self, images, loaded, boxes):
        """Verdicts, the patch each CAM covers, its pixels as shown and as the model takes
        them (one tensor per image): the patch asked for, else the most telling one."""
        verdicts, chosen, views, tensors = [], [], [], []
        for source, (rgb, info), box in zip(images, loaded, boxes, strict=True):
            if self.patch_spec is not None:
                patch_map = self._map_of(source, rgb, info, stability=True)
                verdict = patch_map.verdict
                if box is None:
                    box = patch_map.boxes[patch_map.most_telling()]
            else:
                (verdict,) = self.judge_images([rgb], [info], stability=True)
            crop = rgb.crop(box)
            if self.patch_spec is not None:  # native pixels, as the patch was scored
                view = np.asarray(crop)
                tensor = normalize_batch(pil_to_uint8(crop)[None], self.data_config)
            else:
                view = to_display(crop, self.data_config)
                tensor = self.transform(crop)[None]
            verdicts.append(verdict)
            chosen.append(tuple(box))
            views.append(view)
            tensors.append(tensor)
        return verdicts, chosen, views, tensors


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
