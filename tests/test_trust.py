"""What a verdict is worth (forensics.trust): calibration fitted and stored with the checkpoint,
the abstain band, the applicability gate, the stability check, and a checkpoint without a
profile saying that its domain is unknown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from forensics import load_detector
from forensics.checkpoint import CheckpointError, save_checkpoint
from forensics.detector import Detector
from forensics.evaluation import expected_calibration_error
from forensics.images import ImageInfo
from forensics.models import build_model
from forensics.perturb import STABILITY_PERTURBATIONS
from forensics.scan import build_manifest
from forensics.trust import (
    TRUST_FILE,
    AbstainBand,
    FeatureDomain,
    InputDomain,
    TrustProfile,
    choose_abstain_band,
    choose_calibration,
    fit_temperature,
    save_trust_profile,
)
from forensics.trust.calibration import calibrated_log_loss, negative_log_likelihood, sigmoid
from forensics.trust.profile import UNKNOWN_DOMAIN
from forensics.trust.stability import fit_max_spread, stability_reason
from forensics.trust.tolerance import (
    choose_jpeg_margin,
    choose_scale_tolerance,
    margin_qualities,
    resize_factors,
)
from tests.conftest import image_bytes, make_image, write_dataset
from training.fit_trust import fit_trust_profile

META = {"architecture": "resnet18", "head": "linear", "stem": "compact", "layer4_stride": 1,
        "data": {"input_size": 32, "resize": 32}}  # fmt: skip


def _profile(*, dim: int = 512, feature_threshold: float = 1e9, **changes) -> TrustProfile:
    fields = {
        "temperature": 1.0,
        "band": AbstainBand(0.4, 0.6),
        "input_domain": InputDomain((1.0, 1.0), (1.0, 1.0), None, 0.0, 32),
        "feature_domain": FeatureDomain(np.zeros(dim), np.eye(dim), feature_threshold, 0.99),
        "max_spread": 0.5,
        "record": {},
        "checked_changes": tuple(STABILITY_PERTURBATIONS),
    }
    return TrustProfile(**{**fields, **changes})


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18", stem="compact", layer4_stride=1)


# ------------------------------------------------------------------------------- calibration


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    margins = rng.normal(0, 6, 20_000)
    labels = (rng.random(20_000) < sigmoid(margins / 3.0)).astype(int)  # overconfident by 3x
    temperature = fit_temperature(margins, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(labels, sigmoid(margins))
    after = expected_calibration_error(labels, sigmoid(margins / temperature))
    assert after < 0.02 < before


def test_temperature_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        fit_temperature(np.array([1.0, 2.0]), np.array([1, 1]))


def test_a_bias_is_added_only_where_cross_validation_says_it_pays() -> None:
    rng = np.random.default_rng(1)
    margins = rng.normal(0, 4, 3_000)
    # A model that leans to "fake": its boundary sits 1.5 logits too low.
    leaning = (rng.random(3_000) < sigmoid(margins / 2.0 - 1.5)).astype(int)
    temperature, bias, evidence = choose_calibration(margins, leaning)
    assert evidence["chosen"] == "temperature_and_bias" and evidence["folds"] == 5
    assert (temperature, bias) == (pytest.approx(2.0, rel=0.15), pytest.approx(-1.5, abs=0.3))
    losses = evidence["cv_log_loss"]
    gain = losses["temperature"] - losses["temperature_and_bias"]
    assert gain > evidence["gain_standard_error"] > 0
    # The bias moves the decision boundary: more right calls than the temperature alone.
    alone = fit_temperature(margins, leaning)
    right = lambda p: np.mean((p >= 0.5) == (leaning == 1))  # noqa: E731
    assert right(sigmoid(margins / temperature + bias)) > right(sigmoid(margins / alone)) + 0.02
    # A model that does not lean keeps the temperature alone.
    balanced = (rng.random(3_000) < sigmoid(margins / 2.0)).astype(int)
    temperature, bias, evidence = choose_calibration(margins, balanced)
    assert (evidence["chosen"], bias) == ("temperature", 0.0)
    assert temperature == pytest.approx(fit_temperature(margins, balanced))
    # Too few images of a class to cross-validate: the temperature alone, no evidence.
    few = choose_calibration(np.array([-2.0, 1.0, 3.0, 0.5]), np.array([0, 1, 1, 1]))
    assert few[1:] == (0.0, {"chosen": "temperature", "folds": 1, "cv_log_loss": {}})


def test_the_calibrated_log_loss_is_the_held_out_loss_of_the_calibration_that_ships() -> None:
    rng = np.random.default_rng(1)
    margins = rng.normal(0, 4, 400)
    leaning = (rng.random(400) < sigmoid(margins / 2.0 - 1.5)).astype(int)
    _, _, evidence = choose_calibration(margins, leaning)
    assert calibrated_log_loss(margins, leaning) == evidence["cv_log_loss"][evidence["chosen"]]
    # Held out, it is worse than the loss on the images it was fitted on, and far better than
    # the raw margins' (which are four times too confident and lean).
    temperature, bias, _ = choose_calibration(margins, leaning)
    fitted = negative_log_likelihood(margins, leaning, temperature, bias)
    assert (
        fitted
        < calibrated_log_loss(margins, leaning)
        < negative_log_likelihood(margins, leaning, 1.0)
    )
    # Too few images to cross-validate: the loss after fitting on all of them.
    few = np.array([-2.0, 1.0, 3.0, 0.5]), np.array([0, 1, 1, 1])
    assert calibrated_log_loss(*few) == negative_log_likelihood(
        few[0], few[1], fit_temperature(*few)
    )


def test_the_band_is_the_narrowest_that_meets_the_risk() -> None:
    prob = np.array([0.05, 0.1, 0.45, 0.55, 0.6, 0.9, 0.95, 0.3])
    labels = np.array([0, 0, 1, 0, 0, 1, 1, 0])  # wrong: 0.45 (fake called real), 0.55, 0.6
    band, figures = choose_abstain_band(prob, labels, max_selective_risk=0.0)
    assert band.low == pytest.approx(0.395) and band.high == pytest.approx(0.605)
    assert figures["coverage"] == pytest.approx(5 / 8) and figures["selective_risk"] == 0.0
    none, _ = choose_abstain_band(prob, labels, max_selective_risk=0.5)
    assert none.low == none.high == 0.5  # already good enough: no band


# ------------------------------------------------------------------------------- applicability


def test_the_input_gate_accepts_the_training_domain_and_names_what_differs() -> None:
    trained = [ImageInfo(32, 32, "JPEG", q) for q in (74, 75, 76)]
    domain = InputDomain.fit(trained, resize=32)
    assert domain.reasons(ImageInfo(32, 32, "JPEG", 75)) == []
    assert domain.reasons(ImageInfo(40, 40, "JPEG", 80)) == []  # within the tolerances
    (big,) = domain.reasons(ImageInfo(1600, 1131, "JPEG", 75))
    assert "downscaled 35x" in big and "32 px on the short side" in big
    assert "upscaled 4x" in domain.reasons(ImageInfo(8, 8, "JPEG", 75))[0]
    assert "quality 30" in domain.reasons(ImageInfo(32, 32, "JPEG", 30))[0]
    assert "JPEGs only" in domain.reasons(ImageInfo(32, 32, "PNG", None))[0]
    assert "centre square" in domain.reasons(ImageInfo(96, 32, "JPEG", 75))[-1]
    assert InputDomain.from_dict(domain.to_dict()) == domain


def test_the_resampling_admitted_is_the_largest_step_the_model_withstands() -> None:
    steady = {f: 0.0 for f in resize_factors()}
    assert choose_scale_tolerance(steady, max_flip_rate=0.05) == 1.5
    # Downscaling by 1/1.25 flips too many: 1.1 is the last step withstood both ways.
    assert choose_scale_tolerance({**steady, 1 / 1.25: 0.2}, max_flip_rate=0.05) == 1.1
    # Upscaling by 1.1 already flips too many: no resampling at all, even if 1.5 were fine.
    assert choose_scale_tolerance({**steady, 1.1: 0.06}, max_flip_rate=0.05) == 1.0


def test_the_jpeg_margin_is_the_largest_step_the_model_withstands_both_ways() -> None:
    assert margin_qualities((95, 95)) == [90, 85, 75, 100]  # 100 is as high as it goes
    assert margin_qualities((3, 75)) == [1, 80, 85, 95]
    steady = {q: 0.0 for q in margin_qualities((75, 75))}
    assert choose_jpeg_margin(steady, (75, 75), max_flip_rate=0.05) == 20
    assert choose_jpeg_margin({**steady, 55: 0.1}, (75, 75), max_flip_rate=0.05) == 10
    assert choose_jpeg_margin({**steady, 80: 0.06}, (75, 75), max_flip_rate=0.05) == 0
    domain = InputDomain((1.0, 1.0), (1.0, 1.0), (95, 95), 1.0, 512, jpeg_margin=5)
    assert domain.reasons(ImageInfo(512, 512, "JPEG", 90)) == []
    (reason,) = domain.reasons(ImageInfo(512, 512, "JPEG", 85))
    assert "quality 85" in reason and "at most 5 quality steps away" in reason
    strict = InputDomain((1.0, 1.0), (1.0, 1.0), (95, 95), 1.0, 512, jpeg_margin=0)
    assert "re-saved 5 quality steps away" in strict.reasons(ImageInfo(512, 512, "JPEG", 94))[0]
    record = domain.to_dict()
    del record["jpeg_margin"]
    assert InputDomain.from_dict(record).jpeg_margin == 10  # a record from before the measure
    with pytest.raises(ValueError, match="JPEG quality margin"):
        InputDomain.from_dict({**record, "jpeg_margin": -1})


def test_a_domain_that_admits_no_resampling_refuses_a_slightly_resized_image() -> None:
    domain = InputDomain((1.0, 1.0), (1.0, 1.0), None, 0.0, 32, scale_tolerance=1.0)
    assert domain.reasons(ImageInfo(32, 32, "PNG", None)) == []
    (smaller,) = domain.reasons(ImageInfo(29, 29, "PNG", None))
    assert "upscaled 1.1x" in smaller and "resized by 1.1x" in smaller
    (larger,) = domain.reasons(ImageInfo(36, 36, "PNG", None))
    assert "downscaled 1.1x" in larger
    measured = InputDomain((1.0, 1.0), (1.0, 1.0), None, 0.0, 32, scale_tolerance=1.25)
    assert measured.reasons(ImageInfo(36, 36, "PNG", None)) == []
    assert "at most 1.25x" in measured.reasons(ImageInfo(48, 48, "PNG", None))[0]
    # A record from before the measurement admits the old fixed tolerance.
    record = domain.to_dict()
    assert InputDomain.from_dict(record) == domain
    del record["scale_tolerance"]
    assert InputDomain.from_dict(record).scale_tolerance == 1.5
    with pytest.raises(ValueError, match="scale tolerance"):
        InputDomain.from_dict({**record, "scale_tolerance": 0.5})


def test_the_feature_gate_flags_far_features_only() -> None:
    rng = np.random.default_rng(1)
    train, val = rng.normal(0, 1, (400, 8)), rng.normal(0, 1, (200, 8))
    domain = FeatureDomain.fit(train, val, quantile=0.99)
    inside = domain.distance(rng.normal(0, 1, (500, 8)))
    assert (inside <= domain.threshold).mean() > 0.95
    far = domain.distance(rng.normal(6, 1, (50, 8)))
    assert (far > domain.threshold).all()
    assert domain.reason(float(far[0])) and domain.reason(float(inside.min())) is None


def test_the_decision_rejects_out_of_domain_inputs_and_accepts_in_domain_ones(model) -> None:
    detector = Detector(model, META, engine="eager", trust=_profile())
    small = image_bytes(make_image(1, size=32), "PNG")
    large = image_bytes(make_image(2, size=32).resize((1600, 1131)), "JPEG")
    inside, outside = detector.predict_batch([small, large])
    assert not any("unlike what the model was trained on" in r for r in inside.reasons)
    assert outside.decision == "unsure"
    assert outside.reasons[0].startswith("this image is unlike what the model was trained on")
    assert "downscaled" in outside.reasons[0]
    # Features far from the training features: the same image, a gate with a tiny threshold.
    strict = Detector(model, META, engine="eager", trust=_profile(feature_threshold=1e-6))
    assert any("feature distance" in r for r in strict.predict(small).reasons)


# ------------------------------------------------------------------------------- stability


class _SideEngine:
    """Logits that follow the left half's brightness minus the right half's (mirroring flips
    them), or a constant (nothing changes them); no real features."""

    def __init__(self, *, sided: bool) -> None:
        self.sided = sided

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        width = batch.shape[-1]
        if self.sided:
            signal = batch[..., : width // 2].mean((1, 2, 3)) - batch[..., width // 2 :].mean(
                (1, 2, 3)
            )
        else:
            signal = torch.full((len(batch),), 3.0)
        margin = 10 * signal
        return torch.cat([torch.stack([-margin / 2, margin / 2], 1), torch.zeros(len(batch), 4)], 1)


def test_stability_flags_a_model_made_unstable_on_purpose(model) -> None:
    half = np.zeros((32, 32, 3), dtype=np.uint8)
    half[:, :16] = 255  # bright left half: the sided model calls it fake, mirrored real
    from PIL import Image

    data = image_bytes(Image.fromarray(half), "PNG")
    unstable = Detector(model, META, engine="eager", trust=_profile(dim=4))
    unstable.engine = _SideEngine(sided=True)
    verdict = unstable.predict(data)
    assert verdict.decision == "unsure"
    assert any("changes under a harmless mirror" in r for r in verdict.reasons)
    assert verdict.perturbed["mirror"] < 0.5 < verdict.prob_fake
    steady = Detector(model, META, engine="eager", trust=_profile(dim=4))
    steady.engine = _SideEngine(sided=False)
    calm = steady.predict(data)
    assert calm.decision == "fake" and calm.reasons == ()
    assert set(calm.perturbed) == {"JPEG re-save (q90)", "rescale 0.9x", "shift 3 px", "mirror"}


def test_a_change_the_model_does_not_withstand_is_reported_not_checked(model) -> None:
    half = np.zeros((32, 32, 3), dtype=np.uint8)
    half[:, :16] = 255
    from PIL import Image

    data = image_bytes(Image.fromarray(half), "PNG")
    changes = tuple(c for c in STABILITY_PERTURBATIONS if c != "mirror")
    detector = Detector(model, META, engine="eager", trust=_profile(dim=4, checked_changes=changes))
    detector.engine = _SideEngine(sided=True)
    verdict = detector.predict(data)
    assert verdict.decision == "fake" and verdict.perturbed["mirror"] < 0.5


class _DetailEngine:
    """Logits that follow the finest detail (the mean step between horizontal neighbours):
    a 1 px checkerboard is fake, a smooth image real; resampling blurs the checkerboard."""

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        detail = (batch[..., 1:] - batch[..., :-1]).abs().mean((1, 2, 3))
        margin = 10 * (detail - detail.new_tensor(1.5))
        return torch.cat([torch.stack([-margin / 2, margin / 2], 1), torch.zeros(len(batch), 4)], 1)


def test_the_resize_flip_rates_measure_how_much_resampling_changes_the_calls(
    model, tmp_path
) -> None:
    from PIL import Image

    from training.fit_trust import tolerance_flip_rates

    board = (np.indices((32, 32)).sum(0) % 2 * 255).astype(np.uint8)
    images = {
        "board.png": np.stack([board] * 3, -1),
        "flat.png": np.full((32, 32, 3), 90, np.uint8),
    }
    for name, pixels in images.items():
        Image.fromarray(pixels).save(tmp_path / name)
    val = pd.DataFrame({"path": list(images), "label": [1, 0]})
    detector = Detector(model, META, engine="eager")
    detector.engine = _DetailEngine()
    rates, jpeg = tolerance_flip_rates(
        detector, tmp_path, val, quality=None, calibrate=sigmoid, max_images=10, progress=False
    )
    assert set(rates) == set(resize_factors()) and jpeg == {}
    assert rates[1 / 1.1] == 0.5 and rates[1.1] == 0.5  # the board's call flips, the flat's not
    assert choose_scale_tolerance(rates, max_flip_rate=0.05) == 1.0
    detector.engine = _SideEngine(sided=False)
    steady, jpeg = tolerance_flip_rates(
        detector, tmp_path, val, quality=(75, 75), calibrate=sigmoid, max_images=10, progress=False
    )
    assert choose_scale_tolerance(steady, max_flip_rate=0.05) == 1.5
    assert jpeg == {q: 0.0 for q in margin_qualities((75, 75))}


def test_flip_rates_count_changed_calls_per_change() -> None:
    from forensics.trust.stability import flip_rates

    base = np.array([0.9, 0.1, 0.8, 0.2])
    perturbed = np.array([[0.9, 0.2], [0.6, 0.1], [0.7, 0.4], [0.3, 0.6]])
    np.testing.assert_allclose(flip_rates(base, perturbed, threshold=0.5), [0.25, 0.75])


def test_the_spread_threshold_is_a_validation_quantile() -> None:
    base = np.array([0.9, 0.1, 0.8, 0.2])
    perturbed = np.array([[0.9, 0.8], [0.1, 0.15], [0.5, 0.8], [0.2, 0.2]])
    assert fit_max_spread(base, perturbed, quantile=1.0) == pytest.approx(0.3)
    assert "moves by 0.40" in stability_reason(
        0.9, {"a": 0.5, "b": 0.9}, threshold=0.4, max_spread=0.3
    )


# ------------------------------------------------------------------------------- stored profile


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, model) -> tuple[Path, Path]:
    """A checkpoint and its data, with a profile fitted on the data's train and val splits."""
    base = tmp_path_factory.mktemp("trust")
    data = write_dataset(base / "data", per_class=10, splits=("train", "val", "test"))
    directory = save_checkpoint(base / "ckpt", model, META)
    detector = load_detector(directory)
    manifest = build_manifest(data, progress=False).manifest
    profile, figures = fit_trust_profile(detector, data, manifest, progress=False)
    meta = save_trust_profile(directory, detector.metadata, profile, figures)
    save_checkpoint(directory, model, meta)
    return directory, data


