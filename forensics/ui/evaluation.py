"""Model evaluation: metrics, confusion matrix, ROC/PR, calibration and score histograms, with a
threshold slider that updates everything live."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from forensics.evaluation import compute_confusion, compute_metrics
from forensics.plots import (
    plot_confusion_matrix,
    plot_pr_curve,
    plot_probability_histogram,
    plot_reliability,
    plot_roc_curve,
)
from forensics.ui.common import selected_detector, selected_threshold
from forensics.ui.results import choose_results

METRIC_NAMES = {
    "accuracy": "Accuracy",
    "precision": "Precision (fake)",
    "recall": "Recall (fake)",
    "f1": "F1",
    "specificity": "Specificity (real)",
    "balanced_accuracy": "Balanced accuracy",
    "roc_auc": "ROC-AUC",
    "average_precision": "Average precision",
    "ece": "Expected calibration error",
}


def metrics_table(metrics: dict) -> pd.DataFrame:
    rows = [(name, metrics.get(key)) for key, name in METRIC_NAMES.items()]
    return pd.DataFrame(
        [(name, "n/a" if value is None else f"{value:.4f}") for name, value in rows],
        columns=["metric", "value"],
    )


def evaluation_page() -> None:
    st.title("Model evaluation")
    detector = selected_detector()
    if detector is None:
        return
    results = choose_results(detector, key="evaluation")
    if results is None:
        return
    labels, probs = results.table["label"].to_numpy(), results.table["prob_fake"].to_numpy()
    st.caption(
        f"Checkpoint {detector.checkpoint_id} on {results.description}. Fake is the positive "
        "class: recall is the share of generated images caught, specificity the share of real "
        "photographs let through."
    )
    threshold = st.slider(
        "Decision threshold on P(fake)",
        0.0,
        1.0,
        selected_threshold(detector),
        0.01,
        help="Move it to see the trade-off; the checkpoint's own threshold is the default.",
    )
    metrics = compute_metrics(labels, probs, threshold=threshold)
    confusion = compute_confusion(labels, probs, threshold=threshold)

    left, right = st.columns([1, 1])
    left.dataframe(metrics_table(metrics), hide_index=True, width="stretch")
    normalize = right.toggle("Show shares of each true class", value=False)
    right.plotly_chart(plot_confusion_matrix(confusion, normalize=normalize), width="stretch")
    right.caption(
        f"False positives (real called fake): {confusion['fp']:,} · "
        f"false negatives (fake called real): {confusion['fn']:,}"
    )
    roc, pr = st.columns(2)
    roc.plotly_chart(plot_roc_curve(labels, probs, threshold=threshold), width="stretch")
    pr.plotly_chart(plot_pr_curve(labels, probs, threshold=threshold), width="stretch")
    calibration, histogram = st.columns(2)
    calibration.plotly_chart(plot_reliability(labels, probs), width="stretch")
    histogram.plotly_chart(
        plot_probability_histogram(labels, probs, threshold=threshold), width="stretch"
    )
