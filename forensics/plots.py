"""Plotly figures for the app and reports (no Streamlit import)."""

from __future__ import annotations

import plotly.graph_objects as go

REAL_COLOUR = "#2e7d32"
FAKE_COLOUR = "#c62828"


def plot_probability(prob_fake: float, threshold: float) -> go.Figure:
    """A horizontal bar of prob_fake on [0, 1] with the decision threshold marked."""
    colour = FAKE_COLOUR if prob_fake >= threshold else REAL_COLOUR
    figure = go.Figure(
        go.Bar(
            x=[prob_fake],
            y=["P(fake)"],
            orientation="h",
            marker_color=colour,
            text=[f"{prob_fake:.3f}"],
            textposition="outside",
            hovertemplate="P(fake) = %{x:.4f}<extra></extra>",
        )
    )
    figure.add_vline(
        x=threshold,
        line_dash="dash",
        line_color="black",
        annotation_text=f"threshold {threshold:.2f}",
        annotation_position="top",
    )
    figure.update_layout(
        xaxis={"range": [0, 1.08], "title": "probability the image is AI-generated"},
        height=170,
        margin={"l": 10, "r": 10, "t": 30, "b": 40},
        showlegend=False,
    )
    return figure
