"""Class activation maps from pytorch-grad-cam: the nine methods, the targets, overlays, and
each map's faithfulness (`measure_faithfulness`: pytorch-grad-cam's ROAD metrics, whether
removing what a map marks changes the score more than removing what it leaves out).

"What to explain" (a class index on the two-logit output) is kept apart from "how" (the CAM
method). CAM objects are created per call and released with `with`, so their hooks never
outlive the call that needed them.

While a CAM runs, only the target layer's last parameter requires a gradient: the backward pass
then stops at the target layer instead of running down to the first convolution and filling
every weight's .grad. The heatmaps are the same (they need the gradient at the target layer's
output, not the weights'); on ResNet50 Grad-CAM fell from 3.5x to 1.1x one forward pass
(`python -m benchmarks.bench`, rows `gradcam (full backward)` and `gradcam`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from torch import nn

# Method name -> its pytorch-grad-cam class, imported on first use: with OpenCV it is a large
# part of the start-up time, which a verdict alone need not pay.
CAM_METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
    "fullgrad": "FullGrad",
}
# One forward pass per feature channel (512 for ResNet18, 2048 for ResNet50): seconds, not ms.
SLOW_METHODS = frozenset({"scorecam", "ablationcam"})
# EigenCAM shows the main component of the activations, whatever the target.
TARGET_INDEPENDENT_METHODS = frozenset({"eigencam"})
# Methods that weigh activations by forward passes alone: no autograd graph is built for them.
GRADIENT_FREE_METHODS = frozenset({"eigencam", "scorecam", "ablationcam"})
TARGETS = ("predicted", "fake", "real")


def check_method(method: str) -> str:
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; valid: {list(CAM_METHODS)}")
    return method


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; valid: {list(TARGETS)}")
    return target


def compute_cam(
    model: nn.Module,
    target_layer: nn.Module,
    input_tensor: torch.Tensor,
    *,
    method: str = "gradcam",
    class_index: int | Sequence[int],
    batch_size: int = 32,
    stop_backward: bool = True,
) -> np.ndarray:
    """Heatmaps for `class_index` (0 real, 1 fake; one for all images or one per image):
    float32 (N, H, W) in [0, 1] at input size.

    `input_tensor` is (N, 3, H, W), normalised as the model expects. `batch_size` bounds the
    forward passes that scorecam and ablationcam batch together. Needs gradients: it turns them
    on itself, even inside a caller's torch.inference_mode(). `stop_backward=False` runs the
    full backward pass instead (same heatmaps, slower: the benchmark measures the difference).
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_class = _cam_class(check_method(method))
    # FullGrad uses every bias layer and warns when given target layers.
    layers = [] if method == "fullgrad" else [target_layer]
    kwargs = {"batch_size": batch_size} if method == "ablationcam" else {}
    count = input_tensor.shape[0]
    indices = [class_index] * count if np.ndim(class_index) == 0 else list(class_index)
    if len(indices) != count:
        raise ValueError(f"{len(indices)} class indices for {count} images")
    targets = [ClassifierOutputTarget(int(index)) for index in indices]
    slot = _slot_of(model, target_layer)
    # A caller's inference_mode would make every tensor gradient-free (and enable_grad cannot
    # undo it): leave it here, and clone the input out of it, so CAM always has its gradients.
    try:
        with (
            torch.inference_mode(False),
            torch.enable_grad(),
            _gradients_stop_at(model, target_layer, anchored=method not in GRADIENT_FREE_METHODS)
            if stop_backward
            else nullcontext(),
            cam_class(model=model, target_layers=layers, **kwargs) as cam,
        ):
            if method == "scorecam":
                cam.batch_size = batch_size
            heatmaps = cam(input_tensor=input_tensor.clone(), targets=targets)
    finally:
        # The backward pass leaves .grad on every parameter: drop it, the model is shared.
        model.zero_grad(set_to_none=True)
        # AblationCAM swaps the target layer out while it runs and puts it back only when it
        # finishes: an interrupted call must not leave the shared model altered.
        if slot is not None and getattr(*slot) is not target_layer:
            setattr(*slot, target_layer)
    heatmaps = np.nan_to_num(np.asarray(heatmaps, dtype=np.float32), nan=0.0)
    return np.clip(heatmaps, 0.0, 1.0)


