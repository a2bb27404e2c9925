"""Native-resolution patches over a large image: where the grid goes, how patch scores become one
verdict, and how the per-patch map is drawn over the whole photograph.

A model trained on native-resolution crops sees a 12 MP photograph as it was taken only if it is
shown patches of it, never a downscaled copy (which erases a generator's fine traces). The grid
covers the whole image evenly with at most `max_patches` patches, neighbours at most `stride`
apart (overlapping where the stride is below the patch size or the image is not a multiple of
it; spread out, with gaps, where it is too large for the bound, so that a 48 MP upload costs no
more than a 12 MP one).

Patches are never resampled: a patch model's scale is always the photograph's own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch
from PIL import Image, ImageDraw

from forensics.perturb import STABILITY_PERTURBATIONS
from forensics.transforms import pil_to_uint8
from forensics.trust.calibration import negative_log_likelihood

Box = tuple[int, int, int, int]  # left, top, right, bottom (PIL's crop box)
# The stability check perturbs at most this many patches of an image (spread over it): a 12 MP
# photograph's 64 patches times four changes would cost four more verdicts.
STABILITY_PATCHES = 16


def _positions(length: int, size: int, count: int) -> list[int]:
    """`count` patch starts from 0 to length - size, evenly spread (both ends included)."""
    if count == 1:
        return [max(0, (length - size) // 2)]
    last = length - size
    return [round(i * last / (count - 1)) for i in range(count)]


def patch_grid(
    width: int, height: int, *, size: int, max_patches: int, stride: int | None = None
) -> list[Box]:
    """Boxes of the patches covering a `width` x `height` image, row by row.

    Patches are `size` x `size`, or as wide (tall) as the image where it is narrower (shorter)
    than that: a 32 px image is one 32 px patch, a 100x4000 strip a column of 100x`size` ones.
    Each side gets the fewest patches whose starts are at most `stride` apart (default: the
    patch side, so the fewest that cover it; neighbours overlap where the side is not a multiple
    of the step, or the stride is below the patch); when that exceeds `max_patches`, both sides
    are thinned in proportion, leaving gaps between patches.
    """
    if size < 1 or max_patches < 1 or (stride is not None and stride < 1):
        raise ValueError(
            f"size, max_patches and stride must be positive, got {size}, {max_patches}, {stride}"
        )
    if width < 1 or height < 1:
        raise ValueError(f"an image has at least one pixel a side, got {width}x{height}")
    side_x, side_y = min(size, width), min(size, height)
    step_x, step_y = min(stride or size, side_x), min(stride or size, side_y)
    across = math.ceil((width - side_x) / step_x) + 1
    down = math.ceil((height - side_y) / step_y) + 1
    if across * down > max_patches:
        shrink = math.sqrt(max_patches / (across * down))
        across = max(1, min(across, math.floor(across * shrink)))
        down = max(1, min(down, max_patches // across))
    xs, ys = _positions(width, side_x, across), _positions(height, side_y, down)
    return [(x, y, x + side_x, y + side_y) for y in ys for x in xs]


def grid_shape(boxes: Sequence[Box]) -> tuple[int, int]:
    """(rows, columns) of a `patch_grid`."""
    return len({box[1] for box in boxes}), len({box[0] for box in boxes})


def candidate_strides(size: int) -> tuple[int, ...]:
    """The patch strides a patch model's fit chooses from on validation: side by side, and
    overlapping by half (every pixel then seen by up to four patches where the bound allows)."""
    return tuple(dict.fromkeys((size, max(1, size // 2))))


def _split_overlaps(starts: list[int], side: int) -> dict[int, tuple[int, int]]:
    """Along one axis: each start's span, cut where it overlaps its neighbour at the middle of
    the overlap (spans that do not overlap are kept whole, gaps stay gaps)."""
    spans = {}
    for i, start in enumerate(starts):
        low, high = start, start + side
        if i > 0 and starts[i - 1] + side > start:
            low = (start + starts[i - 1] + side) // 2
        if i + 1 < len(starts) and high > starts[i + 1]:
            high = (starts[i + 1] + high) // 2
        spans[start] = (low, high)
    return spans


def patch_cells(boxes: Sequence[Box]) -> list[Box]:
    """Each box of a `patch_grid` cut down to the part no neighbour is nearer to: the cells
    tile the covered image without overlapping, so a map of overlapping patches shows one
    score per pixel. Boxes that do not overlap are their own cells."""
    if not boxes:
        return []
    width, height = boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1]
    columns = _split_overlaps(sorted({box[0] for box in boxes}), width)
    rows = _split_overlaps(sorted({box[1] for box in boxes}), height)
    cells = []
    for left, top, _, _ in boxes:
        (low_x, high_x), (low_y, high_y) = columns[left], rows[top]
        cells.append((low_x, low_y, high_x, high_y))
    return cells


def spread_indices(count: int, limit: int) -> list[int]:
    """At most `limit` of range(count), evenly spread over it (all of them when count <= limit):
    the patches the stability check perturbs."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def perturbed_aggregate(
    margins: np.ndarray, subset: Sequence[int], perturbed: np.ndarray, spec: PatchSpec
) -> float:
    """The image's aggregate margin had every patch gone through a change, from the patches in
    `subset` that did (their margins `perturbed`): exact when every patch is in the subset;
    otherwise the other patches are assumed to move by the subset's mean change."""
    margins = np.asarray(margins, dtype=np.float64)
    perturbed = np.asarray(perturbed, dtype=np.float64)
    if len(subset) == len(margins):
        return aggregate(perturbed, spec.aggregate, k=spec.k)
    shift = float(np.mean(perturbed - margins[list(subset)]))
    return aggregate(margins + shift, spec.aggregate, k=spec.k)


