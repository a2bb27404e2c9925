"""Classify's "Try a perturbation": the uploaded image as the file a change gives (a JPEG at some
quality, rescaled, blurred, noisy or cropped), judged and explained beside the original, so the
verdict, its P(fake) and the heatmap can be watched moving with the strength."""

from __future__ import annotations

import streamlit as st

from forensics.explain import overlay_heatmap
from forensics.images import ImageLoadError
from forensics.perturb import PERTURBATIONS, perturb_file
from forensics.robustness import compare_verdicts
from forensics.ui.common import enlarge, explain_cached
from forensics.ui.decision import DECISION_COLOURS, DECISION_NAMES

VIEW_SIZE = 256


@st.cache_data(show_spinner=False, max_entries=64)
def perturbed_file(data: bytes, name: str, strength: float) -> bytes:
    return perturb_file(data, name, strength)


def draw_perturbation(detector, item, *, method: str, target: str, opacity: float) -> None:
    """The toggle, the kind and strength controls, then the original and the changed file side
    by side: decision, P(fake) and the heatmap of one class (`target`; 'both' shows 'fake',
    'predicted' the original's call, so both maps explain the same class)."""
    if not st.toggle(
        "Try a perturbation",
        key=f"perturb-{item.key}",
        help="Judge this image again after a JPEG re-save, a resize, a blur, noise or a crop, "
        "as the file such a change gives: watch the verdict and the heatmap move.",
    ):
        return
    left, right = st.columns([1, 2])
    name = left.selectbox(
        "Perturbation",
        list(PERTURBATIONS),
        format_func=lambda n: PERTURBATIONS[n].title,
        key=f"perturb-kind-{item.key}",
    )
    kind = PERTURBATIONS[name]
    low, high, step, default = kind.control
    strength = right.slider(kind.title, low, high, default, step, key=f"perturb-{name}-{item.key}")
    strength = round(float(strength), 6)  # 0.35000000000000003 is 0.35
    try:
        original = explain_cached(
            detector, item.data, method, "fake" if target == "both" else target
        )
        explained = original.target  # 'predicted' resolved to the original's call
        with st.spinner(f"Judging the image at {kind.describe(strength)}…"):
            changed = explain_cached(detector, perturbed_file(item.data, name, strength), method,
                                     explained)  # fmt: skip
    except (ImageLoadError, ValueError) as exc:
        st.error(f"Cannot judge {item.name} at {kind.describe(strength)}: {exc}")
        return
    st.caption(compare_verdicts(original.verdict, changed.verdict, kind.describe(strength)))
    for column, title, explanation in zip(
        st.columns(2), ("As uploaded", kind.describe(strength)), (original, changed), strict=True
    ):
        verdict = explanation.verdict
        column.metric(
            title,
            DECISION_NAMES[verdict.decision],
            f"P(fake) = {verdict.prob_fake:.3f}",
            delta_color="off",
            delta_arrow="off",
        )
        overlay = overlay_heatmap(explanation.view, explanation.heatmap, opacity=opacity)
        column.image(
            enlarge(overlay),
            caption=f"{title}: {method}, regions pushing towards '{explained}'",
            width=VIEW_SIZE,
        )
        column.caption(explanation.describe_faithfulness())
        if verdict.reasons:
            colour = DECISION_COLOURS[verdict.decision]
            column.markdown("\n".join(f"- :{colour}[{reason}]" for reason in verdict.reasons))
