"""forensics.scan: the process pool gives the same manifest as one process, bad files are still
skipped with their reasons, a scan stopped midway leaves no cache, and inspect_image reports
what load_image would give."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import forensics.scan as scan
from forensics.images import ImageLoadError, inspect_image, load_image
from tests.conftest import image_bytes, make_image, write_dataset


@pytest.fixture
def mixed_dataset(tmp_path: Path) -> Path:
    """Splits, JPEGs at several qualities, PNGs, a zip, and files the scan must skip."""
    root = write_dataset(tmp_path / "data", per_class=6, size=24, splits=("train", "test"))
    for quality in (40, 75, 95):
        make_image(quality, size=20, fake=True).save(
            root / "train" / "fake" / f"q{quality}.jpg", quality=quality
        )
    good = image_bytes(make_image(7, size=16), "JPEG")
    (root / "test" / "real" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "test" / "fake" / "empty.png").write_bytes(b"")
    (root / "train" / "notes").mkdir()
    (root / "train" / "notes" / "unlabelled.png").write_bytes(image_bytes(make_image(8), "PNG"))
    with zipfile.ZipFile(root / "extra.zip", "w") as archive:
        for i in range(5):
            archive.writestr(f"test/REAL/{i}.jpg", image_bytes(make_image(100 + i), "JPEG"))
        archive.writestr("test/FAKE/text.jpg", b"not an image at all")
    return root


def test_the_pool_gives_the_same_scan_as_one_process(mixed_dataset: Path) -> None:
    one = scan.build_manifest(mixed_dataset, progress=False, workers=1)
    pooled = scan.build_manifest(mixed_dataset, progress=False, workers=2)
    pd.testing.assert_frame_equal(one.manifest, pooled.manifest)
    pd.testing.assert_frame_equal(one.skipped, pooled.skipped)
    assert len(one.manifest) == 6 * 2 * 2 + 3 + 5
    reasons = dict(zip(pooled.skipped["path"], pooled.skipped["reason"], strict=True))
    assert "truncated" in reasons["test/real/truncated.jpg"]
    assert "empty" in reasons["test/fake/empty.png"]
    assert "not a recognised image" in reasons["extra.zip/test/FAKE/text.jpg"]
    assert "real/fake" in reasons["train/notes/unlabelled.png"]
    qualities = pooled.manifest.set_index("path")["jpeg_quality"]
    assert [qualities[f"train/fake/q{q}.jpg"] for q in (40, 75, 95)] == [40, 75, 95]


def test_a_large_root_is_scanned_by_a_pool_with_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan, "PARALLEL_MIN_FILES", 10)
    monkeypatch.setattr(scan, "CHUNK_FILES", 4)
    root = write_dataset(tmp_path / "data", per_class=15, size=16)
    started = []
    real_pool = scan.ProcessPoolExecutor
    monkeypatch.setattr(
        scan, "ProcessPoolExecutor", lambda **kw: started.append(kw) or real_pool(**kw)
    )
    calls = []
    discovery = scan.build_manifest(
        root, progress=False, progress_callback=lambda d, t: calls.append((d, t))
    )
    assert started and started[0]["max_workers"] >= 1
    assert len(discovery.manifest) == 30
    assert calls[0] == (0, 30) and calls[-1] == (30, 30)
    assert len(calls) > 3  # one call per task, so the bar moves during the scan
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_a_small_root_is_scanned_without_a_pool(tiny_dataset: Path, monkeypatch) -> None:
    monkeypatch.setattr(scan, "ProcessPoolExecutor", lambda **kw: pytest.fail("pool started"))
    assert len(scan.build_manifest(tiny_dataset, progress=False).manifest) == 16


def test_workers_must_be_positive(tiny_dataset: Path) -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        scan.build_manifest(tiny_dataset, progress=False, workers=0)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_scan_stopped_midway_leaves_no_cache(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setattr(scan, "CHUNK_FILES", 4)
    real_scan = scan.scan_files

    def stop_on_fakes(store, paths):  # the forked workers inherit this patch
        if any(p.startswith("fake/") for p in paths):
            raise KeyboardInterrupt
        return real_scan(store, paths)

    monkeypatch.setattr(scan, "scan_files", stop_on_fakes)
    monkeypatch.setattr(scan, "_worker_count", lambda requested, files: workers)
    with pytest.raises(KeyboardInterrupt):
        scan.load_or_build_manifest(tiny_dataset, cache_dir=cache, progress=False)
    folder = scan.manifest_cache_folder(tiny_dataset, cache)
    with pytest.raises(FileNotFoundError):
        scan.read_cached_manifest(folder)
    monkeypatch.setattr(scan, "scan_files", real_scan)
    assert len(scan.load_or_build_manifest(tiny_dataset, cache_dir=cache).manifest) == 16
    assert len(scan.read_cached_manifest(folder).manifest) == 16


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_inspect_image_reports_the_size_load_image_gives(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = image_bytes(make_image(3, size=16).resize((40, 24)), "JPEG", exif=exif.tobytes())
    info = inspect_image(data)
    assert (info.width, info.height) == load_image(data).size
    assert info.format == "JPEG" and 1 <= info.jpeg_quality <= 100


def test_inspect_image_needs_the_file_not_pixels() -> None:
    with pytest.raises(ImageLoadError, match="needs the file"):
        inspect_image(make_image(1))
    assert inspect_image(image_bytes(make_image(1), "PNG")).jpeg_quality is None


def test_the_scan_benchmark_reports_both_rates_and_the_ratio(
    mixed_dataset: Path, tmp_path: Path, capsys
) -> None:
    import json

    from benchmarks.scan import main

    assert main(["--data", str(mixed_dataset), "--files", "12", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "scan_bench.json").read_text())
    assert result["files"] == 12 and len(result["files_per_s"]) == 3
    assert all(rate > 0 for rate in result["files_per_s"].values())
    plain = result["files_per_s"]["plain loop (read + sha256 + decode)"]
    assert result["ratio"] == pytest.approx(result["files_per_s"]["build_manifest"] / plain)
    assert result["whole_dataset"]["images"] == 32  # every readable image under real/fake
    assert "Target: build_manifest >= 1.0x the plain loop" in capsys.readouterr().out
