"""Model evaluation: metrics, confusion matrix, ROC/PR, calibration and score histograms, with a
threshold slider that updates the thresholded figures live, and what the model's decisions (real,
fake or unsure) are worth, and how the verdicts survive JPEG, resizing, blur, noise and crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from forensics.checkpoint import CheckpointError, shipped_checkpoints
from forensics.evaluation import compute_metrics, compute_selective_metrics, decisions_of
from forensics.plots import (
    plot_confusion_matrix,
    plot_pr_curve,
    plot_probability_histogram,
    plot_reliability,
    plot_risk_coverage,
    plot_roc_comparison,
    plot_roc_curve,
)
from forensics.ui.common import (
    OTHER_CHECKPOINT,
    cached_detector,
    selected_detector,
    selected_threshold,
)
from forensics.ui.results import choose_results, evaluate_rows
from forensics.ui.robustness import draw_robustness

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


@st.cache_data(show_spinner=False, max_entries=64)
def evaluation_figures(
    labels: np.ndarray, probs: np.ndarray, threshold: float, normalize: bool
) -> tuple[dict, dict, dict[str, go.Figure]]:
    """Metrics, confusion counts and the page's four thresholded figures. Memoised: coming
    back to the page, or back to a threshold already shown, costs no recomputation (on 8,908
    images the metrics and curves take most of a second on a small CPU)."""
    metrics = compute_metrics(labels, probs, threshold=threshold)
    confusion = {key: metrics[key] for key in ("tp", "fp", "tn", "fn")}  # counted in the metrics
    figures = {
        "confusion": plot_confusion_matrix(confusion, normalize=normalize),
        "roc": plot_roc_curve(labels, probs, threshold=threshold, metrics=metrics),
        "pr": plot_pr_curve(labels, probs, threshold=threshold, metrics=metrics),
        "histogram": plot_probability_histogram(labels, probs, threshold=threshold),
    }
    return metrics, confusion, figures


@st.cache_data(show_spinner=False, max_entries=16)
def decision_figures(
    labels: np.ndarray,
    probs: np.ndarray,
    raw: np.ndarray | None,
    decisions: np.ndarray,
    threshold: float,
) -> tuple[dict, dict[str, go.Figure]]:
    """What the recorded decisions are worth (`compute_selective_metrics`), the risk-coverage
    curve with their operating point, and the reliability diagram (before and after calibration
    where `raw` is given). None of it follows the slider: `threshold` is the one the decisions
    were made at. `decisions` must be a fixed-width str array: Streamlit hashes its bytes."""
    selective = compute_selective_metrics(labels, decisions)
    accuracy = selective["selective_accuracy"]
    point = None if accuracy is None else (selective["coverage"], 1.0 - accuracy)
    figures = {
        "risk_coverage": plot_risk_coverage(
            labels, probs, threshold=threshold, operating_point=point
        ),
        "reliability": plot_reliability(labels, probs, before=raw),
    }
    return selective, figures


def draw_decisions(selective: dict, figure: go.Figure, *, recorded: bool, n: int) -> None:
    """The four numbers of the decisions beside the risk-coverage curve."""
    st.subheader("What the decisions are worth")
    numbers, curve = st.columns([1, 1])
    accuracy = selective["selective_accuracy"]
    top, bottom = numbers.columns(2), numbers.columns(2)
    top[0].metric("Answered (coverage)", f"{selective['coverage']:.1%}")
    top[1].metric("Accuracy on answered", "n/a" if accuracy is None else f"{accuracy:.1%}")
    bottom[0].metric("Confident and wrong", f"{selective['confident_wrong_rate']:.1%}")
    bottom[1].metric("Unsure", f"{selective['unsure']:,}")
    numbers.caption(
        "The model answers real or fake only when it can back the call, and says unsure "
        f"otherwise: coverage is the share of the {n:,} images answered, accuracy counts only "
        "those, confident-and-wrong is answered-and-wrong over all images. These are the "
        "decisions as recorded; the threshold slider does not move them."
    )
    if not recorded:
        numbers.caption("This evaluation predates decisions: every image counts as answered.")
    curve.plotly_chart(figure, width="stretch")


def evaluation_page() -> None:
    st.title("Model evaluation")
    detector = selected_detector()
    if detector is None:
        return
    results = choose_results(detector, key="evaluation")
    if results is None:
        return
    table = results.table
    labels, probs = table["label"].to_numpy(), table["prob_fake"].to_numpy()
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
    left, right = st.columns([1, 1])
    normalize = right.toggle("Show shares of each true class", value=False)
    metrics, confusion, figures = evaluation_figures(labels, probs, threshold, normalize)
    selective, decided = decision_figures(
        labels,
        probs,
        table["prob_fake_raw"].to_numpy(dtype=float) if "prob_fake_raw" in table else None,
        decisions_of(table).astype(str),
        float(results.metrics.get("threshold", detector.threshold)),
    )
    left.dataframe(metrics_table(metrics), hide_index=True, width="stretch")
    right.plotly_chart(figures["confusion"], width="stretch")
    right.caption(
        f"False positives (real called fake): {confusion['fp']:,} · "
        f"false negatives (fake called real): {confusion['fn']:,}"
    )
    draw_decisions(selective, decided["risk_coverage"], recorded="decision" in table, n=len(table))
    roc, pr = st.columns(2)
    roc.plotly_chart(figures["roc"], width="stretch")
    pr.plotly_chart(figures["pr"], width="stretch")
    calibration, histogram = st.columns(2)
    calibration.plotly_chart(decided["reliability"], width="stretch")
    histogram.plotly_chart(figures["histogram"], width="stretch")
    draw_comparison(detector, results, threshold)
    draw_faithfulness(detector, results)
    draw_robustness(detector, results)


def _choose_other_checkpoint(detector) -> str | None:
    """The second checkpoint's folder: another shipped model, or any folder typed in."""
    shipped = {
        path.name: path
        for path in shipped_checkpoints()
        if path.resolve() != detector.checkpoint_dir.resolve()
    }
    choice = st.selectbox(
        "Other checkpoint",
        [None, *shipped, OTHER_CHECKPOINT],
        format_func=lambda name: "—" if name is None else name,
        key="compare_choice",
    )
    if choice == OTHER_CHECKPOINT:
        typed = st.text_input("Other checkpoint directory", key="compare_checkpoint").strip()
        return typed or None
    return None if choice is None else str(shipped[choice])