def test_the_profile_round_trips_through_the_checkpoint(fitted) -> None:
    directory, data = fitted
    detector = load_detector(directory)
    record = detector.metadata["trust"]
    assert detector.trust.temperature == pytest.approx(record["temperature"])
    assert record["fit"]["val_images"] == 20 and record["fit"]["train_images"] == 20
    assert record["input_domain"]["scale"] == [1.0, 1.0]
    assert record["input_domain"]["scale_tolerance"] in (1.0, 1.1, 1.25, 1.5)
    assert len(record["fit"]["val_resize_flip_rates"]) == len(resize_factors())
    assert record["input_domain"]["jpeg_margin"] == 10  # PNGs: nothing to measure
    again = load_detector(directory)
    image = next((data / "test" / "fake").iterdir())
    first, second = detector.predict(image), again.predict(image)
    assert first == second
    assert first.prob_fake == pytest.approx(
        float(
            sigmoid(np.log(first.prob_fake_raw / (1 - first.prob_fake_raw)) / record["temperature"])
        )
    )
    assert first.checkpoint == "ckpt" and first.checkpoint_id == detector.checkpoint_id


def test_the_stored_bias_calibrates_and_an_older_record_has_none(fitted, tmp_path) -> None:
    import json
    import shutil

    from forensics.trust.profile import TrustProfile as Profile

    directory, data = fitted
    record = load_detector(directory).metadata["trust"]
    assert record["fit"]["calibration"]["chosen"] in ("temperature", "temperature_and_bias")
    copy = shutil.copytree(directory, tmp_path / "biased")
    meta = json.loads((copy / "model.json").read_text())
    meta["trust"] = {**meta["trust"], "bias": -2.0}
    (copy / "model.json").write_text(json.dumps(meta))
    image = next((data / "test" / "fake").iterdir())
    verdict = load_detector(copy).predict(image)
    margin = np.log(verdict.prob_fake_raw / (1 - verdict.prob_fake_raw))
    expected = sigmoid(margin / record["temperature"] - 2.0)
    assert verdict.prob_fake == pytest.approx(float(expected))
    del meta["trust"]["bias"]  # written before Platt scaling
    (copy / "model.json").write_text(json.dumps(meta))
    assert load_detector(copy).trust.bias == 0.0
    assert isinstance(load_detector(copy).trust, Profile)
    meta["trust"]["bias"] = float("nan")
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="bias"):
        load_detector(copy)