def _mean(margins: np.ndarray, k: int) -> float:
    return float(np.mean(margins))


def _top_k_mean(margins: np.ndarray, k: int) -> float:
    # The k patches that look most generated: a partly generated or edited photograph is fake.
    return float(np.mean(np.sort(margins)[-min(k, len(margins)) :]))


def _median(margins: np.ndarray, k: int) -> float:
    return float(np.median(margins))


AGGREGATIONS = MappingProxyType(
    {"mean_logit": _mean, "top_k_mean": _top_k_mean, "median_logit": _median}
)


def aggregate(margins: Sequence[float], rule: str, *, k: int = 4) -> float:
    """One margin (logit_fake - logit_real) from a patch grid's margins by `rule`
    (AGGREGATIONS): the mean, the mean of the `k` highest, or the median."""
    if rule not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {rule!r}; valid: {list(AGGREGATIONS)}")
    values = np.asarray(margins, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no patch margins to aggregate")
    return AGGREGATIONS[rule](values, k)


def choose_aggregation(
    patch_margins: Sequence[Sequence[float]],
    labels: Sequence[int],
    *,
    k: int = 4,
    loss: Callable[[np.ndarray, np.ndarray], float] | None = None,
) -> tuple[str, Mapping[str, float]]:
    """The rule with the lowest `loss` (image margins, labels; by default the log loss of the
    raw margins) on validation images (each a list of patch margins), and every rule's loss, so
    the choice is recorded with its evidence."""
    labels = np.asarray(labels, dtype=np.float64)
    if len(patch_margins) != len(labels) or len(labels) == 0:
        raise ValueError("need one list of patch margins per labelled validation image")
    loss = loss or raw_log_loss
    losses = {}
    for rule in AGGREGATIONS:
        margins = np.array([aggregate(m, rule, k=k) for m in patch_margins])
        losses[rule] = float(loss(margins, labels))
    return min(losses, key=losses.get), losses


def raw_log_loss(margins: np.ndarray, labels: np.ndarray) -> float:
    """Mean log loss of labels (0/1) under sigmoid(margin), the margins as the model gives them."""
    return negative_log_likelihood(margins, labels, temperature=1.0)


@dataclass(frozen=True)
class PatchSpec:
    """What a checkpoint that judges native-resolution patches records (model.json "patches")."""

    size: int
    max_patches: int = 64
    aggregate: str = "mean_logit"
    k: int = 4
    stride: int | None = None  # None: the patch side (the fewest patches that cover)

    def __post_init__(self) -> None:
        if self.size < 8 or not 1 <= self.max_patches <= 1024 or self.k < 1:
            raise ValueError(f"invalid patch settings {self}")
        if self.stride is not None and not 1 <= self.stride <= self.size:
            raise ValueError(f"a patch stride is from 1 to the patch size, got {self}")
        if self.aggregate not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.aggregate!r}; valid: {list(AGGREGATIONS)}")

    @classmethod
    def from_dict(cls, record: Mapping) -> PatchSpec:
        return cls(
            size=int(record["size"]),
            max_patches=int(record.get("max_patches", 64)),
            aggregate=str(record.get("aggregate", "mean_logit")),
            k=int(record.get("k", 4)),
            stride=None if record.get("stride") is None else int(record["stride"]),
        )

    def to_dict(self) -> dict:
        record = {"size": self.size, "max_patches": self.max_patches,
                  "aggregate": self.aggregate, "k": self.k}  # fmt: skip
        if self.stride is not None:  # absent from records written before strides existed
            record["stride"] = self.stride
        return record

    @property
    def step(self) -> int:
        """How far apart neighbouring patches start at most: the stride, or the side."""
        return self.stride or self.size

    def boxes(self, width: int, height: int) -> list[Box]:
        """This spec's `patch_grid` over a `width` x `height` image."""
        return patch_grid(
            width, height, size=self.size, max_patches=self.max_patches, stride=self.stride
        )


