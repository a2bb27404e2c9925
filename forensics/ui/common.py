"""What every page shares: the cached Detector, the sidebar's selections, the dataset scan."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from forensics.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, shipped_checkpoints
from forensics.data import Discovery, load_splits
from forensics.detector import Detector, Explanation, PatchMap
from forensics.explain import SLOW_METHODS
from forensics.router import AUTO, AutoDetector, load_detector
from forensics.scan import load_or_build_manifest, manifest_cache_folder, read_cached_manifest

CHECKPOINT_KEY = "checkpoint_dir"
DATASET_KEY = "dataset_root"
THRESHOLD_KEY = "threshold_override"
UNSIGNED_KEY = "trust_unsigned_metadata"
OTHER_CHECKPOINT = "Another folder…"
NO_DATASET_HINT = (
    "Set a dataset folder (or .zip) in the sidebar, e.g. ../shared/data/cifake, or download a "
    "public one such as CIFAKE (see the README, 'Datasets')."
)


DISPLAY_SIZE = 320  # small model inputs (32 px) are enlarged with visible pixels, not smoothed


AUTOMATIC = "Automatic (chosen per image)"


@st.cache_resource(show_spinner="Loading model…")
def cached_detector(checkpoint_dir: str) -> Detector | AutoDetector:
    # Shared by every session and thread: never mutate it (the Detector serialises model passes).
    return load_detector(checkpoint_dir)


def draw_sidebar() -> None:
    """Checkpoint, dataset root and threshold override, remembered in the session."""
    st.sidebar.header("Model")
    shipped = {path.name: path for path in shipped_checkpoints()}
    preset = os.environ.get("FORENSICS_CHECKPOINT", "").strip()
    choices = [AUTOMATIC, *shipped, OTHER_CHECKPOINT]
    preset_path = Path(preset).expanduser().resolve() if preset and preset != AUTO else None
    preset_name = next((name for name, path in shipped.items() if path == preset_path), None)
    choice = st.sidebar.selectbox(
        "Checkpoint",
        choices,
        index=choices.index(
            preset_name or (OTHER_CHECKPOINT if preset and preset != AUTO else AUTOMATIC)
        ),
        help="Automatic: for each image, the shipped model whose training data it resembles "
        "(or 'unsure' when none does). Or one of the models shipped in checkpoints/ (their "
        "cards are on the Model card page), or a folder of your own.",
    )
    if choice == AUTOMATIC:
        directory = AUTO
    elif choice == OTHER_CHECKPOINT:
        custom = st.sidebar.text_input(
            "Checkpoint directory",
            value=preset,
            placeholder="path/to/checkpoint",
            help="A folder with model.safetensors and model.json (python -m training.publish).",
        )
        directory = custom.strip() or str(DEFAULT_CHECKPOINT)
    else:
        directory = str(shipped[choice])
    st.session_state[CHECKPOINT_KEY] = directory
    st.session_state[UNSIGNED_KEY] = st.sidebar.toggle(
        "Let a generator's unsigned metadata decide",
        value=st.session_state.get(UNSIGNED_KEY, True),
        help="A file whose metadata says a generator made it (a Stable Diffusion parameters "
        "chunk, a ComfyUI graph, an XMP CreatorTool or digital source type) is decided "
        "'AI-generated', saying it is unsigned. Off: only the pixels and signed content "
        "credentials decide; the metadata is still shown.",
    )
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


def selected_detector(*, per_image: bool = False) -> Detector | AutoDetector | None:
    """The Detector for the sidebar's checkpoint, or None after showing why it cannot load.
    With "Automatic" chosen: the AutoDetector where the page judges images one by one
    (`per_image`), else the default checkpoint, which the page says."""
    directory = st.session_state.get(CHECKPOINT_KEY, AUTO)
    if directory == AUTO and not per_image:
        st.caption(
            "Automatic chooses a model per image on the Classify page; this page shows the "
            "default model. Pick a checkpoint in the sidebar to see another."
        )
        directory = str(DEFAULT_CHECKPOINT)
    try:
        return cached_detector(
            directory if directory == AUTO else str(Path(directory).expanduser())
        )
    except CheckpointError as exc:
        st.error(f"Cannot load the checkpoint: {exc}")
    except ValueError as exc:  # no shipped checkpoint can route
        st.error(f"Automatic choice is not available: {exc}. Pick a checkpoint in the sidebar.")
    return None


def trusts_unsigned_metadata() -> bool:
    """The sidebar's choice: may a generator's unsigned metadata decide?"""
    return bool(st.session_state.get(UNSIGNED_KEY, True))


def selected_threshold(detector: Detector) -> float:
    override = st.session_state.get(THRESHOLD_KEY)
    return detector.threshold if override is None else float(override)


def selected_dataset() -> Path | None:
    value = st.session_state.get(DATASET_KEY, "")
    return Path(value).expanduser() if value else None


@st.cache_data(show_spinner=False, max_entries=4)
def _read_scan(folder: str, split_file: str | None, split_file_mtime: float | None) -> Discovery:
    # In memory, so reruns skip reading and joining a large manifest. The folder is named by the
    # dataset's signature and the split file's time is in the key: nothing stale comes back.
    discovery = read_cached_manifest(folder)
    if split_file is None:
        return discovery
    return replace(discovery, manifest=load_splits(discovery.manifest, Path(split_file)))


def scan_dataset(root: Path, *, split_file: Path | None = None) -> Discovery | None:
    """The dataset's manifest (a disk-cached scan, with a progress bar the first time), with the
    splits of `split_file` where given and fitting; None, with a message, if it cannot be read."""
    if not root.exists():
        st.error(f"Dataset folder not found: {root}")
        return None
    try:
        folder = str(manifest_cache_folder(root))
        try:
            _read_scan(folder, None, None)
        except FileNotFoundError:
            bar = st.progress(0.0, text=f"Scanning {root}…")
            try:
                load_or_build_manifest(
                    root,
                    progress=False,
                    progress_callback=lambda done, total: bar.progress(
                        done / max(total, 1), text=f"Scanning {root}: {done:,} of {total:,} files"
                    ),
                )
            finally:
                bar.empty()
        if split_file is None:
            return _read_scan(folder, None, None)
        try:
            return _read_scan(folder, str(split_file), split_file.stat().st_mtime)
        except (ValueError, OSError, EOFError) as exc:  # foreign, unreadable or truncated
            st.warning(f"The split file does not fit this dataset ({exc}); using all images.")
            return _read_scan(folder, None, None)
    except (OSError, ValueError) as exc:
        st.error(f"Cannot use {root} as a dataset: {exc}")
        return None


def method_label(method: str) -> str:
    return f"{method} (slow)" if method in SLOW_METHODS else method


@st.cache_data(show_spinner=False, max_entries=256)
def _explanations(
    checkpoint_dir: str,
    checkpoint_id: str,
    trust_id: str,
    images: tuple[bytes, ...],
    method: str,
    target: str,
    box: tuple[int, int, int, int] | None = None,
    faithfulness: bool = True,
) -> list[Explanation]:
    # Keyed by the weights' and trust profile's ids and the image bytes: sliders and reruns
    # never recompute a CAM or a decision.
    return cached_detector(checkpoint_dir).explain_batch(
        list(images), method, target, boxes=[box] * len(images), faithfulness=faithfulness
    )


def explain_many_cached(
    detector: Detector | AutoDetector, images: list[bytes], method: str, target: str
) -> list[Explanation]:
    """One batched CAM for a page of thumbnails, cached; raises ImageLoadError if any of them
    cannot be read. Thumbnails skip the faithfulness check (on 256 px images it costs seconds
    each); the image opened in full measures it."""
    return _explanations(
        str(detector.checkpoint_dir),
        detector.checkpoint_id,
        detector.trust_id,
        tuple(images),
        method,
        target,
        faithfulness=False,
    )


def explain_cached(
    detector: Detector | AutoDetector,
    data: bytes,
    method: str,
    target: str,
    box: tuple[int, int, int, int] | None = None,
) -> Explanation:
    """One image's explanation, cached; `box`: the patch a patch model explains (None: the
    one that most supports its verdict)."""
    (explanation,) = _explanations(
        str(detector.checkpoint_dir),
        detector.checkpoint_id,
        detector.trust_id,
        (data,),
        method,
        target,
        box,
    )
    return explanation


@st.cache_data(show_spinner=False, max_entries=64)
def _patch_map(checkpoint_dir: str, checkpoint_id: str, trust_id: str, data: bytes) -> PatchMap:
    return cached_detector(checkpoint_dir).patch_map(data)


def patch_map_cached(detector: Detector | AutoDetector, data: bytes) -> PatchMap:
    """The image's patch map and verdict, cached like the explanations."""
    return _patch_map(str(detector.checkpoint_dir), detector.checkpoint_id, detector.trust_id, data)


def enlarge(pixels: np.ndarray, size: int = DISPLAY_SIZE) -> Image.Image:
    """Small model views scaled up with visible pixels (nearest), never smoothed."""
    image = Image.fromarray(pixels)
    if image.width >= size:
        return image
    return image.resize((size, size), Image.Resampling.NEAREST)
