"""load_or_build_manifest: a second scan of an unchanged dataset comes from the disk cache."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import forensics.scan as data
from forensics.data import dataset_fingerprint
from tests.conftest import make_image


def test_second_scan_is_served_from_cache(tiny_dataset: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    first = data.load_or_build_manifest(tiny_dataset, cache_dir=cache, progress=False)

    def no_scan(*args, **kwargs):
        raise AssertionError("scanned again although nothing changed")

    monkeypatch.setattr(data, "build_manifest", no_scan)
    second = data.load_or_build_manifest(tiny_dataset, cache_dir=cache, progress=False)
    pd.testing.assert_frame_equal(first.manifest, second.manifest, check_dtype=False)
    assert second.manifest["split"].isna().all()  # "no split" survives the round trip
    assert dataset_fingerprint(first.manifest) == dataset_fingerprint(second.manifest)


def test_a_changed_dataset_is_scanned_again(tiny_dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = data.load_or_build_manifest(tiny_dataset, cache_dir=cache, progress=False)
    make_image(999, fake=True).save(tiny_dataset / "fake" / "new.png")
    second = data.load_or_build_manifest(tiny_dataset, cache_dir=cache, progress=False)
    assert len(second.manifest) == len(first.manifest) + 1


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        data.load_or_build_manifest(tmp_path / "nowhere", cache_dir=tmp_path)


def test_the_same_folder_by_another_path_shares_the_cache(
    tiny_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    cache = tmp_path / "cache"
    data.load_or_build_manifest(tiny_dataset, cache_dir=cache, progress=False)
    monkeypatch.chdir(tiny_dataset.parent)
    monkeypatch.setattr(data, "build_manifest", lambda *a, **k: pytest.fail("scanned again"))
    relative = Path("..") / tiny_dataset.parent.name / tiny_dataset.name
    assert len(data.load_or_build_manifest(relative, cache_dir=cache, progress=False).manifest)


def test_cache_folder_follows_the_data_and_is_empty_until_scanned(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    folder = data.manifest_cache_folder(tiny_dataset, cache)
    with pytest.raises(FileNotFoundError):
        data.read_cached_manifest(folder)
    scanned = data.load_or_build_manifest(tiny_dataset, cache_dir=cache, progress=False)
    pd.testing.assert_frame_equal(
        data.read_cached_manifest(folder).manifest, scanned.manifest, check_dtype=False
    )
    next((tiny_dataset / "real").iterdir()).touch()
    assert data.manifest_cache_folder(tiny_dataset, cache) != folder  # a rewritten file: new key
