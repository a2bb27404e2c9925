"""The automatic choice of model (forensics.router): each image goes to the checkpoint whose
training domain admits it, the nearest feature domain breaks ties, and an image no checkpoint
covers is `unsure` with the nearest model's score labelled as such."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import forensics.router as router
from forensics.detector import Detector
from forensics.models import build_model
from forensics.router import NO_MODEL_FITS, AutoDetector
from forensics.trust import AbstainBand, FeatureDomain, InputDomain, TrustProfile
from tests.conftest import image_bytes, make_image


def _detector(name: str, size: int, *, feature_threshold: float = 1e9) -> Detector:
    torch.manual_seed(0)
    model = build_model("resnet18", stem="compact", layer4_stride=1)
    meta = {"architecture": "resnet18", "head": "linear", "stem": "compact", "layer4_stride": 1,
            "data": {"input_size": size, "resize": size}}  # fmt: skip
    profile = TrustProfile(
        temperature=1.0,
        band=AbstainBand(0.5, 0.5),
        input_domain=InputDomain((1.0, 1.0), (1.0, 1.0), None, 0.0, size),
        feature_domain=FeatureDomain(np.zeros(512), np.eye(512), feature_threshold, 0.99),
        max_spread=1.0,
        record={"name": name},
    )
    return Detector(model, meta, checkpoint_dir=Path(name), engine="eager", trust=profile)


@pytest.fixture(scope="module")
def auto() -> AutoDetector:
    return AutoDetector([_detector("small", 32), _detector("large", 64)])


def _png(size: int, seed: int = 1) -> bytes:
    return image_bytes(make_image(seed, size=size), "PNG")


def test_each_image_goes_to_the_checkpoint_whose_domain_admits_it(auto) -> None:
    small, large, huge = auto.predict_batch([_png(32), _png(64), _png(512)])
    assert (small.checkpoint, small.routing) == ("small", "chosen")
    assert (large.checkpoint, large.routing) == ("large", "chosen")
    assert not any(NO_MODEL_FITS in r for r in small.reasons + large.reasons)
    # 512 px is 8x the large model's scale and 16x the small one's: the large one is nearest.
    assert (huge.checkpoint, huge.routing, huge.decision) == ("large", "nearest", "unsure")
    assert huge.reasons[0].startswith(NO_MODEL_FITS)
    assert f"P(fake) = {huge.prob_fake:.2f}, which is not a verdict" in huge.reasons[0]


def test_order_is_kept_when_images_choose_different_models(auto) -> None:
    images = [_png(64, 1), _png(32, 2), _png(64, 3), _png(32, 4)]
    verdicts = auto.predict_batch(images, batch_size=3)
    assert [v.checkpoint for v in verdicts] == ["large", "small", "large", "small"]
    for image, verdict in zip(images, verdicts, strict=True):
        own = next(d for d in auto.detectors if d.name == verdict.checkpoint).predict(image)
        assert verdict.prob_fake == pytest.approx(own.prob_fake)


def test_features_break_a_tie_between_admitting_models() -> None:
    near = _detector("near", 32)
    far = _detector("far", 32, feature_threshold=1e-6)  # every image is far from its features
    assert AutoDetector([far, near]).predict(_png(32)).checkpoint == "near"
    assert AutoDetector([near, far]).predict(_png(32)).checkpoint == "near"


def test_explanations_come_from_the_chosen_model(auto) -> None:
    explanation = auto.explain(_png(64), method="gradcam")
    assert explanation.verdict.checkpoint == "large" and explanation.heatmap.shape == (64, 64)
    assert auto.explain(_png(512)).verdict.routing == "nearest"


def test_load_detector_auto_uses_the_shipped_checkpoints_with_profiles(
    monkeypatch, tiny_checkpoint
) -> None:
    monkeypatch.setattr(router, "shipped_checkpoints", lambda: [tiny_checkpoint])
    with pytest.raises(ValueError, match="trust profiles"):
        router.load_detector("auto")  # the tiny checkpoint has none
    assert router.load_detector(tiny_checkpoint).name == tiny_checkpoint.name


def test_photograph_sized_images_go_to_the_patch_model_with_its_patch_map() -> None:
    photos = _detector("photos", 64)
    photos.metadata["patches"] = {"size": 32, "max_patches": 16}
    photos = Detector(photos.model, photos.metadata, checkpoint_dir=Path("photos"),
                      engine="eager", trust=photos.trust)  # fmt: skip
    domain = InputDomain((1.0, 1.0), (1.0, 1.0), None, 0.0, 64, patch=32)
    photos.trust = TrustProfile(**{**photos.trust.__dict__, "input_domain": domain})
    auto = AutoDetector([_detector("small", 32), photos])
    photo = image_bytes(make_image(5, size=64).resize((900, 600)), "PNG")
    verdict = auto.predict(photo)
    # Never resampled, a 900x600 photograph is at the patch model's scale; the 32 px model
    # would squeeze it 19 times.
    assert (verdict.checkpoint, verdict.routing) == ("photos", "chosen")
    patch_map = auto.patch_map(photo)
    assert patch_map.verdict.checkpoint == "photos" and len(patch_map.boxes) == 16
    assert patch_map.verdict.prob_fake == pytest.approx(verdict.prob_fake)
    assert auto.predict(_png(32)).checkpoint == "small"
    explanation = auto.explain(photo)
    assert explanation.box in patch_map.boxes and explanation.view.shape == (32, 32, 3)


def test_routed_metrics_need_one_shared_threshold() -> None:
    small, large = _detector("small", 32), _detector("large", 64)
    assert AutoDetector([small, large]).threshold == small.threshold == 0.5
    large.threshold = 0.7
    with pytest.raises(ValueError, match="differ in threshold"):
        _ = AutoDetector([small, large]).threshold
