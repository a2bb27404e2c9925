"""Plotly figures for the app and reports (no Streamlit import)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from forensics.evaluation import (
    compute_confusion,
    compute_metrics,
    compute_pr_curve,
    compute_reliability,
    compute_risk_coverage,
    compute_roc_curve,
    expected_calibration_error,
)

MAX_CURVE_POINTS = 1000
REAL_COLOUR = "#2e7d32"
UNSURE_COLOUR = "#9e9e9e"
FAKE_COLOUR = "#c62828"


def plot_probability(prob_fake: float, threshold: float, *, unsure: bool = False) -> go.Figure:
    """A horizontal bar of prob_fake on [0, 1] with the decision threshold marked; grey when the
    decision is unsure (the score is then not a verdict, and its colour must not say one)."""
    colour = UNSURE_COLOUR if unsure else FAKE_COLOUR if prob_fake >= threshold else REAL_COLOUR
    figure = go.Figure(
        go.Bar(
            x=[prob_fake],
            y=["P(fake)"],
            orientation="h",
            marker_color=colour,
            text=[f"{prob_fake:.3f}"],
            textposition="outside",
            hovertemplate="P(fake) = %{x:.4f}<extra></extra>",
        )
    )
    figure.add_vline(
        x=threshold,
        line_dash="dash",
        line_color="black",
        annotation_text=f"threshold {threshold:.2f}",
        annotation_position="top",
    )
    figure.update_layout(
        xaxis={"range": [0, 1.08], "title": "probability the image is AI-generated"},
        height=170,
        margin={"l": 10, "r": 10, "t": 30, "b": 40},
        showlegend=False,
    )
    return figure


def _operating_point(labels, prob_fake, threshold: float) -> dict[str, float]:
    confusion = compute_confusion(labels, prob_fake, threshold=threshold)
    tp, fp, tn, fn = (confusion[k] for k in ("tp", "fp", "tn", "fn"))
    return {
        "fpr": fp / (fp + tn) if fp + tn else 0.0,
        "tpr": tp / (tp + fn) if tp + fn else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
    }


def _mark_threshold(figure: go.Figure, x: float, y: float, threshold: float) -> None:
    """The operating point of `threshold` on a curve, as one large marker."""
    figure.add_scatter(
        x=[x],
        y=[y],
        mode="markers",
        marker={"size": 12, "color": FAKE_COLOUR},
        name=f"threshold {threshold:.2f}",
    )


def plot_confusion_matrix(confusion: dict[str, int], *, normalize: bool = False) -> go.Figure:
    """2x2 heatmap, rows = true class, columns = predicted; counts, or shares of each true class."""
    counts = np.array(
        [[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]], dtype=float
    )
    values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    text = [
        [
            f"{values[i, j]:.1%}<br>({int(counts[i, j]):,})"
            if normalize
            else f"{int(counts[i, j]):,}"
            for j in range(2)
        ]
        for i in range(2)
    ]
    figure = go.Figure(
        go.Heatmap(
            z=values,
            x=["predicted real", "predicted fake"],
            y=["true real", "true fake"],
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
            hovertemplate="%{y}, %{x}: %{text}<extra></extra>",
        )
    )
    figure.update_layout(
        yaxis={"autorange": "reversed"}, height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10}
    )
    return figure


def plot_roc_curve(
    labels, prob_fake, *, threshold: float, metrics: dict | None = None
) -> go.Figure:
    """ROC curve (fake = positive) with the AUC and the threshold's operating point. `metrics`:
    `compute_metrics` of the same scores where the caller has it (saves computing it again)."""
    curve = compute_roc_curve(labels, prob_fake)
    point = _operating_point(labels, prob_fake, threshold)
    auc = (metrics or compute_metrics(labels, prob_fake, threshold=threshold))["roc_auc"]
    figure = go.Figure()
    figure.add_scatter(x=curve["fpr"], y=curve["tpr"], mode="lines", name="ROC")
    figure.add_scatter(
        x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "grey"}
    )
    _mark_threshold(figure, point["fpr"], point["tpr"], threshold)
    figure.update_layout(
        title=f"ROC (AUC {auc:.4f})" if auc is not None else "ROC (one class only)",
        xaxis_title="false positive rate (real called fake)",
        yaxis_title="true positive rate (fakes caught)",
        height=380,
    )
    return figure


def plot_pr_curve(labels, prob_fake, *, threshold: float, metrics: dict | None = None) -> go.Figure:
    """Precision-recall curve for the fake class with the threshold's operating point
    (`metrics` as for `plot_roc_curve`)."""
    curve = compute_pr_curve(labels, prob_fake)
    # One point per distinct score is invisible detail on screen and slow in a browser.
    keep = np.unique(np.linspace(0, len(curve["recall"]) - 1, MAX_CURVE_POINTS).astype(int))
    curve = {"recall": curve["recall"][keep], "precision": curve["precision"][keep]}
    point = _operating_point(labels, prob_fake, threshold)
    ap = (metrics or compute_metrics(labels, prob_fake, threshold=threshold))["average_precision"]
    figure = go.Figure()
    figure.add_scatter(x=curve["recall"], y=curve["precision"], mode="lines", name="PR")
    _mark_threshold(figure, point["tpr"], point["precision"], threshold)
    figure.update_layout(
        title=f"Precision-recall (AP {ap:.4f})" if ap is not None else "Precision-recall",
        xaxis_title="recall (fakes caught)",
        yaxis_title="precision (fake verdicts that are right)",
        height=380,
    )
    return figure


def _add_reliability_curve(
    figure: go.Figure, labels, prob_fake, *, n_bins: int, name: str, line: dict | None = None
) -> None:
    """One reliability curve; marker area grows with the images in each bin."""
    table = compute_reliability(labels, prob_fake, n_bins=n_bins)
    filled = table[table["count"] > 0]
    figure.add_scatter(
        x=filled["mean_prob_fake"],
        y=filled["fraction_fake"],
        mode="lines+markers",
        name=name,
        line=line,
        marker={"size": 6 + 14 * np.sqrt(filled["count"] / filled["count"].max())},
        customdata=filled["count"],
        hovertemplate="mean P(fake) %{x:.3f}<br>share fake %{y:.3f}<br>%{customdata} images"
        "<extra></extra>",
    )


def plot_reliability(labels, prob_fake, *, n_bins: int = 15, before=None) -> go.Figure:
    """Observed share of fakes against mean prob_fake per bin (diagonal: perfect calibration).
    `before` (N,): the raw probabilities of the same images, drawn as a second curve so the
    effect of calibration shows; each curve's ECE is in its legend entry and in the title."""
    ece = expected_calibration_error(labels, prob_fake, n_bins=n_bins)
    figure = go.Figure()
    figure.add_scatter(
        x=[0, 1],
        y=[0, 1],
        mode="lines",
        name="perfect calibration",
        line={"dash": "dot", "color": "grey"},
    )
    if before is None:
        _add_reliability_curve(figure, labels, prob_fake, n_bins=n_bins, name="model")
        title = f"Reliability (ECE {ece:.4f})"
    else:
        raw_ece = expected_calibration_error(labels, before, n_bins=n_bins)
        _add_reliability_curve(
            figure,
            labels,
            before,
            n_bins=n_bins,
            name=f"before calibration (ECE {raw_ece:.4f})",
            line={"dash": "dash", "color": "#9e9e9e"},
        )
        _add_reliability_curve(
            figure, labels, prob_fake, n_bins=n_bins, name=f"after calibration (ECE {ece:.4f})"
        )
        title = f"Reliability before and after calibration (ECE {raw_ece:.4f} → {ece:.4f})"
    figure.update_layout(
        title=title,
        xaxis_title="mean predicted P(fake) in bin",
        yaxis_title="observed share of fakes",
        height=380,
    )
    return figure


