"""JPEG quality estimation and shortcut detection: ways the classes differ besides content."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from forensics.data import find_shortcuts
from forensics.images import estimate_jpeg_quality
from forensics.scan import build_manifest
from tests.conftest import image_bytes, make_image


@pytest.mark.parametrize("quality", [10, 50, 75, 90, 95])
def test_jpeg_quality_is_recovered(quality: int) -> None:
    data = image_bytes(make_image(1, size=32), "JPEG", quality=quality)
    with Image.open(io.BytesIO(data)) as image:
        assert estimate_jpeg_quality(image) == quality


def test_png_has_no_jpeg_quality() -> None:
    with Image.open(io.BytesIO(image_bytes(make_image(1), "PNG"))) as image:
        assert estimate_jpeg_quality(image) is None


def _manifest(rows: list[tuple[int, str, int, int, float | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["label", "format", "width", "height", "jpeg_quality"])


def test_matched_classes_have_no_shortcut() -> None:
    rows = [(label, "JPEG", 32, 32, 75) for label in (0, 1) for _ in range(10)]
    assert find_shortcuts(_manifest(rows)) == []


def test_format_size_and_quality_shortcuts_are_named() -> None:
    real = [(0, "JPEG", 256, 256, 90)] * 10
    fake = [(1, "PNG", 512, 512, None)] * 8 + [(1, "JPEG", 512, 512, 70)] * 2
    found = find_shortcuts(_manifest(real + fake))
    assert any(s.startswith("File format differs") for s in found), found
    assert any(s.startswith("Image size differs") for s in found), found
    assert any(s.startswith("JPEG quality differs") and "90" in s and "70" in s for s in found)


def test_manifest_records_jpeg_quality(tmp_path: Path) -> None:
    for label, quality in (("real", 90), ("fake", 60)):
        (tmp_path / label).mkdir()
        for i in range(3):
            (tmp_path / label / f"{i}.jpg").write_bytes(
                image_bytes(make_image(i, fake=label == "fake"), "JPEG", quality=quality)
            )
    manifest = build_manifest(tmp_path, progress=False).manifest
    assert sorted(set(manifest["jpeg_quality"])) == [60, 90]
    assert any("JPEG quality differs" in s for s in find_shortcuts(manifest))