def test_a_tampered_profile_is_a_checkpoint_error(fitted, tmp_path) -> None:
    import shutil

    directory, _ = fitted
    copy = shutil.copytree(directory, tmp_path / "copy")
    (copy / TRUST_FILE).write_bytes((copy / TRUST_FILE).read_bytes()[:-8])
    with pytest.raises(CheckpointError, match="trust profile is unusable"):
        load_detector(copy)
    (copy / TRUST_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_detector(copy)


def test_an_old_checkpoint_loads_and_says_its_domain_is_unknown(tiny_checkpoint) -> None:
    detector = load_detector(tiny_checkpoint)
    assert detector.trust is None
    verdict = detector.predict(image_bytes(make_image(3), "PNG"))
    assert verdict.decision == "unsure" and verdict.reasons == (UNKNOWN_DOMAIN,)
    assert verdict.label in ("real", "fake") and verdict.prob_fake == verdict.prob_fake_raw
    record = verdict.to_dict()
    assert {"decision", "reasons", "prob_fake", "prob_fake_raw", "label", "threshold",
            "checkpoint", "checkpoint_id"} <= set(record)  # fmt: skip


def test_a_resample_round_trip_keeps_the_size_and_smooths_the_finest_detail() -> None:
    from forensics.perturb import resample_roundtrip

    image = make_image(3, size=64, fake=True)  # a one-pixel checkerboard
    out = resample_roundtrip(image)
    assert out.size == image.size and out.mode == "RGB"
    detail = lambda im: np.abs(np.diff(np.asarray(im, dtype=float), axis=1)).mean()  # noqa: E731
    assert detail(out) < 0.8 * detail(image)
    with pytest.raises(ValueError, match="positive"):
        resample_roundtrip(image, 0)


def test_the_card_says_why_a_bias_was_or_was_not_used() -> None:
    from training.fit_trust import _describe_calibration

    evidence = {"chosen": "temperature", "folds": 5, "gain_standard_error": 0.027,
                "cv_log_loss": {"temperature": 0.196, "temperature_and_bias": 0.171}}  # fmt: skip
    record = {"temperature": 0.525, "fit": {"val_images": 120, "calibration": evidence}}
    assert _describe_calibration(record) == (
        "temperature 0.525, fitted on 120 validation images (no bias: a bias changed the 5-fold "
        "cross-validated log loss from 0.196 to 0.171 (a gain of 0.025, standard error 0.027), "
        "not more than one standard error)"
    )
    biased = {**record, "bias": -0.8, "fit": {"val_images": 120, "calibration": {
        **evidence, "chosen": "temperature_and_bias", "gain_standard_error": 0.01}}}  # fmt: skip
    assert _describe_calibration(biased).startswith(
        "temperature 0.525, bias -0.800, fitted on 120 validation images (Platt scaling: a bias "
    )
    # A record from before Platt scaling: the temperature alone.
    assert _describe_calibration({"temperature": 2.0, "fit": {"val_images": 9}}) == (
        "temperature 2.000, fitted on 9 validation images"
    )


def test_the_card_names_the_criterion_the_patch_rule_was_chosen_by() -> None:
    from training.fit_trust import _describe_patches

    losses = {"64": {"mean_logit": 0.167}, "128": {"mean_logit": 0.154}}
    record = {"chosen": "mean_logit", "stride": 128, "val_log_loss": losses["128"],
              "val_log_loss_by_stride": losses, "criterion": "calibrated_cv_log_loss"}  # fmt: skip
    assert _describe_patches(record, 120) == [
        "- **Patches**: patches starting 128 px apart, scores combined by `mean_logit`, the "
        "lowest cross-validated log loss after calibration, as the verdicts ship, on the 120 "
        "validation images (64 px apart: `mean_logit` 0.167; 128 px apart: `mean_logit` 0.154)."
    ]
    # Records from before the criterion was stored were chosen by the raw log loss.
    older = {key: value for key, value in record.items() if key != "criterion"}
    assert "the lowest log loss on the 120 validation images" in _describe_patches(older, 120)[0]
    assert _describe_patches(None, 120) == []


def test_a_verdict_record_has_exactly_the_documented_keys() -> None:
    from forensics.verdicts import Verdict

    verdict = Verdict(label="fake", prob_fake=0.8, threshold=0.5, perturbed={"jpeg": 0.7},
                      feature_distance=1.5, routing="chosen")  # fmt: skip
    assert verdict.to_dict() == {
        "decision": "fake", "reasons": [], "label": "fake", "prob_fake": 0.8,
        "prob_fake_raw": 0.8, "threshold": 0.5, "checkpoint": "", "checkpoint_id": "",
        "perturbed": {"jpeg": 0.7}, "feature_distance": 1.5, "routing": "chosen",
        "decided_by": "model", "partly_generated": False, "provenance": "",
        "model_decision": "fake", "model_reasons": [],
    }  # fmt: skip


# ------------------------------------------------------------------ found by mutation testing


def test_the_abstain_band_defaults_to_one_percent_risk_and_counts_a_score_at_the_threshold():
    from forensics.trust.calibration import AbstainBand

    # One image in 50 is wrong at 0.52: at most 1% risk needs a band that holds it.
    prob_fake = np.r_[np.full(25, 0.9), np.full(24, 0.1), 0.52]
    labels = np.r_[np.ones(25), np.zeros(25)].astype(int)
    band, figures = choose_abstain_band(prob_fake, labels)
    assert (band, figures) == choose_abstain_band(prob_fake, labels, max_selective_risk=0.01)
    assert band.contains(0.52) and not band.contains(0.9) and not band.contains(0.1)
    assert figures == {"coverage": 49 / 50, "selective_risk": 0.0, "max_selective_risk": 0.01}
    # A fake image scored exactly at the threshold is called fake, rightly: no band is needed.
    assert choose_abstain_band(np.array([0.5]), np.array([1]))[0] == AbstainBand(0.5, 0.5)


def test_an_abstain_band_that_answers_nothing_stops_widening_and_stays_in_the_unit_range():
    # Both images wrong, both close to 0.5: the first band that holds both answers nothing,
    # which is no risk, so widening stops there.
    band, figures = choose_abstain_band(np.array([0.47, 0.53]), np.array([1, 0]))
    assert (band.low, band.high) == (pytest.approx(0.465), pytest.approx(0.535))
    assert figures["coverage"] == 0.0 and figures["selective_risk"] == 0.0
    # Certainly wrong at 1.0: no band helps; the widest one tried ends at 1, not above.
    band, figures = choose_abstain_band(np.array([1.0]), np.array([0]), threshold=0.7)
    assert (band.low, band.high) == (pytest.approx(0.2), 1.0) and figures["selective_risk"] == 1
    with pytest.raises(ValueError, match=r"^prob_fake and labels must be two non-empty arrays"):
        choose_abstain_band(np.array([0.2, 0.4]), np.array([0]))


def test_platt_scaling_on_separable_scores_stops_at_the_temperature_bound() -> None:
    from forensics.trust.calibration import LOG_TEMPERATURE_BOUNDS, fit_temperature_and_bias

    margins = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    temperature, bias = fit_temperature_and_bias(margins, np.array([0, 0, 0, 1, 1, 1]))
    assert temperature == pytest.approx(np.exp(LOG_TEMPERATURE_BOUNDS[0]), rel=1e-4)
    assert abs(bias) < 1e-3


def test_choose_calibration_cross_validates_with_two_folds_and_seed_zero() -> None:
    rng = np.random.default_rng(5)
    labels = np.r_[np.zeros(30), np.ones(30)].astype(int)
    margins = rng.normal(0.0, 1.0, 60) + 1.5 * (2 * labels - 1) + 0.8
    _, _, two = choose_calibration(margins, labels, folds=2)
    assert two["folds"] == 2 and set(two["cv_log_loss"]) == {"temperature", "temperature_and_bias"}
    default, seed_0, seed_1 = (choose_calibration(margins, labels, **kw)[2]
                               for kw in ({}, {"seed": 0}, {"seed": 1}))  # fmt: skip
    assert default == seed_0 and default["cv_log_loss"] != seed_1["cv_log_loss"]


def test_a_platt_bias_and_the_float32_tensors_round_trip_through_the_trust_files(tmp_path) -> None:
    from safetensors.numpy import load_file

    from forensics.trust.profile import TRUST_FILE, load_trust_profile

    profile = _profile(dim=4, temperature=1.5, bias=0.3)
    meta = save_trust_profile(tmp_path, META, profile, {})
    tensors = load_file(str(tmp_path / TRUST_FILE))
    assert {t.dtype for t in tensors.values()} >= {np.dtype("float32")}
    assert tensors["feature_mean"].dtype == tensors["feature_precision"].dtype == np.float32
    loaded = load_trust_profile(tmp_path, meta)
    assert (loaded.temperature, loaded.bias, loaded.band) == (1.5, 0.3, profile.band)
    np.testing.assert_allclose(loaded.calibrate(np.array([0.0, 1.5])), sigmoid(np.r_[0.3, 1.3]))


def test_judge_without_a_profile_calls_at_the_threshold_and_is_unsure() -> None:
    from forensics.trust.profile import judge

    at = judge(None, margin=0.0, threshold=0.5, info=None)  # P(fake) exactly 0.5
    assert (at.decision, at.reasons, at.label) == ("unsure", (UNKNOWN_DOMAIN,), "fake")
    assert at.prob_fake == at.prob_fake_raw == 0.5
    assert judge(None, margin=-0.1, threshold=0.5, info=None).label == "real"


def test_judge_applies_the_abstain_band_and_calls_at_the_threshold() -> None:
    from forensics.trust.profile import CLOSE_TO_THRESHOLD, judge

    banded = _profile(dim=4, band=AbstainBand(0.4, 0.6))
    inside = judge(banded, margin=0.0, threshold=0.5, info=None)
    assert (inside.decision, inside.label, inside.prob_fake) == ("unsure", "fake", 0.5)
    assert inside.reasons == (
        f"{CLOSE_TO_THRESHOLD} (P(fake) 0.50, inside the 0.40-0.60 band where this model's "
        "validation answers were unreliable)",
    )
    for margin, call in ((3.0, "fake"), (-3.0, "real")):
        outside = judge(banded, margin=margin, threshold=0.5, info=None, feature_distance=0.5)
        assert (outside.decision, outside.label, outside.reasons) == (call, call, ())
        assert outside.feature_distance == 0.5
    no_band = _profile(dim=4, band=AbstainBand(0.5, 0.5))
    assert judge(no_band, margin=0.0, threshold=0.5, info=None).decision == "fake"
    assert judge(no_band, margin=-1e-6, threshold=0.5, info=None).decision == "real"
    far = judge(_profile(dim=4, feature_threshold=1.0), margin=3.0, threshold=0.5, info=None,
                feature_distance=5.0)  # fmt: skip
    assert far.decision == "unsure" and far.label == "fake" and far.feature_distance == 5.0
    assert far.reasons[0].startswith("this image is unlike what the model was trained on: ")
