"""The decision card: what a verdict is worth, drawn the same way wherever one is shown."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from forensics.detector import Verdict
from forensics.plots import plot_probability
from forensics.verdicts import DECISION_NAMES

# An unsure decision is drawn in a neutral colour: it is not a softer "fake" or "real".
DECISION_COLOURS = {"fake": "red", "real": "green", "unsure": "gray"}


def draw_decision(verdict: Verdict, *, key: str, threshold_override: float | None = None) -> None:
    """The decision in large type with its reasons, the probability smaller beneath, the model
    used, and (on request) the applicability and stability results."""
    left, right = st.columns([1, 2])
    below = (
        "not a verdict: see the reasons"
        if verdict.decision == "unsure"
        else f"P(fake) = {verdict.prob_fake:.3f}"
    )
    left.metric("Decision", DECISION_NAMES[verdict.decision], below, delta_color="off",
                delta_arrow="off")  # fmt: skip
    colour = DECISION_COLOURS[verdict.decision]
    if verdict.reasons:
        left.markdown("\n".join(f"- :{colour}[{reason}]" for reason in verdict.reasons))
    right.plotly_chart(
        plot_probability(verdict.prob_fake, verdict.threshold, unsure=verdict.decision == "unsure"),
        width="stretch",
        key=f"probability-{key}",  # the same file uploaded twice draws the same chart
    )
    right.caption(
        f"P(fake) = {verdict.prob_fake:.3f} (calibrated; the model's own softmax said "
        f"{verdict.prob_fake_raw:.3f}); thresholded at {verdict.threshold:.2f} the call would be "
        f"'{verdict.label}'. {describe_model(verdict)}"
    )
    if threshold_override is not None and threshold_override != verdict.threshold:
        call = "fake" if verdict.prob_fake >= threshold_override else "real"
        right.caption(
            f"At the sidebar's threshold {threshold_override:.2f} the call would be '{call}' "
            "(the decision above uses the checkpoint's own threshold and checks)."
        )
    with st.expander("Applicability and stability checks"):
        draw_checks(verdict)


def describe_model(verdict: Verdict) -> str:
    model = f"Model: {verdict.checkpoint or 'unnamed'} ({verdict.checkpoint_id})"
    if verdict.routing == "chosen":
        return f"{model}, chosen automatically: its training domain fits this image."
    if verdict.routing == "nearest":
        return f"{model}: the nearest shipped model; none covers this kind of image."
    return f"{model}."


def draw_checks(verdict: Verdict) -> None:
    if verdict.feature_distance is None:
        st.write("This checkpoint has no description of its training data to check against.")
    else:
        st.write(f"Feature distance to the training data: {verdict.feature_distance:.1f}.")
    if not verdict.perturbed:
        st.write("The stability check did not run for this verdict.")
        return
    rows = [("as uploaded", verdict.prob_fake), *verdict.perturbed.items()]
    st.caption("P(fake) (calibrated) under changes an image undergoes anyway:")
    st.dataframe(
        pd.DataFrame(rows, columns=["image", "P(fake)"]).round(4),
        hide_index=True,
    )
