"""Tune hyperparameters with Optuna: `python -m training.tune --config FILE --trials N
[--data DIR] [--out DIR] [--study-name NAME] [--key value ...]`.

Each trial trains `training.train.run` with sampled learning rates (`optim.lr`, and
`optim.backbone_lr` under finetune_layer4 / finetune_all), weight decay, dropout, batch size and
augmentation preset, and scores the best validation loss it reached (minimised). A MedianPruner
stops trials whose validation loss lags the median of earlier trials at the same epoch.

OUT holds `study.db` (SQLite: run the same command again after a crash or kill to resume; trials
that finished count towards N), `trials/trial_<n>/` (each trial's run and its `train.log`),
`best_run/` (the best trial's config trained as a full run), `trials.csv` and
`best_params.yaml`. One process per study: a trial left running by a killed process is marked
failed on resume and retried with the same parameters.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import shutil
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from forensics.atomic import write_atomic, write_text_atomic
from forensics.models import build_model
from forensics.transforms import AUGMENT_PRESETS
from training.config import apply_overrides, dump_config, load_config, set_dotted
from training.train import EpochCallback, run

# Search-space defaults; each has a command-line flag (--lr-range LOW HIGH, ...).
LR_RANGE = (1e-5, 1e-2)  # log scale
BACKBONE_LR_RANGE = (1e-5, 1e-2)  # log scale; only under FINETUNE_STRATEGIES
WEIGHT_DECAY_RANGE = (1e-6, 1e-1)  # log scale
DROPOUT_RANGE = (0.0, 0.7)  # uniform; build_head accepts [0, 1)
BATCH_SIZES = (16, 32, 64)
PRESETS = AUGMENT_PRESETS
PRUNER_STARTUP_TRIALS = 5  # trials that finish before any is pruned (MedianPruner's default)
PRUNER_WARMUP_EPOCHS = 1  # epochs a trial trains before it may be pruned

FINETUNE_STRATEGIES = ("finetune_layer4", "finetune_all")
# Trials that count towards --trials: a failed one (error, kill) is run again.
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_CONSECUTIVE_FAILURES = 3  # more in a row means something is broken, not unlucky
SUMMARY_METRICS = ("n", "accuracy", "precision", "recall", "f1", "roc_auc")


class TuneError(RuntimeError):
    """The study cannot go on (repeated failures, nothing completed)."""


def build_search_space(
    config: dict[str, Any],
    *,
    lr_range: Sequence[float] = LR_RANGE,
    backbone_lr_range: Sequence[float] = BACKBONE_LR_RANGE,
    weight_decay_range: Sequence[float] = WEIGHT_DECAY_RANGE,
    dropout_range: Sequence[float] = DROPOUT_RANGE,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    presets: Sequence[str] = PRESETS,
    fixed: Sequence[str] = (),
) -> dict[str, BaseDistribution]:
    """Dotted config key -> Optuna distribution for what `config` can use.

    Keys in `fixed` (set on the command line) are left out, so an explicit override is kept
    rather than silently replaced by a sampled value. Raises ValueError for bad bounds."""
    space: dict[str, BaseDistribution] = {
        "optim.lr": _make_log_range("lr", lr_range),
        "optim.weight_decay": _make_log_range("weight decay", weight_decay_range),
        "optim.batch_size": CategoricalDistribution(_check_batch_sizes(batch_sizes)),
        "augment.preset": CategoricalDistribution(_check_presets(presets)),
    }
    strategy = config["model"].get("strategy", "scratch")
    if strategy in FINETUNE_STRATEGIES:
        space["optim.backbone_lr"] = _make_log_range("backbone lr", backbone_lr_range)
    if config["model"].get("dropout") is None:
        print("note: the config has no model.dropout option, so dropout is not tuned")
    elif not check_dropout_used(config["model"]):
        print(
            f"note: {config['model']['architecture']} with the {config['model']['head']} head "
            "has no dropout layer, so dropout is not tuned"
        )
    else:
        low, high = (float(v) for v in dropout_range)
        if not 0.0 <= low < high < 1.0:
            raise ValueError(f"dropout range must satisfy 0 <= low < high < 1, got {low}, {high}")
        space["model.dropout"] = FloatDistribution(low, high)
    for key in fixed:
        if space.pop(key, None) is not None:
            print(f"note: {key} is set on the command line, so it is not tuned")
    return space


def _make_log_range(name: str, bounds: Sequence[float]) -> FloatDistribution:
    low, high = (float(v) for v in bounds)
    if not 0.0 < low < high:
        raise ValueError(f"{name} range must satisfy 0 < low < high, got {low}, {high}")
    return FloatDistribution(low, high, log=True)


def _check_batch_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    if not sizes or any(int(size) < 1 for size in sizes):
        raise ValueError(f"batch sizes must be positive integers, got {list(sizes)}")
    return tuple(sorted({int(size) for size in sizes}))


def _check_presets(presets: Sequence[str]) -> tuple[str, ...]:
    unknown = [name for name in presets if name not in AUGMENT_PRESETS]
    if not presets or unknown:
        raise ValueError(f"unknown augmentation preset(s) {unknown}; valid: {AUGMENT_PRESETS}")
    return tuple(dict.fromkeys(presets))


def check_dropout_used(model_config: dict[str, Any]) -> bool:
    """Whether `model.dropout` reaches a layer of this model (ResNets with a linear head have
    none). Builds the model untrained with a probe rate and looks for it."""
    probe = 0.123456
    options = {k: v for k, v in model_config.items() if k not in ("strategy", "weights")}
    model = build_model(**{**options, "dropout": probe})
    return any(isinstance(m, nn.Dropout) and m.p == probe for m in model.modules())


def sample_params(trial: optuna.Trial, space: dict[str, BaseDistribution]) -> dict[str, Any]:
    """One value per key of `space`, drawn by the trial (or replayed from an enqueued one)."""
    params: dict[str, Any] = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            params[key] = trial.suggest_categorical(key, dist.choices)
        else:
            params[key] = trial.suggest_float(key, dist.low, dist.high, log=dist.log)
    return params


def make_epoch_callback(trial: optuna.Trial, rows: list[dict[str, Any]]) -> EpochCallback:
    """A `run` callback that records each epoch's history row in `rows`, reports its
    validation loss to the pruner and raises optuna.TrialPruned when told to stop."""

    def report_epoch(epoch: int, row: dict[str, Any]) -> None:
        rows.append(row)
        trial.report(float(row["val_loss"]), epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")

    return report_epoch


def run_trial(
    trial: optuna.Trial,
    *,
    base_config: dict[str, Any],
    space: dict[str, BaseDistribution],
    trials_dir: Path,
) -> float:
    """Train one sampled config in trials_dir/trial_<number>; returns its best val loss."""
    params = sample_params(trial, space)
    config = copy.deepcopy(base_config)
    for key, value in params.items():
        set_dotted(config, key, value)
    run_dir = trials_dir / f"trial_{trial.number}"
    if run_dir.exists():
        # Leftovers of a crashed attempt: train.run refuses a folder that holds a run.
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    config["out"] = str(run_dir)
    # Trials are compared on validation loss alone; only the best config's final run reads the
    # test split, once, so no figure a user could select on ever comes from it.
    config["evaluate_test"] = False
    trial.set_user_attr("run_dir", str(run_dir))
    rows: list[dict[str, Any]] = []
    # The trial's own output goes to its log; the terminal gets one line per trial.
    with (
        open(run_dir / "train.log", "w", encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        run(config, epoch_callback=make_epoch_callback(trial, rows))
    best = min(rows, key=lambda row: row["val_loss"])
    trial.set_user_attr("epochs", len(rows))
    trial.set_user_attr("best_epoch", int(best["epoch"]))
    trial.set_user_attr("val_accuracy", float(best["val_accuracy"]))
    return float(best["val_loss"])


def count_counted_trials(study: optuna.Study) -> int:
    """Trials that count towards --trials (complete or pruned)."""
    return len(study.get_trials(deepcopy=False, states=COUNTED_STATES))


def retry_stale_trials(study: optuna.Study, storage: optuna.storages.RDBStorage) -> int:
    """Mark trials left RUNNING by a killed process as failed and enqueue their parameters,
    so the resumed study tries the interrupted point again. Returns how many there were."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in stale:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        print(f"trial {trial.number} was interrupted: marked failed, its parameters queued again")
    return len(stale)


