"""Streamlit pages: one module per page, each a function. Only this package and
streamlit_app.py import streamlit."""
