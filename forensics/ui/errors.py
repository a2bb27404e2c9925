"""Error browser: the misclassified images (and, on request, the least confident correct ones and
the images the model did not answer), filtered, sorted and paged, with heatmaps, the reasons for
each decision and a detail view."""

from __future__ import annotations

import hashlib
import io
import math

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from forensics.data import ImageStore
from forensics.detector import Detector
from forensics.evaluation import REASON_SEPARATOR, decisions_of
from forensics.explain import CAM_METHODS
from forensics.images import ImageLoadError
from forensics.ui.common import (
    enlarge,
    explain_cached,
    explain_many_cached,
    method_label,
    selected_detector,
    selected_threshold,
)
from forensics.ui.results import choose_results
from forensics.verdicts import DECIDER_NAMES

KINDS = {
    "false_positive": "False positives (real called fake)",
    "false_negative": "False negatives (fake called real)",
    "uncertain_correct": "Least confident correct",
    "unsure": "Unsure (the model did not answer)",
}
PAGE_SIZE = 12
COLUMNS = 4
THUMBNAIL = 160
REASON_CHARS = 60  # of the first reason in a thumbnail's caption; the detail has them all


def classify_rows(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Add `verdict`, `kind` and `confidence` (probability of the verdict) at `threshold`, and
    the recorded `decision`, `reasons` and `decided_by` (for a table made before decisions: the
    call at `threshold`, no reasons, decided by the model)."""
    fake = table["prob_fake"].to_numpy() >= threshold
    label = table["label"].to_numpy()
    kind = np.where(
        fake == (label == 1), "correct", np.where(fake, "false_positive", "false_negative")
    )
    verdict = np.where(fake, "fake", "real")
    reasons = table["reasons"].fillna("").astype(str) if "reasons" in table else ""
    decided_by = (
        table["decided_by"].fillna("model").astype(str) if "decided_by" in table else "model"
    )
    return table.assign(
        verdict=verdict,
        kind=kind,
        confidence=np.where(fake, table["prob_fake"], 1.0 - table["prob_fake"]),
        # Without recorded decisions every image is answered, with the call shown here.
        decision=decisions_of(table.assign(predicted=verdict)),
        reasons=reasons,
        decided_by=decided_by,
    )


def select_rows(
    rows: pd.DataFrame,
    kinds: list[str],
    *,
    confidence: tuple[float, float],
    uncertain_count: int,
    most_confident_first: bool,
) -> pd.DataFrame:
    """The errors of the chosen kinds (thresholded calls), the rows decided unsure (right or
    wrong) and the `uncertain_count` least confident correct rows, each row once, within the
    confidence range, sorted by confidence."""
    parts = [rows[rows["kind"] == k] for k in kinds if k in ("false_positive", "false_negative")]
    if "unsure" in kinds:
        parts.append(rows[rows["decision"] == "unsure"])
    if "uncertain_correct" in kinds and uncertain_count:
        correct = rows[rows["kind"] == "correct"].nsmallest(uncertain_count, "confidence")
        parts.append(correct.assign(kind="uncertain_correct"))
    chosen = pd.concat(parts) if parts else rows.iloc[:0]
    chosen = chosen[~chosen.index.duplicated()]  # an unsure error is both: listed once
    low, high = confidence
    chosen = chosen[(chosen["confidence"] >= low) & (chosen["confidence"] <= high)]
    return chosen.sort_values("confidence", ascending=not most_confident_first)


def shorten_reasons(reasons: str, *, limit: int = REASON_CHARS) -> str:
    """The first of the joined reasons, cut to `limit` characters, and how many more follow."""
    if not reasons:
        return ""
    first, *more = reasons.split(REASON_SEPARATOR)
    if len(first) > limit:
        first = first[: limit - 1].rstrip() + "…"
    return f"{first} (+{len(more)} more)" if more else first


def thumbnail_caption(row) -> str:
    """Unsure where the model did not answer, the thresholded kind, P(fake), the file name and
    the reasons, shortened."""
    parts = ["Unsure"] if row.decision == "unsure" else []
    if getattr(row, "decided_by", "model") != "model":
        parts.append(f"decided by its {row.decided_by}")
    parts.append(KINDS.get(row.kind, row.kind.capitalize()).split(" (")[0])
    parts += [f"P(fake) {row.prob_fake:.3f}", row.path.rsplit("/", 1)[-1]]
    if row.reasons:
        parts.append(shorten_reasons(row.reasons))
    return " · ".join(parts)


def errors_page() -> None:
    st.title("Error browser")
    detector = selected_detector()
    if detector is None:
        return
    results = choose_results(detector, key="errors")
    if results is None:
        return
    threshold = selected_threshold(detector)
    rows = classify_rows(results.table, threshold)
    counts = rows["kind"].value_counts()
    recorded = "decision" in results.table
    unsure = int((rows["decision"] == "unsure").sum())
    st.caption(
        f"{results.description} at threshold {threshold:.2f}: "
        f"{counts.get('false_positive', 0):,} false positives, "
        f"{counts.get('false_negative', 0):,} false negatives among {len(rows):,} images; "
        + (
            f"{unsure:,} unsure (the model did not answer)."
            if recorded
            else "no decisions recorded, so none unsure."
        )
    )
    by_evidence = rows[rows["decided_by"] != "model"]
    if not by_evidence.empty:
        counted = by_evidence["decided_by"].value_counts()
        st.caption(
            "Decided by the file's own evidence, not the model: "
            + ", ".join(f"{n:,} by its {by}" for by, n in counted.items())
            + ". The thresholded kinds above are the model's calls on them."
        )
    filters = st.columns([2, 2, 1])
    kinds = filters[0].multiselect(
        "Show",
        list(KINDS),
        default=["false_positive", "false_negative"],
        format_func=KINDS.get,
    )
    low, high = filters[1].slider("Confidence of the verdict", 0.5, 1.0, (0.5, 1.0), 0.01)
    order = filters[2].radio("Order", ["most confident first", "least confident first"])
    uncertain = 0
    if "uncertain_correct" in kinds:
        uncertain = st.number_input("How many least confident correct images", 1, 1000, 24)
    chosen = select_rows(
        rows,
        kinds,
        confidence=(low, high),
        uncertain_count=int(uncertain),
        most_confident_first=order.startswith("most"),
    )
    st.download_button(
        f"Download these {len(chosen):,} rows as CSV",
        chosen.to_csv(index=False).encode(),
        file_name="errors.csv",
        mime="text/csv",
    )
    predates = "unsure" in kinds and not recorded
    if predates:
        st.info(
            "This evaluation predates decisions: every image counts as answered, so none is "
            "unsure. Evaluate again to see them."
        )
    if chosen.empty:
        if not predates or len(kinds) > 1:  # one note is enough for an Unsure-only filter
            st.info("Nothing matches these filters.")
        return
    if results.root is None or not results.root.exists():
        if results.images_hint:
            st.info(results.images_hint)
        st.dataframe(chosen, hide_index=True)
        return
    pages = math.ceil(len(chosen) / PAGE_SIZE)
    page = st.number_input(f"Page (of {pages})", 1, pages, 1) if pages > 1 else 1
    shown = chosen.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    store = ImageStore(results.root)
    draw_grid(detector, store, shown)
    draw_detail(detector, store, shown)


def _read(store: ImageStore, path: str) -> bytes | None:
    try:
        return store.read_bytes(path)
    except (OSError, KeyError) as exc:
        st.warning(f"Cannot read {path}: {exc}")
        return None


def draw_grid(detector: Detector, store: ImageStore, shown: pd.DataFrame) -> None:
    rows = list(shown.itertuples(index=False))
    images = [_read(store, row.path) for row in rows]
    readable = [data for data in images if data is not None]
    try:  # the whole page in one batched CAM
        batch = iter(explain_many_cached(detector, readable, "gradcam", "predicted"))
    except ImageLoadError:  # some file is unreadable: explain one by one to say which
        batch = None
    columns = st.columns(COLUMNS)
    for i, (row, data) in enumerate(zip(rows, images, strict=True)):
        column = columns[i % COLUMNS]
        if data is None:
            continue
        try:
            explanation = (
                next(batch)
                if batch is not None
                else explain_many_cached(detector, [data], "gradcam", "predicted")[0]
            )
        except ImageLoadError as exc:
            column.warning(f"{row.path}: {exc}")
            continue
        column.image(
            enlarge(explanation.overlay, THUMBNAIL),
            caption=thumbnail_caption(row),
            width=THUMBNAIL,
        )


def draw_detail(detector: Detector, store: ImageStore, shown: pd.DataFrame) -> None:
    st.subheader("Detail")
    left, right = st.columns(2)
    path = left.selectbox("Image", shown["path"].tolist())
    method = right.selectbox("CAM method", list(CAM_METHODS), format_func=method_label)
    row = shown[shown["path"] == path].iloc[0]
    data = _read(store, path)
    if data is None:
        return
    try:
        with st.spinner(f"Computing {method}…"):
            explanations = {t: explain_cached(detector, data, method, t) for t in ("fake", "real")}
    except ImageLoadError as exc:
        st.error(f"Cannot read {path}: {exc}")
        return
    with Image.open(io.BytesIO(data)) as original:
        size, file_format = original.size, original.format
        full = original.convert("RGB")
    views = st.columns(4)
    views[0].image(full, caption=f"Original {size[0]}x{size[1]}", width=200)
    views[1].image(enlarge(explanations["fake"].view, 200), caption="What the model saw")
    views[2].image(enlarge(explanations["fake"].overlay, 200), caption=f"{method}: why fake")
    views[3].image(enlarge(explanations["real"].overlay, 200), caption=f"{method}: why real")
    for target in ("fake", "real"):
        st.caption(f"Why {target}: {explanations[target].describe_faithfulness()}")
    st.table(
        pd.DataFrame(
            {
                "path": [path],
                "true": [row["true"]],
                "verdict": [row["verdict"]],
                "decision": [row["decision"]],
                "decided by": [DECIDER_NAMES.get(row["decided_by"], row["decided_by"])],
                "reasons": [row["reasons"] or "(none)"],
                "P(fake)": [f"{row['prob_fake']:.4f}"],
                "size": [f"{size[0]}x{size[1]}"],
                "format": [file_format],
                "sha256": [hashlib.sha256(data).hexdigest()],
            }
        ).T.rename(columns={0: ""})
    )