def format_params(params: dict[str, Any]) -> str:
    """`lr=3.1e-04 batch_size=32 ...` (short names, 2 significant digits for floats)."""
    parts = []
    for key, value in params.items():
        shown = f"{value:.2g}" if isinstance(value, float) else str(value)
        parts.append(f"{key.rsplit('.', 1)[-1]}={shown}")
    return " ".join(parts)


def print_trial(study: optuna.Study, trial: FrozenTrial, *, n_trials: int) -> None:
    """One line per finished trial (an Optuna callback)."""
    seconds = trial.duration.total_seconds() if trial.duration is not None else math.nan
    if trial.state == TrialState.COMPLETE:
        what = (
            f"best val loss {trial.value:.4f} at epoch {trial.user_attrs.get('best_epoch')} "
            f"(val acc {trial.user_attrs.get('val_accuracy', math.nan):.3f})"
        )
    elif trial.state == TrialState.PRUNED:
        step = trial.last_step
        loss = trial.intermediate_values.get(step, math.nan) if step is not None else math.nan
        what = f"pruned after epoch {step} (val loss {loss:.4f})"
    else:
        what = f"{trial.state.name.lower()} (see the warning above)"
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = min(completed, key=lambda t: t.value) if completed else None
    so_far = f"best {best.value:.4f} (trial {best.number})" if best else "none complete yet"
    print(
        f"trial {trial.number}: {what} | {format_params(trial.params)} | "
        f"{count_counted_trials(study)}/{n_trials}, {so_far} | {seconds:.0f} s",
        flush=True,
    )


