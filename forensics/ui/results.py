"""Evaluation results for the evaluation and error pages: the checkpoint's stored evaluation, or
a fresh one on the sidebar's dataset, cached on disk next to the checkpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from forensics.data import SPLITS, ImageStore, dataset_fingerprint
from forensics.detector import Detector
from forensics.evaluation import (
    IncompleteEvaluationError,
    read_evaluation,
    run_evaluation,
    write_evaluation,
)
from forensics.scan import default_cache_dir
from forensics.ui.common import (
    NO_DATASET_HINT,
    scan_dataset,
    selected_dataset,
    trusts_unsigned_metadata,
)

STORED = "Stored evaluation (shipped with the checkpoint)"
ON_DATASET = "Evaluate on the sidebar's dataset"
SPLIT_FILE = "splits.csv.gz"
# The evaluation and error pages show the same results, and coming back to either shows what was
# last chosen: widget state is dropped when the page changes, these plain keys are not.
SOURCE_CHOICE = "results_source"
SPLIT_CHOICE = "results_split"


@dataclass(frozen=True)
class Results:
    table: pd.DataFrame  # forensics.evaluation.build_predictions_table's columns
    metrics: dict
    root: Path | None  # the dataset root holding the table's images; None where none does
    description: str
    rows: pd.DataFrame | None = None  # the manifest rows evaluated, when run on a dataset
    # Where root is None: what to do to see the images ("" where the page already said it).
    images_hint: str = NO_DATASET_HINT


@st.cache_data(show_spinner=False, max_entries=16)
def _read_cached(folder: str, stamps: tuple) -> tuple[pd.DataFrame, dict]:
    # Both files' times and sizes are in the key: a rewritten or damaged file is read again.
    return read_evaluation(folder)


def read_results_folder(folder: Path) -> tuple[pd.DataFrame, dict]:
    """IncompleteEvaluationError where the folder holds no finished, consistent evaluation."""
    try:
        stamps = tuple(
            (stat.st_mtime_ns, stat.st_size)
            for stat in ((folder / name).stat() for name in ("metrics.json", "predictions.csv"))
        )
    except OSError:
        raise IncompleteEvaluationError(f"{folder} holds no finished evaluation") from None
    return _read_cached(str(folder), stamps)


def evaluation_cache_root(detector: Detector) -> Path:
    """`<checkpoint>/eval_cache`, or the user cache where the checkpoint is read-only."""
    folder = detector.checkpoint_dir / "eval_cache"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".writable"
        probe.touch()
        probe.unlink()
    except OSError:
        folder = default_cache_dir() / "evaluations"
    return folder


def evaluation_cache_folder(detector: Detector, key: str) -> Path:
    return evaluation_cache_root(detector) / key


def latest_cached_split(detector: Detector, root: Path) -> str | None:
    """The split of the newest cached evaluation of `detector` on `root`, if there is one: a
    returning user sees it straight away instead of the stored one. Whether it still matches the
    data is checked (by fingerprint) when it is shown."""
    newest: tuple[float, str] | None = None
    for metrics_file in evaluation_cache_root(detector).glob(
        f"{detector.checkpoint_id}_*/metrics.json"
    ):
        try:
            metrics = json.loads(metrics_file.read_text())
            same_root = Path(metrics["data_root"]).resolve() == root.resolve()
            written = metrics_file.stat().st_mtime
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a half-written or foreign folder is not a reason to fail the page
        if same_root and (newest is None or written > newest[0]):
            newest = (written, str(metrics.get("split", "test")))
    return newest[1] if newest else None


def choose_results(detector: Detector, *, key: str) -> Results | None:
    """Draw the source selector and return the chosen results (None, with a message, if none)."""
    stored = detector.checkpoint_dir / "eval"
    has_stored = (stored / "predictions.csv").is_file()
    root = selected_dataset()
    default = st.session_state.get(SOURCE_CHOICE)
    if default is None:
        cached_on_dataset = root is not None and latest_cached_split(detector, root) is not None
        default = ON_DATASET if cached_on_dataset or not has_stored else STORED
    source = st.radio(
        "Results",
        [STORED, ON_DATASET],
        index=[STORED, ON_DATASET].index(default),
        key=f"{key}_source",
        horizontal=True,
    )
    st.session_state[SOURCE_CHOICE] = source
    if source == STORED:
        if not has_stored:
            st.info("This checkpoint ships no stored evaluation. " + NO_DATASET_HINT)
            return None
        try:
            table, metrics = read_results_folder(stored)
        except IncompleteEvaluationError as exc:
            st.error(f"The stored evaluation cannot be shown: {exc}")
            return None
        split = metrics.get("split", "test")
        description = f"stored evaluation, {split} split"
        # Paths are relative to the dataset root, which the sidebar supplies for thumbnails,
        # provided the folder set there is the dataset the evaluation was made on.
        dataset = evaluated_dataset(metrics, detector.metadata)
        if root is None:
            return Results(table, metrics, None, description, images_hint=hint_for(dataset))
        missing = count_missing(root, stored, table)
        if missing:
            st.warning(mismatch_message(dataset, root, missing=missing, total=len(table)))
            return Results(table, metrics, None, description, images_hint="")
        return Results(table, metrics, root, description)
    return _results_on_dataset(detector, key=key)


def evaluated_dataset(metrics: dict, checkpoint_metadata: dict) -> dict:
    """{name, files, fingerprint} of the dataset a stored evaluation was made on: recorded with
    it by training.publish, else (older checkpoints) the checkpoint's training dataset, whose
    test split the stored evaluation is."""
    recorded = metrics.get("dataset") or {}
    trained = checkpoint_metadata.get("dataset") or {}
    counts = trained.get("counts") or {}
    root = trained.get("root")
    return {
        "name": recorded.get("name") or (Path(root).name if root else None),
        "files": recorded.get("files")
        or sum(int(n) for per_class in counts.values() for n in per_class.values())
        or None,
        "fingerprint": recorded.get("fingerprint") or trained.get("fingerprint"),
    }


def _describe_dataset(dataset: dict) -> str:
    name = dataset["name"] or "the checkpoint's training data"
    details = [f"{dataset['files']:,} images" if dataset["files"] else None]
    details.append(f"fingerprint {dataset['fingerprint']}" if dataset["fingerprint"] else None)
    details = [d for d in details if d]
    return f"{name} ({', '.join(details)})" if details else name


def _what_to_do(dataset: dict) -> str:
    """How to get the images: the folder, the download command where the dataset is public."""
    from forensics.datasets import DATASETS

    name = dataset["name"]
    steps = [f"set the dataset folder in the sidebar to {name or 'that dataset'}"]
    if name in DATASETS:
        steps.append(f"download it with `python -m forensics.datasets download {name} --to DIR`")
    return ", ".join(steps)


def hint_for(dataset: dict) -> str:
    """Where no folder is set: which images the thumbnails need and how to get them."""
    return (
        f"Thumbnails and heatmaps need the images of {_describe_dataset(dataset)}, the dataset "
        f"this evaluation was made on: {_what_to_do(dataset)}."
    )


def mismatch_message(dataset: dict, root: Path, *, missing: int, total: int) -> str:
    """One sentence: the folder set is not the stored evaluation's dataset, and what to do."""
    found = (
        f"none of the {total:,} evaluated images is there"
        if missing == total
        else f"{missing:,} of the {total:,} evaluated images are missing there"
    )
    return (
        f"The stored evaluation was made on {_describe_dataset(dataset)}, and the dataset folder "
        f"set in the sidebar ({root}) is not that dataset ({found}): {_what_to_do(dataset)}, or "
        f'choose "{ON_DATASET}" above to evaluate the folder that is set. The rows below are '
        "shown without thumbnails."
    )