def plot_risk_coverage(
    labels,
    prob_fake,
    *,
    threshold: float,
    operating_point: tuple[float, float] | None = None,
) -> go.Figure:
    """The risk-coverage curve (`compute_risk_coverage`): answering only the most confident
    images, the share answered (x, coverage) against the error rate among them (y, risk).
    `operating_point`: (coverage, selective risk) of the decisions actually made, marked."""
    curve = compute_risk_coverage(labels, prob_fake, threshold=threshold)
    # Thinned like the PR curve; the last point (everything answered) is always kept.
    keep = np.unique(np.linspace(0, len(curve) - 1, MAX_CURVE_POINTS).astype(int))
    curve = curve.iloc[keep]
    figure = go.Figure()
    figure.add_scatter(
        x=curve["coverage"],
        y=curve["risk"],
        mode="lines",
        name="answering the most confident first",
        hovertemplate="answering %{x:.1%} of images: %{y:.2%} wrong<extra></extra>",
    )
    if operating_point is not None:
        coverage, risk = operating_point
        figure.add_scatter(
            x=[coverage],
            y=[risk],
            mode="markers",
            marker={"size": 12, "color": FAKE_COLOUR, "symbol": "diamond"},
            name=f"the model's decisions: {coverage:.1%} answered, {risk:.2%} wrong",
        )
    figure.update_layout(
        title="Answering fewer images: how the error rate falls",
        xaxis={"title": "share of images answered (coverage)", "range": [0, 1.02]},
        yaxis={"title": "share wrong among the answered (risk)", "rangemode": "tozero"},
        height=380,
        legend={"orientation": "h", "y": -0.25},
    )
    return figure


