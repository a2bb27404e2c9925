"""Fit a checkpoint's trust profile on its own splits, and re-evaluate its stored test figures.

    python -m training.fit_trust checkpoints/default --data ../shared/data/cifake

Reads the checkpoint's `splits.csv.gz`. From the **training** split: the input domain (image
sizes, shapes, JPEG qualities, from the scan) and the feature statistics (penultimate features
of up to `--max-train-images` images). From the **validation** split: the calibration (the
temperature, and a bias where cross-validation says it pays), the abstain band (the narrowest
band whose answered validation images are wrong at most `--max-selective-risk` of the time), the
feature-distance threshold and the stability spread.
The test split is read once, at the end, for the stored evaluation (`eval/`) and the model
card's section on what a verdict is worth. `training.publish` runs the same fit.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forensics.checkpoint import METADATA_FILE, CheckpointError, update_metadata
from forensics.data import ImageStore, dataset_fingerprint, load_splits
from forensics.detector import Detector, load_detector
from forensics.evaluation import (
    calibrated_ece_floor,
    compute_selective_metrics,
    expected_calibration_error,
    manifest_infos,
    run_evaluation,
    score_rows,
    write_evaluation,
)
from forensics.patches import candidate_strides, choose_aggregation
from forensics.perturb import STABILITY_PERTURBATIONS, jpeg_resave, rescale
from forensics.scan import load_or_build_manifest
from forensics.trust import (
    FeatureDomain,
    InputDomain,
    TrustProfile,
    choose_abstain_band,
    choose_calibration,
    save_trust_profile,
)
from forensics.trust.calibration import calibrated_log_loss, negative_log_likelihood, sigmoid
from forensics.trust.domain import JPEG_QUALITY_MARGIN, SCALE_TOLERANCE
from forensics.trust.stability import MAX_FLIP_RATE, fit_max_spread, flip_rates
from forensics.trust.tolerance import (
    JPEG_MARGIN_STEPS,
    SCALE_TOLERANCE_STEPS,
    choose_jpeg_margin,
    choose_scale_tolerance,
    margin_qualities,
    resize_factors,
)
from training.card import CARD_FILE, write_card_section

SPLIT_FILE = "splits.csv.gz"
TRUST_SECTION = "trust"  # the card section training.card writes


def fit_trust_profile(
    detector: Detector,
    root: Path,
    manifest: pd.DataFrame,
    *,
    max_train_images: int = 20_000,
    max_selective_risk: float = 0.01,
    feature_quantile: float = 0.99,
    spread_quantile: float = 0.99,
    seed: int = 0,
    batch_size: int = 128,
    max_tolerance_images: int = 2_000,
    progress: bool = True,
) -> tuple[TrustProfile, dict[str, Any]]:
    """The profile fitted on `manifest`'s train and val rows (never test), and its validation
    figures."""
    train = manifest[manifest["split"] == "train"]
    val = manifest[manifest["split"] == "val"].reset_index(drop=True)
    if train.empty or val.empty:
        raise ValueError("fitting a trust profile needs a train and a val split")
    if len(train) > max_train_images:
        train = train.sample(max_train_images, random_state=seed)
    train = train.reset_index(drop=True)
    patch_rule = (
        choose_patch_rule(detector, root, val, seed=seed, progress=progress)
        if detector.patch_spec is not None
        else None
    )
    score = partial(score_rows, detector, root, batch_size=batch_size, progress=progress)
    _, train_features = score(train, stability=False)
    val_margins, val_features = score(val, stability=True)
    labels = val["label"].to_numpy()

    temperature, bias, calibration = choose_calibration(val_margins[:, 0], labels, seed=seed)
    calibrated = sigmoid(val_margins / temperature + bias)
    band, band_figures = choose_abstain_band(
        calibrated[:, 0],
        labels,
        threshold=detector.threshold,
        max_selective_risk=max_selective_risk,
    )
    changes = list(STABILITY_PERTURBATIONS)
    rates = flip_rates(calibrated[:, 0], calibrated[:, 1:], threshold=detector.threshold)
    checked = [i for i, rate in enumerate(rates) if rate <= MAX_FLIP_RATE]
    spread = (
        fit_max_spread(calibrated[:, 0], calibrated[:, 1:][:, checked], quantile=spread_quantile)
        if checked
        else 1.0
    )
    domain = InputDomain.fit(
        manifest_infos(train),
        resize=detector.data_config.resize,
        patch=None if detector.patch_spec is None else detector.patch_spec.size,
    )
    resize_rates, jpeg_rates = tolerance_flip_rates(
        detector,
        root,
        val,
        quality=domain.jpeg_quality,
        calibrate=lambda margins: sigmoid(margins / temperature + bias),
        max_images=max_tolerance_images,
        seed=seed,
        progress=progress,
    )
    domain = replace(
        domain,
        scale_tolerance=choose_scale_tolerance(resize_rates, max_flip_rate=MAX_FLIP_RATE),
        jpeg_margin=domain.jpeg_margin
        if domain.jpeg_quality is None
        else choose_jpeg_margin(jpeg_rates, domain.jpeg_quality, max_flip_rate=MAX_FLIP_RATE),
    )
    profile = TrustProfile(
        temperature=temperature,
        band=band,
        input_domain=domain,
        feature_domain=FeatureDomain.fit(train_features, val_features, quantile=feature_quantile),
        max_spread=spread,
        record={},
        checked_changes=tuple(changes[i] for i in checked),
        bias=bias,
    )
    detector.trust = profile  # judge the validation images with every check, as users will be
    verdicts = detector.verdicts_from_scores(val_margins, val_features, manifest_infos(val))
    decisions = compute_selective_metrics(labels, [v.decision for v in verdicts])
    figures = {
        "train_images": len(train),
        "val_images": len(val),
        "val_nll_before": negative_log_likelihood(val_margins[:, 0], labels, 1.0),
        "val_nll_after": negative_log_likelihood(val_margins[:, 0], labels, temperature, bias),
        "calibration": calibration,
        "val_ece_before": expected_calibration_error(labels, sigmoid(val_margins[:, 0])),
        "val_ece_after": expected_calibration_error(labels, calibrated[:, 0]),
        "band_only": band_figures,
        "val_decisions": decisions,
        "feature_quantile": feature_quantile,
        "spread_quantile": spread_quantile,
        "val_flip_rates": dict(zip(changes, (float(r) for r in rates), strict=True)),
        "val_resize_flip_rates": {f"{factor:.4g}": rate for factor, rate in resize_rates.items()},
        "val_jpeg_flip_rates": {str(quality): rate for quality, rate in jpeg_rates.items()},
        "max_flip_rate": MAX_FLIP_RATE,
        "dataset_fingerprint": dataset_fingerprint(manifest),
        "patch_rule": patch_rule,
    }
    return profile, figures


def tolerance_flip_rates(
    detector: Detector,
    root: Path,
    val: pd.DataFrame,
    *,
    quality: tuple[int, int] | None,
    calibrate,
    max_images: int,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[float, float], dict[int, float]]:
    """The shares of (at most `max_images`) validation images whose call, on `calibrate`d
    probabilities, flips when resized by each of `resize_factors()`, and when re-saved at each
    of `margin_qualities(quality)` (none for a training set without JPEGs): what
    `forensics.trust.tolerance` reads to decide how far the input domain reaches."""
    from tqdm.auto import tqdm

    rows = val.sample(max_images, random_state=seed) if len(val) > max_images else val
    store = ImageStore(root)
    factors = resize_factors()
    qualities = margin_qualities(quality) if quality is not None else []
    margins = []
    for path in tqdm(rows["path"], desc="tolerances", unit="img", disable=not progress):
        rgb = store.load_image(path)
        changed = [rescale(rgb, f) for f in factors] + [jpeg_resave(rgb, q) for q in qualities]
        margins.append(detector.image_scores([rgb, *changed])[0][:, 0])
    probs = calibrate(np.array(margins))
    rates = [float(r) for r in flip_rates(probs[:, 0], probs[:, 1:], threshold=detector.threshold)]
    return (
        dict(zip(factors, rates[: len(factors)], strict=True)),
        dict(zip(qualities, rates[len(factors) :], strict=True)),
    )


# What choose_patch_rule ranks its candidates by (recorded, and named on the card).
PATCH_RULE_CRITERION = "calibrated_cv_log_loss"


def choose_patch_rule(
    detector: Detector, root: Path, val: pd.DataFrame, *, seed: int = 0, progress: bool = True
) -> dict[str, Any]:
    """For a patch model: how far apart its patches start (`candidate_strides`: side by side,
    or overlapping by half) and the rule that combines an image's patch scores into its verdict,
    chosen together on validation and set in the detector's spec and metadata (which the caller
    stores). Each candidate is scored as its verdicts will ship: by the cross-validated log
    loss of its margins after the calibration fitted to them (`calibrated_log_loss`), so that
    a lean calibration removes does not decide. Returns the choice and its evidence, with each
    candidate's raw log loss beside."""
    from tqdm.auto import tqdm

    store = ImageStore(root)
    spec = detector.patch_spec
    labels = val["label"].to_numpy()
    losses_by_stride: dict[int, Mapping[str, float]] = {}
    raw_by_stride: dict[int, Mapping[str, float]] = {}
    for stride in candidate_strides(spec.size):
        detector.patch_spec = replace(spec, stride=stride)
        patch_margins = []
        for path in tqdm(
            val["path"], desc=f"patch rule, stride {stride}", unit="img", disable=not progress
        ):
            views = detector.patch_views(store.load_image(path), stability=False)
            patch_margins.append(detector.score_patch_views(views)[2])
        losses_by_stride[stride] = choose_aggregation(
            patch_margins, labels, k=spec.k, loss=partial(calibrated_log_loss, seed=seed)
        )[1]
        raw_by_stride[stride] = choose_aggregation(patch_margins, labels, k=spec.k)[1]
    stride, rule = min(
        ((stride, rule) for stride, losses in losses_by_stride.items() for rule in losses),
        key=lambda choice: losses_by_stride[choice[0]][choice[1]],
    )
    detector.patch_spec = replace(spec, stride=stride, aggregate=rule)
    detector.metadata["patches"] = detector.patch_spec.to_dict()
    return {
        "chosen": rule,
        "stride": stride,
        "criterion": PATCH_RULE_CRITERION,
        "val_log_loss": dict(losses_by_stride[stride]),
        "val_log_loss_by_stride": {str(s): dict(v) for s, v in losses_by_stride.items()},
        "val_raw_log_loss_by_stride": {str(s): dict(v) for s, v in raw_by_stride.items()},
    }


