"""Entry point: `streamlit run streamlit_app.py` (or `make run`). Page config, navigation and
the shared sidebar; the pages live in forensics/ui/."""

import streamlit as st

from forensics.ui.classify import classify_page
from forensics.ui.common import draw_sidebar
from forensics.ui.dataset import dataset_page
from forensics.ui.errors import errors_page
from forensics.ui.evaluation import evaluation_page
from forensics.ui.model_card import model_card_page
from forensics.ui.training_runs import training_runs_page

st.set_page_config(page_title="Image forensics", page_icon=":material/image_search:", layout="wide")
navigation = st.navigation(
    [
        st.Page(classify_page, title="Classify", icon=":material/image_search:", default=True),
        st.Page(
            dataset_page, title="Dataset analysis", icon=":material/dataset:", url_path="dataset"
        ),
        st.Page(
            evaluation_page,
            title="Model evaluation",
            icon=":material/analytics:",
            url_path="evaluation",
        ),
        st.Page(errors_page, title="Error browser", icon=":material/rule:", url_path="errors"),
        st.Page(
            training_runs_page,
            title="Training runs",
            icon=":material/show_chart:",
            url_path="training",
        ),
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
