"""The benchmark command: a quick run writes every section's figures, its table and JSON, and
reports each target as met or missed (figures are not asserted: they depend on the machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.bench import main
from benchmarks.bench_report import TARGETS, render_report, summarize_targets


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench")
    assert main(["--quick", "--out", str(out)]) == 0
    return out, (out / "bench.md").read_text(encoding="utf-8")


def test_quick_run_measures_every_section(quick_run) -> None:
    out, _ = quick_run
    results = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert results["machine"]["matmul_peak_gflops"] > 0
    engines = {row["engine"] for row in results["inference"]}
    assert engines == {"eager", "fast", "onnxruntime"}
    for row in results["inference"]:
        assert row["images_per_s"] > 0 and row["share_of_peak"] > 0
        assert row["max_prob_diff"] <= 1e-4  # every engine keeps the eager probabilities
    assert {row["method"] for row in results["cam"]} >= {"gradcam", "eigencam"}
    assert all(row["over_forward"] > 0 for row in results["cam"])
    detector = results["detector"]
    assert 0 < detector["warm_verdict_s"] <= detector["warm_heatmap_s"] + 1.0
    assert detector["warm_decision_s"] > 0
    assert detector["cold_start_s"] == pytest.approx(
        detector["import_s"] + detector["load_s"] + detector["first_verdict_s"]
    )
    assert results["evaluation"][0]["images"] == 64
    assert results["training"]["images_per_s"] > 0
    assert results["agreement"] == []  # no --data given


def test_report_has_a_table_per_section_and_every_target(quick_run) -> None:
    out, report = quick_run
    for heading in ("## Inference", "## CAM latency", "## Through the Detector",
                    "## Evaluation over a folder", "## Training", "## Targets"):  # fmt: skip
        assert heading in report
    results = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert render_report(results) == report
    measured = {row["target"] for row in results["targets"]}
    assert measured == set(TARGETS)


def test_targets_are_judged_in_the_right_direction() -> None:
    results = {
        "inference": [
            {"engine": "fast", "vs_onnxruntime": 1.2, "model": "m", "batch": 1},
            {"engine": "fast", "vs_onnxruntime": 0.8, "model": "m", "batch": 8},
            {"engine": "eager", "vs_onnxruntime": 0.5, "model": "m", "batch": 1},
        ],
        "cam": [{"method": "gradcam", "over_forward": 4.0, "model": "m", "batch": 1}],
        "detector": {
            "warm_verdict_s": 0.1,
            "warm_decision_s": 0.4,
            "warm_heatmap_s": 0.7,
            "cold_start_s": 4.0,
        },
        "evaluation": [
            {"over_model": 0.7, "images": 10, "workers": 0},
            {"over_model": 0.9, "images": 10, "workers": 1},
        ],
    }
    judged = [(row["target"], row["met"]) for row in summarize_targets(results)]
    assert judged == [
        ("fast_vs_onnxruntime", True),
        ("fast_vs_onnxruntime", False),
        ("gradcam_over_forward", False),
        ("warm_verdict_s", True),
        ("warm_decision_s", False),
        ("warm_heatmap_s", False),
        ("cold_start_s", True),
        ("evaluation_over_model", True),  # the best worker count is the one reported
    ]


@pytest.mark.integration
def test_fast_engine_verdicts_equal_the_baseline_on_the_shared_faces(tmp_path: Path) -> None:
    """On the faces (CIFAKE's 89,080 files would need a 2-minute scan in every fresh cache:
    `python -m benchmarks.bench --data ../shared/data` checks its whole test split)."""
    import os

    from benchmarks.bench import bench_agreement

    root = os.environ.get("FORENSICS_DATA_ROOT")
    if not root or not (Path(root) / "faces").is_dir():
        pytest.skip("FORENSICS_DATA_ROOT has no faces/ (.ci/run sets it)")
    (tmp_path / "faces").symlink_to(Path(root, "faces").resolve())
    rows = bench_agreement(tmp_path, log=lambda _: None, limit=600)
    assert [(r["checkpoint"], r["data"], r["images"]) for r in rows] == [
        ("default", "faces all", 600), ("faces", "faces test", 180)
    ]  # fmt: skip
    for row in rows:
        assert row["verdicts_differ"] == 0, row
        assert row["max_prob_diff"] < 1e-4, row