def _describe_calibration(record: Mapping[str, Any]) -> str:
    """The calibration line's opening: the temperature (and Platt's bias, where one is used),
    the images it was fitted on, and what cross-validation said of a bias."""
    fit = record["fit"]
    bias = float(record.get("bias", 0.0))
    text = f"temperature {record['temperature']:.3f}" + (f", bias {bias:+.3f}" if bias else "")
    text += f", fitted on {fit['val_images']:,} validation images"
    choice = fit.get("calibration") or {}
    losses = choice.get("cv_log_loss")
    if not losses:
        return text
    gain = losses["temperature"] - losses["temperature_and_bias"]
    evidence = (
        f"a bias changed the {choice['folds']}-fold cross-validated log loss from "
        f"{losses['temperature']:.3f} to {losses['temperature_and_bias']:.3f} (a gain of "
        f"{gain:.3f}, standard error {choice['gain_standard_error']:.3f})"
    )
    if bias:
        return f"{text} (Platt scaling: {evidence}; the bias moves the decision boundary)"
    return f"{text} (no bias: {evidence}, not more than one standard error)"


def describe_trust(record: Mapping[str, Any], test: Mapping[str, Any]) -> str:
    """The model card's section on what a verdict is worth, from the stored record and the
    stored test evaluation."""
    fit, band = record["fit"], record["abstain_band"]
    domain = record["input_domain"]
    quality = domain["jpeg_quality"]
    val = fit["val_decisions"]
    lines = [
        "## What a verdict is worth",
        "",
        "*Written by `python -m training.fit_trust` from `model.json`'s trust record and "
        "`eval/metrics.json`.*",
        "",
        "Each verdict is a **decision**: `real`, `fake` or `unsure`, with its reasons. It is "
        "`unsure` when the image is unlike the training data, when its score changes under a "
        "JPEG re-save, a 0.9x resize, a 3 px shift or a mirror, or when the calibrated score is "
        "close to the threshold. Everything below was fitted on the training and validation "
        "splits; the test figures were read once, after.",
        "",
        f"- **Calibration**: {_describe_calibration(record)}. Expected calibration error on the "
        f"test split: {test['raw_ece']:.4f} before, {test['ece']:.4f} after; a perfectly "
        f"calibrated model would show {test['ece_floor']:.4f} on these {test['n']:,} images "
        "from sampling alone (median of 200 draws).",
        f"- **Abstain band**: no answer while {band['low']:.3f} < P(fake) < {band['high']:.3f} "
        f"(the narrowest band whose answered validation images were wrong at most "
        f"{fit['band_only']['max_selective_risk']:.1%} of the time).",
        *_describe_patches(fit.get("patch_rule"), fit["val_images"]),
        f"- **Training domain**: {_sizes(domain)}, "
        + (f"JPEG quality {_range(*quality)}" if quality else "no JPEGs")
        + f" ({domain['jpeg_share']:.0%} JPEG{_jpeg_reach(domain) if quality else ''}); "
        "feature distance at most "
        f"{record['feature_threshold']:.1f} ({record['feature_quantile']:.0%} of in-domain "
        f"validation images).",
        f"- **Stability**: {_describe_changes(record)}",
        "",
        "| split | images | answered | accuracy on the answered | confident and wrong |",
        "|---|---|---|---|---|",
        f"| validation (fitted on) | {fit['val_images']:,} | {val['coverage']:.1%} | "
        f"{_pct(val['selective_accuracy'])} | {val['confident_wrong_rate']:.2%} |",
        f"| test | {test['n']:,} | {test['coverage']:.1%} | "
        f"{_pct(test['selective_accuracy'])} | {test['confident_wrong_rate']:.2%} |",
    ]
    return "\n".join(lines)