def plot_probability_histogram(labels, prob_fake, *, threshold: float, bins: int = 40) -> go.Figure:
    """Distribution of prob_fake for each true class, with the threshold marked."""
    labels = np.asarray(labels)
    prob_fake = np.asarray(prob_fake, dtype=float)
    # Counted here, not in the browser: the figure stays a few kB however many images there are.
    edges = np.linspace(0.0, 1.0, bins + 1)
    figure = go.Figure()
    for value, name, colour in ((0, "true real", REAL_COLOUR), (1, "true fake", FAKE_COLOUR)):
        counts, _ = np.histogram(prob_fake[labels == value], bins=edges)
        figure.add_bar(
            x=(edges[:-1] + edges[1:]) / 2,
            y=counts,
            width=1 / bins,
            customdata=np.column_stack([edges[:-1], edges[1:]]),
            hovertemplate="P(fake) %{customdata[0]:.3f}–%{customdata[1]:.3f}: %{y:,} images",
            name=name,
            marker_color=colour,
            opacity=0.6,
        )
    figure.add_vline(x=threshold, line_dash="dash", annotation_text=f"threshold {threshold:.2f}")
    figure.update_layout(
        barmode="overlay",
        xaxis_title="P(fake)",
        yaxis_title="images",
        yaxis_type="log",
        height=380,
    )
    return figure


def plot_training_curves(histories: dict[str, pd.DataFrame], metric: str) -> go.Figure:
    """`metric` per epoch for train (dashed) and validation (solid), one colour per run; the
    best epoch (lowest validation loss) of each run is marked with a star."""
    figure = go.Figure()
    palette = px.colors.qualitative.Plotly
    for i, (name, history) in enumerate(histories.items()):
        colour = palette[i % len(palette)]
        for split, dash in (("train", "dash"), ("val", "solid")):
            column = f"{split}_{metric}"
            if column in history:
                figure.add_scatter(
                    x=history["epoch"],
                    y=history[column],
                    mode="lines+markers",
                    name=f"{name} {split}",
                    line={"color": colour, "dash": dash},
                )
        if f"val_{metric}" in history and "val_loss" in history and len(history):
            best = history.loc[history["val_loss"].idxmin()]
            figure.add_scatter(
                x=[best["epoch"]],
                y=[best[f"val_{metric}"]],
                mode="markers",
                marker={"symbol": "star", "size": 16, "color": colour},
                name=f"{name} best epoch {int(best['epoch'])}",
            )
    figure.update_layout(xaxis_title="epoch", yaxis_title=metric.replace("_", " "), height=380)
    return figure


def plot_split_counts(manifest: pd.DataFrame) -> go.Figure:
    """Images per split and class, as grouped bars."""
    table = manifest.assign(
        split=manifest["split"].fillna("(no split)"),
        label=manifest["label"].map({0: "real", 1: "fake"}),
    )
    counts = table.groupby(["split", "label"]).size().reset_index(name="images")
    figure = px.bar(
        counts,
        x="split",
        y="images",
        color="label",
        barmode="group",
        text="images",
        color_discrete_map={"real": REAL_COLOUR, "fake": FAKE_COLOUR},
    )
    figure.update_layout(height=320, margin={"t": 30})
    return figure


