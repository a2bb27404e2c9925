"""Classify: upload an image (or pick an example), see the verdict and why."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import streamlit as st
from PIL import Image

from forensics.data import IMAGE_EXTENSIONS
from forensics.decision import weigh_explanations
from forensics.detector import Detector, Verdict
from forensics.evidence import Evidence, gather_evidence
from forensics.evidence.board import read_provenance
from forensics.explain import (
    CAM_METHODS,
    SLOW_METHODS,
    TARGET_INDEPENDENT_METHODS,
    describe_heatmap,
    overlay_heatmap,
    read_heatmap,
)
from forensics.images import ImageLoadError
from forensics.report.case import assemble_case, describe_file, render_case
from forensics.ui.common import (
    THRESHOLD_KEY,
    enlarge,
    explain_cached,
    method_label,
    patch_map_cached,
    selected_detector,
    trusts_unsigned_metadata,
)
from forensics.ui.decision import draw_decision, plain_markdown
from forensics.ui.perturbation import draw_perturbation

TARGET_CHOICES = {
    "both": "why fake and why real",
    "predicted": "the verdict",
    "fake": "why fake",
    "real": "why real",
}
VIEW_SIZE = 256


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
    detector = selected_detector(per_image=True)
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
    target = col_target.selectbox("Explain", list(TARGET_CHOICES), format_func=TARGET_CHOICES.get)
    opacity = col_opacity.slider("Heatmap opacity", 0.0, 1.0, 0.5, 0.05)
    if method in TARGET_INDEPENDENT_METHODS:
        st.caption(f"{method} shows the dominant activation pattern; it ignores the target.")

    for item in upload_items(items):
        st.divider()
        show_result(detector, item, method=method, target=target, opacity=opacity)


@dataclass(frozen=True)
class UploadItem:
    """One file to judge. Two cameras both write IMG_0001.jpg: the name is not an identity."""

    name: str
    data: bytes
    sha256: str
    key: str  # unique among this run's files: widget keys are built from it
    title: str  # the name, numbered where several files share it


def upload_items(items: list[tuple[str, bytes]]) -> list[UploadItem]:
    """(name, bytes) pairs as UploadItems with unique widget keys and distinguishable titles."""
    counts = Counter(name for name, _ in items)
    seen: Counter[str] = Counter()
    result = []
    for index, (name, data) in enumerate(items):
        seen[name] += 1
        sha256 = hashlib.sha256(data).hexdigest()
        title = name if counts[name] == 1 else f"{name} ({seen[name]} of {counts[name]})"
        result.append(UploadItem(name, data, sha256, f"{index}-{sha256[:16]}", title))
    return result


def show_result(
    detector: Detector, item: UploadItem, *, method: str, target: str, opacity: float
) -> None:
    name, data = item.name, item.data
    st.subheader(item.title)
    targets = ("fake", "real") if target == "both" else (target,)
    slow = " (slow method: one forward pass per channel)" if method in SLOW_METHODS else ""
    try:
        with st.spinner(f"Computing {method}{slow}…"):
            explanations = [explain_cached(detector, data, method, t) for t in targets]
    except ImageLoadError as exc:
        st.error(f"Cannot read {name}: {exc}")
        return
    # The file's own claims first (a signed credential, a generator's metadata), then the
    # pixels: read from the uploaded bytes, without decoding them again.
    trust_unsigned = trusts_unsigned_metadata()
    provenance = provenance_cached(data)
    explanations = weigh_explanations(explanations, provenance,
                                      trust_unsigned_metadata=trust_unsigned)  # fmt: skip
    verdict = explanations[0].verdict
    draw_decision(verdict, key=item.key, threshold_override=st.session_state.get(THRESHOLD_KEY))
    if verdict.decision == "unsure":
        # A convincing heatmap beside a score that is not a verdict is what misleads most.
        st.caption("The heatmaps below explain a score that is not a verdict.")
    if explanations[0].box is not None:  # a patch model: the map first, then one patch's CAM
        box = draw_patch_map(detector, item, default=explanations[0].box)
        if box != explanations[0].box:
            with st.spinner(f"Computing {method} for that patch…"):
                explanations = [explain_cached(detector, data, method, t, box=box) for t in targets]
            explanations = weigh_explanations(explanations, provenance,
                                              trust_unsigned_metadata=trust_unsigned)  # fmt: skip
    draw_heatmaps(item, explanations, method=method, opacity=opacity, verdict=verdict)
    draw_case_report_button(detector, item, explanations, trust_unsigned=trust_unsigned)
    draw_perturbation(detector, item, method=method, target=target, opacity=opacity)
    draw_evidence(item)


def draw_patch_map(detector, item: UploadItem, *, default: tuple) -> tuple:
    """The per-patch P(fake) over the whole photograph, and a choice of the patch whose CAM
    is shown below (the most telling one by default). Returns the chosen box."""
    with st.spinner("Scoring the photograph's patches…"):
        patch_map = patch_map_cached(detector, item.data)
    rows, columns = patch_map.grid
    st.image(
        patch_map.overlay,
        caption=(
            f"Where in the photograph the model sees generated texture: {len(patch_map.boxes)} "
            f"native-resolution patches ({rows} x {columns}), red = P(fake) above the "
            "threshold, green = below, stronger = further from it"
        ),
        width="stretch",
    )
    order = {box: i for i, box in enumerate(patch_map.boxes)}

    def label(box: tuple) -> str:
        i = order[box]
        left, top, right, bottom = box
        return (
            f"patch {i + 1}: x {left}-{right}, y {top}-{bottom}, "
            f"P(fake) {patch_map.prob_fake[i]:.2f}"
        )

    choices = sorted(patch_map.boxes, key=lambda b: -float(patch_map.prob_fake[order[b]]))
    index = choices.index(default) if default in choices else 0
    return st.selectbox(
        "Open the CAM of a patch (most generated-looking first)",
        choices,
        index=index,
        format_func=label,
        key=f"patch-{item.key}",
    )


def draw_heatmaps(
    item: UploadItem, explanations: list, *, method: str, opacity: float, verdict: Verdict
) -> None:
    name = item.name
    columns = st.columns(1 + len(explanations))
    box = explanations[0].box
    seen = "What the model saw"
    if box is not None:
        seen = f"Patch x {box[0]}-{box[2]}, y {box[1]}-{box[3]} (native pixels)"
    columns[0].image(enlarge(explanations[0].view), caption=seen, width=VIEW_SIZE)
    readings = {}
    for column, explanation in zip(columns[1:], explanations, strict=True):
        overlay = overlay_heatmap(explanation.view, explanation.heatmap, opacity=opacity)
        column.image(
            enlarge(overlay),
            caption=f"{method}: regions pushing towards '{explanation.target}'",
            width=VIEW_SIZE,
        )
        reading = read_heatmap(explanation.heatmap)
        readings[explanation.target] = reading
        column.caption(describe_heatmap(reading, explanation.target))
        column.caption(explanation.describe_faithfulness())
        column.download_button(
            f"Overlay PNG ({explanation.target})",
            png_bytes(enlarge(overlay)),
            file_name=f"{Path(name).stem}_{method}_{explanation.target}.png",
            mime="image/png",
            key=f"png-{item.key}-{explanation.target}",
        )
    record = {
        "file": name,
        "sha256": item.sha256,
        **verdict.to_dict(),
        "method": method,
        "heatmap_patch": None if box is None else list(box),
        "heatmap_reading": readings,
        "heatmaps": [explanation.to_dict() for explanation in explanations],
        "evidence": _evidence_record(item.data),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    st.download_button(
        "JSON record of this verdict",
        json.dumps(record, indent=2),
        file_name=f"{Path(name).stem}_verdict.json",
        mime="application/json",
        key=f"json-{item.key}",
    )


def draw_case_report_button(
    detector, item: UploadItem, explanations: list, *, trust_unsigned: bool
) -> None:
    """The case report of this image (the verdict, these heatmaps, the evidence, the card's
    limits) as one self-contained HTML file, made only when the button is clicked."""
    patch_map = None
    if explanations[0].box is not None:
        patch_map = patch_map_cached(detector, item.data)

    def report() -> str:
        facts = describe_file(item.data, item.name)
        try:
            evidence = evidence_cached(item.data)
        except ImageLoadError:
            evidence = None
        case = assemble_case(detector, facts, explanations, patch_map=patch_map,
                             evidence=evidence,
                             trust_unsigned_metadata=trust_unsigned)  # fmt: skip
        return render_case(case, command="the Classify page")

    st.download_button(
        "Case report (HTML: prints to PDF)",
        report,
        file_name=f"{Path(item.name).stem}_case_report.html",
        mime="text/html",
        key=f"case-{item.key}",
        help="One self-contained file to hand on: the file's SHA-256, the verdict and its "
        "reasons, these heatmaps with their faithfulness, the evidence, and where the model "
        "must not be trusted. Nothing in it is fetched from the internet.",
    )


@st.cache_data(show_spinner=False, max_entries=32)
def evidence_cached(data: bytes) -> Evidence:
    return gather_evidence(data)


@st.cache_data(show_spinner=False, max_entries=64)
def provenance_cached(data: bytes) -> Evidence:
    """What the file claims about its origin (no views): what the decision weighs."""
    return read_provenance(data)


def _evidence_record(data: bytes) -> dict | None:
    """The evidence beside the verdict in its JSON record (None where it cannot be read)."""
    try:
        return evidence_cached(data).to_dict()
    except ImageLoadError:
        return None


def draw_evidence(item: UploadItem) -> None:
    """The Evidence section: what the file says about its origin and what the classic views
    show, beside the verdict and never part of its score."""
    st.markdown("#### Evidence")
    st.caption(
        "Independent of the model: what the file says about where it came from, and what "
        "classic forensic views show. Shown beside the verdict, never mixed into its score; "
        "metadata can be stripped or forged."
    )
    try:
        with st.spinner("Reading metadata and computing the forensic views…"):
            evidence = evidence_cached(item.data)
    except ImageLoadError as exc:
        st.error(f"Cannot read {item.name}: {exc}")
        return
    say = st.info if evidence.provenance != "none" else st.caption
    say(f"**Provenance ({evidence.provenance}):** {plain_markdown(evidence.summary)}")
    credential = evidence.content_credential
    if credential is not None:
        trust = (
            "signed by a certificate on a trust list"
            if credential.trusted
            else "the signer is not checked against a trust list: a valid credential shows the "
            "file is unchanged since it was signed, not who signed it"
        )
        st.caption(
            f"C2PA credential: {plain_markdown(credential.validation)}"
            + "".join(f"; {plain_markdown(problem)}" for problem in credential.problems[:3])
            + f" ({trust})."
        )
    if evidence.findings:
        with st.expander(f"What the metadata says ({len(evidence.findings)} findings)"):
            for finding in evidence.findings:
                st.markdown(
                    f"- **{plain_markdown(finding.source)}**: {plain_markdown(finding.claim)}"
                )
                st.text(finding.value[:500])
    columns = [column for _ in range(0, len(evidence.views), 2) for column in st.columns(2)]
    for column, view in zip(columns, evidence.views, strict=False):
        column.image(_enlarge_view(view.image), caption=view.title, width="stretch")
        column.caption(view.reading)
        column.caption(f"Limits: {view.limits}")
        column.download_button(
            f"{view.title} PNG",
            png_bytes(Image.fromarray(view.image)),
            file_name=f"{Path(item.name).stem}_{view.name}.png",
            mime="image/png",
            key=f"evidence-{item.key}-{view.name}",
        )
    record = {"file": item.name, "sha256": item.sha256, **evidence.to_dict()}
    st.download_button(
        "Evidence record (JSON)",
        json.dumps(record, indent=2),
        file_name=f"{Path(item.name).stem}_evidence.json",
        mime="application/json",
        key=f"evidence-json-{item.key}",
    )


def _enlarge_view(pixels) -> Image.Image:
    """A small view scaled up by a whole factor with visible pixels, its shape kept."""
    image = Image.fromarray(pixels)
    factor = VIEW_SIZE // max(image.size)
    if factor < 2:
        return image
    size = (image.width * factor, image.height * factor)
    return image.resize(size, Image.Resampling.NEAREST)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