def run_study(
    study: optuna.Study,
    *,
    n_trials: int,
    base_config: dict[str, Any],
    space: dict[str, BaseDistribution],
    trials_dir: Path,
) -> None:
    """Run trials until `n_trials` count (complete or pruned); failed ones are run again, up to
    MAX_CONSECUTIVE_FAILURES in a row."""
    objective = partial(run_trial, base_config=base_config, space=space, trials_dir=trials_dir)
    finished: list[FrozenTrial] = []

    def record(study: optuna.Study, trial: FrozenTrial) -> None:
        finished.append(trial)
        print_trial(study, trial, n_trials=n_trials)

    failures = 0
    while count_counted_trials(study) < n_trials:
        # catch: a diverging or crashing trial is recorded as failed rather than ending the study.
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[record])
        failures = failures + 1 if finished and finished[-1].state == TrialState.FAIL else 0
        if failures >= MAX_CONSECUTIVE_FAILURES:
            raise TuneError(
                f"{failures} trials in a row failed (see the warnings above); stopping. "
                f"Their logs are in {trials_dir}"
            )


def train_best(config: dict[str, Any]) -> dict[str, Any]:
    """Train `config` as a full run in config["out"]; a run there with the same config is
    resumed (finishing it, or only re-evaluating it if it is complete), any other replaced."""
    run_dir = Path(config["out"])
    saved = run_dir / "config.yaml"
    resume = False
    if run_dir.exists():
        same = saved.is_file() and yaml.safe_load(saved.read_text(encoding="utf-8")) == (
            yaml.safe_load(dump_config(config))
        )
        resume = same and (run_dir / "state.pt").is_file()
        if not resume:
            shutil.rmtree(run_dir)
    return run(config, resume=resume)


