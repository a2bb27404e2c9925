"""forensics.patches: the patch grid covers any image within its bound, patch scores aggregate
by the stored rule (chosen on validation), and the map is drawn over the whole image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from forensics.patches import (
    PatchSpec,
    aggregate,
    candidate_strides,
    choose_aggregation,
    draw_patch_map,
    patch_cells,
    patch_grid,
    perturbed_aggregate,
    raw_log_loss,
    spread_indices,
)
from forensics.trust.calibration import calibrated_log_loss


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


@pytest.mark.parametrize(
    ("width", "height", "size", "bound"),
    [(512, 512, 128, 64), (1000, 700, 128, 64), (4000, 3000, 128, 64), (100, 400, 128, 64)],
)
def test_a_stride_of_the_patch_side_is_the_default_grid(width, height, size, bound) -> None:
    default = patch_grid(width, height, size=size, max_patches=bound)
    assert patch_grid(width, height, size=size, max_patches=bound, stride=size) == default


def test_half_stride_patches_overlap_by_half_within_the_bound() -> None:
    boxes = patch_grid(512, 512, size=128, max_patches=64, stride=64)
    starts = sorted({box[0] for box in boxes})
    assert len(boxes) == 49 and starts == [0, 64, 128, 192, 256, 320, 384]
    assert boxes[-1] == (384, 384, 512, 512)
    # The bound still wins: thinned to an even 4x4 grid, the same one no stride would give.
    assert patch_grid(512, 512, size=128, max_patches=16, stride=64) == patch_grid(
        512, 512, size=128, max_patches=16
    )
    # Starts never further apart than the stride, even when the side is not a multiple of it.
    starts = sorted({box[0] for box in patch_grid(500, 128, size=128, max_patches=64, stride=64)})
    assert max(np.diff(starts)) <= 64
    assert starts[0] == 0 and starts[-1] == 500 - 128
    with pytest.raises(ValueError, match="positive"):
        patch_grid(512, 512, size=128, max_patches=4, stride=0)
    assert candidate_strides(128) == (128, 64)


def test_cells_tile_overlapping_patches_and_leave_others_whole() -> None:
    for width, height, stride, bound in [(512, 384, 64, 64), (500, 300, 50, 64)]:
        boxes = patch_grid(width, height, size=128, max_patches=bound, stride=stride)
        seen = np.zeros((height, width), dtype=int)
        for (left, top, right, bottom), box in zip(patch_cells(boxes), boxes, strict=True):
            assert box[0] <= left < right <= box[2] and box[1] <= top < bottom <= box[3]
            seen[top:bottom, left:right] += 1
        assert (seen == 1).all()  # every pixel in exactly one cell
    side_by_side = patch_grid(1024, 768, size=128, max_patches=48)
    thinned = patch_grid(4000, 3000, size=128, max_patches=64)
    assert patch_cells(side_by_side) == side_by_side  # patches that touch without overlapping
    assert patch_cells(thinned) == thinned  # gaps stay gaps
    assert patch_cells([]) == []


def test_the_map_of_overlapping_patches_shows_the_nearest_patch() -> None:
    image = Image.new("RGB", (256, 128), (128, 128, 128))
    boxes = patch_grid(256, 128, size=128, max_patches=8, stride=64)  # starts 0, 64, 128
    overlay = draw_patch_map(image, boxes, [0.05, 0.95, 0.05]).astype(int)
    for x, red in [(20, False), (100, True), (150, True), (220, False)]:
        assert (overlay[64, x, 0] > overlay[64, x, 1]) == red, x


def test_a_side_shorter_than_a_patch_gets_patches_as_short_as_it() -> None:
    # A 100x400 strip: a column of 100x128 patches down its length, never resampled.
    assert patch_grid(100, 400, size=128, max_patches=64) == [
        (0, 0, 100, 128), (0, 91, 100, 219), (0, 181, 100, 309), (0, 272, 100, 400)
    ]  # fmt: skip
    assert patch_grid(20, 20, size=128, max_patches=64) == [(0, 0, 20, 20)]
    with pytest.raises(ValueError, match="positive"):
        patch_grid(512, 512, size=0, max_patches=4)
    with pytest.raises(ValueError, match="at least one pixel"):
        patch_grid(0, 512, size=128, max_patches=4)


def test_stability_patches_are_spread_over_the_grid() -> None:
    assert spread_indices(5, 16) == [0, 1, 2, 3, 4]
    chosen = spread_indices(64, 16)
    assert len(chosen) == 16 and chosen[0] == 0 and chosen[-1] == 63


def test_a_perturbed_aggregate_is_exact_on_every_patch_and_shifted_on_a_subset() -> None:
    spec = PatchSpec(size=32)
    margins = np.array([1.0, 2.0, 3.0, 4.0])
    assert perturbed_aggregate(margins, [0, 1, 2, 3], np.array([0.0, 0, 0, 4]), spec) == 1.0
    # Patches 0 and 3 dropped by 1 on average: every patch is assumed to move that much.
    assert perturbed_aggregate(margins, [0, 3], np.array([0.5, 2.5]), spec) == pytest.approx(1.5)


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


def test_a_rule_that_ranks_well_but_leans_wins_when_judged_after_calibration() -> None:
    # Every image has four bright patches; the fakes' are brighter. The top-k mean separates
    # the classes perfectly but calls every real fake (its margins all lean positive), which
    # calibration removes; the mean logit is centred but blurred by the other twelve patches.
    rng = np.random.default_rng(0)

    def image(low: float, high: float) -> list[float]:
        return [*rng.normal(low, 1.5, 12), *rng.normal(high, 0.2, 4)]

    margins = [image(-2, 3) for _ in range(30)] + [image(-0.5, 5) for _ in range(30)]
    labels = [0] * 30 + [1] * 30
    raw_rule, raw = choose_aggregation(margins, labels, k=4)
    assert raw_rule == "mean_logit" and raw["top_k_mean"] > 1.0
    rule, shipped = choose_aggregation(margins, labels, k=4, loss=calibrated_log_loss)
    assert rule == "top_k_mean"
    assert shipped["top_k_mean"] < shipped["mean_logit"] < raw["mean_logit"]
    assert raw == choose_aggregation(margins, labels, k=4, loss=raw_log_loss)[1]


def test_patch_settings_round_trip_and_are_checked() -> None:
    spec = PatchSpec(size=128, max_patches=32, aggregate="top_k_mean", k=3)
    assert PatchSpec.from_dict(spec.to_dict()) == spec
    # A record written before strides existed reads as side by side, and is written back alike.
    assert "stride" not in spec.to_dict() and spec.stride is None and spec.step == 128
    overlapping = PatchSpec(size=128, stride=64)
    assert PatchSpec.from_dict(overlapping.to_dict()) == overlapping and overlapping.step == 64
    assert overlapping.boxes(512, 512) == patch_grid(512, 512, size=128, max_patches=64, stride=64)
    for stride in (0, 129):
        with pytest.raises(ValueError, match="stride"):
            PatchSpec(size=128, stride=stride)
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


@pytest.fixture(scope="module")
def trained_detector():
    """A tiny CNN trained here to tell the synthetic 'fake' checkerboard from smooth 'real'
    images, declared as judging 32 px native patches."""
    from tests.conftest import make_image, trained_simple_cnn_detector

    meta = {"architecture": "simple_cnn", "head": "linear",
            "data": {"input_size": 32, "resize": 32},
            "patches": {"size": 32, "max_patches": 16}}  # fmt: skip
    images = [make_image(i, fake=i % 2 == 1) for i in range(64)]
    return trained_simple_cnn_detector(images, meta, lr=1e-3)


def test_the_patch_map_is_higher_on_the_generated_half(trained_detector) -> None:
    from tests.conftest import make_image

    halves = Image.new("RGB", (64, 32))
    halves.paste(make_image(201, fake=False), (0, 0))
    halves.paste(make_image(202, fake=True), (32, 0))
    patch_map = trained_detector.patch_map(halves)
    assert patch_map.boxes == ((0, 0, 32, 32), (32, 0, 64, 32)) and patch_map.grid == (1, 2)
    real, fake = patch_map.prob_fake
    assert fake > 0.5 > real
    assert patch_map.overlay.shape == (32, 64, 3)
    # No trust profile: the probabilities are the softmax, and the rule averages the margins.
    margins = np.log(patch_map.prob_fake) - np.log1p(-patch_map.prob_fake)
    expected = 1 / (1 + np.exp(-margins.mean()))
    assert patch_map.verdict.prob_fake == pytest.approx(expected, abs=1e-6)
    # The verdict is the same through every door: predict judges the patches too.
    assert trained_detector.predict(halves).prob_fake == pytest.approx(expected, abs=1e-6)
    telling = (32, 0, 64, 32) if patch_map.verdict.label == "fake" else (0, 0, 32, 32)
    assert patch_map.boxes[patch_map.most_telling()] == telling


def test_an_image_smaller_than_a_patch_is_one_patch(trained_detector) -> None:
    from tests.conftest import make_image

    patch_map = trained_detector.patch_map(make_image(5, size=20))
    assert patch_map.boxes == ((0, 0, 20, 20),) and patch_map.prob_fake.shape == (1,)


def test_a_checkpoint_with_bad_patch_settings_is_refused(tmp_path) -> None:
    from forensics.checkpoint import CheckpointError, save_checkpoint
    from forensics.models import build_model

    meta = {"architecture": "simple_cnn", "data": {"input_size": 32, "resize": 32},
            "patches": {"size": 32, "aggregate": "vote"}}  # fmt: skip
    with pytest.raises(CheckpointError, match="invalid patch settings"):
        save_checkpoint(tmp_path / "c", build_model("simple_cnn"), meta)


def test_a_patch_model_checks_stability_on_its_patches(trained_detector) -> None:
    from forensics.perturb import STABILITY_PERTURBATIONS
    from tests.conftest import make_image

    large = Image.new("RGB", (160, 96))
    for i, (x, y) in enumerate((x, y) for y in (0, 32, 64) for x in range(0, 160, 32)):
        large.paste(make_image(300 + i, fake=True), (x, y))
    assert trained_detector.predict(large).label == "fake"
    views = trained_detector.patch_views(large, stability=True)
    assert len(views.boxes) == 15 and views.grid == (3, 5) and views.subset == tuple(range(15))
    assert [tuple(t.shape) for t in views.perturbed][1] == (15, 3, 29, 29)  # the 0.9x rescale
    margins, features, patch_margins = trained_detector.score_patch_views(views)
    assert margins.shape == (1 + len(STABILITY_PERTURBATIONS),) and patch_margins.shape == (15,)
    assert margins[0] == pytest.approx(patch_margins.mean())  # the stored rule: mean logit
    assert features.ndim == 1


def test_a_patch_model_explains_one_native_patch(trained_detector) -> None:
    from tests.conftest import make_image

    halves = Image.new("RGB", (64, 32))
    halves.paste(make_image(211, fake=False), (0, 0))
    halves.paste(make_image(212, fake=True), (32, 0))
    chosen = trained_detector.explain(halves, target="fake", box=(0, 0, 32, 32))
    assert chosen.box == (0, 0, 32, 32) and chosen.view.shape == (32, 32, 3)
    assert np.array_equal(chosen.view, np.asarray(halves.crop((0, 0, 32, 32))))
    assert chosen.heatmap.shape == (32, 32) and chosen.target == "fake"
    default = trained_detector.explain(halves)
    patch_map = trained_detector.patch_map(halves)
    assert default.box == patch_map.boxes[patch_map.most_telling()]
    assert default.verdict.prob_fake == pytest.approx(patch_map.verdict.prob_fake)


def test_the_last_patch_maps_are_remembered_by_file_content(trained_detector) -> None:
    from tests.conftest import image_bytes, make_image

    first_file, second_file = (image_bytes(make_image(s, size=64), "PNG") for s in (1, 2))
    first = trained_detector.patch_map(first_file)
    assert trained_detector.patch_map(bytes(first_file)) is first  # the same content
    assert trained_detector.patch_map(first_file, stability=False) is not first
    assert trained_detector.patch_map(second_file) is not first
    # The CAM of the most telling patch reuses it: the same verdict object.
    assert trained_detector.explain(first_file).verdict is first.verdict
