"""Classify: upload an image (or pick an example), see the verdict and why."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from forensics.data import IMAGE_EXTENSIONS
from forensics.detector import Detector
from forensics.explain import (
    CAM_METHODS,
    SLOW_METHODS,
    TARGET_INDEPENDENT_METHODS,
    TARGETS,
    overlay_heatmap,
)
from forensics.images import ImageLoadError, load_image
from forensics.plots import plot_probability
from forensics.ui.common import (
    DISPLAY_SIZE,
    enlarge,
    explain_cached,
    method_label,
    selected_detector,
)


def example_files(folder: str) -> list[Path]:
    path = Path(folder).expanduser()
    if not folder or not path.is_dir():
        return []
    files = [p for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS]
    return files[:200]


def classify_page() -> None:
    st.title("Classify an image")
    st.caption(
        "The verdict says whether the model takes an image for a photograph or for an "
        "AI-generated image; the heatmap shows which regions drove that score. A heatmap "
        "explains the model, not the truth: a confident map on a wrong verdict is still wrong."
    )
    detector = selected_detector()
    if detector is None:
        return

    uploads = st.file_uploader(
        "Upload images",
        type=sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS),
        accept_multiple_files=True,
    )
    with st.expander("…or pick an example from a folder"):
        folder = st.text_input(
            "Examples folder",
            value=os.environ.get("FORENSICS_EXAMPLES", ""),
            help="Any folder of images on this machine, e.g. a few files from a dataset.",
        )
        examples = example_files(folder)
        if folder and not examples:
            st.info("No images found in that folder.")
        picked = st.selectbox(
            "Example", [None, *examples], format_func=lambda p: "—" if p is None else p.name
        )

    items: list[tuple[str, bytes]] = [(u.name, u.getvalue()) for u in uploads or []]
    if picked is not None:
        items.append((picked.name, picked.read_bytes()))
    if not items:
        st.info("Upload an image to get a verdict and a heatmap.")
        return

    col_method, col_target, col_opacity = st.columns(3)
    method = col_method.selectbox(
        "CAM method",
        list(CAM_METHODS),
        format_func=method_label,
        help="Slow methods run one forward pass per feature channel.",
    )
    target = col_target.selectbox(
        "Explain",
        list(TARGETS),
        format_func=lambda t: {"predicted": "the verdict", "fake": "why fake", "real": "why real"}[
            t
        ],
    )
    opacity = col_opacity.slider("Heatmap opacity", 0.0, 1.0, 0.5, 0.05)
    if method in TARGET_INDEPENDENT_METHODS:
        st.caption(f"{method} shows the dominant activation pattern; it ignores the target.")

    for name, data in items:
        st.divider()
        show_result(detector, name, data, method=method, target=target, opacity=opacity)


def show_result(
    detector: Detector, name: str, data: bytes, *, method: str, target: str, opacity: float
) -> None:
    st.subheader(name)
    try:
        image = load_image(data)
    except ImageLoadError as exc:
        st.error(f"Cannot read {name}: {exc}")
        return
    spinner = f"Computing {method}…" + (" (slow method)" if method in SLOW_METHODS else "")
    with st.spinner(spinner):
        explanation = explain_cached(detector, data, method, target)
    verdict = explanation.verdict
    left, right = st.columns([1, 2])
    left.metric(
        "Verdict",
        "AI-generated" if verdict.label == "fake" else "Real photograph",
        f"P(fake) = {verdict.prob_fake:.3f}",
        delta_color="off",
        delta_arrow="off",
    )
    right.plotly_chart(plot_probability(verdict.prob_fake, verdict.threshold), width="stretch")
    warning = detector.domain_warning(image)
    if warning:
        st.warning(warning)
    view_col, overlay_col = st.columns(2)
    view_col.image(enlarge(explanation.view), caption="What the model saw", width=DISPLAY_SIZE)
    overlay = overlay_heatmap(explanation.view, explanation.heatmap, opacity=opacity)
    overlay_col.image(
        enlarge(overlay),
        caption=f"{method}: regions pushing towards '{explanation.target}'",
        width=DISPLAY_SIZE,
    )
    if float(explanation.heatmap.max() - explanation.heatmap.min()) < 1e-6:
        st.info(
            "The heatmap is flat: no region raises the score for this target, so the map "
            "says nothing here. Try another method or target."
        )
