"""The robustness sweep (forensics.robustness, python -m forensics robustness) on a tiny dataset:
its clean row is `evaluate`, a resumed sweep is the uninterrupted one, bad arguments exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from forensics import robustness
from forensics.cli import main as cli_main
from forensics.detector import load_detector
from forensics.evaluation import read_evaluation
from forensics.plots import plot_robustness
from forensics.robustness import (
    COLUMNS,
    IncompleteSweepError,
    Setting,
    parse_settings,
    read_sweep,
    run_sweep,
    select_rows,
)
from forensics.scan import load_or_build_manifest

JUDGE = robustness.judge_setting
SOME = ["jpeg=90,70", "blur=1", "noise=5"]  # four settings besides clean: a short sweep


def record_judgements(monkeypatch: pytest.MonkeyPatch, *, kill_after: int | None = None):
    """The folders of the settings judged from now on (not read back from a part); with
    `kill_after`, a KeyboardInterrupt (as a kill) when the next setting would start."""
    judged: list[str] = []

    def recorded(detector, root, rows, setting, **options):
        if kill_after is not None and len(judged) == kill_after:
            raise KeyboardInterrupt
        judged.append(setting.folder)
        return JUDGE(detector, root, rows, setting, **options)

    monkeypatch.setattr(robustness, "judge_setting", recorded)
    return judged


def sweep(detector, root, rows, out, settings):
    return run_sweep(detector, root, rows, out, settings=settings, progress=False)


def test_settings_parse_names_and_strengths_clean_first() -> None:
    settings = parse_settings(["jpeg=90,70", "blur"])
    assert settings[0] == Setting("clean")
    assert settings[1:3] == [Setting("jpeg", 90.0), Setting("jpeg", 70.0)]
    assert [s.strength for s in settings[3:]] == [0.5, 1.0, 2.0]
    everything = parse_settings()
    names = {s.perturbation for s in everything}
    assert names == {"clean", "jpeg", "scale", "blur", "noise", "crop"}
    assert len(everything) == 19 and Setting("jpeg", 70.0) in everything
    assert Setting("jpeg", 70.0).folder == "jpeg_70" and Setting("clean").folder == "clean"
    for bad, message in [
        (["sharpen"], "unknown perturbation 'sharpen'"),
        (["jpeg=high"], "numbers separated by commas"),
        (["jpeg=0"], "JPEG quality must be in [1, 100]"),
    ]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[")):
            parse_settings(bad)


def test_select_rows_is_a_seeded_sample_in_manifest_order(tiny_dataset: Path) -> None:
    manifest = load_or_build_manifest(tiny_dataset, progress=False).manifest
    chosen = select_rows(manifest, max_images=5)
    assert len(chosen) == 5 and chosen.equals(select_rows(manifest, max_images=5))
    order = [list(manifest["path"]).index(p) for p in chosen["path"]]
    assert order == sorted(order)
    assert len(select_rows(manifest, max_images=100)) == len(manifest)
    with pytest.raises(ValueError, match="at least 1"):
        select_rows(manifest, max_images=0)


def test_the_clean_row_equals_evaluate_on_the_same_images(
    tiny_dataset: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out, evaluated = tmp_path / "sweep", tmp_path / "eval"
    common = ["--data", str(tiny_dataset), "--checkpoint", str(tiny_checkpoint)]
    assert cli_main(["robustness", *common, "--out", str(out), "--perturbation", "jpeg=70"]) == 0
    assert cli_main(["evaluate", *common, "--out", str(evaluated)]) == 0
    table, record = read_sweep(out)
    assert list(table.columns) == list(COLUMNS)
    assert list(table["perturbation"]) == ["clean", "jpeg"]
    _, metrics = read_evaluation(evaluated)
    clean = table.iloc[0]
    assert clean["n"] == metrics["n"] == 16
    assert clean["accuracy"] == metrics["accuracy"]
    assert clean["roc_auc"] == pytest.approx(metrics["roc_auc"], abs=1e-12)
    assert clean["answered"] == metrics["coverage"] and clean["share_flipped"] == 0
    predictions, _ = read_evaluation(out / "parts" / "clean")
    expected, _ = read_evaluation(evaluated)
    pd.testing.assert_series_equal(predictions["prob_fake"], expected["prob_fake"])
    assert record["command"].startswith("python -m forensics robustness --data ")
    assert (out / "robustness.html").read_text(encoding="utf-8").count("<html") == 1


def test_a_resumed_sweep_equals_an_uninterrupted_one(
    tiny_dataset: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    detector = load_detector(tiny_checkpoint)
    rows = select_rows(load_or_build_manifest(tiny_dataset, progress=False).manifest)
    settings = parse_settings(SOME)
    whole = sweep(detector, tiny_dataset, rows, tmp_path / "whole", settings)
    record_judgements(monkeypatch, kill_after=2)
    with pytest.raises(KeyboardInterrupt):
        sweep(detector, tiny_dataset, rows, tmp_path / "resumed", settings)
    assert not (tmp_path / "resumed" / "robustness.csv").exists()
    judged = record_judgements(monkeypatch)
    resumed = sweep(detector, tiny_dataset, rows, tmp_path / "resumed", settings)
    assert judged == ["jpeg_70", "blur_1", "noise_5"]  # the two finished settings were kept
    pd.testing.assert_frame_equal(resumed, whole)
    assert read_sweep(tmp_path / "resumed")[0].equals(read_sweep(tmp_path / "whole")[0])


def test_parts_of_another_checkpoint_or_other_images_are_judged_again(
    tiny_dataset: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    detector = load_detector(tiny_checkpoint)
    rows = select_rows(load_or_build_manifest(tiny_dataset, progress=False).manifest)
    settings = parse_settings(["jpeg=70"])
    sweep(detector, tiny_dataset, rows, tmp_path, settings)
    judged = record_judgements(monkeypatch)
    summary = sweep(detector, tiny_dataset, rows.iloc[:6], tmp_path, settings)
    assert judged == ["clean", "jpeg_70"] and list(summary["n"]) == [6, 6]
    metrics = json.loads((tmp_path / "parts" / "clean" / "metrics.json").read_text())
    metrics["trust_id"] = "another"
    (tmp_path / "parts" / "clean" / "metrics.json").write_text(json.dumps(metrics))
    judged.clear()
    sweep(detector, tiny_dataset, rows.iloc[:6], tmp_path, settings)
    assert judged == ["clean"]


def test_a_summary_that_does_not_match_its_record_is_not_read(
    tiny_dataset: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    with pytest.raises(IncompleteSweepError, match="no finished robustness sweep"):
        read_sweep(tmp_path)
    detector = load_detector(tiny_checkpoint)
    rows = select_rows(load_or_build_manifest(tiny_dataset, progress=False).manifest)
    sweep(detector, tiny_dataset, rows, tmp_path, parse_settings(["blur=1"]))
    with open(tmp_path / "robustness.csv", "a", encoding="utf-8") as handle:
        handle.write("blur,2.0,blur sigma 2 px,16,0.5,0.5,0.0,0.0,,0.0\n")
    with pytest.raises(IncompleteSweepError, match="does not match"):
        read_sweep(tmp_path)


def test_the_cli_bounds_the_sweep_and_refuses_bad_arguments_in_one_line(
    tiny_dataset: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    common = ["robustness", "--data", str(tiny_dataset), "--checkpoint", str(tiny_checkpoint)]
    out = tmp_path / "sweep"
    args = [*common, "--out", str(out), "--max-images", "5", "--perturbation", "crop=0.5"]
    assert cli_main(args) == 0
    assert list(read_sweep(out)[0]["n"]) == [5, 5]
    assert "centre crop 50%: accuracy" in capsys.readouterr().out
    for bad, message in [
        (["--perturbation", "sharpen"], "error: unknown perturbation 'sharpen'; valid: jpeg"),
        (["--perturbation", "jpeg=101"], "error: JPEG quality must be in [1, 100], got 101"),
        (["--perturbation", "scale=0"], "error: rescale factor must be in (0, 8], got 0"),
        (["--max-images", "0"], "error: --max-images must be at least 1, got 0"),
        (["--split", "test"], "has no split folders"),
    ]:
        assert cli_main([*common, "--out", str(tmp_path / "bad"), *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
        assert "Traceback" not in err[0]


def test_the_robustness_figure_has_a_panel_per_perturbation() -> None:
    summary = pd.DataFrame(
        [
            ("clean", None, "clean", 4, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0),
            ("jpeg", 90.0, "JPEG quality 90", 4, 0.75, 0.9, 0.25, 0.5, 1.0, 0.0),
            ("jpeg", 70.0, "JPEG quality 70", 4, 0.5, 0.8, 0.5, 0.25, 1.0, 0.0),
            ("blur", 1.0, "blur sigma 1 px", 4, 0.5, None, 0.5, 0.0, None, 0.0),
        ],
        columns=list(COLUMNS),
    )
    figure = plot_robustness(summary)
    assert [a.text for a in figure.layout.annotations][:2] == ["JPEG quality", "blur sigma (px)"]
    assert len(figure.data) == 2 * 4  # four metrics in each of the two panels
    assert figure.layout.xaxis.autorange == "reversed"  # stronger JPEG to the right
