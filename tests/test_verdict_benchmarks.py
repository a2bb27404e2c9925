"""The honest-verdicts measurements (benchmarks.routing and benchmarks.lookalikes): their image
making and their tables, on tiny inputs (the runs themselves need the shared data)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from benchmarks import lookalikes, routing
from forensics.images import inspect_image
from tests.conftest import image_bytes, make_image


def test_lookalikes_take_the_training_size_and_quality() -> None:
    photo = image_bytes(make_image(1, size=64).resize((640, 480)), "JPEG", quality=95)
    for _, _, make in lookalikes.CASES["default"]:
        info = inspect_image(lookalikes.lookalike(photo, make, lookalikes.QUALITY["default"]))
        assert (info.width, info.height, info.jpeg_quality) == (32, 32, 75)
    _, (_, how, crop) = lookalikes.CASES["faces"]
    assert "not resampled" in how
    cropped = lookalikes.lookalike(photo, crop, lookalikes.QUALITY["faces"])
    assert inspect_image(cropped).width == 256
    with Image.open(io.BytesIO(cropped)) as image, Image.open(io.BytesIO(photo)) as original:
        # The centre of the photograph, pixel for pixel (up to the JPEG round trip).
        centre = np.asarray(original.convert("L").crop((192, 112, 448, 368)), dtype=float)
        assert np.abs(np.asarray(image.convert("L"), dtype=float) - centre).mean() < 12


def test_photos_lookalikes_keep_large_images_and_enlarge_tiny_ones_to_its_quality() -> None:
    (_, keep_how, keep), (_, grow_how, grow) = lookalikes.CASES["photos"]
    face = image_bytes(make_image(2, size=256), "JPEG", quality=75)
    kept = inspect_image(lookalikes.lookalike(face, keep, lookalikes.QUALITY["photos"]))
    assert (kept.width, kept.height, kept.jpeg_quality) == (256, 256, 95)
    assert "not resampled" in keep_how
    tiny = image_bytes(make_image(3, size=32), "PNG")
    grown = inspect_image(lookalikes.lookalike(tiny, grow, lookalikes.QUALITY["photos"]))
    assert (grown.width, grown.height, grown.jpeg_quality) == (512, 512, 95)
    assert "512x512" in grow_how


def test_a_rerun_of_one_model_replaces_only_its_rows() -> None:
    row = lambda model, source, n: {"checkpoint": model, "source": source, "images": n}  # noqa: E731
    previous = [row("default", "faces", 1), row("faces", "cifake", 1), row("photos", "faces", 1)]
    rerun = [row("faces", "cifake", 2), row("faces", "sdcoco", 2)]
    assert lookalikes.merged(previous, rerun) == [
        row("default", "faces", 1), row("faces", "cifake", 2), row("faces", "sdcoco", 2),
        row("photos", "faces", 1),
    ]  # fmt: skip
    assert lookalikes.merged([], rerun) == rerun


def test_the_tables_report_each_row_and_judge_the_routing_target() -> None:
    row = {"source": "cifake", "images": 10, "expected": "default", "right_model": 0.9,
           "chosen": {"default": 0.9, "none": 0.1}, "coverage": 0.5, "selective_accuracy": 1.0,
           "confident_wrong_rate": 0.0}  # fmt: skip
    table = routing.render([row])
    assert "| cifake | 10 | default | 90.0% | default 90.0%, none 10.0% | 50.0% |" in table
    assert table.endswith("MISSED.")
    assert routing.render([{**row, "right_model": 0.96}]).endswith("met.")
    looks = lookalikes.render([{"checkpoint": "faces", "source": "sdcoco", "images": 3,
                                "made_like_training": "crop", "call_accuracy": 2 / 3,
                                "feature_gate": 0.0,
                                "coverage": 1 / 3, "selective_accuracy": None,
                                "confident_wrong_rate": 1 / 3}])  # fmt: skip
    assert "| faces | sdcoco | crop | 3 | 66.7% | 0.0% | 33.3% | n/a | 33.3% |" in looks


def test_the_shortcut_check_judges_the_same_images_three_ways(
    tiny_dataset, tiny_checkpoint, tmp_path, capsys
) -> None:
    import json

    from benchmarks import shortcut

    argv = ["--checkpoint", str(tiny_checkpoint), "--data", str(tiny_dataset), "--split", "all",
            "--out", str(tmp_path)]  # fmt: skip
    assert shortcut.main(argv) == 0
    results = json.loads((tmp_path / "shortcut.json").read_text())
    assert [r["images"] for r in results] == list(shortcut.CHANGES)
    assert all(r["n"] == 16 and 0 <= r["accuracy"] <= 1 for r in results)
    assert "| as the files are | 16 |" in capsys.readouterr().out
    # Its resampling row is the round trip the cross-source table's control column uses too.
    resampled = shortcut.CHANGES["every image resampled (x0.875 and back, Lanczos)"]
    image = make_image(3, size=40)
    assert resampled(image).size == image.size
    assert np.abs(np.asarray(resampled(image), float) - np.asarray(image, float)).mean() > 1


def test_the_photo_benchmark_measures_a_patch_model(tmp_path) -> None:
    import torch

    from benchmarks import photo_verdict
    from forensics.checkpoint import save_checkpoint
    from forensics.models import build_model

    data = photo_verdict.synthetic_photograph(0.3)
    info = inspect_image(data)
    assert (info.width, info.height, info.format) == (632, 474, "JPEG")
    torch.manual_seed(0)
    meta = {"architecture": "simple_cnn", "data": {"input_size": 32, "resize": 32},
            "patches": {"size": 64, "max_patches": 12}}  # fmt: skip
    checkpoint = save_checkpoint(tmp_path / "p", build_model("simple_cnn"), meta)
    (row,) = photo_verdict.run(checkpoint, [0.3], repeats=1)
    assert row["image"] == "632x474" and row["patches"] == 12
    assert row["verdict_and_map_s"] > 0 and row["without_stability_s"] > 0
    table = photo_verdict.markdown([row])
    assert "| 632x474 | 0.3 |" in table and "| 12 |" in table
    whole = save_checkpoint(tmp_path / "w", build_model("simple_cnn"), {**meta, "patches": None})
    with pytest.raises(ValueError, match="whole views"):
        photo_verdict.run(whole, [0.3], repeats=1)


def test_the_explanation_benchmark_times_both_ways_per_checkpoint(tmp_path, capsys) -> None:
    import torch

    from benchmarks import explain_cost
    from forensics.checkpoint import save_checkpoint
    from forensics.models import build_model

    torch.manual_seed(0)
    meta = {"architecture": "simple_cnn", "data": {"input_size": 32, "resize": 32}}
    checkpoint = save_checkpoint(tmp_path / "tiny", build_model("simple_cnn"), meta)
    assert explain_cost.main(["--checkpoint", str(checkpoint), "--repeats", "1"]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[0] == "tiny" and all(cell.endswith(" s") and float(cell[:-2]) > 0
                                      for cell in cells[1:])  # fmt: skip
