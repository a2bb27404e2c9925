"""Experiment suites: every run of a suite trains, the comparison table and curves are written,
and a second invocation skips finished runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from forensics.checkpoint import load_checkpoint, save_checkpoint
from forensics.patches import PatchSpec
from training import experiments
from training.config import load_config

# float32 (amp off): on a CPU with bfloat16 a ResNet50 from scratch sometimes diverges to NaN
# in one step of 8 images, and the suite then stops on its non-finite scores.
TINY = ["--input.input_size", "32", "--input.resize", "32", "--optim.epochs", "1",
        "--optim.warmup_epochs", "0", "--optim.batch_size", "8", "--data.num_workers", "0",
        "--data.fractions", "[0.6, 0.2, 0.2]", "--optim.amp", "off"]  # fmt: skip


@pytest.mark.parametrize(
    ("suite", "runs"),
    [
        ("strategies", ["feature_extraction", "finetune_layer4", "finetune_all"]),
        ("epochs", ["epochs_1", "epochs_2"]),
        ("baselines", ["resnet18", "resnet50", "simple_cnn"]),
        ("heads", ["head_linear", "head_mlp", "head_small"]),
    ],
)
def test_suite_runs_every_config(suite: str, runs: list[str], tiny_dataset: Path, tmp_path):
    out = tmp_path / suite
    argv = [suite, "--data", str(tiny_dataset), "--out", str(out), "--weights", "none",
            "--epoch-list", "1", "2", *TINY]  # fmt: skip
    assert experiments.main(argv) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["run"]) == runs
    assert list(table.columns) == experiments.COMPARISON_COLUMNS
    # Each run's accuracy is its share of right calls among its test images, recounted here
    # from the labels and the folders the images came from.
    for run, accuracy in zip(table["run"], table["accuracy"], strict=True):
        predictions = pd.read_csv(out / run / "eval" / "predictions.csv")
        split = pd.read_csv(out / run / "splits.csv.gz")
        assert sorted(predictions["path"]) == sorted(split.loc[split["split"] == "test", "path"])
        truth = predictions["path"].str.split("/").str[0] == "fake"
        threshold = json.loads((out / run / "best" / "model.json").read_text()).get(
            "threshold", 0.5
        )
        right = (predictions["prob_fake"] >= threshold) == truth
        assert accuracy == pytest.approx(right.mean(), abs=1e-9)
    assert (table["trainable"] <= table["parameters"]).all()
    markdown = (out / "comparison.md").read_text()
    assert all(f"| {run} |" in markdown for run in runs)
    assert "plotly" in (out / "curves.html").read_text()[:200_000].lower()
    if suite == "strategies":
        trainable = dict(zip(table["run"], table["trainable"], strict=True))
        assert trainable["feature_extraction"] < trainable["finetune_layer4"]
        assert trainable["finetune_layer4"] < trainable["finetune_all"]
    if suite == "epochs":
        assert list(table["epochs"]) == [1, 2]


def test_a_second_invocation_skips_finished_runs(tiny_dataset: Path, tmp_path, capsys) -> None:
    out = tmp_path / "heads"
    argv = ["heads", "--data", str(tiny_dataset), "--out", str(out), *TINY]
    assert experiments.main(argv) == 0
    capsys.readouterr()
    assert experiments.main(argv) == 0
    assert capsys.readouterr().out.count("finished earlier, skipped") == 3


def test_runs_option_trains_and_compares_only_the_named_runs(
    tiny_dataset: Path, tmp_path, capsys
) -> None:
    out = tmp_path / "heads"
    argv = ["heads", "--data", str(tiny_dataset), "--out", str(out), "--runs", "head_small", *TINY]
    assert experiments.main(argv) == 0
    assert list(pd.read_csv(out / "comparison.csv")["run"]) == ["head_small"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["head_small"]
    capsys.readouterr()
    assert experiments.main([*argv[:5], "--runs", "head_big", *TINY]) == 2
    assert "no run ['head_big']" in capsys.readouterr().err


def test_bad_override_fails_before_training(tiny_dataset: Path, tmp_path, capsys) -> None:
    out = tmp_path / "heads"
    argv = ["heads", "--data", str(tiny_dataset), "--out", str(out), "--optim.lrr", "1"]
    assert experiments.main(argv) == 2
    assert "unknown config key" in capsys.readouterr().err
    assert not out.exists()


def test_ideas_suite_adds_one_idea_per_run(tiny_dataset: Path, tmp_path) -> None:
    out = tmp_path / "ideas"
    sizes = ["--input.input_size", "16", "--input.resize", "32"]
    argv = ["ideas", "--data", str(tiny_dataset), "--out", str(out), *TINY, *sizes]
    assert experiments.main(argv) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["run"]) == [
        "downscaled", "downscaled_resnet50", "native_crops", "crops_whole_view",
        "whole_view_longer", "whole_view_mixed_longer",
        "augmented", "augmented_longer", "augmented_mixed_longer",
    ]  # fmt: skip
    configs = {run: load_config(out / run / "config.yaml") for run in table["run"]}
    assert configs["downscaled"]["input"] | {"interpolation": None} == {
        "input_size": 16, "resize": 16, "interpolation": None, "native": False
    }  # fmt: skip
    assert configs["native_crops"]["input"]["resize"] == 32
    assert configs["native_crops"]["augment"]["crop_size"] is None
    whole = configs["crops_whole_view"]
    assert (whole["input"]["input_size"], whole["augment"]["crop_size"]) == (32, 16)
    augmented = configs["augmented"]
    assert augmented["input"]["resize"] == 16
    assert augmented["augment"]["preset"] == "flip_rotate_jitter"
    assert augmented["augment"]["crop"] == "random_resized_crop"
    longer = configs["whole_view_longer"]
    assert longer["input"] == whole["input"] and longer["augment"] == whole["augment"]
    assert longer["optim"]["epochs"] == 2 * whole["optim"]["epochs"]
    augmented_longer, mixed = configs["augmented_longer"], configs["augmented_mixed_longer"]
    assert augmented_longer["augment"] == augmented["augment"]
    assert augmented_longer["optim"]["epochs"] == 2 * augmented["optim"]["epochs"]
    assert mixed["augment"] == augmented["augment"] | {"batch_mix": "mixup_or_cutmix"}
    assert mixed["optim"] == augmented_longer["optim"]
    assert augmented["augment"]["batch_mix"] == "none"
    whole_mixed = configs["whole_view_mixed_longer"]
    assert whole_mixed["augment"] == whole["augment"] | {"batch_mix": "mixup_or_cutmix"}
    assert whole_mixed["input"] == whole["input"] and whole_mixed["optim"] == longer["optim"]
    deeper = configs["downscaled_resnet50"]
    assert deeper["model"]["architecture"] == "resnet50"
    assert deeper["input"] == configs["downscaled"]["input"]
    assert list(table["epochs"]) == [1, 1, 1, 1, 2, 2, 1, 2, 2]


def test_ideas_suite_needs_a_crop_smaller_than_the_native_side(
    tiny_dataset: Path, tmp_path, capsys
):
    argv = ["ideas", "--data", str(tiny_dataset), "--out", str(tmp_path / "ideas"), *TINY]
    assert experiments.main(argv) == 2
    assert "needs input.resize" in capsys.readouterr().err


def test_sources_suite_and_its_cross_source_table(tiny_dataset: Path, tmp_path) -> None:
    from tests.conftest import write_dataset
    from training import cross_source

    out = tmp_path / "sources"
    photos = str(Path(experiments.CONFIG_DIR) / "photos_resnet18.yaml")
    sizes = ["--input.input_size", "32", "--input.resize", "32", "--augment.crop_size", "16",
             "--data.cache_decoded", "false", "--augment.resample_probability", "0"]  # fmt: skip
    other = write_dataset(tmp_path / "other", per_class=10, size=48)
    argv = ["sources", "--data", str(tiny_dataset), "--out", str(out), "--config", photos,
            *TINY, *sizes, "--other", f"other={other}", "--mixed-crop", "16"]  # fmt: skip
    assert experiments.main(argv) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["run"])[5:] == ["all_sets", "without_data", "without_other"]
    # Mixed runs: NPR on native 16 px crops of combinations made without any test image, with
    # as many training images per epoch as the main set has.
    mixed = load_config(out / "without_data" / "config.yaml")
    assert mixed["data"]["root"] == str(out / "_data" / "without_data")
    assert (mixed["input"]["native"], mixed["input"]["input_size"]) == (True, 16)
    primary = pd.read_csv(out / "npr" / "splits.csv.gz")
    assert mixed["data"]["max_train_images"] == int((primary["split"] == "train").sum())
    assert mixed["model"]["input_filter"] == "npr"
    configs = {run: load_config(out / run / "config.yaml") for run in experiments._sources_runs(
        load_config(out / "npr" / "config.yaml"))}  # fmt: skip
    assert list(configs) == ["downscaled", "native_crops", "native_crops_blur_jpeg", "npr",
                             "highpass"]  # fmt: skip
    assert configs["downscaled"]["input"]["resize"] == 16
    filters = {run: config["model"]["input_filter"] for run, config in configs.items()}
    assert filters == {
        "downscaled": "none", "native_crops": "none", "native_crops_blur_jpeg": "none",
        "npr": "npr", "highpass": "highpass",
    }  # fmt: skip
    assert configs["native_crops_blur_jpeg"]["augment"]["preset"] == "flip_jpeg_blur"

    # Native-crop runs judge by native patches of their crop; the downscaled one resizes.
    assert cross_source.run_detector(out / "npr", engine="eager").patch_spec.size == 16
    assert cross_source.run_detector(out / "downscaled", engine="eager").patch_spec is None
    assert cross_source.run_detector(out / "all_sets", engine="eager").patch_spec.size == 16
    sets = ["--set", f"data={tiny_dataset}", "--set", f"other={other}"]
    runs = ["npr", "downscaled", "without_other"]
    assert cross_source.main([str(out), *sets, "--runs", *runs]) == 0
    table = pd.read_csv(out / "cross_source.csv")
    assert list(table["run"]) == ["downscaled", "npr", "without_other"]
    assert list(table.columns) == ["run", "trained on", "val_accuracy", "val_auc",
                                   "shipped val_auc", "shipped val_logloss",
                                   "shipped val_auc resampled", "data AUC", "data acc",
                                   "other AUC", "other acc"]  # fmt: skip
    assert list(table["trained on"]) == ["data", "data", "data"]
    # Validation as shipped is a single-set run's; a combination's validation mixes sets.
    shipped = ["shipped val_auc", "shipped val_logloss", "shipped val_auc resampled"]
    assert table[shipped].isna().all(axis=1).tolist() == [False, False, True]
    assert (table.loc[:1, "shipped val_logloss"] > 0).all()
    figures = table.drop(columns=["run", "trained on", *shipped])
    assert figures.notna().all().all() and ((figures >= 0) & (figures <= 1)).all().all()
    # val_accuracy is the training's own figure at its best epoch.
    for run, accuracy in zip(table["run"], table["val_accuracy"], strict=True):
        history = pd.read_csv(out / run / "history.csv")
        best = history.loc[history["best"].astype(bool), "val_accuracy"].iloc[-1]
        assert accuracy == pytest.approx(best, abs=1e-9), run
    assert "python -m training.cross_source" in (out / "cross_source.md").read_text()
    assert cross_source.main([str(tmp_path), "--set", "x=/nonexistent"]) == 2

    # A published checkpoint is judged as it ships (its own patch rule), and --update adds its
    # row to the earlier table, keeping the rows of runs whose folders are gone.
    shipped = tmp_path / "checkpoints" / "shipped"
    model, meta = load_checkpoint(out / "npr" / "best")
    meta["patches"] = PatchSpec(size=16, aggregate="top_k_mean", k=2).to_dict()
    save_checkpoint(shipped, model, meta)
    for name in ("config.yaml", "history.csv", "splits.csv.gz"):
        shutil.copyfile(out / "npr" / name, shipped / name)
    assert cross_source.run_detector(shipped, engine="eager").patch_spec.aggregate == "top_k_mean"
    update = [str(shipped.parent), *sets, "--out", str(out), "--update"]
    assert cross_source.main(update) == 0
    updated = pd.read_csv(out / "cross_source.csv")
    assert list(updated["run"]) == ["downscaled", "npr", "without_other", "shipped"]
    pd.testing.assert_frame_equal(updated.iloc[:3], table)
    assert updated.loc[3, "trained on"] == "data" and updated.loc[3, "shipped val_logloss"] > 0
    assert (out / "cross_source.md").read_text().count("`python -m training.cross_source") == 2
