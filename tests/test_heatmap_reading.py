"""The plain-language reading of a heatmap: border versus centre, and the hottest region."""

from __future__ import annotations

import numpy as np
import pytest

from forensics.explain import describe_heatmap, read_heatmap


def test_uniform_map_matches_the_areas() -> None:
    reading = read_heatmap(np.ones((32, 32)))
    assert reading["border_share"] == pytest.approx(reading["border_area"])
    assert reading["centre_share"] == pytest.approx(reading["centre_area"]) == pytest.approx(0.25)
    assert reading["border_area"] == pytest.approx(1 - (24 / 32) ** 2)


def test_hot_corner_is_named_and_flagged_as_border() -> None:
    heat = np.zeros((32, 32))
    heat[:4, 28:] = 1.0  # top right corner, inside the border ring
    reading = read_heatmap(heat)
    assert reading["hottest"] == "top right"
    assert reading["border_share"] == pytest.approx(1.0)
    assert reading["centre_share"] == 0.0
    text = describe_heatmap(reading, "fake")
    assert "100% of the 'fake' attribution lies on the image border" in text
    assert "leans on the border" in text


def test_centred_blob_reads_as_centre() -> None:
    heat = np.zeros((32, 32))
    heat[12:20, 12:20] = 1.0
    reading = read_heatmap(heat)
    assert reading["hottest"] == "centre"
    assert reading["centre_share"] == pytest.approx(1.0)
    assert "leans on the border" not in describe_heatmap(reading, "real")


def test_flat_zero_map_says_nothing() -> None:
    reading = read_heatmap(np.zeros((32, 32)))
    assert reading["hottest"] == "none"
    assert "flat" in describe_heatmap(reading, "fake")