@dataclass(frozen=True)
class PatchViews:
    """An image cut into native-resolution patches, with the stability check's copies of a
    spread subset of them: uint8 tensors ready for a Detector's `score_pixels`."""

    boxes: tuple[Box, ...]
    patches: torch.Tensor  # (P, 3, h, w)
    subset: tuple[int, ...]  # the patches the stability copies were made of
    perturbed: tuple[torch.Tensor, ...]  # one (S, 3, h', w') per change, or none

    @property
    def grid(self) -> tuple[int, int]:
        return grid_shape(self.boxes)


def cut_patches(image: Image.Image, spec: PatchSpec, *, stability: bool) -> PatchViews:
    """`image`'s patches on `spec`'s grid and, with `stability`, each STABILITY_PERTURBATIONS
    change applied to each of at most STABILITY_PATCHES of them (in that mapping's order)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")  # no copy of a 48 MP photo
    boxes = spec.boxes(rgb.width, rgb.height)
    crops = [rgb.crop(box) for box in boxes]
    subset = spread_indices(len(boxes), STABILITY_PATCHES) if stability else []
    perturbed = tuple(
        torch.stack([pil_to_uint8(change(crops[i])) for i in subset])
        for change in (STABILITY_PERTURBATIONS.values() if stability else ())
    )
    return PatchViews(
        boxes=tuple(boxes),
        patches=torch.stack([pil_to_uint8(crop) for crop in crops]),
        subset=tuple(subset),
        perturbed=perturbed,
    )


def draw_patch_map(
    image: Image.Image,
    boxes: Sequence[Box],
    prob_fake: Sequence[float],
    *,
    threshold: float = 0.5,
    max_side: int = 1024,
    opacity: float = 0.45,
) -> np.ndarray:
    """The whole image (at most `max_side` on its long side) with each patch (its cell, where
    patches overlap) tinted by its P(fake): red above `threshold`, green below, stronger the
    further from it. uint8 HxWx3."""
    if len(boxes) != len(prob_fake):
        raise ValueError(f"{len(boxes)} boxes but {len(prob_fake)} probabilities")
    scale = min(1.0, max_side / max(image.size))
    shown = image
    if scale < 1.0:  # reduced before anything else: never a full-size copy
        shown = shown.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
            Image.Resampling.BILINEAR,
            reducing_gap=2.0,
        )
    layer = Image.new("RGBA", shown.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    # Overlapping patches are drawn as their cells: each pixel shows the nearest patch's score.
    for box, prob in zip(patch_cells(boxes), prob_fake, strict=True):
        strength = min(1.0, abs(float(prob) - threshold) / max(threshold, 1 - threshold))
        colour = (198, 40, 40) if prob >= threshold else (46, 125, 50)
        alpha = round(255 * opacity * (0.25 + 0.75 * strength))
        scaled = tuple(round(v * scale) for v in box)
        draw.rectangle(scaled, fill=(*colour, alpha), outline=(*colour, 255))
    return np.asarray(Image.alpha_composite(shown.convert("RGBA"), layer).convert("RGB"))
