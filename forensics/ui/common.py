"""What every page shares: the cached Detector and the sidebar's selections."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from forensics.checkpoint import DEFAULT_CHECKPOINT, CheckpointError
from forensics.detector import Detector, load_detector

CHECKPOINT_KEY = "checkpoint_dir"


@st.cache_resource(show_spinner="Loading model…")
def cached_detector(checkpoint_dir: str) -> Detector:
    # Shared by every session and thread: never mutate it (the Detector serialises model passes).
    return load_detector(checkpoint_dir)


def draw_sidebar() -> None:
    """Checkpoint selector: the shipped default or any checkpoint directory the user names."""
    st.sidebar.header("Model")
    custom = st.sidebar.text_input(
        "Checkpoint directory",
        value=os.environ.get("FORENSICS_CHECKPOINT", ""),
        placeholder=f"default: {DEFAULT_CHECKPOINT.name}",
        help="A folder with model.safetensors and model.json. Leave empty for the shipped model.",
    )
    st.session_state[CHECKPOINT_KEY] = custom.strip() or str(DEFAULT_CHECKPOINT)


def selected_detector() -> Detector | None:
    """The Detector for the sidebar's checkpoint, or None after showing why it cannot load."""
    directory = st.session_state.get(CHECKPOINT_KEY, str(DEFAULT_CHECKPOINT))
    try:
        return cached_detector(str(Path(directory).expanduser()))
    except CheckpointError as exc:
        st.error(f"Cannot load the checkpoint: {exc}")
        return None