def write_results(
    study: optuna.Study,
    out: Path,
    *,
    best_run: Path,
    test_metrics: dict[str, Any] | None = None,
) -> None:
    """OUT/trials.csv (study.trials_dataframe()) and OUT/best_params.yaml."""
    frame = study.trials_dataframe()
    write_atomic(out / "trials.csv", partial(frame.to_csv, index=False))
    best = study.best_trial
    summary: dict[str, Any] = {
        "study": study.study_name,
        "best_trial": best.number,
        "best_value": float(best.value),
        "objective": "best validation loss (minimised)",
        "params": dict(best.params),
        "counted_trials": count_counted_trials(study),
        "best_run": str(best_run),
    }
    if test_metrics:
        summary["test_metrics"] = {
            k: test_metrics[k] for k in SUMMARY_METRICS if test_metrics.get(k) is not None
        }
    write_text_atomic(out / "best_params.yaml", yaml.safe_dump(summary, sort_keys=False))


def list_override_keys(overrides: Sequence[str]) -> list[str]:
    """Dotted keys named by `--key value` / `--key=value` overrides (already validated by
    apply_overrides, so the pairs are well formed)."""
    keys, i = [], 0
    while i < len(overrides):
        key, sep, _ = overrides[i][2:].partition("=")
        keys.append(key.replace("-", "_"))
        i += 1 if sep else 2
    return keys


def prepare_config(
    config_file: Path, overrides: Sequence[str], *, data: Path | None, out: Path
) -> dict[str, Any]:
    """The config every trial starts from: file + --data + overrides, its run in OUT/best_run.
    Raises ValueError for a missing config or data, or a bad override."""
    config = load_config(config_file)
    if data is not None:
        set_dotted(config, "data.root", str(data))
    config = apply_overrides(config, overrides)
    root = config["data"].get("root")
    if not root:
        raise ValueError("no dataset: pass --data DIR (or set data.root in the config)")
    if not Path(root).exists():
        raise ValueError(f"data not found: {root}")
    config["out"] = str(out / "best_run")
    return config


def open_study(
    out: Path, *, study_name: str, base_config: dict[str, Any], seed: int
) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """Create or load the study in OUT/study.db. Raises ValueError if it was made from a
    different config, since mixing trials of two configs would make its best trial meaningless."""
    out.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{(out / 'study.db').resolve()}")
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction="minimize",
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS
        ),
        load_if_exists=True,
    )
    # Compare through YAML so tuples and lists (one config from a file, one saved) read alike.
    described = yaml.safe_load(dump_config({k: v for k, v in base_config.items() if k != "out"}))
    saved = study.user_attrs.get("base_config")
    if saved is None:
        study.set_user_attr("base_config", described)
    elif saved != described:
        keys = set(saved) | set(described)
        changed = sorted(k for k in keys if saved.get(k) != described.get(k))
        raise ValueError(
            f"study {study_name!r} in {out} was made from a different config (differs in "
            f"{', '.join(changed)}); use another --out or --study-name"
        )
    # A fresh process restarts the sampler's random state: offsetting the seed by the trials
    # so far keeps a resumed study reproducible without repeating the first trials' draws.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study, storage