def _describe_patches(choice: Mapping[str, Any] | None, images: int) -> list[str]:
    """A patch model's line: the stride and rule chosen, with each candidate's validation log
    loss (records written before strides were chosen give the rules alone; those written before
    the criterion was recorded were chosen by the raw log loss)."""
    if not choice:
        return []
    by_stride = choice.get("val_log_loss_by_stride") or {"": choice["val_log_loss"]}
    candidates = "; ".join(
        (f"{stride} px apart: " if stride else "")
        + ", ".join(f"`{rule}` {loss:.3f}" for rule, loss in losses.items())
        for stride, losses in by_stride.items()
    )
    stride = f"patches starting {choice['stride']} px apart, " if "stride" in choice else ""
    criterion = (
        "cross-validated log loss after calibration, as the verdicts ship,"
        if choice.get("criterion") == PATCH_RULE_CRITERION
        else "log loss"
    )
    return [
        f"- **Patches**: {stride}scores combined by `{choice['chosen']}`, the lowest {criterion} "
        f"on the {images:,} validation images ({candidates})."
    ]


def _describe_changes(record: Mapping[str, Any]) -> str:
    """Which harmless changes the verdict is held to, and which this model does not withstand."""
    fit = record["fit"]
    rates = fit["val_flip_rates"]
    checked = record["checked_changes"]
    text = (
        f"the verdict is held to {', '.join(checked)} (scores may spread by at most "
        f"{record['max_spread']:.3f})."
        if checked
        else "no change is checked."
    )
    weak = [f"{name} ({rates[name]:.1%})" for name in rates if name not in checked]
    if weak:
        text += (
            " **Known weakness**: this model does not withstand "
            + ", ".join(weak)
            + f": each flips more than {fit['max_flip_rate']:.0%} of its own validation verdicts "
            "(the share in brackets), so a verdict on an image that went through such a change "
            "is worth little, and the check cannot tell."
        )
    return text


