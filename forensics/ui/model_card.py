"""Model card: what the selected checkpoint is, how well it does, where not to trust it."""

from __future__ import annotations

import streamlit as st

from forensics.card import CARD_FILE
from forensics.checkpoint import architecture_name
from forensics.ui.common import selected_detector

READING_A_VERDICT = """
**What a verdict means.** P(fake) is the model's estimate that the image was generated rather
than photographed, learned from the training data named in the card below. "AI-generated"
means P(fake) reached the threshold; it is a statistical score, not proof, and it is only as
good as the match between your image and that training data.

**What a heatmap means.** Grad-CAM and its relatives show which regions raised the score for
one class. They explain the model, not the image: a sharp, confident heatmap on a wrong verdict
is still wrong, and a map that sits on borders or backgrounds says the model reacts to
something other than the content.

**Do not trust a verdict** on images from generators or cameras the model never saw, on images
resized, re-compressed, cropped or screenshotted after the fact, or as sole evidence about a
real person or event. The card says which images this checkpoint was built for.
"""


def model_card_page() -> None:
    st.title("Model card")
    detector = selected_detector()
    if detector is None:
        return
    meta = detector.metadata
    cols = st.columns(4)
    cols[0].metric("Architecture", architecture_name(meta))
    cols[1].metric("Input", f"{detector.data_config.input_size} px")
    cols[2].metric("Threshold", f"{detector.threshold:.2f}")
    test = meta.get("metrics", {}).get("test", {})
    cols[3].metric("Test accuracy", f"{test['accuracy']:.1%}" if "accuracy" in test else "n/a")
    st.caption(f"Checkpoint {detector.checkpoint_dir} · weights id {detector.checkpoint_id}")
    with st.container(border=True):
        st.markdown(READING_A_VERDICT)
    card = detector.checkpoint_dir / CARD_FILE
    if card.is_file():
        st.markdown(card.read_text(encoding="utf-8"))
    else:
        st.info(f"This checkpoint has no {CARD_FILE}; its metadata follows.")
    with st.expander("Full metadata (model.json)"):
        st.json(meta)