def tune(
    config_file: Path,
    *,
    n_trials: int,
    out: Path,
    overrides: Sequence[str] = (),
    data: Path | None = None,
    study_name: str | None = None,
    space_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study, train the best config in OUT/best_run and write the results.
    Returns the final run's test metrics."""
    if n_trials < 1:
        raise ValueError(f"--trials must be at least 1, got {n_trials}")
    base_config = prepare_config(config_file, overrides, data=data, out=out)
    space = build_search_space(
        base_config, fixed=list_override_keys(overrides), **(space_options or {})
    )
    study_name = study_name or f"tune_{Path(config_file).stem}"
    study, storage = open_study(
        out, study_name=study_name, base_config=base_config, seed=int(base_config["seed"])
    )
    retry_stale_trials(study, storage)
    done = count_counted_trials(study)
    print(
        f"study {study_name!r} in {out / 'study.db'}: {done} of {n_trials} trials done; "
        f"tuning {', '.join(space)} (trial logs in {out / 'trials'})",
        flush=True,
    )
    run_study(
        study, n_trials=n_trials, base_config=base_config, space=space, trials_dir=out / "trials"
    )
    try:
        best = study.best_trial
    except ValueError:
        raise TuneError("no trial completed, so there is no best config to train") from None
    best_run = Path(base_config["out"])
    write_results(study, out, best_run=best_run)
    config = copy.deepcopy(base_config)
    for key, value in best.params.items():
        set_dotted(config, key, value)
    print(f"training trial {best.number}'s config as a full run in {best_run}", flush=True)
    metrics = train_best(config)
    write_results(study, out, best_run=best_run, test_metrics=metrics)
    print(f"best trial {best.number}: val loss {best.value:.4f}")
    for key, value in best.params.items():
        print(f"  {key}: {value:.3g}" if isinstance(value, float) else f"  {key}: {value}")
    if metrics.get("accuracy") is not None:
        print(
            f"final run: test accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']:.4f}, "
            f"AUC {metrics.get('roc_auc') or math.nan:.4f} on {metrics['n']} images"
        )
    print(f"wrote {out / 'trials.csv'}, {out / 'best_params.yaml'} and {best_run}", flush=True)
    return metrics


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m training.tune",
        description="Tune learning rates, weight decay, dropout, batch size and augmentation "
        "with Optuna; other config keys can be overridden as --section.key value (an "
        "overridden tuned key is fixed). Run the same command again to resume.",
        allow_abbrev=False,  # --optim.x must never be read as an abbreviation of a flag
    )
    parser.add_argument("--config", type=Path, required=True, help="YAML training config")
    parser.add_argument("--trials", type=int, required=True, help="trials in the study, total")
    parser.add_argument("--data", type=Path, default=None, help="dataset (sets data.root)")
    parser.add_argument(
        "--out", type=Path, default=None, help="study folder (default: training/runs/tune_<config>)"
    )
    parser.add_argument("--study-name", default=None, help="default: tune_<config file stem>")
    space = parser.add_argument_group("search space")
    space.add_argument("--lr-range", type=float, nargs=2, default=LR_RANGE, metavar=("LOW", "HIGH"))
    space.add_argument(
        "--backbone-lr-range",
        type=float,
        nargs=2,
        default=BACKBONE_LR_RANGE,
        metavar=("LOW", "HIGH"),
    )
    space.add_argument(
        "--weight-decay-range",
        type=float,
        nargs=2,
        default=WEIGHT_DECAY_RANGE,
        metavar=("LOW", "HIGH"),
    )
    space.add_argument(
        "--dropout-range", type=float, nargs=2, default=DROPOUT_RANGE, metavar=("LOW", "HIGH")
    )
    space.add_argument("--batch-sizes", type=int, nargs="+", default=BATCH_SIZES, metavar="N")
    space.add_argument("--presets", nargs="+", default=PRESETS, metavar="NAME")
    return parser.parse_known_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = args.out or Path("training/runs") / f"tune_{args.config.stem}"
    space_options = {
        "lr_range": args.lr_range,
        "backbone_lr_range": args.backbone_lr_range,
        "weight_decay_range": args.weight_decay_range,
        "dropout_range": args.dropout_range,
        "batch_sizes": args.batch_sizes,
        "presets": args.presets,
    }
    try:
        tune(
            args.config,
            n_trials=args.trials,
            out=out,
            overrides=overrides,
            data=args.data,
            study_name=args.study_name,
            space_options=space_options,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