def _jpeg_reach(domain: Mapping[str, Any]) -> str:
    """How far beyond the training JPEG qualities the domain reaches, and why."""
    margin = domain.get("jpeg_margin", JPEG_QUALITY_MARGIN)
    if margin <= 0:
        return (
            "; no other quality is admitted: re-saving its own validation images "
            f"{JPEG_MARGIN_STEPS[0]} qualities away flips more than {MAX_FLIP_RATE:.0%} of "
            "their verdicts"
        )
    return f"; qualities up to {margin} either side admitted, as withstood on validation"


def _span(scale: list[float], resize: int) -> str:
    return _range(*(round(s * resize) for s in scale))


def _sizes(domain: Mapping[str, Any]) -> str:
    if domain.get("patch"):
        return (
            f"native-resolution patches of {domain['patch']} px, never resampled (any image at "
            "least that large on both sides is at the model's own scale, whatever its shape)"
        )
    return (
        f"images {_span(domain['scale'], domain['resize'])} px on the short side, long/short "
        f"side ratio up to {domain['aspect'][1]:.2f}, {_resampling(domain)}"
    )


def _resampling(domain: Mapping[str, Any]) -> str:
    """How much resampling beyond the training sizes the domain admits, and why."""
    tolerance = domain.get("scale_tolerance", SCALE_TOLERANCE)
    if tolerance <= 1.0:
        return (
            "no resampling beyond those sizes (resizing its own validation images by "
            f"{SCALE_TOLERANCE_STEPS[0]:g}x flips more than {MAX_FLIP_RATE:.0%} of their verdicts)"
        )
    return f"resampling by up to {tolerance:g}x beyond them (withstood on validation)"