@functools.cache
def _cam_class(method: str) -> type:
    """pytorch-grad-cam's class for `method`; EigenCAM with a reduced SVD (below)."""
    import pytorch_grad_cam

    if method != "eigencam":
        return getattr(pytorch_grad_cam, CAM_METHODS[method])

    class ReducedSvdEigenCAM(pytorch_grad_cam.EigenCAM):
        """The library's EigenCAM asks NumPy for the full SVD of the (H*W, C) activations: for
        ResNet50 that builds a 2048x2048 matrix of right singular vectors to use one row, and
        took 5x a forward pass. The reduced SVD has the same first component."""

        def get_cam_image(self, input_tensor, target_layer, target_category, activations,
                          grads, eigen_smooth):  # fmt: skip
            return first_component_projection(activations)

    return ReducedSvdEigenCAM


def first_component_projection(activations: np.ndarray) -> np.ndarray:
    """float32 (N, H, W): each (C, H, W) activation's pixels, centred, projected on their first
    principal direction (EigenCAM's map; as pytorch-grad-cam's get_2d_projection)."""
    activations = np.nan_to_num(np.asarray(activations, dtype=np.float32), nan=0.0)
    projections = []
    for channels in activations:
        pixels = channels.reshape(channels.shape[0], -1).T
        pixels = pixels - pixels.mean(axis=0)
        _, _, right = np.linalg.svd(pixels, full_matrices=False)
        projections.append((pixels @ right[0]).reshape(channels.shape[1:]))
    return np.float32(projections)


@contextmanager
def _gradients_stop_at(
    model: nn.Module, target_layer: nn.Module, *, anchored: bool = True
) -> Iterator[None]:
    """Only `target_layer`'s last parameter requires grad inside the block (so its output is
    in the autograd graph and nothing below it is), or none when not `anchored`; every flag is
    restored afterwards."""
    anchor = list(target_layer.parameters())[-1:] if anchored else []
    if anchored and not anchor:  # a parameter-free target layer: let the gradients flow
        yield
        return
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        for parameter in anchor:
            parameter.requires_grad_(True)
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def _slot_of(model: nn.Module, layer: nn.Module) -> tuple[nn.Module, str] | None:
    """(parent module, attribute name) under which `layer` sits in `model`."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is layer:
                return parent, name
    return None


def overlay_heatmap(view: np.ndarray, heatmap: np.ndarray, *, opacity: float = 0.5) -> np.ndarray:
    """uint8 (H, W, 3) view blended with a JET-coloured heatmap; opacity 0 = view only."""
    import cv2

    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be within [0, 1], got {opacity}")
    if view.shape[:2] != heatmap.shape:
        raise ValueError(f"view {view.shape[:2]} and heatmap {heatmap.shape} differ in size")
    # Blended here rather than with show_cam_on_image, which rescales the result so its maximum
    # is 255: that brightened dark views, so opacity 0 did not give the view back.
    coloured = cv2.applyColorMap(np.uint8(255 * np.clip(heatmap, 0.0, 1.0)), cv2.COLORMAP_JET)
    coloured = cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB).astype(np.float32)
    blended = (1.0 - opacity) * view.astype(np.float32) + opacity * coloured
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


_GRID_NAMES = (
    ("top left", "top", "top right"),
    ("left", "centre", "right"),
    ("bottom left", "bottom", "bottom right"),
)


def read_heatmap(heatmap: np.ndarray) -> dict[str, float | str]:
    """Where the attribution lies: shares on the border ring (outer eighth on each side) and in
    the centre (middle half of each side), each next to that region's share of the area, and
    the hottest ninth of the image by name ("top left" ... "bottom right")."""
    heat = np.asarray(heatmap, dtype=np.float64)
    height, width = heat.shape
    rows, cols = np.indices(heat.shape)
    ring_h, ring_w = max(1, height // 8), max(1, width // 8)
    border = (
        (rows < ring_h) | (rows >= height - ring_h) | (cols < ring_w) | (cols >= width - ring_w)
    )
    centre = (
        (rows >= height // 4)
        & (rows < height - height // 4)
        & (cols >= width // 4)
        & (cols < width - width // 4)
    )
    total = heat.sum()
    thirds_r = np.minimum(rows * 3 // height, 2)
    thirds_c = np.minimum(cols * 3 // width, 2)
    means = [[heat[(thirds_r == r) & (thirds_c == c)].mean() for c in range(3)] for r in range(3)]
    hottest = np.unravel_index(int(np.argmax(means)), (3, 3))
    return {
        "border_share": float(heat[border].sum() / total) if total > 0 else 0.0,
        "border_area": float(border.mean()),
        "centre_share": float(heat[centre].sum() / total) if total > 0 else 0.0,
        "centre_area": float(centre.mean()),
        "hottest": _GRID_NAMES[hottest[0]][hottest[1]] if total > 0 else "none",
    }


def describe_heatmap(reading: dict[str, float | str], target: str) -> str:
    """A plain-language reading of `read_heatmap`'s result for the class `target`."""
    if reading["hottest"] == "none":
        return f"No region raises the '{target}' score: the map is flat and says nothing."
    text = (
        f"{reading['border_share']:.0%} of the '{target}' attribution lies on the image border "
        f"(which is {reading['border_area']:.0%} of the image) and {reading['centre_share']:.0%} "
        f"in the centre ({reading['centre_area']:.0%} of the image); the hottest region is the "
        f"{reading['hottest']}."
    )
    if reading["border_share"] > 1.5 * reading["border_area"]:
        text += (
            " The model leans on the border more than its area warrants, which often means it "
            "reacts to framing, padding or compression rather than the content."
        )
    return text


