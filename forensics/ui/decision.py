"""The decision card: what a verdict is worth, drawn the same way wherever one is shown."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from forensics.detector import Verdict
from forensics.plots import plot_probability
from forensics.verdicts import DECIDER_NAMES, DECISION_NAMES

# An unsure decision is drawn in a neutral colour: it is not a softer "fake" or "real".
DECISION_COLOURS = {"fake": "red", "real": "green", "unsure": "gray"}
# Under the decision, what decided it where evidence did (its reasons say it in full).
DECIDED_BY_SHORT = {"credential": "by its signed credential", "metadata": "by its metadata"}


def draw_decision(verdict: Verdict, *, key: str, threshold_override: float | None = None) -> None:
    """The decision in large type with what decided it and its reasons (a credential's signer
    and claim first, where one decided), the model's probability beneath, the model used, and
    (on request) the applicability and stability results."""
    left, right = st.columns([1, 2])
    if verdict.decided_by != "model":
        below = DECIDED_BY_SHORT[verdict.decided_by]
    elif verdict.decision == "unsure":
        below = "not a verdict: see the reasons"
    else:
        below = f"P(fake) = {verdict.prob_fake:.3f}"
    left.metric("Decision", verdict.decision_name, below, delta_color="off",
                delta_arrow="off")  # fmt: skip
    colour = DECISION_COLOURS[verdict.decision]
    if verdict.reasons:
        left.markdown(
            "\n".join(f"- :{colour}[{plain_markdown(reason)}]" for reason in verdict.reasons)
        )
    if verdict.provenance:
        left.caption(f"Provenance: {plain_markdown(verdict.provenance)}")
    right.plotly_chart(
        plot_probability(
            verdict.prob_fake, verdict.threshold, unsure=verdict.model_decision == "unsure"
        ),
        width="stretch",
        key=f"probability-{key}",  # the same file uploaded twice draws the same chart
    )
    own = ""
    if verdict.decided_by != "model":
        own = (
            f"Decided by {DECIDER_NAMES[verdict.decided_by]}. The model's own decision, beside "
            f"it: {DECISION_NAMES[verdict.model_decision]}. "
        )
    right.caption(
        f"{own}P(fake) = {verdict.prob_fake:.3f} (calibrated; the model's own softmax said "
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


def plain_markdown(text: str) -> str:
    """Text as literal Markdown: reasons and evidence quote a stranger's metadata (a signer's or
    a generator's name), which must not add links, images or formatting to the page."""
    return "".join(f"\\{c}" if c in "\\`*_{}[]()<>#+-.!|~$" else c for c in text)


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
