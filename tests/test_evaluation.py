"""forensics.evaluation: metrics against hand-computed values, curves, calibration, the
predictions table and the metrics.json / predictions.csv round trip. Fake (1) is positive."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from forensics.atomic import write_atomic
from forensics.evaluation import (
    REASON_SEPARATOR,
    IncompleteEvaluationError,
    build_predictions_table,
    compute_confusion,
    compute_metrics,
    compute_pr_curve,
    compute_reliability,
    compute_risk_coverage,
    compute_roc_curve,
    compute_selective_metrics,
    decisions_of,
    expected_calibration_error,
    predict_labels,
    read_evaluation,
    write_evaluation,
)

# A small example worked out by hand. At threshold 0.5 the predictions are [0, 1, 1, 0, 1]:
#   index 0: real, 0.1 -> real  (tn)      index 3: fake, 0.4 -> real (fn)
#   index 1: real, 0.6 -> fake  (fp)      index 4: fake, 0.9 -> fake (tp)
#   index 2: fake, 0.7 -> fake  (tp)
LABELS = [0, 0, 1, 1, 1]
PROBS = [0.1, 0.6, 0.7, 0.4, 0.9]


def test_compute_metrics_hand_computed() -> None:
    m = compute_metrics(LABELS, PROBS, threshold=0.5)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 1, 1)
    assert m["n"] == 5 and m["threshold"] == 0.5
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)  # tp / (tp + fp)
    assert m["recall"] == pytest.approx(2 / 3)  # tp / (tp + fn)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)  # tn / (tn + fp)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # AUC: of the 2 x 3 (real, fake) pairs, the fake scores higher in 5 (only 0.6 > 0.4 loses).
    assert m["roc_auc"] == pytest.approx(5 / 6)
    # AP: ranked 0.9 F, 0.7 F, 0.6 R, 0.4 F, 0.1 R -> recall steps of 1/3 at precision 1, 1, 3/4.
    assert m["average_precision"] == pytest.approx((1 + 1 + 3 / 4) / 3)
    # Log loss: the probabilities given to the true class are 0.9, 0.4, 0.7, 0.4, 0.9.
    expected_log_loss = -(2 * math.log(0.9) + 2 * math.log(0.4) + math.log(0.7)) / 5
    assert m["log_loss"] == pytest.approx(expected_log_loss)
    # ECE (15 bins): every probability sits alone in its bin; gaps 0.1, 0.6, 0.3, 0.6, 0.1.
    assert m["ece"] == pytest.approx(1.7 / 5)
    json.dumps(m)  # plain Python values only, ready for metrics.json


@pytest.mark.parametrize(
    ("threshold", "confusion"),
    [
        (0.5, (2, 1, 1, 1)),
        (0.6, (2, 1, 1, 1)),  # prob == threshold counts as fake
        (0.65, (2, 0, 2, 1)),
        (0.3, (3, 1, 1, 0)),
        (0.95, (0, 0, 2, 3)),
        (0.0, (3, 2, 0, 0)),
    ],
)
def test_threshold_changes_the_confusion(threshold: float, confusion) -> None:
    m = compute_metrics(LABELS, PROBS, threshold=threshold)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == confusion
    assert m["threshold"] == threshold
    assert compute_confusion(LABELS, PROBS, threshold=threshold) == dict(
        zip(("tp", "fp", "tn", "fn"), confusion, strict=True)
    )
    # Ranking and probability metrics do not depend on the threshold.
    base = compute_metrics(LABELS, PROBS)
    for key in ("roc_auc", "average_precision", "log_loss", "ece"):
        assert m[key] == pytest.approx(base[key])


def test_threshold_0_65_rates() -> None:
    m = compute_metrics(LABELS, PROBS, threshold=0.65)
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(4 / 5)


def test_predict_labels_fake_at_or_above_threshold() -> None:
    assert predict_labels([0.0, 0.49, 0.5, 0.51, 1.0]).tolist() == [0, 0, 1, 1, 1]
    assert predict_labels([0.2, 0.3], threshold=0.3).tolist() == [0, 1]


@pytest.mark.parametrize(
    ("labels", "probs"),
    [([1, 1, 1], [0.2, 0.6, 0.9]), ([0, 0, 0], [0.1, 0.2, 0.9]), ([1], [0.7])],
)
def test_single_class_gives_none_not_a_crash(labels, probs) -> None:
    m = compute_metrics(labels, probs)
    assert m["roc_auc"] is None
    assert m["average_precision"] is None
    assert m["balanced_accuracy"] is None
    assert m["n"] == len(labels)
    assert m["tp"] + m["fp"] + m["tn"] + m["fn"] == len(labels)
    assert math.isfinite(m["log_loss"])
    json.dumps(m)


def test_specificity_none_without_real_images() -> None:
    m = compute_metrics([1, 1, 1], [0.2, 0.6, 0.9])
    assert m["specificity"] is None
    assert m["recall"] == pytest.approx(2 / 3)
    m = compute_metrics([0, 0, 0], [0.1, 0.2, 0.9])
    assert m["specificity"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("labels", "probs", "match"),
    [
        ([0, 2], [0.1, 0.2], "labels"),
        ([0, -1], [0.1, 0.2], "labels"),
        ([0, 0.5], [0.1, 0.2], "labels"),  # not a class, must not be truncated to 0
        ([0, 1], [0.1, 1.5], "prob_fake"),
        ([0, 1], [-0.1, 0.5], "prob_fake"),
        ([0, 1], [float("nan"), 0.5], "prob_fake"),
        ([0, 1], [float("inf"), 0.5], "prob_fake"),
        ([0, 1, 1], [0.1, 0.2], "length"),
        ([0, 1], [0.1, 0.2, 0.3], "length"),
    ],
)
def test_invalid_inputs_raise_value_error(labels, probs, match) -> None:
    with pytest.raises(ValueError, match=match):
        compute_metrics(labels, probs)
    with pytest.raises(ValueError):
        build_predictions_table([f"{i}.png" for i in range(len(labels))], labels, probs)


def test_empty_input_raises_value_error() -> None:
    with pytest.raises(ValueError, match="zero samples"):
        compute_metrics([], [])


def test_numpy_inputs_are_accepted() -> None:
    m = compute_metrics(np.array(LABELS, dtype=np.int64), np.array(PROBS, dtype=np.float32))
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 1, 1)
    m = compute_metrics(np.array(LABELS, dtype=float), PROBS)  # 0.0 / 1.0 are fine labels
    assert m["roc_auc"] == pytest.approx(5 / 6)


# --------------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------------


def test_roc_curve_shape_and_endpoints() -> None:
    curve = compute_roc_curve(LABELS, PROBS)
    fpr, tpr, thresholds = curve["fpr"], curve["tpr"], curve["thresholds"]
    assert fpr.shape == tpr.shape == thresholds.shape and fpr.ndim == 1
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    assert (np.diff(thresholds) < 0).all()
    # The area under the returned points is the AUC computed by hand.
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(5 / 6)


def test_roc_curve_perfect_separation_reaches_top_left() -> None:
    curve = compute_roc_curve([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    points = set(zip(curve["fpr"].tolist(), curve["tpr"].tolist(), strict=True))
    assert (0.0, 1.0) in points


def test_pr_curve_shape_and_endpoints() -> None:
    curve = compute_pr_curve(LABELS, PROBS)
    precision, recall, thresholds = curve["precision"], curve["recall"], curve["thresholds"]
    assert precision.shape == recall.shape
    assert len(thresholds) == len(precision) - 1
    # sklearn's convention: the last point is (recall 0, precision 1).
    assert (recall[-1], precision[-1]) == (0.0, 1.0)
    assert recall[0] == 1.0
    assert (np.diff(recall) <= 0).all()
    # At threshold 0.6 (predict 0.6, 0.7, 0.9 as fake): precision 2/3, recall 2/3.
    at = int(np.flatnonzero(np.isclose(thresholds, 0.6))[0])
    assert precision[at] == pytest.approx(2 / 3) and recall[at] == pytest.approx(2 / 3)


def test_curves_validate_inputs() -> None:
    with pytest.raises(ValueError):
        compute_roc_curve([0, 1], [0.5, 2.0])
    with pytest.raises(ValueError):
        compute_pr_curve([0, 3], [0.5, 0.5])


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def test_ece_zero_when_perfectly_calibrated() -> None:
    # 10 images at 0.3 with 3 fakes, 10 at 0.8 with 8 fakes: each bin's confidence is its rate.
    labels = [1] * 3 + [0] * 7 + [1] * 8 + [0] * 2
    probs = [0.3] * 10 + [0.8] * 10
    assert expected_calibration_error(labels, probs) == pytest.approx(0.0, abs=1e-12)
    assert compute_metrics(labels, probs)["ece"] == pytest.approx(0.0, abs=1e-12)


def test_ece_hand_computed_gap() -> None:
    # Bin at 0.75: 4 images, 2 fakes -> gap 0.25. Bin at 0.25: 4 images, 1 fake -> gap 0.
    # Count-weighted: (4 * 0.25 + 4 * 0) / 8 = 0.125.
    labels = [1, 1, 0, 0, 1, 0, 0, 0]  # 2 of 4 fake at 0.75, 1 of 4 at 0.25
    probs = [0.75] * 4 + [0.25] * 4
    assert expected_calibration_error(labels, probs, n_bins=10) == pytest.approx(0.125)
    # Overconfident everywhere: all at 0.9 but only half fake -> gap 0.4.
    assert expected_calibration_error([1, 0, 1, 0], [0.9] * 4) == pytest.approx(0.4)


def test_ece_weights_bins_by_count() -> None:
    # 1 image at 0.05 (real, gap 0.05) and 3 at 0.95 (all fake, gap 0.05) -> 0.05, while an
    # unweighted mean over a badly calibrated single image would differ.
    assert expected_calibration_error([0, 1, 1, 1], [0.05, 0.95, 0.95, 0.95]) == pytest.approx(0.05)
    # 1 image at 0.9 that is real (gap 0.9) and 3 perfect ones at 0.0 -> 0.9 / 4.
    assert expected_calibration_error([0, 0, 0, 0], [0.9, 0.0, 0.0, 0.0]) == pytest.approx(0.225)


def test_compute_reliability_bins() -> None:
    labels = [0, 0, 1, 1, 1, 0]
    probs = [0.0, 0.1, 0.3, 0.6, 1.0, 0.99]
    table = compute_reliability(labels, probs, n_bins=4)
    assert len(table) == 4
    np.testing.assert_allclose(table["bin_low"], [0.0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(table["bin_high"], [0.25, 0.5, 0.75, 1.0])
    # 0.0 and 0.1 in the first bin; 0.3 in the second; 0.6 in the third; 1.0 and 0.99 in the last.
    assert table["count"].tolist() == [2, 1, 1, 2]
    assert table["count"].sum() == len(labels)
    np.testing.assert_allclose(table["mean_prob_fake"], [0.05, 0.3, 0.6, 0.995])
    np.testing.assert_allclose(table["fraction_fake"], [0.0, 1.0, 1.0, 0.5])


def test_compute_reliability_empty_bins_are_nan() -> None:
    table = compute_reliability([0, 1], [0.1, 0.9], n_bins=5)
    assert table["count"].tolist() == [1, 0, 0, 0, 1]
    assert table.loc[1:3, "mean_prob_fake"].isna().all()
    assert table.loc[1:3, "fraction_fake"].isna().all()


# --------------------------------------------------------------------------------------------
# Predictions table and files
# --------------------------------------------------------------------------------------------


def test_predictions_table_error_column() -> None:
    paths = [f"img{i}.png" for i in range(5)]
    table = build_predictions_table(paths, LABELS, PROBS, splits=["test"] * 5)
    assert list(table.columns) == [
        "path",
        "split",
        "label",
        "true",
        "predicted",
        "prob_fake",
        "correct",
        "error",
    ]
    assert table["path"].tolist() == paths
    assert table["split"].tolist() == ["test"] * 5
    assert table["true"].tolist() == ["real", "real", "fake", "fake", "fake"]
    assert table["predicted"].tolist() == ["real", "fake", "fake", "real", "fake"]
    assert table["correct"].tolist() == [True, False, True, False, True]
    # false_positive: a real image called fake; false_negative: a fake image called real.
    assert table["error"].tolist() == ["", "false_positive", "", "false_negative", ""]
    np.testing.assert_allclose(table["prob_fake"], PROBS)


def test_predictions_table_threshold_and_missing_splits() -> None:
    table = build_predictions_table(["a", "b", "c"], [0, 1, 1], [0.55, 0.55, 0.2], threshold=0.6)
    assert table["predicted"].tolist() == ["real", "real", "real"]
    assert table["error"].tolist() == ["", "false_negative", "false_negative"]
    assert table["split"].isna().all()
    table = build_predictions_table(["a", "b"], [0, 1], [0.55, 0.55], threshold=0.5)
    assert table["error"].tolist() == ["false_positive", ""]


def test_evaluation_files_round_trip(tmp_path: Path) -> None:
    paths = ["real/a b.png", "real/c,d.png", "fake/é.png", "fake/x.png", "fake/y.png"]
    table = build_predictions_table(paths, LABELS, PROBS, splits=["val"] * 5)
    metrics = compute_metrics(LABELS, PROBS)
    metrics["checkpoint_id"] = "abc123"
    metrics["single_class_auc"] = None
    out = tmp_path / "eval" / "run1"
    write_evaluation(out, table, metrics)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "predictions.csv"]

    read_table, read_metrics = read_evaluation(out)
    assert read_metrics.pop("predictions_sha256")  # what ties the two files together
    assert read_metrics == metrics
    assert read_metrics["single_class_auc"] is None
    assert list(read_table.columns) == list(table.columns)
    assert read_table["path"].tolist() == paths
    assert read_table["label"].tolist() == LABELS
    assert read_table["correct"].tolist() == table["correct"].tolist()
    # Empty error cells stay empty strings, not NaN, so filtering on them keeps working.
    assert read_table["error"].tolist() == table["error"].tolist()
    np.testing.assert_allclose(read_table["prob_fake"], PROBS, rtol=0, atol=1e-12)


def test_write_evaluation_overwrites(tmp_path: Path) -> None:
    table = build_predictions_table(["a"], [1], [0.9])
    write_evaluation(tmp_path, table, {"accuracy": 0.1})
    write_evaluation(tmp_path, table, {"accuracy": 0.9})
    assert read_evaluation(tmp_path)[1]["accuracy"] == 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "predictions.csv"]


def _written(folder: Path) -> Path:
    table = build_predictions_table(["real/a.png", "fake/b.png"], [0, 1], [0.2, 0.9])
    write_evaluation(folder, table, compute_metrics([0, 1], [0.2, 0.9]))
    return folder


def test_a_metrics_file_is_written_after_its_predictions(tmp_path: Path, monkeypatch) -> None:
    import forensics.evaluation as evaluation

    written = []
    real = evaluation.write_text_atomic
    monkeypatch.setattr(evaluation, "write_atomic", lambda path, *a: written.append(path.name)
                        or write_atomic(path, *a))  # fmt: skip
    monkeypatch.setattr(evaluation, "write_text_atomic", lambda path, *a: written.append(path.name)
                        or real(path, *a))  # fmt: skip
    _written(tmp_path)
    assert written == ["predictions.csv", "metrics.json"]  # a crash in between: no metrics.json


@pytest.mark.parametrize("damage", ["no_metrics", "no_predictions", "truncated", "other_run",
                                    "bad_json", "wrong_columns"])  # fmt: skip
def test_an_unfinished_or_mixed_evaluation_is_never_read_as_complete(
    tmp_path: Path, damage: str
) -> None:
    folder = _written(tmp_path / "eval")
    predictions, metrics = folder / "predictions.csv", folder / "metrics.json"
    if damage == "no_metrics":
        metrics.unlink()
    elif damage == "no_predictions":
        predictions.unlink()
    elif damage == "truncated":
        predictions.write_text(predictions.read_text().splitlines()[0] + "\n")
    elif damage == "other_run":  # the same shape, other scores: a second run's half-write
        predictions.write_text(predictions.read_text().replace("0.9", "0.8"))
    elif damage == "bad_json":
        metrics.write_text('{"n": 2, ')
    else:
        predictions.write_text("a,b\n1,2\n3,4\n")
        data = json.loads(metrics.read_text())
        data.pop("predictions_sha256")
        metrics.write_text(json.dumps(data))
    with pytest.raises(IncompleteEvaluationError, match="evaluat"):
        read_evaluation(folder)


def test_selective_metrics_hand_computed() -> None:
    # Answered: 0 real (right), 1 fake (wrong: real), 4 fake (right); 2 and 3 unsure.
    decisions = ["real", "fake", "unsure", "unsure", "fake"]
    m = compute_selective_metrics(LABELS, decisions)
    assert m == {
        "coverage": pytest.approx(3 / 5),
        "answered": 3,
        "unsure": 2,
        "selective_accuracy": pytest.approx(2 / 3),
        "confident_wrong_rate": pytest.approx(1 / 5),
    }
    assert compute_selective_metrics([1], ["unsure"])["selective_accuracy"] is None
    with pytest.raises(ValueError, match="unknown decisions"):
        compute_selective_metrics([1], ["maybe"])


def test_risk_coverage_hand_computed() -> None:
    # Confidence of the call: .9, .9 (0.1 real), .7, .6, .6 (0.4 real); wrong: 0.6 and 0.4.
    curve = compute_risk_coverage(LABELS, PROBS, threshold=0.5)
    np.testing.assert_allclose(curve["coverage"], [0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(curve["risk"], [0, 0, 0, 1 / 4, 2 / 5])


def test_decisions_of_new_and_old_tables() -> None:
    verdicts = [
        SimpleNamespace(
            prob_fake_raw=p, decision=d, reasons=r, decided_by="model", model_decision=d
        )
        for p, d, r in zip(
            PROBS,
            ["real", "unsure", "fake", "unsure", "fake"],
            [[], ["close to the threshold"], [], ["a", "b"], []],
            strict=True,
        )
    ]
    new = build_predictions_table(list("abcde"), LABELS, PROBS, verdicts=verdicts)
    assert list(decisions_of(new)) == ["real", "unsure", "fake", "unsure", "fake"]
    assert new["reasons"].iloc[3] == f"a{REASON_SEPARATOR}b" and new["reasons"].iloc[0] == ""
    old = build_predictions_table(list("abcde"), LABELS, PROBS)
    assert list(decisions_of(old)) == ["real", "fake", "fake", "real", "fake"]  # all answered


def test_the_ece_floor_shrinks_with_the_number_of_images() -> None:
    from forensics.evaluation import calibrated_ece_floor

    rng = np.random.default_rng(0)
    small = calibrated_ece_floor(rng.random(180))
    large = calibrated_ece_floor(rng.random(50_000), draws=20)
    assert 0.03 < small < 0.15  # 180 images: sampling alone is worth several points of ECE
    assert large < 0.01 < small
    probs = rng.random(500)
    assert calibrated_ece_floor(probs, seed=3) == calibrated_ece_floor(probs, seed=3)


# ------------------------------------------------------------------ found by mutation testing


def test_defaults_are_threshold_one_half_and_fifteen_bins() -> None:
    # 0.6 and 0.7 are fake at 0.5 and real at any threshold above 0.7.
    assert compute_confusion(LABELS, PROBS) == compute_confusion(LABELS, PROBS, threshold=0.5)
    assert compute_confusion(LABELS, PROBS) == {"tp": 2, "fp": 1, "tn": 1, "fn": 1}
    default, explicit = (
        compute_risk_coverage(LABELS, PROBS),
        compute_risk_coverage(LABELS, PROBS, threshold=0.5),
    )
    np.testing.assert_allclose(default["risk"], explicit["risk"])
    probs = np.linspace(0.02, 0.98, 40)  # 15 and 16 bins split these differently
    labels = (np.arange(40) % 3 == 0).astype(int)
    ece = compute_metrics(labels, probs)["ece"]
    assert ece == pytest.approx(expected_calibration_error(labels, probs, n_bins=15))
    assert ece != pytest.approx(expected_calibration_error(labels, probs, n_bins=16))


def test_no_fake_call_gives_zero_precision_recall_and_f1_without_warnings() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn warns where zero_division is not set
        metrics = compute_metrics([0, 1, 1], [0.1, 0.2, 0.3])
        only_real = compute_metrics([0, 0], [0.9, 0.1])  # no fake image: recall is 0/0
    assert (metrics["precision"], metrics["recall"], metrics["f1"]) == (0.0, 0.0, 0.0)
    assert (only_real["recall"], only_real["f1"]) == (0.0, 0.0)


def test_log_loss_of_certain_wrong_scores_is_clipped_at_one_in_ten_million() -> None:
    # A score of exactly 0 for a fake, and of exactly 1 for a real image: each costs
    # -log(1e-7), not infinity (nor scikit-learn's own, smaller, clip).
    metrics = compute_metrics([1, 0], [0.0, 1.0])
    assert metrics["log_loss"] == pytest.approx(-math.log(1e-7), rel=1e-6)


def test_risk_coverage_of_one_image_and_of_a_score_at_the_threshold() -> None:
    # 0.5 is a fake call at threshold 0.5: right for a fake image, wrong for a real one.
    np.testing.assert_allclose(compute_risk_coverage([1], [0.5])["risk"], [0.0])
    np.testing.assert_allclose(compute_risk_coverage([0], [0.5])["risk"], [1.0])
    with pytest.raises(ValueError, match=r"^cannot draw a risk-coverage curve of zero samples$"):
        compute_risk_coverage([], [])
    with pytest.raises(ValueError, match=r"^cannot compute metrics on zero samples$"):
        compute_metrics([], [])


def test_predictions_table_with_verdicts_records_raw_scores_and_decisions() -> None:
    from forensics.verdicts import Verdict

    verdicts = [
        Verdict(label="fake", prob_fake=0.7, threshold=0.5, prob_fake_raw=0.9),
        Verdict(label="real", prob_fake=0.2, threshold=0.5, decision="unsure",
                reasons=("too close", "unstable")),
    ]  # fmt: skip
    table = build_predictions_table(["a", "b"], [1, 0], [0.7, 0.2], verdicts=verdicts)
    assert table["prob_fake_raw"].tolist() == [0.9, 0.2]
    assert table["decision"].tolist() == ["fake", "unsure"]
    assert table["reasons"].tolist() == ["", f"too close{REASON_SEPARATOR}unstable"]


def test_an_evaluation_whose_count_disagrees_or_with_just_the_needed_columns(tmp_path) -> None:
    import json

    table = build_predictions_table(["a", "b"], [0, 1], [0.2, 0.9])[["path", "label", "prob_fake"]]
    write_evaluation(tmp_path / "bare", table, {"n": 2})
    assert read_evaluation(tmp_path / "bare")[0].shape == (2, 3)  # the three needed columns
    write_evaluation(tmp_path / "miscounted", table, {"n": 3})
    with pytest.raises(IncompleteEvaluationError):
        read_evaluation(tmp_path / "miscounted")
    (tmp_path / "bare" / "metrics.json").write_text(json.dumps([1, 2]))
    with pytest.raises(IncompleteEvaluationError, match="not a JSON object"):
        read_evaluation(tmp_path / "bare")
