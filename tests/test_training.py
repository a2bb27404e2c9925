"""Training: config overrides, a smoke run's outputs, refusing to overwrite, and resuming to the
same result as an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

import forensics.scan
from forensics import load_detector
from forensics.data import SPLITS
from tests.conftest import make_image, write_dataset
from training.config import apply_overrides, dump_config, load_config, set_dotted
from training.train import HISTORY_METRICS, main, prepare_data

REPO_ROOT = Path(__file__).resolve().parent.parent
SMOKE = REPO_ROOT / "training" / "configs" / "smoke.yaml"
LOSS_COLUMNS = ["train_loss", "val_loss"]


def _train(out: Path, data: Path, *extra: str) -> int:
    return main(["--config", str(SMOKE), "--data.root", str(data), "--out", str(out), *extra])


# ------------------------------------------------------------------------------- config


@pytest.fixture
def config() -> dict:
    return load_config(SMOKE)


def test_apply_overrides_dotted_keys_and_yaml_types(config: dict) -> None:
    resolved = apply_overrides(
        config,
        [
            "--optim.epochs", "7",
            "--optim.lr", "0.01",
            "--data.cache_decoded", "true",
            "--data.fractions", "[0.5, 0.25, 0.25]",
            "--model.architecture", "resnet18",
            "--data.max_train_images", "null",
            "--seed=3",
        ],
    )  # fmt: skip
    assert resolved["optim"]["epochs"] == 7 and isinstance(resolved["optim"]["epochs"], int)
    assert resolved["optim"]["lr"] == 0.01 and isinstance(resolved["optim"]["lr"], float)
    assert resolved["data"]["cache_decoded"] is True
    assert resolved["data"]["fractions"] == [0.5, 0.25, 0.25]
    assert resolved["model"]["architecture"] == "resnet18"
    assert resolved["data"]["max_train_images"] is None
    assert resolved["seed"] == 3
    # The input is not modified.
    assert config["optim"]["epochs"] == 2 and config["seed"] == 0


@pytest.mark.parametrize("value", ["3e-4", "1E-3", "-2.5e+2", "1.0e-3"])
def test_scientific_notation_is_a_number(config: dict, value: str) -> None:
    # PyYAML reads '3e-4' (no dot) as a string; the docstring's own example must give a float.
    resolved = apply_overrides(config, ["--optim.lr", value])
    assert isinstance(resolved["optim"]["lr"], float)
    assert resolved["optim"]["lr"] == float(value)


def test_equals_form_and_dashes(config: dict) -> None:
    resolved = apply_overrides(
        config, ["--optim.batch-size=4", "--optim.optimizer=adamw", "--out=x"]
    )
    assert resolved["optim"]["batch_size"] == 4
    assert resolved["optim"]["optimizer"] == "adamw"
    assert resolved["out"] == "x"
    assert apply_overrides(config, ["--data.root="])["data"]["root"] is None


@pytest.mark.parametrize(
    ("flag", "valid"),
    [
        ("--optim.epoch", ["epochs", "lr"]),
        ("--modell.head", ["model", "optim"]),
        ("--optim.lr.x", []),
    ],
)
def test_unknown_key_raises_naming_valid_keys(config: dict, flag: str, valid: list[str]) -> None:
    with pytest.raises(ValueError, match="unknown config key") as info:
        apply_overrides(config, [flag, "1"])
    for name in valid:
        assert name in str(info.value)


def test_missing_value_and_malformed_flags_raise(config: dict) -> None:
    with pytest.raises(ValueError, match="needs a value"):
        apply_overrides(config, ["--optim.epochs"])
    with pytest.raises(ValueError, match="expected --key value"):
        apply_overrides(config, ["optim.epochs", "3"])
    with pytest.raises(ValueError, match="expected --key value"):
        apply_overrides(config, ["--"])


def test_set_dotted_and_dump_round_trip(config: dict) -> None:
    set_dotted(config, "model.head", "mlp")
    assert yaml.safe_load(dump_config(config)) == config


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(listed)


# ------------------------------------------------------------------------------- runs


def test_smoke_run_writes_a_complete_run_folder(tiny_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _train(run, tiny_dataset) == 0
    for name in ("config.yaml", "splits.csv.gz", "history.csv", "state.pt"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "best").iterdir()) == ["model.json", "model.safetensors"]
    assert not list(run.rglob("*.tmp"))

    saved = load_config(run / "config.yaml")
    assert saved["data"]["root"] == str(tiny_dataset)
    assert saved["out"] == str(run)
    epochs = saved["optim"]["epochs"]

    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == list(range(1, epochs + 1))
    for prefix in ("train_", "val_"):
        for metric in HISTORY_METRICS:
            assert f"{prefix}{metric}" in history.columns
    assert np.isfinite(history[LOSS_COLUMNS].to_numpy()).all()
    assert history["best"].any()

    splits = pd.read_csv(run / "splits.csv.gz")
    assert len(splits) == 16 and set(splits["split"]) <= set(SPLITS)
    test_paths = sorted(splits.loc[splits["split"] == "test", "path"])
    # Accuracy on n validation images is a count of right calls over n.
    n_val = int((splits["split"] == "val").sum())
    right = history["val_accuracy"] * n_val
    np.testing.assert_allclose(right, right.round(), atol=1e-6)

    detector = load_detector(run / "best")
    meta = detector.metadata
    assert meta["architecture"] == "simple_cnn"
    assert meta["training"]["optim"]["epochs"] == epochs
    assert meta["data"]["input_size"] == 32
    assert "test" in meta["metrics"] and "val" in meta["metrics"]
    assert meta["dataset"]["fingerprint"]
    best_epoch = meta["metrics"]["epoch"]
    assert history.loc[history["epoch"] == best_epoch, "val_loss"].item() == pytest.approx(
        history["val_loss"].min()
    )

    predictions = pd.read_csv(run / "eval" / "predictions.csv", keep_default_na=False)
    metrics = yaml.safe_load((run / "eval" / "metrics.json").read_text())
    assert sorted(predictions["path"]) == test_paths
    assert metrics["n"] == len(test_paths)
    assert metrics["accuracy"] == pytest.approx(meta["metrics"]["test"]["accuracy"])
    assert meta["metrics"]["val"]["accuracy"] == pytest.approx(
        history.loc[history["epoch"] == best_epoch, "val_accuracy"].item()
    )
    # The test accuracy is the share of right calls, recounted from the image folders.
    truth = predictions["path"].str.split("/").str[0] == "fake"
    right_calls = (predictions["prob_fake"] >= meta.get("threshold", 0.5)) == truth
    assert metrics["accuracy"] == pytest.approx(right_calls.mean(), abs=1e-9)
    direct = detector.predict_batch([tiny_dataset / p for p in predictions["path"]])
    np.testing.assert_allclose(predictions["prob_fake"], [v.prob_fake for v in direct], atol=1e-5)


def test_refuses_to_overwrite_a_run_without_resume(
    tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    assert _train(run, tiny_dataset, "--optim.epochs", "1") == 0
    state = (run / "state.pt").read_bytes()
    capsys.readouterr()
    assert _train(run, tiny_dataset, "--optim.epochs", "1") == 2
    err = capsys.readouterr().err
    assert "--resume" in err and err.startswith("error: ")
    assert (run / "state.pt").read_bytes() == state


@pytest.mark.parametrize("root", [None, "missing"])
def test_missing_data_root_exits_2(tmp_path: Path, root: str | None, capsys) -> None:
    argv = ["--config", str(SMOKE), "--out", str(tmp_path / "run")]
    if root is not None:
        argv += ["--data.root", str(tmp_path / root)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert ("data.root" in err) if root is None else (root in err)


def test_bad_override_exits_2(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    assert _train(tmp_path / "run", tiny_dataset, "--optim.epoch", "1") == 2
    assert "unknown config key" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_ends_where_an_uninterrupted_run_ends(tiny_dataset: Path, tmp_path: Path) -> None:
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    assert _train(run_a, tiny_dataset, "--optim.epochs", "3") == 0

    assert _train(run_b, tiny_dataset, "--optim.epochs", "2") == 0
    assert len(pd.read_csv(run_b / "history.csv")) == 2
    # --resume continues from the run's own config.yaml; overrides given with it still apply.
    assert (
        main(["--config", str(SMOKE), "--out", str(run_b), "--resume", "--optim.epochs", "3"]) == 0
    )
    assert load_config(run_b / "config.yaml")["optim"]["epochs"] == 3

    history_a = pd.read_csv(run_a / "history.csv")
    history_b = pd.read_csv(run_b / "history.csv")
    assert list(history_b["epoch"]) == [1, 2, 3] == list(history_a["epoch"])
    metric_columns = [c for c in history_a.columns if c.startswith(("train_", "val_"))]
    np.testing.assert_allclose(
        history_b[metric_columns].to_numpy(float), history_a[metric_columns].to_numpy(float),
        rtol=1e-6, atol=1e-7,
    )  # fmt: skip
    assert list(history_b["best"]) == list(history_a["best"])
    assert list(history_b["lr"]) == list(history_a["lr"])

    weights_a = load_file(str(run_a / "best" / "model.safetensors"))
    weights_b = load_file(str(run_b / "best" / "model.safetensors"))
    assert weights_a.keys() == weights_b.keys()
    for key, tensor in weights_a.items():
        torch.testing.assert_close(weights_b[key], tensor, rtol=1e-6, atol=1e-7, msg=key)
    state_a = torch.load(run_a / "state.pt", weights_only=True)
    state_b = torch.load(run_b / "state.pt", weights_only=True)
    assert state_a["epoch"] == state_b["epoch"] == 3
    for key, tensor in state_a["model"].items():
        torch.testing.assert_close(state_b["model"][key], tensor, rtol=1e-6, atol=1e-7, msg=key)
    pd.testing.assert_frame_equal(
        pd.read_csv(run_a / "splits.csv.gz"), pd.read_csv(run_b / "splits.csv.gz")
    )


def test_resnet18_compact_stem_stride1_run(tiny_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = _train(
        run, tiny_dataset,
        "--model.architecture", "resnet18",
        "--model.stem", "compact",
        "--model.layer4_stride", "1",
        "--optim.epochs", "1",
    )  # fmt: skip
    assert code == 0
    assert len(pd.read_csv(run / "history.csv")) == 1
    detector = load_detector(run / "best")
    assert detector.metadata["architecture"] == "resnet18"
    assert detector.metadata["stem"] == "compact"
    assert detector.metadata["layer4_stride"] == 1
    assert detector.model.layer4[0].conv1.stride == (1, 1)
    explanation = detector.explain(tiny_dataset / "fake" / "fake_000.png")
    assert explanation.heatmap.shape == (32, 32)


def test_resume_with_a_new_learning_rate_applies_it(tiny_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _train(run, tiny_dataset, "--optim.epochs", "1") == 0
    assert main(["--config", str(SMOKE), "--out", str(run), "--resume",
                 "--optim.epochs", "2", "--optim.lr", "1e-5"]) == 0  # fmt: skip
    history = pd.read_csv(run / "history.csv")
    assert list(history["lr"]) == [pytest.approx(1e-3), pytest.approx(1e-5)]
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-5)


def test_runs_reuse_the_cached_scan_of_an_unchanged_dataset(tmp_path: Path, monkeypatch) -> None:
    data = write_dataset(tmp_path / "data", per_class=4)
    scans = []
    real_build = forensics.scan.build_manifest
    monkeypatch.setattr(
        forensics.scan, "build_manifest", lambda *a, **k: scans.append(1) or real_build(*a, **k)
    )
    config = {"data": {"root": str(data), "fractions": [0.5, 0.25, 0.25]}, "seed": 0}
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
        prepare_data(config, tmp_path / run)
    assert len(scans) == 1  # the second run read the first run's scan
    make_image(99).save(data / "real" / "extra.png")
    (tmp_path / "third").mkdir()
    manifest = prepare_data(config, tmp_path / "third")
    assert len(scans) == 2 and len(manifest) == 9  # a changed folder is scanned again
