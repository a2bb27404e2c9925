"""Command line: `python -m forensics predict | evaluate`, in-process and once as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_image, write_dataset

from forensics import load_detector
from forensics.cli import main
from forensics.data import assign_splits, save_splits
from forensics.decision import NOTHING_SAID
from forensics.decision import predict as decide
from forensics.scan import build_manifest

REPO_ROOT = Path(__file__).resolve().parent.parent
PREDICTION_COLUMNS = [
    "path",
    "split",
    "label",
    "true",
    "predicted",
    "prob_fake",
    "correct",
    "error",
    "prob_fake_raw",
    "decision",
    "reasons",
    "decided_by",
    "model_decision",
]


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "images"
    folder.mkdir()
    png, jpeg = folder / "a.png", folder / "b.jpg"
    make_image(1, size=40).save(png)
    make_image(2, size=48, fake=True).save(jpeg, quality=90)
    text = folder / "notes.jpg"
    text.write_text("definitely not a picture\nsecond line\n")
    return {"png": png, "jpeg": jpeg, "text": text}


def _one_line(text: str) -> str:
    """The one message line of `text`, ignoring tqdm progress bars (they redraw with \r)."""
    lines = [line for line in text.split("\n") if line.strip() and "\r" not in line]
    assert len(lines) == 1, text
    return lines[0]


# ------------------------------------------------------------------------------- predict


def test_predict_prints_a_verdict_per_image(images, tiny_checkpoint, capsys) -> None:
    code = main(
        ["predict", str(images["png"]), str(images["jpeg"]), "--checkpoint", str(tiny_checkpoint)]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2
    detector = load_detector(tiny_checkpoint)
    for line, path in zip(lines, (images["png"], images["jpeg"]), strict=True):
        verdict = decide(detector, path)  # the model's verdict with the file's evidence weighed
        assert verdict.decided_by == "model" and verdict.reasons[-1] == NOTHING_SAID
        assert line.startswith(f"{path}: {verdict.decision} (model: ")
        assert f"{verdict.prob_fake:.4f}" in line
        assert "threshold 0.50" in line and f"checkpoint {tiny_checkpoint.name}" in line
        more = len(verdict.reasons) - 1  # the decision's first reason, and how many follow
        assert line.endswith(f": {verdict.reasons[0]} (and {more} more: --json lists them)")


def test_predict_json(images, tiny_checkpoint, capsys) -> None:
    code = main(["predict", str(images["png"]), "--checkpoint", str(tiny_checkpoint), "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    record = json.loads(_one_line(out))
    detector = load_detector(tiny_checkpoint)
    verdict = detector.predict(images["png"])
    assert record["path"] == str(images["png"])
    assert record["label"] == verdict.label
    assert record["prob_fake"] == pytest.approx(verdict.prob_fake, abs=1e-6)
    assert record["threshold"] == 0.5
    assert record["checkpoint_id"] == detector.checkpoint_id
    assert len(record["checkpoint_id"]) == 12
    assert record["label"] == ("fake" if record["prob_fake"] >= record["threshold"] else "real")
    # The fields: the decision and its reasons, both probabilities, the model used.
    assert record["decision"] == verdict.decision == "unsure"  # no trust profile: unknown domain
    # The model's reasons, then what the file's metadata said: nothing, so the model decided.
    assert record["reasons"] == [*verdict.reasons, NOTHING_SAID]
    assert record["model_reasons"] == list(verdict.reasons) and verdict.reasons
    assert record["decided_by"] == "model" and record["model_decision"] == "unsure"
    assert record["prob_fake_raw"] == pytest.approx(verdict.prob_fake_raw, abs=1e-6)
    assert record["checkpoint"] == tiny_checkpoint.name


@pytest.mark.parametrize("engine", ["eager", "onnxruntime"])
def test_every_engine_gives_the_default_verdict(images, tiny_checkpoint, engine, capsys) -> None:
    argv = ["predict", str(images["png"]), "--checkpoint", str(tiny_checkpoint), "--json"]
    assert main([*argv, "--engine", engine]) == 0
    record = json.loads(_one_line(capsys.readouterr().out))
    default = load_detector(tiny_checkpoint).predict(images["png"])
    assert record["prob_fake"] == pytest.approx(default.prob_fake, abs=1e-5)
    assert record["label"] == default.label


def test_unknown_engine_from_the_environment_exits_2(
    images, tiny_checkpoint, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("FORENSICS_ENGINE", "tensorrt")
    code = main(["predict", str(images["png"]), "--checkpoint", str(tiny_checkpoint)])
    _, err = capsys.readouterr()
    assert code == 2
    assert _one_line(err).startswith("error: unknown inference engine 'tensorrt'")


def test_predict_unreadable_image_is_one_line_and_exit_1(images, tiny_checkpoint, capsys) -> None:
    code = main(["predict", str(images["text"]), "--checkpoint", str(tiny_checkpoint)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    line = _one_line(err)
    assert line.startswith(f"{images['text']}: error: ")
    assert "Traceback" not in err


def test_predict_reports_good_images_beside_bad_ones(images, tiny_checkpoint, capsys) -> None:
    argv = ["predict", str(images["png"]), str(images["text"]), str(images["jpeg"])]
    code = main([*argv, "--checkpoint", str(tiny_checkpoint)])
    out, err = capsys.readouterr()
    assert code == 1
    assert len(out.strip().splitlines()) == 2
    assert _one_line(err).startswith(f"{images['text']}: error: ")


def test_predict_a_path_that_does_not_exist_exits_2_and_names_it(
    images, tiny_checkpoint, capsys
) -> None:
    missing = images["png"].parent / "missing.png"
    gone = images["png"].parent / "no_such_folder"
    argv = ["predict", str(images["png"]), str(missing), str(images["jpeg"]), str(gone)]
    code = main([*argv, "--checkpoint", str(tiny_checkpoint)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""  # nothing is judged
    line = _one_line(err)
    assert line == f"error: no such file or folder: {missing}, {gone}"


def test_predict_json_with_a_bad_image(images, tiny_checkpoint, capsys) -> None:
    argv = ["predict", str(images["text"]), str(images["png"]), "--json"]
    code = main([*argv, "--checkpoint", str(tiny_checkpoint)])
    out, _ = capsys.readouterr()
    assert code == 1
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert records[0]["path"] == str(images["text"]) and records[0]["error"]
    assert "label" in records[1] and "error" not in records[1]


@pytest.mark.parametrize("kind", ["missing", "empty", "corrupt"])
def test_bad_checkpoint_exits_2_with_one_line(
    images, tmp_path, tiny_checkpoint, kind, capsys
) -> None:
    if kind == "missing":
        checkpoint = tmp_path / "no_such_checkpoint"
    elif kind == "empty":
        checkpoint = tmp_path / "empty"
        checkpoint.mkdir()
    else:
        checkpoint = tiny_checkpoint
        (checkpoint / "model.safetensors").write_bytes(b"\x00" * 100)
    code = main(["predict", str(images["png"]), "--checkpoint", str(checkpoint)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert _one_line(err).startswith("error: ")
    assert "checkpoint" in err


# --------------------------------------------------------------------------- predict FOLDER


def _write_images(folder: Path, names: list[str]) -> list[Path]:
    paths = []
    for seed, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        make_image(seed, size=32, fake=seed % 2 == 1).save(path)
        paths.append(path)
    return paths


def _judged_paths(out: str) -> list[str]:
    return [json.loads(line)["path"] for line in out.strip().splitlines()]


def test_predict_folder_judges_its_images_recursively_in_sorted_order(
    tmp_path, tiny_checkpoint, capsys
) -> None:
    folder = tmp_path / "suspects"
    names = ["z.webp", "sub/deeper/d.jpg", "a.png", "B.JPEG", "sub/c.png"]
    _write_images(folder, names)
    (folder / "notes.txt").write_text("not an image extension")
    _write_images(folder, [".hidden/e.png"])  # hidden folders are skipped, as in discovery
    code = main(["predict", str(folder), "--checkpoint", str(tiny_checkpoint), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    expected = ["B.JPEG", "a.png", "sub/c.png", "sub/deeper/d.jpg", "z.webp"]
    assert _judged_paths(out) == [str(folder / name) for name in expected]
    assert err == ""  # five images: no progress bar
    detector = load_detector(tiny_checkpoint)
    record = json.loads(out.splitlines()[2])
    assert record["prob_fake"] == pytest.approx(
        detector.predict(folder / "sub" / "c.png").prob_fake, abs=1e-6
    )


def test_predict_folder_beside_files_keeps_the_command_line_order(
    images, tmp_path, tiny_checkpoint, capsys
) -> None:
    folder = tmp_path / "more"
    inside = _write_images(folder, ["y.png", "x.png"])
    argv = ["predict", str(images["jpeg"]), str(folder), str(images["png"]), "--json"]
    assert main([*argv, "--checkpoint", str(tiny_checkpoint)]) == 0
    judged = _judged_paths(capsys.readouterr().out)
    assert judged == [str(images["jpeg"]), str(inside[1]), str(inside[0]), str(images["png"])]


def test_predict_folder_never_follows_links_out_of_it(tmp_path, tiny_checkpoint, capsys) -> None:
    folder, outside = tmp_path / "suspects", tmp_path / "elsewhere"
    (inside,) = _write_images(folder, ["real.png"])
    (secret,) = _write_images(outside, ["secret.png"])
    (folder / "to_secret.png").symlink_to(secret)
    (folder / "to_elsewhere").symlink_to(outside, target_is_directory=True)
    (folder / "sub").mkdir()
    (folder / "sub" / "to_real.png").symlink_to(inside)  # a link within the folder is kept
    code = main(["predict", str(folder), "--checkpoint", str(tiny_checkpoint), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert _judged_paths(out) == [str(inside), str(folder / "sub" / "to_real.png")]


def test_predict_folder_with_an_unreadable_image_exits_1(tmp_path, tiny_checkpoint, capsys) -> None:
    folder = tmp_path / "suspects"
    good = _write_images(folder, ["a.png", "c.png"])
    broken = folder / "b.jpg"
    broken.write_text("not a picture")
    code = main(["predict", str(folder), "--checkpoint", str(tiny_checkpoint)])
    out, err = capsys.readouterr()
    assert code == 1
    assert [line.split(": ")[0] for line in out.strip().splitlines()] == [str(p) for p in good]
    assert _one_line(err).startswith(f"{broken}: error: ")


def test_predict_many_images_shows_a_progress_bar_on_stderr_only(
    tmp_path, tiny_checkpoint, capsys
) -> None:
    folder = tmp_path / "suspects"
    paths = _write_images(folder, [f"{i}.png" for i in range(6)])
    code = main(["predict", str(folder), "--checkpoint", str(tiny_checkpoint), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert _judged_paths(out) == [str(p) for p in paths]  # stdout: JSON lines and nothing else
    assert "\r" not in out and "6/6" in err


def test_predict_empty_folder_says_so(tmp_path, tiny_checkpoint, capsys) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.txt").write_text("no pictures here")
    code = main(["predict", str(folder), "--checkpoint", str(tiny_checkpoint)])
    out, err = capsys.readouterr()
    assert code == 0
    assert out == ""
    assert _one_line(err) == f"{folder}: no image files in this folder"


def test_predict_help_documents_folders_and_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["predict", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "image files or folders" in text and ".jpeg" in text and ".webp" in text
    assert "2 a path that does not exist" in text and "1 some files could not be read" in text


def test_argument_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--out", "x"])  # --data is required
    assert info.value.code == 2
    capsys.readouterr()


# ------------------------------------------------------------------------------- evaluate


def _read_outputs(out: Path) -> tuple[pd.DataFrame, dict]:
    metrics = json.loads((out / "metrics.json").read_text())
    table = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    return table, metrics


def test_evaluate_whole_folder(tiny_dataset, tiny_checkpoint, tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    argv = ["evaluate", "--data", str(tiny_dataset), "--split", "all"]
    code = main(
        [*argv, "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--batch-size", "5"]
    )
    stdout, err = capsys.readouterr()
    assert code == 0, err
    table, metrics = _read_outputs(out)
    assert list(table.columns) == PREDICTION_COLUMNS
    assert len(table) == 16 == metrics["n"]
    assert sorted(table["label"].tolist()) == [0] * 8 + [1] * 8
    assert metrics["split"] == "all"
    assert metrics["accuracy"] == pytest.approx(table["correct"].astype(str).eq("True").mean())
    detector = load_detector(tiny_checkpoint)
    assert metrics["checkpoint_id"] == detector.checkpoint_id
    direct = detector.predict_batch([tiny_dataset / p for p in table["path"]])
    assert table["prob_fake"].tolist() == pytest.approx([v.prob_fake for v in direct], abs=1e-5)
    assert table["decision"].tolist() == [v.decision for v in direct]
    assert metrics["coverage"] == 0.0 and metrics["unsure"] == 16  # no trust profile
    assert "16 images" in stdout and "answered 0.0%" in stdout


def test_evaluate_auto_judges_each_image_by_the_model_it_chose(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "eval_auto"
    argv = ["evaluate", "--data", str(tiny_dataset), "--checkpoint", "auto", "--out", str(out)]
    code = main([*argv, "--no-stability"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    table, metrics = _read_outputs(out)
    assert list(table.columns) == [*PREDICTION_COLUMNS, "checkpoint"]
    auto = load_detector("auto")
    direct = auto.predict_batch([tiny_dataset / p for p in table["path"]], stability=False)
    assert table["checkpoint"].tolist() == [v.checkpoint for v in direct]
    assert table["prob_fake"].tolist() == pytest.approx([v.prob_fake for v in direct], abs=1e-5)
    assert table["decision"].tolist() == [v.decision for v in direct]
    assert metrics["routed_to"] == table["checkpoint"].value_counts().to_dict()
    assert (metrics["checkpoint"], metrics["threshold"], metrics["n"]) == ("auto", 0.5, 16)
    assert "16 images" in stdout


def test_evaluate_one_split_of_a_split_dataset(tmp_path, tiny_checkpoint, capsys) -> None:
    data = write_dataset(tmp_path / "split_data", per_class=3, splits=("train", "val", "test"))
    out = tmp_path / "eval"
    argv = [
        "evaluate",
        "--data",
        str(data),
        "--split",
        "test",
        "--checkpoint",
        str(tiny_checkpoint),
    ]
    assert main([*argv, "--out", str(out)]) == 0
    capsys.readouterr()
    table, metrics = _read_outputs(out)
    assert len(table) == 6
    assert set(table["split"]) == {"test"}
    assert all(p.startswith("test/") for p in table["path"])
    assert metrics["split"] == "test"


def test_evaluate_split_without_split_folders_exits_2(
    tiny_dataset, tiny_checkpoint, tmp_path, capsys
) -> None:
    out = tmp_path / "eval"
    argv = [
        "evaluate",
        "--data",
        str(tiny_dataset),
        "--split",
        "test",
        "--checkpoint",
        str(tiny_checkpoint),
    ]
    assert main([*argv, "--out", str(out)]) == 2
    _, err = capsys.readouterr()
    assert _one_line(err).startswith("error: ")
    assert "split" in err
    assert not (out / "metrics.json").exists()


def test_evaluate_unknown_split_name_exits_2(
    tiny_dataset, tiny_checkpoint, tmp_path, capsys
) -> None:
    argv = ["evaluate", "--data", str(tiny_dataset), "--split", "holdout"]
    assert main([*argv, "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "o")]) == 2
    assert "holdout" in _one_line(capsys.readouterr().err)


def test_evaluate_applies_a_saved_split_file(
    tiny_dataset, tiny_checkpoint, tmp_path, capsys
) -> None:
    manifest = assign_splits(
        build_manifest(tiny_dataset, progress=False).manifest, fractions=(0.5, 0.25, 0.25), seed=3
    )
    split_file = tmp_path / "splits.csv"
    save_splits(manifest, split_file)
    expected = sorted(manifest.loc[manifest["split"] == "test", "path"])
    assert expected
    out = tmp_path / "eval"
    argv = ["evaluate", "--data", str(tiny_dataset), "--split", "test", "--splits", str(split_file)]
    assert main([*argv, "--checkpoint", str(tiny_checkpoint), "--out", str(out)]) == 0
    capsys.readouterr()
    table, metrics = _read_outputs(out)
    assert sorted(table["path"]) == expected
    assert set(table["split"]) == {"test"}
    assert metrics["n"] == len(expected)


def test_evaluate_bad_split_file_exits_2(tiny_dataset, tiny_checkpoint, tmp_path, capsys) -> None:
    split_file = tmp_path / "splits.csv"
    split_file.write_text("path,split\nelsewhere/x.png,test\n")
    argv = ["evaluate", "--data", str(tiny_dataset), "--splits", str(split_file)]
    assert main([*argv, "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "o")]) == 2
    assert _one_line(capsys.readouterr().err).startswith("error: ")


@pytest.mark.parametrize("problem", ["missing", "no images", "plain file"])
def test_evaluate_bad_data_folder_exits_2(tiny_checkpoint, tmp_path, problem, capsys) -> None:
    data = tmp_path / "data"
    if problem == "no images":
        data.mkdir()
        (data / "readme.txt").write_text("nothing here")
    elif problem == "plain file":
        data.write_text("not a folder or zip")
    argv = ["evaluate", "--data", str(data), "--checkpoint", str(tiny_checkpoint)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    _, err = capsys.readouterr()
    assert _one_line(err).startswith("error: ")
    assert "Traceback" not in err


def test_evaluate_lists_skipped_files(tiny_dataset, tiny_checkpoint, tmp_path, capsys) -> None:
    (tiny_dataset / "fake" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "eval"
    argv = ["evaluate", "--data", str(tiny_dataset), "--checkpoint", str(tiny_checkpoint)]
    assert main([*argv, "--out", str(out)]) == 0
    _, err = capsys.readouterr()
    assert "skipped 1" in err
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped["path"].tolist() == ["fake/broken.png"]
    assert len(_read_outputs(out)[0]) == 16


# ------------------------------------------------------------------------------- subprocess


def test_python_dash_m_forensics_predict_json(images, tiny_checkpoint) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "forensics",
            "predict",
            str(images["jpeg"]),
            str(images["text"]),
            "--checkpoint",
            str(tiny_checkpoint),
            "--json",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    good, bad = (json.loads(line) for line in result.stdout.strip().splitlines())
    assert good["label"] in ("real", "fake")
    assert 0.0 <= good["prob_fake"] <= 1.0
    assert good["threshold"] == 0.5
    assert good["checkpoint_id"] == load_detector(tiny_checkpoint).checkpoint_id
    assert good["prob_fake"] == pytest.approx(
        load_detector(tiny_checkpoint).predict(images["jpeg"]).prob_fake, abs=1e-6
    )
    assert bad["path"] == str(images["text"]) and bad["error"]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_two_process_evaluate_merges_the_single_process_predictions(
    tmp_path, tiny_checkpoint
) -> None:
    data = write_dataset(tmp_path / "data", per_class=7)  # 14 images: shards of 7 and 7
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    evaluate = ["-m", "forensics", "evaluate", "--data", str(data), "--split", "all",
                "--checkpoint", str(tiny_checkpoint), "--batch-size", "4"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    for command in (
        [sys.executable, *evaluate, "--out", str(single)],
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         *evaluate, "--out", str(sharded)],
    ):  # fmt: skip
        result = subprocess.run(
            command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("14 images: accuracy") == 1  # rank 0 alone reports and writes
    a = pd.read_csv(single / "predictions.csv", keep_default_na=False)
    b = pd.read_csv(sharded / "predictions.csv", keep_default_na=False)
    # Same rows, order and verdicts; P(fake) equal up to float rounding, since the fast engine's
    # fused kernels may sum in another order for another batch composition.
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-6, rtol=0)
    assert (a["predicted"] == b["predicted"]).all()
    single_metrics, sharded_metrics = (
        json.loads((folder / "metrics.json").read_text()) for folder in (single, sharded)
    )
    for key, value in single_metrics.items():
        if key == "predictions_sha256":
            continue
        assert sharded_metrics[key] == (
            pytest.approx(value, abs=1e-6) if isinstance(value, float) else value
        ), key
