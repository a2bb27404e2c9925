"""training.tune: an Optuna study over the smoke config on tiny synthetic data (seconds)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from training.config import CONFIG_DIR, load_config, set_dotted
from training.tune import (
    BATCH_SIZES,
    build_search_space,
    list_override_keys,
    main,
    make_epoch_callback,
)

SMOKE = CONFIG_DIR / "smoke.yaml"
STUDY = "tune_smoke"  # the default name for smoke.yaml


def tune_args(data: Path, out: Path, trials: int, *extra: str) -> list[str]:
    return [
        "--config", str(SMOKE), "--trials", str(trials), "--data", str(data), "--out", str(out),
        "--optim.epochs", "1", *extra,
    ]  # fmt: skip


def load_trials(out: Path) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{out / 'study.db'}"
    return optuna.load_study(study_name=STUDY, storage=storage).trials


def test_study_runs_end_to_end_then_resumes_with_one_more_trial(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "tune"
    assert main(tune_args(tiny_dataset, out, 2)) == 0
    for name in ("study.db", "trials.csv", "best_params.yaml", "best_run/best/model.safetensors"):
        assert (out / name).is_file(), name
    first = load_trials(out)
    assert [t.state for t in first] == [TrialState.COMPLETE] * 2
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["trial_0", "trial_1"]
    printed = capsys.readouterr().out
    assert "trial 0: best val loss" in printed and "trial 1: best val loss" in printed
    assert "final run: test accuracy" in printed

    best = yaml.safe_load((out / "best_params.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(t.value for t in first))
    assert set(best["params"]) >= {"optim.lr", "optim.weight_decay", "optim.batch_size"}
    assert best["params"]["optim.batch_size"] in BATCH_SIZES
    assert 0.0 <= best["test_metrics"]["accuracy"] <= 1.0
    # The final run trained the best trial's parameters.
    final = yaml.safe_load((out / "best_run" / "config.yaml").read_text())
    assert final["optim"]["lr"] == pytest.approx(best["params"]["optim.lr"])
    # Only that final run read the test split: no trial has a test figure to select on.
    assert (out / "best_run" / "eval" / "metrics.json").is_file()
    assert not list((out / "trials").glob("*/eval/metrics.json"))
    assert not [c for c in pd.read_csv(out / "trials.csv").columns if "test" in c]

    # The same command with --trials 3 resumes from SQLite and runs exactly one more trial.
    assert main(tune_args(tiny_dataset, out, 3)) == 0
    trials = load_trials(out)
    assert [t.number for t in trials] == [0, 1, 2]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert [t.datetime_start for t in trials[:2]] == [t.datetime_start for t in first]
    # The resumed sampler does not replay the first trials' draws.
    assert trials[2].params["optim.lr"] not in {t.params["optim.lr"] for t in first}
    assert len(pd.read_csv(out / "trials.csv")) == 3
    assert "trial 2: " in capsys.readouterr().out

    # Nothing left to run: asking for 3 again trains no trial.
    assert main(tune_args(tiny_dataset, out, 3)) == 0
    assert len(load_trials(out)) == 3
    # Trials of another config never join this study.
    assert main([*tune_args(tiny_dataset, out, 4), "--optim.optimizer", "sgd"]) == 2
    assert "different config" in capsys.readouterr().err
    assert len(load_trials(out)) == 3


def test_interrupted_trial_is_failed_and_retried_in_a_fresh_folder(
    tiny_dataset: Path, tmp_path: Path
):
    out = tmp_path / "tune"
    out.mkdir()
    # A process killed mid-trial leaves it RUNNING in the database...
    study = optuna.create_study(study_name=STUDY, storage=f"sqlite:///{out / 'study.db'}")
    killed = study.ask()
    killed.suggest_float("optim.lr", 1e-5, 1e-2, log=True)
    # ...and leftovers in the folder a new trial will use.
    leftover = out / "trials" / "trial_1"
    leftover.mkdir(parents=True)
    (leftover / "state.pt").write_bytes(b"from a crashed attempt")

    assert main(tune_args(tiny_dataset, out, 1)) == 0
    trials = load_trials(out)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].params["optim.lr"] == killed.params["optim.lr"]
    assert trials[1].user_attrs["retry_of"] == 0
    assert (leftover / "best" / "model.safetensors").is_file()


class FakeTrial:
    """Just what the epoch callback uses of an optuna.Trial."""

    def __init__(self, *, prune: bool) -> None:
        self.prune, self.reports = prune, []

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return self.prune


def test_epoch_callback_reports_val_loss_and_prunes_when_told():
    rows: list[dict] = []
    keep = FakeTrial(prune=False)
    make_epoch_callback(keep, rows)(1, {"val_loss": 0.7, "val_accuracy": 0.5})
    assert keep.reports == [(1, 0.7)] and len(rows) == 1

    prune = FakeTrial(prune=True)
    with pytest.raises(optuna.TrialPruned):
        make_epoch_callback(prune, [])(2, {"val_loss": 0.9, "val_accuracy": 0.5})
    assert prune.reports == [(2, 0.9)]


def test_search_space_follows_the_config():
    config = load_config(SMOKE)  # simple_cnn: its classifier has dropout
    space = build_search_space(config)
    assert set(space) == {
        "optim.lr", "optim.weight_decay", "optim.batch_size", "augment.preset", "model.dropout",
    }  # fmt: skip
    assert space["optim.lr"].log and (space["optim.lr"].low, space["optim.lr"].high) == (1e-5, 1e-2)
    assert isinstance(space["optim.batch_size"], CategoricalDistribution)

    set_dotted(config, "model.architecture", "resnet18")
    set_dotted(config, "model.strategy", "finetune_layer4")
    space = build_search_space(config, fixed=["optim.batch_size"])
    # A linear head has no dropout; an overridden key stays as given.
    assert "optim.backbone_lr" in space and "model.dropout" not in space
    assert "optim.batch_size" not in space

    with pytest.raises(ValueError, match="lr range"):
        build_search_space(config, lr_range=(1e-2, 1e-5))
    with pytest.raises(ValueError, match="valid"):
        build_search_space(config, presets=["sharpen"])


def test_search_space_leaves_out_dropout_when_the_config_has_no_such_key(capsys):
    config = load_config(SMOKE)
    del config["model"]["dropout"]
    assert "model.dropout" not in build_search_space(config)
    assert "no model.dropout option" in capsys.readouterr().out


def test_override_keys_are_listed():
    assert list_override_keys(["--optim.lr", "0.1", "--augment.preset=none"]) == [
        "optim.lr",
        "augment.preset",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--config": "missing.yaml"}, "config file not found"),
        ({"--data": "no/such/folder"}, "data not found"),
        ({"--trials": "0"}, "at least 1"),
        ({"extra": ["--optim.nope", "1"]}, "unknown config key"),
        ({"extra": ["--presets", "sharpen"]}, "unknown augmentation preset"),
    ],
)
def test_bad_input_exits_2_with_one_line(tiny_dataset, tmp_path, capsys, change, message):
    options = {"--config": str(SMOKE), "--trials": "1", "--data": str(tiny_dataset)}
    options.update({k: v for k, v in change.items() if k != "extra"})
    argv = [x for pair in options.items() for x in pair]
    argv += ["--out", str(tmp_path / "tune"), *change.get("extra", [])]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "tune" / "trials").exists()
