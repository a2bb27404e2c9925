"""The faithfulness of a heatmap (pytorch-grad-cam's ROAD metrics): measured on a model trained
here, where the evidence of a 'fake' sits in one known corner of each image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from forensics.explain import (
    REMOVED_SHARES,
    describe_faithfulness,
    faithfulness_score,
    measure_faithfulness,
)
from forensics.labels import CLASS_INDEX

SIZE = 32


def _image(seed: int, *, fake: bool) -> Image.Image:
    """Smooth noise; a 'fake' one carries a checkerboard in one 12 px square at a seeded place,
    so that only a small region decides its class."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(1, 1, 3)) * np.ones((SIZE, SIZE, 3))
    pixels += rng.normal(0, 12, size=(SIZE, SIZE, 3))
    if fake:
        top, left = rng.integers(0, SIZE - 12, size=2)
        checker = (np.indices((12, 12)).sum(axis=0) % 2)[..., None] * 90.0
        pixels[top : top + 12, left : left + 12] = pixels[top : top + 12, left : left + 12] * 0.4
        pixels[top : top + 12, left : left + 12] += checker
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def localized_detector():
    """A tiny CNN trained to find the local checkerboard (seeded; a few seconds on one core)."""
    from tests.conftest import trained_simple_cnn_detector

    meta = {"architecture": "simple_cnn", "head": "linear",
            "data": {"input_size": SIZE, "resize": SIZE}}  # fmt: skip
    images = [_image(i, fake=i % 2 == 1) for i in range(96)]
    return trained_simple_cnn_detector(images, meta, lr=2e-3, dropout=0.0)


def test_grad_cam_is_more_faithful_than_a_shuffled_copy_of_itself(localized_detector) -> None:
    """The check that can fail: the same heatmaps with their pixels shuffled mark nothing in
    particular, so removing what they mark must hurt P(fake) less than removing Grad-CAM's."""
    detector = localized_detector
    fakes = [_image(1000 + i, fake=True) for i in range(12)]
    explanations = detector.explain_batch(fakes, "gradcam", "fake")
    assert np.mean([e.verdict.prob_fake for e in explanations]) > 0.8  # the model learnt the cue
    tensor = torch.stack([detector.transform(image) for image in fakes])
    heatmaps = np.stack([e.heatmap for e in explanations])
    rng = np.random.default_rng(0)
    shuffled = np.stack([rng.permutation(h.ravel()).reshape(h.shape) for h in heatmaps])
    classes = [CLASS_INDEX["fake"]] * len(fakes)
    options = {"class_index": classes, "calibrate": detector.calibrated}
    cam = faithfulness_score(measure_faithfulness(detector.model, tensor, heatmaps, **options))
    noise = faithfulness_score(measure_faithfulness(detector.model, tensor, shuffled, **options))
    assert cam.mean() > noise.mean() + 0.1, (cam, noise)
    assert (cam > noise).mean() >= 0.75
    # What explain_batch returned is this same measurement, seeded.
    assert [e.faithfulness for e in explanations] == pytest.approx(cam.tolist(), abs=1e-6)


def test_the_explanation_carries_its_faithfulness_in_words_and_json(localized_detector) -> None:
    explanation = localized_detector.explain(_image(2001, fake=True), "gradcam", "fake")
    assert -1.0 <= explanation.faithfulness <= 1.0
    assert [r.share for r in explanation.removals] == list(REMOVED_SHARES)
    record = explanation.to_dict()
    assert record["faithfulness"] == explanation.faithfulness
    assert len(record["removals"]) == len(REMOVED_SHARES)
    text = record["faithfulness_reading"]
    assert text.startswith("Removing the marked 20% of the image lowers P(fake) by ")
    assert "removing the unmarked 20%" in text
    again = localized_detector.explain(_image(2001, fake=True), "gradcam", "fake")
    assert again.faithfulness == explanation.faithfulness  # seeded imputation
    skipped = localized_detector.explain(_image(2001, fake=True), faithfulness=False)
    assert skipped.faithfulness is None and skipped.removals == ()


def test_the_plain_words_and_the_checks() -> None:
    text = describe_faithfulness([(0.1, -0.25, -0.03), (0.2, -0.41, -0.03)], "fake")
    assert text.startswith(
        "Removing the marked 20% of the image lowers P(fake) by 0.41; removing the unmarked "
        "20%, by 0.03."
    )
    assert "Faithfulness +0.30" in text
    assert "do not read this map" in describe_faithfulness([(0.2, 0.1, -0.3)], "real")
    tensor = torch.zeros(1, 3, 8, 8)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    with pytest.raises(ValueError, match="do not match"):
        measure_faithfulness(model, tensor, np.zeros((1, 4, 4)), class_index=[1],
                             calibrate=lambda m: m)  # fmt: skip
    with pytest.raises(ValueError, match="within"):
        measure_faithfulness(model, tensor, np.zeros((1, 8, 8)), class_index=[1],
                             calibrate=lambda m: m, shares=[1.0])  # fmt: skip


def test_methods_are_compared_over_a_sample_most_faithful_first(localized_detector) -> None:
    from forensics.faithfulness import compare_methods, describe_comparison
    from tests.conftest import image_bytes

    images = [image_bytes(_image(3000 + i, fake=i % 2 == 0), "PNG") for i in range(6)]
    table = compare_methods(localized_detector, [*images, b"not an image"], ["eigencam", "gradcam"])
    assert list(table["method"]) == sorted(table["method"], key=lambda m: -float(
        table.set_index("method").loc[m, "faithfulness"]))  # fmt: skip
    assert (table["n"] == 6).all() and table["share_positive"].between(0, 1).all()
    grad = table.set_index("method").loc["gradcam"]
    assert grad["faithfulness"] > 0.1 and grad["marked_drop"] > grad["unmarked_drop"]
    assert describe_comparison(table).startswith(f"For this model, {table['method'][0]} is")
    with pytest.raises(ValueError, match="unknown CAM method"):
        compare_methods(localized_detector, images, ["nope"])
    with pytest.raises(ValueError, match="none of the images"):
        compare_methods(localized_detector, [b"x"], ["gradcam"])
