"""Dataset analysis: what is in a dataset folder, and what could let a model cheat."""

from __future__ import annotations

import numpy as np
import streamlit as st

from forensics.data import LABEL_NAMES, ImageStore, find_duplicates, find_shortcuts
from forensics.images import ImageLoadError
from forensics.plots import plot_class_distribution, plot_split_counts
from forensics.ui.common import NO_DATASET_HINT, scan_dataset, selected_dataset

SAMPLES_PER_CLASS = 8
SAMPLE_SIZE = 96


def dataset_page() -> None:
    st.title("Dataset analysis")
    root = selected_dataset()
    if root is None:
        st.info(NO_DATASET_HINT)
        return
    discovery = scan_dataset(root)
    if discovery is None:
        return
    manifest = discovery.manifest
    manifest = manifest.assign(aspect_ratio=(manifest["width"] / manifest["height"]).round(3))
    counts = manifest["label"].value_counts()
    st.caption(
        f"{root}: {len(manifest):,} readable images ({counts.get(0, 0):,} real, "
        f"{counts.get(1, 0):,} fake), {len(discovery.skipped):,} files skipped."
    )
    st.plotly_chart(plot_split_counts(manifest), width="stretch")

    st.subheader("Shortcuts")
    shortcuts = find_shortcuts(manifest)
    for sentence in shortcuts:
        st.warning(
            sentence + " A model can learn this difference instead of the generator's traces; "
            "match the classes (re-encode, resize) before trusting its accuracy."
        )
    if not shortcuts:
        st.success("Real and fake images match in file format, size and JPEG quality.")
    columns = st.columns(2)
    columns[0].plotly_chart(
        plot_class_distribution(manifest, "format", title="File format", categorical=True),
        width="stretch",
    )
    columns[1].plotly_chart(
        plot_class_distribution(manifest, "jpeg_quality", title="JPEG quality (estimated)"),
        width="stretch",
    )
    columns = st.columns(2)
    columns[0].plotly_chart(
        plot_class_distribution(manifest, "width", title="Width (pixels)"), width="stretch"
    )
    columns[1].plotly_chart(
        plot_class_distribution(manifest, "aspect_ratio", title="Aspect ratio (width / height)"),
        width="stretch",
    )

    st.subheader("Duplicates and leakage")
    duplicates = find_duplicates(manifest)
    if duplicates.empty:
        st.success("No byte-identical files.")
    else:
        leaks = int(duplicates["cross_split"].sum())
        conflicts = int(duplicates["label_conflict"].sum())
        message = (
            f"{len(duplicates):,} groups of byte-identical files; {leaks:,} cross splits "
            "(leakage: the same image is trained on and tested on); "
            f"{conflicts:,} carry both labels."
        )
        (st.error if leaks or conflicts else st.warning)(message)
        st.dataframe(duplicates, hide_index=True)

    st.subheader("Unreadable or unlabelled files")
    if discovery.skipped.empty:
        st.success("Every image file was readable and inside a real/fake folder.")
    else:
        st.dataframe(discovery.skipped, hide_index=True)

    st.subheader("Samples")
    draw_samples(root, manifest)


def draw_samples(root, manifest) -> None:
    store = ImageStore(root)
    rng = np.random.default_rng(0)  # the same samples on every visit
    for value, name in enumerate(LABEL_NAMES):
        rows = manifest[manifest["label"] == value]
        if rows.empty:
            continue
        picked = rows.iloc[rng.choice(len(rows), min(SAMPLES_PER_CLASS, len(rows)), replace=False)]
        st.markdown(f"**{name}**")
        columns = st.columns(SAMPLES_PER_CLASS)
        for column, path in zip(columns, picked["path"], strict=False):
            try:
                image = store.load_image(path)
            except ImageLoadError as exc:
                column.caption(f"{path}: {exc}")
                continue
            image.thumbnail((SAMPLE_SIZE, SAMPLE_SIZE))
            column.image(image, caption=path.rsplit("/", 1)[-1], width=SAMPLE_SIZE)
