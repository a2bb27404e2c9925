"""forensics.patches: the patch grid covers any image within its bound, patch scores aggregate
by the stored rule (chosen on validation), and the map is drawn over the whole image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from forensics.patches import (
    PatchSpec,
    aggregate,
    choose_aggregation,
    draw_patch_map,
    patch_grid,
)


@pytest.mark.parametrize(
    ("width", "height", "size", "bound"),
    [(512, 512, 128, 64), (1000, 700, 128, 64), (4000, 3000, 128, 64), (8000, 6000, 256, 48),
     (130, 129, 128, 4), (128, 5000, 128, 10)],
)  # fmt: skip
def test_the_grid_stays_inside_the_image_and_within_its_bound(width, height, size, bound):
    boxes = patch_grid(width, height, size=size, max_patches=bound)
    assert 1 <= len(boxes) <= bound
    for left, top, right, bottom in boxes:
        assert (right - left, bottom - top) == (size, size)
        assert left >= 0 and top >= 0 and right <= width and bottom <= height
    # The corners are always judged: the grid spans the whole image even when thinned.
    assert boxes[0][:2] == (0, 0) or len(boxes) == 1
    assert boxes[-1][2:] == (width, height) or len(boxes) == 1


def test_a_grid_within_its_bound_covers_every_pixel() -> None:
    width, height, size = 1000, 700, 128
    covered = np.zeros((height, width), dtype=bool)
    for left, top, right, bottom in patch_grid(width, height, size=size, max_patches=100):
        covered[top:bottom, left:right] = True
    assert covered.all()
    assert len(patch_grid(width, height, size=size, max_patches=100)) == 8 * 6  # fewest that cover


def test_an_image_smaller_than_a_patch_has_no_grid() -> None:
    assert patch_grid(100, 400, size=128, max_patches=64) == []
    with pytest.raises(ValueError, match="positive"):
        patch_grid(512, 512, size=0, max_patches=4)


def test_aggregation_rules() -> None:
    margins = [-2.0, -1.0, 0.0, 5.0, 6.0]
    assert aggregate(margins, "mean_logit") == pytest.approx(1.6)
    assert aggregate(margins, "top_k_mean", k=2) == pytest.approx(5.5)
    assert aggregate(margins, "top_k_mean", k=99) == pytest.approx(1.6)  # k beyond the patches
    assert aggregate(margins, "median_logit") == 0.0
    with pytest.raises(ValueError, match="mean_logit"):
        aggregate(margins, "vote")
    with pytest.raises(ValueError, match="no patch"):
        aggregate([], "mean_logit")


def test_the_rule_is_chosen_on_validation_by_log_loss() -> None:
    # Fakes betray themselves in a few patches only: the top-k mean separates them best.
    rng = np.random.default_rng(0)
    real = [list(rng.normal(-1, 0.3, 16)) for _ in range(20)]
    fake = [[*rng.normal(-1, 0.3, 13), 6.0, 6.5, 7.0] for _ in range(20)]
    rule, losses = choose_aggregation(real + fake, [0] * 20 + [1] * 20, k=3)
    assert rule == "top_k_mean" and set(losses) == {"mean_logit", "top_k_mean", "median_logit"}
    assert losses["top_k_mean"] < losses["mean_logit"] < losses["median_logit"]


def test_patch_settings_round_trip_and_are_checked() -> None:
    spec = PatchSpec(size=128, max_patches=32, aggregate="top_k_mean", k=3)
    assert PatchSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError):
        PatchSpec(size=4)
    with pytest.raises(ValueError, match="unknown aggregation"):
        PatchSpec(size=128, aggregate="vote")


def test_the_map_tints_each_patch_by_its_score_over_the_whole_image() -> None:
    image = Image.new("RGB", (2000, 1000), (128, 128, 128))
    boxes = patch_grid(2000, 1000, size=500, max_patches=8)
    probs = [0.95 if i == 0 else 0.05 for i in range(len(boxes))]
    overlay = draw_patch_map(image, boxes, probs, max_side=400)
    assert overlay.shape == (200, 400, 3) and overlay.dtype == np.uint8
    fake_patch, real_patch = overlay[50, 50].astype(int), overlay[150, 350].astype(int)
    assert fake_patch[0] > fake_patch[1]  # red where the model sees generated texture
    assert real_patch[1] > real_patch[0]  # green where it sees a photograph
    with pytest.raises(ValueError, match="boxes"):
        draw_patch_map(image, boxes, probs[:-1])
