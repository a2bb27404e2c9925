"""Entry point: `streamlit run streamlit_app.py` (or `make run`). Page config, navigation and
the shared sidebar; the pages live in forensics/ui/."""

import streamlit as st

from forensics.ui.classify import classify_page
from forensics.ui.common import draw_sidebar
from forensics.ui.model_card import model_card_page

st.set_page_config(page_title="Image forensics", page_icon=":material/image_search:", layout="wide")
navigation = st.navigation(
    [
        st.Page(classify_page, title="Classify", icon=":material/image_search:", default=True),
        st.Page(
            model_card_page,
            title="Model card",
            icon=":material/description:",
            url_path="model-card",
        ),
    ]
)
draw_sidebar()
navigation.run()