def count_missing(root: Path, stored: Path, table: pd.DataFrame) -> int:
    """How many of the stored evaluation's images are not under `root` (memoised per folder
    and stored evaluation: the evaluation page reruns on every slider move)."""
    try:
        stamps = tuple((st.st_mtime_ns, st.st_size) for st in (root.stat(), stored.stat()))
    except OSError:
        return len(table)
    return _count_missing(str(root), str(stored), stamps, table)


@st.cache_data(show_spinner=False, max_entries=16)
def _count_missing(root: str, stored: str, stamps: tuple, _table: pd.DataFrame) -> int:
    try:
        store = ImageStore(root)
    except (OSError, ValueError):  # gone, or a file that is not a zip
        return len(_table)
    return sum(not store.contains(path) for path in _table["path"])


def _results_on_dataset(detector: Detector, *, key: str) -> Results | None:
    root = selected_dataset()
    if root is None:
        st.info(NO_DATASET_HINT)
        return None
    split_file = detector.checkpoint_dir / SPLIT_FILE
    use_split_file = split_file.is_file() and st.checkbox(
        f"Use the checkpoint's own split ({SPLIT_FILE})",
        value=True,
        key=f"{key}_splitfile",
        help="The split the model was trained with: its test split holds only unseen images.",
    )
    discovery = scan_dataset(root, split_file=split_file if use_split_file else None)
    if discovery is None:
        return None
    manifest = discovery.manifest
    splits = [s for s in SPLITS if (manifest["split"] == s).any()]
    options = [*splits, "all"]
    # The held-out split is what an evaluation is for; train and val are there for auditing.
    # A split chosen earlier in the session, or last evaluated, comes first.
    preferred = [st.session_state.get(SPLIT_CHOICE), latest_cached_split(detector, root), "test"]
    split = st.selectbox(
        "Split",
        options,
        index=next((options.index(s) for s in preferred if s in options), 0),
        key=f"{key}_split",
    )
    st.session_state[SPLIT_CHOICE] = split
    rows = manifest if split == "all" else manifest[manifest["split"] == split]
    rows = rows.reset_index(drop=True)
    if rows.empty:
        st.info("No images in that selection.")
        return None
    stability = st.checkbox(
        "Include the stability check (five passes per image)",
        value=False,
        key=f"{key}_stability",
        help="A single verdict's decision also checks the score under a JPEG re-save, a 0.9x "
        "resize, a shift and a mirror. Over a dataset that takes five times as long; without it "
        "every other check still runs, and an image can only be answered more often.",
    )
    return evaluate_rows(detector, root, rows, split=split, key=key, stability=stability)