# ---------------------------------------------------------------- faithfulness

# Shares of the image removed by the faithfulness check: a few, not ROAD's nine, since each costs
# two forward passes and two imputations per image. The share the plain-words line quotes.
REMOVED_SHARES = (0.1, 0.2, 0.4)
QUOTED_SHARE = 0.2
FAITHFULNESS_SEED = 0  # ROAD's imputation adds noise: seeded, so a report is reproducible


def measure_faithfulness(
    model,
    input_tensor: torch.Tensor,
    heatmaps: np.ndarray,
    *,
    class_index: Sequence[int],
    calibrate,
    shares: Sequence[float] = REMOVED_SHARES,
    batch_size: int = 64,
) -> np.ndarray:
    """How much each heatmap reflects what the model used, by pytorch-grad-cam's ROAD metrics
    (`ROADMostRelevantFirst` / `ROADLeastRelevantFirst`: the removed pixels are filled by noisy
    linear imputation, so the model does not meet blank holes it never saw in training).

    `model` maps a batch (N, 3, H, W), as the model takes it, to logits (N, 2); `heatmaps`
    (N, H, W) in [0, 1]; the class each explains; `calibrate` (margins -> P(fake)). Returns
    float32 (N, S, 2): for each of `shares` (the fraction of pixels removed, in (0, 1)), the
    change in the explained class's probability when the marked share (the map's hottest pixels)
    is removed [..., 0] and when the unmarked share (its coldest) is removed [..., 1]. The
    metrics' own perturbations make the images; they are scored together, `batch_size` at a
    time (the metrics would run two passes per share). Seeded: the same inputs, the same result.
    """
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirst, ROADMostRelevantFirst

    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps.shape != (input_tensor.shape[0], *input_tensor.shape[2:]):
        raise ValueError(f"heatmaps {heatmaps.shape} do not match the input {input_tensor.shape}")
    if not all(0.0 < share < 1.0 for share in shares):
        raise ValueError(f"removed shares must lie within (0, 1), got {list(shares)}")
    count = len(input_tensor)
    tensor = input_tensor.detach().cpu()
    # The library's percentile is the share of pixels kept: 80 removes the top 20% (most
    # relevant first) or the bottom 20% (least relevant first).
    metrics = [metric(round(100 * (1.0 - share))) for share in shares
               for metric in (ROADMostRelevantFirst, ROADLeastRelevantFirst)]  # fmt: skip
    with (
        torch.inference_mode(False),
        torch.no_grad(),
        torch.random.fork_rng(devices=[]),
        warnings.catch_warnings(),
    ):
        # The library turns a torch mask into NumPy with np.float32(tensor), which NumPy 2
        # warns about on every call; the values are right.
        warnings.filterwarnings("ignore", message="__array_wrap__", category=DeprecationWarning)
        torch.manual_seed(FAITHFULNESS_SEED)
        images = [tensor]
        for metric in metrics:
            images.append(torch.stack([
                metric.perturbation(tensor[i], torch.from_numpy(heatmaps[i])) for i in range(count)
            ]))  # fmt: skip
        batch = torch.cat(images).to(input_tensor.device, input_tensor.dtype)
        logits = torch.cat([model(batch[i : i + batch_size]).float()
                            for i in range(0, len(batch), batch_size)])  # fmt: skip
    margins = (logits[:, 1] - logits[:, 0]).double().cpu().numpy()
    prob_fake = np.asarray(calibrate(margins), dtype=np.float64).reshape(len(metrics) + 1, count)
    wanted = np.asarray(class_index).reshape(1, count)
    probability = np.where(wanted == 1, prob_fake, 1.0 - prob_fake)
    changes = (probability[1:] - probability[0]).reshape(len(shares), 2, count)
    return np.float32(changes.transpose(2, 0, 1))


