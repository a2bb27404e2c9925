"""What every page shares: the cached Detector, the sidebar's selections, the dataset scan."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from forensics.checkpoint import DEFAULT_CHECKPOINT, CheckpointError
from forensics.data import Discovery, load_or_build_manifest
from forensics.detector import Detector, load_detector

CHECKPOINT_KEY = "checkpoint_dir"
DATASET_KEY = "dataset_root"
THRESHOLD_KEY = "threshold_override"
NO_DATASET_HINT = (
    "Set a dataset folder (or .zip) in the sidebar, e.g. ../shared/data/cifake, or download a "
    "public one such as CIFAKE (see the README, 'Datasets')."
)


@st.cache_resource(show_spinner="Loading model…")
def cached_detector(checkpoint_dir: str) -> Detector:
    # Shared by every session and thread: never mutate it (the Detector serialises model passes).
    return load_detector(checkpoint_dir)


def draw_sidebar() -> None:
    """Checkpoint, dataset root and threshold override, remembered in the session."""
    st.sidebar.header("Model")
    custom = st.sidebar.text_input(
        "Checkpoint directory",
        value=os.environ.get("FORENSICS_CHECKPOINT", ""),
        placeholder=f"default: {DEFAULT_CHECKPOINT.name}",
        help="A folder with model.safetensors and model.json. Leave empty for the shipped model.",
    )
    st.session_state[CHECKPOINT_KEY] = custom.strip() or str(DEFAULT_CHECKPOINT)
    st.sidebar.header("Data")
    dataset = st.sidebar.text_input(
        "Dataset folder or .zip",
        value=st.session_state.get(DATASET_KEY, os.environ.get("FORENSICS_DATASET", "")),
        help="Folders named real/fake (any of the known layouts); zips are read in place.",
    )
    st.session_state[DATASET_KEY] = dataset.strip()
    override = st.sidebar.checkbox("Override the decision threshold")
    st.session_state[THRESHOLD_KEY] = (
        st.sidebar.slider("Threshold on P(fake)", 0.01, 0.99, 0.5, 0.01) if override else None
    )


def selected_detector() -> Detector | None:
    """The Detector for the sidebar's checkpoint, or None after showing why it cannot load."""
    directory = st.session_state.get(CHECKPOINT_KEY, str(DEFAULT_CHECKPOINT))
    try:
        return cached_detector(str(Path(directory).expanduser()))
    except CheckpointError as exc:
        st.error(f"Cannot load the checkpoint: {exc}")
        return None


def selected_threshold(detector: Detector) -> float:
    override = st.session_state.get(THRESHOLD_KEY)
    return detector.threshold if override is None else float(override)


def selected_dataset() -> Path | None:
    value = st.session_state.get(DATASET_KEY, "")
    return Path(value).expanduser() if value else None


def scan_dataset(root: Path) -> Discovery | None:
    """The dataset's manifest (disk-cached scan, with a progress bar), or None with a message."""
    if not root.exists():
        st.error(f"Dataset folder not found: {root}")
        return None
    bar = st.progress(0.0, text=f"Scanning {root}…")
    try:
        discovery = load_or_build_manifest(
            root,
            progress=False,
            progress_callback=lambda done, total: bar.progress(
                done / max(total, 1), text=f"Scanning {root}: {done:,} of {total:,} files"
            ),
        )
    except (OSError, ValueError) as exc:
        st.error(f"Cannot use {root} as a dataset: {exc}")
        return None
    finally:
        bar.empty()
    return discovery
