"""Training runs: per-epoch curves for train and validation, runs overlaid, best epoch marked."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st
import yaml

from forensics.checkpoint import DEFAULT_CHECKPOINT, shipped_checkpoints
from forensics.plots import plot_training_curves

RUNS_DIR = Path(__file__).resolve().parents[2] / "training" / "runs"
METRICS = ("loss", "accuracy", "f1", "roc_auc", "precision", "recall")


def find_runs(*folders: Path) -> dict[str, Path]:
    """Run folders (anything holding a history.csv) under `folders`, by a readable name."""
    runs: dict[str, Path] = {}
    for folder in folders:
        if (folder / "history.csv").is_file():
            runs[folder.name] = folder
        if folder.is_dir():
            for history in sorted(folder.glob("*/history.csv")):
                runs.setdefault(history.parent.name, history.parent)
    return runs


def training_runs_page() -> None:
    st.title("Training runs")
    runs_dir = Path(
        st.text_input("Runs folder", value=os.environ.get("FORENSICS_RUNS", str(RUNS_DIR)))
    ).expanduser()
    runs = find_runs(*shipped_checkpoints(), runs_dir)  # the shipped models' own histories too
    if not runs:
        st.info(
            "No run folders found. Train one with `python -m training.train --config FILE` "
            "(see the README); each run writes a history.csv."
        )
        return
    comparison = runs_dir / "comparison.csv"
    if comparison.is_file():
        # Written by `python -m training.experiments SUITE`: the suite's test metrics side by side.
        table = pd.read_csv(comparison)
        st.subheader("Suite comparison (test split)")
        st.dataframe(table, hide_index=True)
        suite_runs = [name for name in table["run"] if name in runs]
        default = suite_runs or list(runs)[:1]
    else:
        default = [DEFAULT_CHECKPOINT.name] if DEFAULT_CHECKPOINT.name in runs else list(runs)[:1]
    chosen = st.multiselect("Runs to compare", list(runs), default=default)
    if not chosen:
        st.info("Pick at least one run.")
        return
    histories = {name: pd.read_csv(runs[name] / "history.csv") for name in chosen}
    metric = st.selectbox("Metric", METRICS, format_func=lambda m: m.replace("_", " "))
    st.plotly_chart(plot_training_curves(histories, metric), width="stretch")
    st.caption("Dashed: training; solid: validation; star: epoch with the lowest validation loss.")
    for name in chosen:
        history = histories[name]
        best = history.loc[history["val_loss"].idxmin()]
        with st.expander(f"{name}: best epoch {int(best['epoch'])} of {len(history)}"):
            st.dataframe(history, hide_index=True)
            config = runs[name] / "config.yaml"
            if config.is_file():
                st.code(
                    yaml.safe_dump(yaml.safe_load(config.read_text()), sort_keys=False),
                    language="yaml",
                )