def plot_class_distribution(
    manifest: pd.DataFrame, column: str, *, title: str, categorical: bool = False
) -> go.Figure:
    """Per-class distribution of one manifest column: a histogram, or bars of shares."""
    table = manifest.assign(label=manifest["label"].map({0: "real", 1: "fake"}))
    colours = {"real": REAL_COLOUR, "fake": FAKE_COLOUR}
    if categorical:
        shares = (
            table.groupby("label")[column]
            .value_counts(normalize=True)
            .rename("share")
            .reset_index()
        )
        figure = px.bar(
            shares, x=column, y="share", color="label", barmode="group", color_discrete_map=colours
        )
    else:
        figure = px.histogram(
            table,
            x=column,
            color="label",
            barmode="overlay",
            histnorm="percent",
            opacity=0.6,
            color_discrete_map=colours,
        )
    figure.update_layout(title=title, height=300, margin={"t": 40})
    return figure


def plot_roc_comparison(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> go.Figure:
    """ROC curves of several models on the same images: name -> (labels, prob_fake)."""
    figure = go.Figure()
    for name, (labels, prob_fake) in curves.items():
        curve = compute_roc_curve(labels, prob_fake)
        auc = compute_metrics(labels, prob_fake)["roc_auc"]
        label = f"{name} (AUC {auc:.4f})" if auc is not None else name
        figure.add_scatter(x=curve["fpr"], y=curve["tpr"], mode="lines", name=label)
    figure.add_scatter(
        x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "grey"}
    )
    figure.update_layout(
        xaxis_title="false positive rate", yaxis_title="true positive rate", height=380
    )
    return figure


ROBUSTNESS_METRICS = {
    "accuracy": ("accuracy", "solid"),
    "roc_auc": ("ROC-AUC", "dash"),
    "share_flipped": ("share of verdicts flipped", "dot"),
    "answered": ("share answered", "dashdot"),
}


def plot_robustness(summary: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """One panel per perturbation of a robustness sweep (`forensics.robustness` table): its
    accuracy, ROC-AUC, share of verdicts flipped and share answered against the strength, with
    the clean accuracy as a dotted line. JPEG quality runs high to low: stronger to the right."""
    from plotly.subplots import make_subplots

    from forensics.perturb import PERTURBATIONS

    kinds = [k for k in dict.fromkeys(summary["perturbation"]) if k in PERTURBATIONS]
    clean = summary[summary["perturbation"] == "clean"]
    figure = make_subplots(
        rows=1,
        cols=max(1, len(kinds)),
        shared_yaxes=True,
        subplot_titles=[PERTURBATIONS[k].title for k in kinds],
    )
    colours = px.colors.qualitative.Plotly
    for column, kind in enumerate(kinds, start=1):
        rows = summary[summary["perturbation"] == kind].sort_values("strength")
        for index, (metric, (name, dash)) in enumerate(ROBUSTNESS_METRICS.items()):
            figure.add_trace(
                go.Scatter(
                    x=rows["strength"],
                    y=rows[metric],
                    mode="lines+markers",
                    name=name,
                    legendgroup=metric,
                    showlegend=column == 1,
                    line={"color": colours[index], "dash": dash},
                    hovertemplate=f"%{{x}}: {name} %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=column,
            )
        if not clean.empty:
            figure.add_hline(
                y=float(clean["accuracy"].iloc[0]),
                line={"color": "grey", "dash": "dot", "width": 1},
                row=1,
                col=column,
            )
        if kind == "jpeg":
            figure.update_xaxes(autorange="reversed", row=1, col=column)
    figure.update_yaxes(range=[0, 1.02], title_text="share", row=1, col=1)
    figure.update_layout(
        title=title or "Robustness: verdicts under perturbations (dotted: clean accuracy)",
        height=380,
        margin={"l": 40, "r": 20, "t": 80, "b": 40},
        legend={"orientation": "h", "y": -0.15},
    )
    return figure