def _range(low: int, high: int) -> str:
    return f"{low}" if low == high else f"{low}-{high}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def fit_checkpoint(
    directory: Path,
    root: Path,
    *,
    evaluate: bool = True,
    batch_size: int = 128,
    progress: bool = True,
    **options,
) -> dict[str, Any]:
    """Fit and store the profile of the checkpoint in `directory` on `root` (its own split
    file), then (`evaluate`) rewrite its stored test evaluation and card section. Returns the
    trust record."""
    detector = load_detector(directory)
    split_file = directory / SPLIT_FILE
    if not split_file.is_file():
        raise ValueError(f"{directory} has no {SPLIT_FILE}: the profile is fitted on its splits")
    manifest = load_splits(load_or_build_manifest(root, progress=progress).manifest, split_file)
    profile, figures = fit_trust_profile(
        detector, root, manifest, batch_size=batch_size, progress=progress, **options
    )
    meta = save_trust_profile(directory, detector.metadata, profile, figures)
    update_metadata(directory, meta)
    if not evaluate:
        return meta["trust"]
    detector = load_detector(directory)  # exactly what users load, with the stored profile
    test = manifest[manifest["split"] == "test"].reset_index(drop=True)
    table, metrics = run_evaluation(detector, root, test, batch_size=batch_size, progress=progress)
    metrics.update(
        split="test",
        dataset=describe_dataset(root, manifest),
        ece_floor=calibrated_ece_floor(table["prob_fake"]),
    )
    write_evaluation(directory / "eval", table, metrics)
    meta = {
        **detector.metadata,
        "metrics": {**detector.metadata.get("metrics", {}), "test": metrics},
    }
    update_metadata(directory, meta)
    write_card_section(directory / CARD_FILE, TRUST_SECTION, describe_trust(meta["trust"], metrics))
    return meta["trust"]


def describe_dataset(root: Path, manifest: pd.DataFrame) -> dict[str, Any]:
    """What a stored evaluation records of its dataset, so the app can tell whether the folder a
    user sets is that dataset (and, if not, name the one it needs)."""
    return {"name": root.name, "files": len(manifest), "fingerprint": dataset_fingerprint(manifest)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.fit_trust", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint folder (with splits.csv.gz)")
    parser.add_argument("--data", type=Path, required=True, help="its dataset folder or .zip")
    parser.add_argument("--max-train-images", type=int, default=20_000)
    parser.add_argument("--max-selective-risk", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--no-evaluate", action="store_true", help="fit only; leave eval/ and the card as they are"
    )
    args = parser.parse_args(argv)
    try:
        record = fit_checkpoint(
            args.checkpoint,
            args.data,
            evaluate=not args.no_evaluate,
            batch_size=args.batch_size,
            max_train_images=args.max_train_images,
            max_selective_risk=args.max_selective_risk,
        )
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    fit = record["fit"]["val_decisions"]
    print(
        f"{args.checkpoint / METADATA_FILE}: temperature {record['temperature']:.3f}, bias "
        f"{record.get('bias', 0.0):+.3f}, band "
        f"{record['abstain_band']['low']:.3f}-{record['abstain_band']['high']:.3f}; validation: "
        f"answered {fit['coverage']:.1%}, confident-wrong {fit['confident_wrong_rate']:.2%}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
