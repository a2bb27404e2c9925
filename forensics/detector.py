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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from forensics.checkpoint import (
    DEFAULT_CHECKPOINT,
    data_config_from_metadata,
    load_checkpoint,
)
from forensics.explain import (
    check_method,
    check_target,
    compute_cam,
    overlay_heatmap,
)
from forensics.images import ImageSource, load_image
from forensics.inference import build_engine
from forensics.labels import CLASS_INDEX, LABEL_NAMES
from forensics.models import get_cam_target_layer
from forensics.transforms import (
    build_eval_geometry,
    build_eval_transform,
    describe_resampling,
    normalize_batch,
    to_display,
)


@dataclass(frozen=True)
class Verdict:
    """`label` is "fake" when `prob_fake >= threshold`, else "real"."""

    label: str
    prob_fake: float
    threshold: float

    @property
    def confidence(self) -> float:
        """Probability of the class the verdict names, in [0.5, 1] at the default threshold."""
        return self.prob_fake if self.label == "fake" else 1.0 - self.prob_fake

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "prob_fake": self.prob_fake, "threshold": self.threshold}


@dataclass(frozen=True)
class Explanation:
    """A heatmap (float32 HxW in [0,1]) over the view the model saw (uint8 HxWx3)."""

    verdict: Verdict
    method: str
    target: str
    heatmap: np.ndarray = field(repr=False)
    view: np.ndarray = field(repr=False)
    overlay: np.ndarray = field(repr=False)


class Detector:
    """A model plus the preprocessing and threshold its checkpoint records.

    `engine` ("fast", "eager" or "onnxruntime", see `forensics.inference`) gives the verdicts.
    The fast and ONNX engines hold a frozen copy of the weights: build a new Detector after
    changing the model's weights.
    """

    def __init__(
        self,
        model: nn.Module,
        metadata: dict[str, Any],
        *,
        checkpoint_dir: Path | None = None,
        checkpoint_id: str = "",
        engine: str = "fast",
    ) -> None:
        self.model = model.eval()
        self.metadata = metadata
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_id = checkpoint_id
        self.data_config = data_config_from_metadata(metadata)
        self.threshold = float(metadata.get("threshold", 0.5))
        self.transform = build_eval_transform(self.data_config)
        self.geometry = build_eval_geometry(self.data_config)  # uint8, for batches of files
        self.target_layer = get_cam_target_layer(model)
        size = int(self.data_config.input_size)
        self.engine = build_engine(engine, self.model, (1, 3, size, size))
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- verdicts

    def predict(self, image: ImageSource) -> Verdict:
        return self.predict_batch([image], batch_size=1)[0]

    def predict_batch(
        self,
        images: Sequence[ImageSource],
        batch_size: int = 32,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Verdict]:
        """Verdicts for many images, `batch_size` at a time. Raises ImageLoadError on the first
        unreadable image; `progress(done, total)` is called after each batch."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        verdicts: list[Verdict] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            batch = torch.stack([self.geometry(load_image(img)) for img in chunk])
            verdicts += [self._verdict(p) for p in self.predict_pixels(batch)]
            if progress is not None:
                progress(len(verdicts), len(images))
        return verdicts

    def predict_pixels(self, batch: torch.Tensor) -> np.ndarray:
        """prob_fake (N,) for a uint8 batch (N, 3, H, W) from `self.geometry`."""
        return self.predict_tensor(normalize_batch(batch, self.data_config))

    def predict_tensor(self, batch: torch.Tensor) -> np.ndarray:
        """prob_fake (N,) for a preprocessed batch (N, 3, H, W)."""
        with self._lock:
            logits = self.engine(batch)
        return torch.softmax(logits.float(), dim=1)[:, CLASS_INDEX["fake"]].numpy()

    def _verdict(self, prob_fake: float) -> Verdict:
        prob_fake = float(prob_fake)
        label = LABEL_NAMES[int(prob_fake >= self.threshold)]
        return Verdict(label=label, prob_fake=prob_fake, threshold=self.threshold)

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
        rgbs = [load_image(image) for image in images]
        tensor = torch.stack([self.transform(rgb) for rgb in rgbs])
        verdicts = [self._verdict(p) for p in self.predict_tensor(tensor)]
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

    def domain_warning(self, image: Image.Image) -> str | None:
        """One sentence when `image` is far from the training resolution, else None."""
        return describe_resampling(image.size, self.data_config)


def load_detector(path: str | Path | None = None, *, engine: str | None = None) -> Detector:
    """Load a checkpoint directory (None: the shipped default) as a Detector whose verdicts
    run on `engine` (None: $FORENSICS_ENGINE, else "fast").

    Raises CheckpointError for a missing, corrupt, tampered or incompatible checkpoint.
    """
    directory = Path(path) if path is not None else DEFAULT_CHECKPOINT
    model, meta = load_checkpoint(directory)
    return Detector(
        model,
        meta,
        checkpoint_dir=directory,
        checkpoint_id=meta["weights_sha256"][:12],
        engine=engine or os.environ.get("FORENSICS_ENGINE") or "fast",
    )
