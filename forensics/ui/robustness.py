"""The Model evaluation page's robustness section: the curves of the sweep stored with the
checkpoint, or of a new sweep of the images evaluated above (bounded, cached on disk and
resumable, as `python -m forensics robustness` is)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from forensics.data import dataset_fingerprint
from forensics.detector import Detector
from forensics.plots import plot_robustness
from forensics.robustness import (
    CLEAN,
    STORED_FOLDER,
    IncompleteSweepError,
    StaleSweepError,
    check_sweep_is_of,
    parse_settings,
    read_sweep,
    run_sweep,
    select_rows,
)
from forensics.ui.results import Results, evaluation_cache_root

STORED_SWEEP = "Stored sweep (shipped with the checkpoint)"
NEW_SWEEP = "Sweep the images evaluated above"
DEFAULT_IMAGES = 200


@st.cache_data(show_spinner=False, max_entries=16)
def _read(folder: str, stamps: tuple) -> tuple[pd.DataFrame, dict]:
    return read_sweep(folder)


def read_sweep_cached(folder: Path) -> tuple[pd.DataFrame, dict]:
    """`read_sweep`, memoised on the files' times and sizes (the page reruns on every widget)."""
    try:
        stamps = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.glob("*")))
    except OSError:
        stamps = ()
    return _read(str(folder), stamps)


def draw_robustness(detector: Detector, results: Results) -> None:
    """The section: choose the stored or a new sweep, then its curves and table."""
    st.subheader("Robustness: verdicts under JPEG, resizing, blur, noise and crops")
    source = st.radio("Sweep", [STORED_SWEEP, NEW_SWEEP], key="robustness_source", horizontal=True)
    if source == STORED_SWEEP:
        folder = detector.checkpoint_dir / STORED_FOLDER
        try:
            table, record = read_sweep_cached(folder)
            check_sweep_is_of(record, detector.checkpoint_id, folder)
        except IncompleteSweepError:
            st.info(
                "This checkpoint ships no robustness sweep. Choose the other option to sweep the "
                "images evaluated above, or run `python -m forensics robustness` (see the README)."
            )
            return
        except StaleSweepError:
            st.warning(
                "The sweep stored with this checkpoint was measured on other weights (the "
                "checkpoint was replaced after it), so it is not shown. Choose the other option "
                "to sweep the images evaluated above, or run `python -m forensics robustness`."
            )
            return
        draw_sweep(table, record)
        return
    folder = _new_sweep(detector, results)
    if folder is not None:
        draw_sweep(*read_sweep_cached(folder))


def _new_sweep(detector: Detector, results: Results) -> Path | None:
    """The folder of a finished sweep of the evaluated rows: cached, or run after a click."""
    if results.rows is None or results.root is None:
        st.info("Choose 'Evaluate on the sidebar's dataset' above to sweep those images.")
        return None
    limit = st.number_input(
        "At most this many images (a seeded sample)",
        min_value=1,
        max_value=len(results.rows),
        value=min(DEFAULT_IMAGES, len(results.rows)),
        key="robustness_images",
    )
    rows = select_rows(results.rows, max_images=int(limit))
    stability = bool(results.metrics.get("stability", False))  # as the evaluation above
    key = f"{detector.checkpoint_id}_{dataset_fingerprint(rows)}_{detector.trust_id}"
    folder = (
        evaluation_cache_root(detector) / f"robustness_{key}_{'stable' if stability else 'nostab'}"
    )
    try:
        read_sweep_cached(folder)
        return folder
    except IncompleteSweepError:
        pass  # never run, or cut short: its finished settings are kept and reused
    settings = parse_settings()
    if not st.button(
        f"Sweep {len(rows):,} images under {len(settings) - 1} perturbations", type="primary",
        key="robustness_run",
    ):  # fmt: skip
        st.caption("Each image is judged once per setting; results are cached on disk.")
        return None
    bar = st.progress(0.0, text="Sweeping…")
    run_sweep(
        detector, results.root, rows, folder, settings=settings, stability=stability,
        progress=False, record={"split": results.metrics.get("split", "all"),
                                "data_root": str(results.root)},
        progress_callback=lambda done, total: bar.progress(
            done / total, text=f"Sweeping: {done:,} of {total:,} judgements"
        ),
    )  # fmt: skip
    bar.empty()
    return folder


def draw_sweep(table: pd.DataFrame, record: dict) -> None:
    """The curves, the table and how the sweep was made."""
    st.plotly_chart(plot_robustness(table), width="stretch")
    clean = table[table["perturbation"] == CLEAN].iloc[0]
    st.caption(
        f"{int(clean['n']):,} images, {record.get('split', 'all')} split; each judged as stored "
        "and as the file each change gives (a JPEG re-saved at that quality, or the changed "
        "picture saved again as the original was). Flipped: the thresholded call differs from "
        "the call on the stored file. Answered: the decision is real or fake, not unsure."
    )
    shown = table[["setting", "n", "accuracy", "roc_auc", "share_flipped", "answered",
                   "accuracy_answered", "confident_wrong"]]  # fmt: skip
    st.dataframe(shown.round(4), hide_index=True, width="stretch")
    if record.get("command"):
        st.caption("Made with:")
        st.code(record["command"], language="bash")