def evaluate_rows(
    detector: Detector,
    root: Path,
    rows: pd.DataFrame,
    *,
    split: str,
    key: str,
    stability: bool = False,
) -> Results | None:
    """Results of `detector` on manifest `rows`: from the disk cache, or computed after a click
    (with a progress bar) and cached, keyed by the weights' and trust profile's ids, the rows'
    fingerprint and whether the stability check ran."""
    checks = "stable" if stability else "nostab"
    trust_unsigned = trusts_unsigned_metadata()
    checks += "" if trust_unsigned else "_pixels"  # unsigned metadata decided nothing
    cache_key = (
        f"{detector.checkpoint_id}_{dataset_fingerprint(rows)}_{detector.trust_id}_{checks}_{split}"
    )
    folder = evaluation_cache_folder(detector, cache_key)
    try:
        table, metrics = read_results_folder(folder)
    except IncompleteEvaluationError:
        # Never run, or cut short (a crash, a closed tab): evaluated again on request.
        table = metrics = None
    if table is None:
        label = f"Evaluate {len(rows):,} images with {detector.checkpoint_dir.name}"
        if not st.button(label, key=f"{key}_run", type="primary"):
            st.caption("Results are cached on disk, so this runs once per checkpoint and data.")
            return None
        bar = st.progress(0.0, text="Evaluating…")
        table, metrics = run_evaluation(
            detector,
            root,
            rows,
            stability=stability,
            trust_unsigned_metadata=trust_unsigned,
            progress=False,
            progress_callback=lambda done, total: bar.progress(
                done / total, text=f"Evaluating: {done:,} of {total:,} images"
            ),
        )
        bar.empty()
        metrics.update(split=split, data_root=str(root), stability=stability)
        write_evaluation(folder, table, metrics)
        st.rerun()  # draw the page again from the cache, without the now-spent button
    without = "" if stability else ", decisions without the stability check"
    description = f"{root}, {split} split ({len(table):,} images{without})"
    return Results(table, metrics, root, description, rows=rows)
