"""Plotly figures: they draw the numbers they are given, and mark what they claim to mark."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from forensics.evaluation import compute_confusion, expected_calibration_error
from forensics.plots import (
    plot_confusion_matrix,
    plot_pr_curve,
    plot_probability,
    plot_probability_histogram,
    plot_reliability,
    plot_risk_coverage,
    plot_roc_curve,
    plot_training_curves,
)

LABELS = np.array([0, 0, 0, 1, 1, 1, 1, 0])
PROBS = np.array([0.1, 0.4, 0.7, 0.8, 0.9, 0.3, 0.6, 0.2])


def test_probability_bar_colour_follows_the_verdict() -> None:
    fake = plot_probability(0.8, 0.5)
    real = plot_probability(0.3, 0.5)
    assert fake.data[0].x == (0.8,)
    assert fake.data[0].marker.color != real.data[0].marker.color
    assert fake.layout.shapes[0].x0 == 0.5  # the threshold line
    unsure = plot_probability(0.8, 0.5, unsure=True)  # a score that is not a verdict
    assert unsure.data[0].marker.color not in (fake.data[0].marker.color, real.data[0].marker.color)


def test_confusion_matrix_counts_and_normalised_shares() -> None:
    confusion = compute_confusion(LABELS, PROBS, threshold=0.5)  # tn 3, fp 1, fn 1, tp 3
    counts = plot_confusion_matrix(confusion)
    np.testing.assert_array_equal(counts.data[0].z, [[3, 1], [1, 3]])
    shares = plot_confusion_matrix(confusion, normalize=True)
    np.testing.assert_allclose(shares.data[0].z, [[0.75, 0.25], [0.25, 0.75]])
    assert "(3)" in shares.data[0].text[0][0]


def test_roc_marks_the_operating_point_and_auc() -> None:
    figure = plot_roc_curve(LABELS, PROBS, threshold=0.5)
    point = figure.data[-1]
    assert point.x == (0.25,) and point.y == (0.75,)  # fpr 1/4, tpr 3/4
    assert "AUC 0.8125" in figure.layout.title.text


def test_curves_use_the_metrics_they_are_given() -> None:
    # The evaluation page passes its own metrics, so the curves do not compute them again.
    given = {"roc_auc": 0.123, "average_precision": 0.456}
    assert (
        "AUC 0.1230"
        in plot_roc_curve(LABELS, PROBS, threshold=0.5, metrics=given).layout.title.text
    )
    assert (
        "AP 0.4560" in plot_pr_curve(LABELS, PROBS, threshold=0.5, metrics=given).layout.title.text
    )


def test_pr_curve_marks_precision_and_recall_at_the_threshold() -> None:
    figure = plot_pr_curve(LABELS, PROBS, threshold=0.65)  # tp 2 (0.8, 0.9), fp 1 (0.7)
    point = figure.data[-1]
    assert point.x == (0.5,)
    assert point.y == (pytest.approx(2 / 3),)


def test_reliability_reports_ece() -> None:
    figure = plot_reliability(LABELS, PROBS, n_bins=5)
    assert figure.layout.title.text.startswith("Reliability (ECE ")
    assert isinstance(figure, go.Figure) and len(figure.data) == 2


def test_reliability_before_and_after_calibration_shows_both_eces() -> None:
    raw = np.clip(0.5 + (PROBS - 0.5) * 0.4, 0, 1)  # squeezed towards 0.5: underconfident
    figure = plot_reliability(LABELS, PROBS, n_bins=5, before=raw)
    raw_ece = expected_calibration_error(LABELS, raw, n_bins=5)
    ece = expected_calibration_error(LABELS, PROBS, n_bins=5)
    assert raw_ece != pytest.approx(ece)  # the two curves are told apart by their numbers
    diagonal, before, after = figure.data
    assert diagonal.name == "perfect calibration"
    assert before.name == f"before calibration (ECE {raw_ece:.4f})"
    assert after.name == f"after calibration (ECE {ece:.4f})"
    assert f"ECE {raw_ece:.4f} → {ece:.4f}" in figure.layout.title.text
    # Each curve draws its own probabilities: the raw ones sit nearer 0.5.
    assert max(abs(x - 0.5) for x in before.x) < max(abs(x - 0.5) for x in after.x)
    # Without `before`, the figure is the one it always was.
    assert [t.name for t in plot_reliability(LABELS, PROBS, n_bins=5).data][1] == "model"


def test_risk_coverage_curve_and_the_decisions_operating_point() -> None:
    figure = plot_risk_coverage(LABELS, PROBS, threshold=0.5, operating_point=(0.75, 1 / 6))
    curve, point = figure.data
    # Most confident first: .1 and .9, .8 and .2 (all right), then .7 and .3 (both wrong).
    assert curve.x[0] == pytest.approx(1 / 8) and curve.y[0] == 0.0
    assert curve.x[-1] == 1.0 and curve.y[-1] == pytest.approx(2 / 8)  # all answered: 2 wrong
    assert curve.y[3] == 0.0 and curve.y[4] == pytest.approx(1 / 5)
    assert point.x == (0.75,) and point.y == (pytest.approx(1 / 6),)
    assert "75.0% answered" in point.name and "16.67% wrong" in point.name
    assert figure.layout.title.text == "Answering fewer images: how the error rate falls"
    assert "answered" in figure.layout.xaxis.title.text


def test_risk_coverage_without_an_operating_point_and_on_many_images() -> None:
    assert len(plot_risk_coverage(LABELS, PROBS, threshold=0.5).data) == 1
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 50_000)
    figure = plot_risk_coverage(labels, rng.random(50_000), threshold=0.5)
    assert len(figure.data[0].x) <= 1000 and figure.data[0].x[-1] == 1.0  # thinned, ends at all


def test_histogram_counts_each_true_class_in_its_bins() -> None:
    probs = PROBS + 0.05  # inside the bins, not on their edges
    figure = plot_probability_histogram(LABELS, probs, threshold=0.5, bins=10)
    real, fake = figure.data
    assert (real.name, fake.name) == ("true real", "true fake")
    # Real: .15, .45, .75, .25 fall in bins 1, 4, 7, 2; fake: .85, .95, .35, .65 in 8, 9, 3, 6.
    assert [i for i, n in enumerate(real.y) if n] == [1, 2, 4, 7]
    assert [i for i, n in enumerate(fake.y) if n] == [3, 6, 8, 9]
    assert sum(real.y) == 4 and sum(fake.y) == 4
    assert real.x[1] == pytest.approx(0.15)  # bars sit on their bin centres


def test_histogram_stays_small_for_large_evaluations() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 100_000)
    figure = plot_probability_histogram(labels, rng.random(100_000), threshold=0.5)
    assert sum(map(sum, (trace.y for trace in figure.data))) == 100_000
    assert len(figure.to_json()) < 20_000  # counts, not 100,000 raw values, go to the browser


def test_training_curves_mark_the_best_epoch_of_each_run() -> None:
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [0.6, 0.4, 0.3],
            "val_loss": [0.5, 0.35, 0.4],
            "train_accuracy": [0.7, 0.8, 0.9],
            "val_accuracy": [0.72, 0.85, 0.83],
        }
    )
    figure = plot_training_curves({"a": history, "b": history.assign(val_loss=[0.3, 0.4, 0.5])},
                                  "accuracy")  # fmt: skip
    stars = [trace for trace in figure.data if trace.marker.symbol == "star"]
    assert [(s.x[0], s.y[0]) for s in stars] == [(2, 0.85), (1, 0.72)]
    assert len(figure.data) == 6  # train + val + best, per run