def draw_comparison(detector, results, threshold: float) -> None:
    """Metrics and ROC of a second checkpoint on exactly the same images."""
    with st.expander("Compare with another checkpoint on the same images"):
        if results.rows is None:
            st.info("Choose 'Evaluate on the sidebar's dataset' above to compare two checkpoints.")
            return
        other_dir = _choose_other_checkpoint(detector)
        if other_dir is None:
            return
        try:
            other = cached_detector(str(Path(other_dir).expanduser()))
        except CheckpointError as exc:
            st.error(f"Cannot load the checkpoint: {exc}")
            return
        split = results.metrics.get("split", "all")
        other_results = evaluate_rows(
            other,
            results.root,
            results.rows,
            split=split,
            key="compare",
            stability=bool(results.metrics.get("stability", False)),
        )
        if other_results is None:
            return
        named = {
            f"{detector.checkpoint_dir.name} ({detector.checkpoint_id})": results,
            f"{other.checkpoint_dir.name} ({other.checkpoint_id})": other_results,
        }
        table = pd.DataFrame(
            {
                name: {
                    METRIC_NAMES[k]: v
                    for k, v in compute_metrics(
                        r.table["label"], r.table["prob_fake"], threshold=threshold
                    ).items()
                    if k in METRIC_NAMES
                }
                for name, r in named.items()
            }
        )
        st.caption(f"Both at threshold {threshold:.2f} on the same {len(results.table):,} images.")
        st.dataframe(table.round(4))
        curves = {n: (r.table["label"], r.table["prob_fake"]) for n, r in named.items()}
        st.plotly_chart(plot_roc_comparison(curves), width="stretch")


FAITHFULNESS_SAMPLE = 64


@st.cache_data(show_spinner=False, max_entries=8)
def _compare_methods(checkpoint_dir: str, checkpoint_id: str, trust_id: str, root: str,
                     paths: tuple[str, ...], methods: tuple[str, ...]) -> pd.DataFrame:  # fmt: skip
    # Keyed by the trust profile's id too: faithfulness is measured in calibrated probability.
    from forensics.data import ImageStore
    from forensics.faithfulness import compare_methods

    store = ImageStore(root)
    images = []
    for path in paths:
        try:
            images.append(store.read_bytes(path))
        except (OSError, KeyError):
            continue  # moved or deleted since the evaluation: left out, as unreadable ones are
    return compare_methods(cached_detector(checkpoint_dir), images, methods)


def draw_faithfulness(detector, results) -> None:
    """Which CAM method's heatmaps best reflect what this model uses, over a seeded sample of
    the evaluated images (each explained for its own call)."""
    from forensics.explain import CAM_METHODS
    from forensics.faithfulness import DEFAULT_METHODS, describe_comparison

    with st.expander("Which heatmap method is most faithful for this model"):
        st.caption(
            "Each method's heatmap of each image is checked by removing the share of the image "
            "it marks, and the same share it leaves out (pytorch-grad-cam's ROAD), and measuring "
            "the probability of the image's own call again. Faithfulness is how much more the "
            "marked regions matter, averaged over 10%, 20% and 40% removed: near zero, the map "
            "says little about what the model uses."
        )
        if results.root is None:
            st.info(results.images_hint or "The evaluated images are not on this machine.")
            return
        left, right = st.columns([1, 2])
        size = left.number_input("Images in the sample", 8, 1000, FAITHFULNESS_SAMPLE, 8)
        methods = right.multiselect("Methods", list(CAM_METHODS), list(DEFAULT_METHODS),
                                    key="faithfulness_methods")  # fmt: skip
        if not methods or not st.button("Measure", key="faithfulness_run"):
            return
        table = results.table
        sample = table.sample(min(int(size), len(table)), random_state=0).sort_index()
        try:
            with st.spinner(f"Explaining {len(sample)} images with {len(methods)} methods…"):
                comparison = _compare_methods(
                    str(detector.checkpoint_dir),
                    detector.checkpoint_id,
                    detector.trust_id,
                    str(results.root),
                    tuple(sample["path"]),
                    tuple(methods),
                )
        except ValueError as exc:
            st.error(str(exc))
            return
        st.write(describe_comparison(comparison))
        shown = comparison.rename(columns={
            "faithfulness": "faithfulness (mean)", "faithfulness_sd": "sd",
            "share_positive": "share above 0", "marked_drop": "marked 20% removed: drop",
            "unmarked_drop": "unmarked 20% removed: drop", "ms_per_image": "ms per image",
        })  # fmt: skip
        st.dataframe(shown.round(3), hide_index=True, width="stretch")