def faithfulness_score(changes: np.ndarray) -> np.ndarray:
    """float32 (N,) from `measure_faithfulness`'s (N, S, 2): the mean over shares of how much
    more the explained class's probability falls when the marked pixels are removed than when
    the unmarked ones are, in [-1, 1]. Positive: the map marks what the model used (twice
    pytorch-grad-cam's ROADCombined over the same shares, in probability rather than logits)."""
    changes = np.asarray(changes, dtype=np.float32)
    return (changes[..., 1] - changes[..., 0]).mean(axis=-1)


def describe_faithfulness(
    removals: Sequence[tuple[float, float, float]], target: str, *, whole: str = "image"
) -> str:
    """Plain words for (share, change when marked removed, change when unmarked removed) rows:
    'removing the marked 20% of the image lowers P(fake) by 0.41; removing the unmarked 20%, by
    0.03', and what the score means."""
    if not removals:
        return "Faithfulness was not measured for this heatmap."
    share, marked, unmarked = min(removals, key=lambda row: abs(row[0] - QUOTED_SHARE))

    def effect(change: float) -> tuple[str, str]:
        if abs(change) < 0.005:
            return "leaves", "unchanged"
        return ("lowers", f"by {-change:.2f}") if change < 0 else ("raises", f"by {change:.2f}")

    (verb_m, how_m), (verb_u, how_u) = effect(marked), effect(unmarked)
    second = how_u if verb_u == verb_m and verb_u != "leaves" else f"{verb_u} it {how_u}"
    text = (
        f"Removing the marked {share:.0%} of the {whole} {verb_m} P({target}) {how_m}; "
        f"removing the unmarked {share:.0%}, {second}."
    )
    score = float(np.mean([u - m for _, m, u in removals]))
    shares = ", ".join(f"{s:.0%}" for s, _, _ in removals)
    if score > 0.05:
        verdict = "the map marks regions the model relies on"
    elif score < -0.05:
        verdict = "the unmarked regions matter more: do not read this map as the model's reason"
    else:
        verdict = "removing the marked regions matters no more than removing others: the map " \
            "says little about what the model used"  # fmt: skip
    return f"{text} Faithfulness {score:+.2f} (mean over {shares} removed): {verdict}."
