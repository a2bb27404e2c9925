"""Model card: what the selected checkpoint is, how well it does, where not to trust it."""

from __future__ import annotations

import streamlit as st

from forensics.ui.common import selected_detector

CARD_FILE = "MODEL_CARD.md"


def model_card_page() -> None:
    st.title("Model card")
    detector = selected_detector()
    if detector is None:
        return
    meta = detector.metadata
    cols = st.columns(4)
    cols[0].metric("Architecture", meta["architecture"])
    cols[1].metric("Input", f"{detector.data_config.input_size} px")
    cols[2].metric("Threshold", f"{detector.threshold:.2f}")
    test = meta.get("metrics", {}).get("test", {})
    cols[3].metric("Test accuracy", f"{test['accuracy']:.1%}" if "accuracy" in test else "n/a")
    st.caption(f"Checkpoint {detector.checkpoint_dir} · weights id {detector.checkpoint_id}")
    card = detector.checkpoint_dir / CARD_FILE
    if card.is_file():
        st.markdown(card.read_text(encoding="utf-8"))
    else:
        st.info(f"This checkpoint has no {CARD_FILE}; its metadata follows.")
    with st.expander("Full metadata (model.json)"):
        st.json(meta)
